"""MongoDB connection strings are shown without their secrets."""

from __future__ import annotations

import pytest

from castghl_adapters.mongo.uri import redact_uri, scrub, uri_secrets


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "mongodb://127.0.0.1:27017",
            "mongodb://127.0.0.1:27017",
        ),
        (
            (
                "mongodb://castghl:hunter2-PASS@db1:27017,db2:27017/castghl"
                "?authSource=admin&replicaSet=rs0"
            ),
            (
                "mongodb://castghl:***@db1:27017,db2:27017/castghl"
                "?authSource=admin&replicaSet=rs0"
            ),
        ),
        (
            (
                "mongodb+srv://castghl:hunter2-PASS@cluster0.ab1cd.mongodb.net/"
                "?retryWrites=true&w=majority"
            ),
            (
                "mongodb+srv://castghl:***@cluster0.ab1cd.mongodb.net/"
                "?retryWrites=true&w=majority"
            ),
        ),
        (
            (
                "mongodb://db1/?tls=true&tlsCAFile=/etc/ca.pem"
                "&tlsCertificateKeyFile=/etc/client.pem"
                "&tlsCertificateKeyFilePassword=KEYpass"
            ),
            (
                "mongodb://db1/?tls=true&tlsCAFile=/etc/ca.pem"
                "&tlsCertificateKeyFile=/etc/client.pem"
                "&tlsCertificateKeyFilePassword=***"
            ),
        ),
        (
            (
                "mongodb://AKIAEXAMPLE:awsSECRET@db1/?authMechanism=MONGODB-AWS"
                "&authMechanismProperties=AWS_SESSION_TOKEN:sessionTOKEN"
            ),
            (
                "mongodb://AKIAEXAMPLE:***@db1/?authMechanism=MONGODB-AWS"
                "&authMechanismProperties=***"
            ),
        ),
        (
            "mongodb://user@db1/?authMechanism=MONGODB-X509",
            "mongodb://user@db1/?authMechanism=MONGODB-X509",
        ),
        (
            "MONGODB://castghl:hunter2@db1/?sslPEMKeyPassword=old;w=1",
            "MONGODB://castghl:***@db1/?sslPEMKeyPassword=***;w=1",
        ),
    ],
    ids=[
        "no credentials",
        "user and password",
        "atlas srv",
        "client key password",
        "aws credentials",
        "x509 user only",
        "legacy separators",
    ],
)
def test_redact_uri_masks_passwords_and_secret_options(uri, shown):
    """Passwords and secret option values become ***; everything else stays."""
    assert redact_uri(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://castghl:p@ss/w?rd@db1:27017/castghl",
        "mongodb://castghl:p%40ss%2Fword@db1",
        "mongodb://castghl:a:b:c@db1",
    ],
    ids=["unescaped @ / ?", "percent-encoded", "colons"],
)
def test_a_malformed_or_escaped_password_is_still_hidden(uri):
    """Whatever characters the password holds, none of it is shown."""
    password = uri.split("castghl:", 1)[1].rsplit("@", 1)[0]

    shown = redact_uri(uri)

    assert password not in shown
    assert shown.startswith("mongodb://castghl:***@db1")


def test_a_string_that_is_not_a_mongodb_uri_is_not_echoed():
    """Something other than a MongoDB URI is described, never shown."""
    assert "secret" not in redact_uri("postgres://u:secret@db")


def test_uri_secrets_lists_the_password_as_written_and_decoded():
    """The secrets of a URI are its password (both forms) and secret options."""
    uri = "mongodb://u:p%40ss@db1/?tlsCertificateKeyFilePassword=KEYpass"

    assert sorted(uri_secrets(uri)) == ["KEYpass", "p%40ss", "p@ss"]


def test_scrub_removes_every_secret_of_the_uri_from_a_message():
    """A driver message quoting the password or the URI comes out clean."""
    uri = "mongodb://u:p%40ss@db1/?tlsCertificateKeyFilePassword=KEYpass"
    message = f"cannot use {uri}: bad password p@ss, key KEYpass"

    scrubbed = scrub(message, uri)

    assert "p@ss" not in scrubbed
    assert "p%40ss" not in scrubbed
    assert "KEYpass" not in scrubbed
    assert "mongodb://u:***@db1/" in scrubbed
