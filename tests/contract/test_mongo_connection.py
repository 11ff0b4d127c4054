"""Connecting to MongoDB securely: credentials, TLS, start-up and readiness.

Each group runs against SecantusDB servers of its own, set up as the test
needs (with --auth, with a test CA), even when CASTGHL_TEST_MONGODB_URI
names another server. No password may appear in an error or a log line.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pymongo import MongoClient

import castghl_app
from castghl_adapters.crypto import PlaintextCipher
from castghl_adapters.mongo import (
    MongoAuthFailed,
    MongoConfigurationError,
    MongoDatabase,
    MongoSecretStore,
    MongoUnavailable,
)
from castghl_app.settings import Settings
from castghl_app.web.app import create_app

USER = "castghl"
PASSWORD = "pw-" + secrets.token_urlsafe(12)
WRONG_PASSWORD = "wrong-" + secrets.token_urlsafe(12)
KEY_PASSWORD = "key-" + secrets.token_urlsafe(12)
DATABASE = "castghl"
FAIL_FAST = {
    "server_selection_timeout": dt.timedelta(seconds=0.5),
    "connect_timeout": dt.timedelta(seconds=0.5),
}

SRC = Path(castghl_app.__file__).resolve().parents[1]


async def round_trip(database: MongoDatabase) -> str | None:
    """Write and read back through a store: the connection really works."""
    store = MongoSecretStore(database, PlaintextCipher())
    await store.put("loc-1", "cast_test_round_trip_key")
    return await store.get("loc-1")


def service_env(uri: str, **overrides: str) -> dict[str, str]:
    """Settings for a castghl on MongoDB whose outside calls go nowhere."""
    return {
        "CASTGHL_PORT": "0",
        "CASTGHL_ADMIN_TOKEN": "admin-" + "x" * 30,
        "CASTGHL_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CASTGHL_STATE_STORE": "mongodb",
        "CASTGHL_MONGODB_URI": uri,
        "CASTGHL_MONGODB_DATABASE": DATABASE,
        # Closed ports on 127.0.0.1: no job is sent in these tests.
        "CASTGHL_CAST_BASE_URL": "http://127.0.0.1:9",
        "CASTGHL_GHL_BASE_URL": "http://127.0.0.1:9",
        **overrides,
    }


# --- credentials ----------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_storage(secantus, tmp_path_factory) -> Path:
    """Server storage holding the user, made in a first start without --auth."""
    storage = tmp_path_factory.mktemp("auth") / "storage"
    first = secantus.start(storage=storage)
    with MongoClient(f"mongodb://{first.address}/") as client:
        client.admin.command(
            "createUser",
            USER,
            pwd=PASSWORD,
            roles=[{"role": "readWrite", "db": DATABASE}],
        )
    first.stop()
    return storage


def start_auth_server(secantus, auth_storage: Path, workdir: Path):
    """A server with --auth on a copy of the prepared storage."""
    copy = workdir / f"storage-{secrets.token_hex(4)}"
    shutil.copytree(auth_storage, copy)
    return secantus.start(storage=copy, options=["--auth"])


@pytest.fixture(scope="module")
def auth_server(secantus, auth_storage, tmp_path_factory):
    return start_auth_server(secantus, auth_storage, tmp_path_factory.mktemp("auth"))


def auth_uri(server, password: str = PASSWORD) -> str:
    return f"mongodb://{USER}:{password}@{server.address}/?authSource=admin"


async def test_the_right_credentials_open_the_database(auth_server):
    """User, password and authSource in the URI: open works and so do stores."""
    async with MongoDatabase(auth_uri(auth_server), database=DATABASE) as database:
        assert await round_trip(database) == "cast_test_round_trip_key"


async def test_a_wrong_password_fails_clearly_and_is_never_shown(auth_server, caplog):
    """A refused password stops open with MongoAuthFailed naming the server by
    its redacted URI; the password is in neither the message nor the logs."""
    caplog.set_level("DEBUG")
    uri = auth_uri(auth_server, WRONG_PASSWORD)

    with pytest.raises(MongoAuthFailed) as caught:
        await MongoDatabase(uri, database=DATABASE, **FAIL_FAST).open()

    message = str(caught.value)
    assert "refused the credentials (authentication failed)" in message
    assert f"mongodb://{USER}:***@{auth_server.address}/?authSource=admin" in message
    assert WRONG_PASSWORD not in message
    assert WRONG_PASSWORD not in caplog.text


async def test_no_credentials_on_a_server_that_wants_them_fail_clearly(auth_server):
    """Without a user, open fails at the first command that needs one."""
    uri = f"mongodb://{auth_server.address}/"

    with pytest.raises(MongoAuthFailed, match="requires authentication"):
        await MongoDatabase(uri, database=DATABASE, **FAIL_FAST).open()


async def test_a_user_without_rights_on_the_database_is_refused(auth_server):
    """A user whose role covers another database is told which role it needs."""
    with pytest.raises(MongoAuthFailed) as caught:
        await MongoDatabase(auth_uri(auth_server), database="elsewhere").open()

    assert "not authorized" in str(caught.value)
    assert "readWrite role on database 'elsewhere'" in str(caught.value)


async def test_the_service_starts_with_the_right_credentials_and_is_ready(
    auth_server, aiohttp_client, caplog
):
    """castghl on an auth-enabled MongoDB is ready, and logs only the redacted URI."""
    caplog.set_level("INFO")
    settings = Settings.from_env(service_env(auth_uri(auth_server)))

    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")

    assert response.status == 200
    assert (await response.json())["checks"]["store"] == "ok"
    [opened] = [r for r in caplog.records if r.getMessage() == "mongodb.opened"]
    assert opened.uri == f"mongodb://{USER}:***@{auth_server.address}/?authSource=admin"
    assert PASSWORD not in caplog.text


def test_serve_with_a_wrong_password_exits_2_with_one_clear_line(auth_server):
    """`castghl serve` refused by MongoDB ends with one clear line and exit
    code 2: no traceback, no password."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CASTGHL_")
    }
    environment |= service_env(
        auth_uri(auth_server, WRONG_PASSWORD),
        CASTGHL_MONGODB_TIMEOUT_SECONDS="2",
        PYTHONPATH=os.pathsep.join([str(SRC), environment.get("PYTHONPATH", "")]),
    )

    result = subprocess.run(
        [sys.executable, "-m", "castghl_app.cli", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    *logged, last = result.stderr.splitlines()
    assert result.returncode == 2
    assert last == (
        f"castghl cannot start: MongoAuthFailed: MongoDB at mongodb://{USER}:***@"
        f"{auth_server.address}/?authSource=admin (database 'castghl') refused "
        "the credentials (authentication failed); check the user name, the "
        "password and authSource in CASTGHL_MONGODB_URI"
    )
    # Anything before it is a JSON log line (a warning about unset options),
    # never a traceback.
    assert all(line.startswith('{"ts": ') for line in logged)
    assert "Traceback" not in result.stderr
    assert WRONG_PASSWORD not in result.stdout + result.stderr


async def test_readiness_fails_within_the_timeout_once_mongodb_is_gone(
    secantus, auth_storage, tmp_path, aiohttp_client, caplog
):
    """With MongoDB gone, /readyz answers 503 within about the configured
    timeout, and the log line names the server by its redacted URI."""
    server = start_auth_server(secantus, auth_storage, tmp_path)
    settings = Settings.from_env(
        service_env(auth_uri(server), CASTGHL_MONGODB_TIMEOUT_SECONDS="1")
    )
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200

    server.kill()
    started = time.monotonic()
    response = await client.get("/readyz")
    elapsed = time.monotonic() - started

    assert response.status == 503
    assert (await response.json())["checks"]["store"] == (
        "unreachable (MongoUnavailable)"
    )
    assert elapsed < 3
    [logged, *_] = [
        r for r in caplog.records if r.getMessage() == "health.store_unreachable"
    ]
    assert f"mongodb://{USER}:***@{server.address}/?authSource=admin" in logged.detail
    assert PASSWORD not in caplog.text


# --- TLS ----------------------------------------------------------------------------


@attrs.frozen
class TlsFiles:
    """A test CA, a server certificate for 127.0.0.1 and localhost, and a
    client certificate (its key also kept encrypted with KEY_PASSWORD)."""

    ca: Path
    server_certificate: Path
    server_key: Path
    client: Path
    encrypted_client: Path


def _certificate(subject, issuer, public_key, signer, *, extensions):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def make_tls_files(directory: Path) -> TlsFiles:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        "castghl test CA",
        "castghl test CA",
        ca_key.public_key(),
        ca_key,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )

    def leaf(name, usage, names=()):
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([usage]), False),
            (
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                False,
            ),
        ]
        if names:
            extensions.append((x509.SubjectAlternativeName(list(names)), False))
        return key, _certificate(
            name, "castghl test CA", key.public_key(), ca_key, extensions=extensions
        )

    server_key, server = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key, client = leaf("castghl", ExtendedKeyUsageOID.CLIENT_AUTH)

    def pem(certificate):
        return certificate.public_bytes(serialization.Encoding.PEM)

    def private(key, encryption=None):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )

    files = TlsFiles(
        ca=directory / "ca.pem",
        server_certificate=directory / "server.pem",
        server_key=directory / "server.key",
        client=directory / "client.pem",
        encrypted_client=directory / "client-encrypted.pem",
    )
    files.ca.write_bytes(pem(ca))
    files.server_certificate.write_bytes(pem(server))
    files.server_key.write_bytes(private(server_key))
    files.client.write_bytes(pem(client) + private(client_key))
    files.encrypted_client.write_bytes(
        pem(client)
        + private(
            client_key,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return files


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _tls_options(files: TlsFiles) -> list[str]:
    return [
        "--tls-cert-file",
        str(files.server_certificate),
        "--tls-key-file",
        str(files.server_key),
        "--tls-ca-file",
        str(files.ca),
    ]


@pytest.fixture(scope="module")
def tls_server(secantus, tls_files):
    """A server that speaks only TLS, with a certificate from the test CA."""
    return secantus.start(
        options=_tls_options(tls_files),
        client_options={"tls": True, "tlsCAFile": str(tls_files.ca)},
    )


@pytest.fixture(scope="module")
def mutual_tls_server(secantus, tls_files):
    """A TLS server that also wants a client certificate from the test CA."""
    return secantus.start(
        options=[*_tls_options(tls_files), "--tls-require-client-cert"],
        client_options={
            "tls": True,
            "tlsCAFile": str(tls_files.ca),
            "tlsCertificateKeyFile": str(tls_files.client),
        },
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_with_the_test_ca_works(tls_server, tls_files, host):
    """tls=true and tlsCAFile: the server's certificate is checked and trusted."""
    uri = f"mongodb://{host}:{tls_server.port}/?tls=true&tlsCAFile={tls_files.ca}"

    async with MongoDatabase(uri, database=DATABASE) as database:
        assert await round_trip(database) == "cast_test_round_trip_key"


async def test_tls_without_the_ca_fails_clearly(tls_server):
    """A server certificate the client cannot trust stops open with a hint."""
    uri = f"mongodb://{tls_server.address}/?tls=true"

    with pytest.raises(MongoUnavailable) as caught:
        await MongoDatabase(uri, database=DATABASE, **FAIL_FAST).open()

    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "set tlsCAFile to the CA that signed it" in str(caught.value)


async def test_a_client_certificate_is_presented_when_the_server_wants_one(
    mutual_tls_server, tls_files
):
    """tlsCertificateKeyFile: the server accepts the client's certificate."""
    uri = (
        f"mongodb://{mutual_tls_server.address}/?tls=true&tlsCAFile={tls_files.ca}"
        f"&tlsCertificateKeyFile={tls_files.client}"
    )

    async with MongoDatabase(uri, database=DATABASE) as database:
        assert await round_trip(database) == "cast_test_round_trip_key"


async def test_an_encrypted_client_key_works_and_its_password_is_never_shown(
    mutual_tls_server, tls_files, caplog
):
    """tlsCertificateKeyFilePassword opens the key; logs show it masked."""
    caplog.set_level("DEBUG")
    uri = (
        f"mongodb://{mutual_tls_server.address}/?tls=true&tlsCAFile={tls_files.ca}"
        f"&tlsCertificateKeyFile={tls_files.encrypted_client}"
        f"&tlsCertificateKeyFilePassword={KEY_PASSWORD}"
    )

    async with MongoDatabase(uri, database=DATABASE) as database:
        assert await round_trip(database) == "cast_test_round_trip_key"
        assert database.redacted_uri.endswith("tlsCertificateKeyFilePassword=***")

    assert "mongodb.opened" in caplog.text
    assert KEY_PASSWORD not in caplog.text


async def test_a_wrong_client_key_password_is_refused_without_showing_it(
    mutual_tls_server, tls_files
):
    """A key password that does not open the key stops open; it is not echoed."""
    uri = (
        f"mongodb://{mutual_tls_server.address}/?tls=true&tlsCAFile={tls_files.ca}"
        f"&tlsCertificateKeyFile={tls_files.encrypted_client}"
        f"&tlsCertificateKeyFilePassword={WRONG_PASSWORD}"
    )

    with pytest.raises(MongoConfigurationError) as caught:
        await MongoDatabase(uri, database=DATABASE, **FAIL_FAST).open()

    assert WRONG_PASSWORD not in str(caught.value)


async def test_a_client_without_a_certificate_is_refused(mutual_tls_server, tls_files):
    """A server that wants a client certificate does not serve a client
    without one; open fails naming the server."""
    uri = f"mongodb://{mutual_tls_server.address}/?tls=true&tlsCAFile={tls_files.ca}"

    with pytest.raises(MongoUnavailable, match="cannot be reached"):
        await MongoDatabase(uri, database=DATABASE, **FAIL_FAST).open()
