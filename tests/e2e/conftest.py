"""The whole service on 127.0.0.1 with the GHL and Cast sandboxes.

`service` starts castghl wired to sandboxes started by the test, and
installs a location through the OAuth flow; `make_service` starts more (for
restarts). Every test runs twice, on the SQLite and on the MongoDB
configuration (`store_env`: only settings differ). Every log record (with
its fields) and every response body is checked for secrets at teardown: the
test secrets, the app's client secret and every token and code GHL issued.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from castghl_app.containers import Container
from castghl_app.sandbox.cast import CastSandbox
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_app.settings import Settings
from castghl_app.web.app import create_app

from harness import (
    ADMIN_TOKEN,
    API_KEY,
    ENCRYPTION_KEY,
    LOCATION,
    Service,
    install_location,
)


@pytest.fixture
async def cast() -> AsyncIterator[CastSandbox]:
    sandbox = CastSandbox(status_delay=0.2)
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@pytest.fixture
async def ghl() -> AsyncIterator[GhlSandbox]:
    sandbox = GhlSandbox(not_ready_for=0.0)
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@pytest.fixture
def secrets_seen() -> list[str]:
    """Every secret of the test; none may appear in a log line or response."""
    return [API_KEY, ADMIN_TOKEN, ENCRYPTION_KEY]


@pytest.fixture(params=["sqlite", "mongodb"])
def store_env(request, tmp_path, secrets_seen) -> dict[str, str]:
    """The state store's settings: a SQLite file, or a MongoDB database of the
    test's own on the session's server (tests/mongo_server.py)."""
    if request.param == "sqlite":
        return {
            "CASTGHL_STATE_STORE": "sqlite",
            "CASTGHL_SQLITE_PATH": str(tmp_path / "castghl.sqlite3"),
        }
    server = request.getfixturevalue("mongo_server")
    secrets_seen.extend(server.secrets)
    return {
        "CASTGHL_STATE_STORE": "mongodb",
        "CASTGHL_MONGODB_URI": server.uri,
        "CASTGHL_MONGODB_DATABASE": request.getfixturevalue("mongo_database_name"),
        "CASTGHL_MONGODB_TIMEOUT_SECONDS": "5",
    }


@pytest.fixture
def base_env(store_env, cast, ghl) -> dict[str, str]:
    return {
        **store_env,
        "CASTGHL_PORT": "0",
        "CASTGHL_ADMIN_TOKEN": ADMIN_TOKEN,
        "CASTGHL_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "CASTGHL_CAST_BASE_URL": cast.base_url,
        "CASTGHL_GHL_BASE_URL": ghl.base_url,
        "CASTGHL_GHL_WEBHOOK_PUBLIC_KEYS": ghl.public_key_pem,
        "CASTGHL_GHL_CLIENT_ID": ghl.client_id,
        "CASTGHL_GHL_CLIENT_SECRET": ghl.client_secret,
        "CASTGHL_GHL_CONSENT_URL": ghl.base_url,
        "CASTGHL_FIRST_POLL_SECONDS": "0.1",
        "CASTGHL_DISPATCH_POLL_SECONDS": "0.05",
        "CASTGHL_HTTP_TIMEOUT_SECONDS": "2",
        "CASTGHL_MAX_BODY_BYTES": "65536",
    }


@pytest.fixture
async def make_service(
    base_env, caplog, secrets_seen, ghl
) -> AsyncIterator[Callable[..., Any]]:
    """Start castghl with the base settings and `overrides`; stop it after.

    `configure(container)` may override providers before the app is built.
    """
    caplog.set_level(logging.DEBUG)
    started: list[Service] = []
    responses: list[str] = []
    http = aiohttp.ClientSession()

    async def start(
        configure: Callable[[Container], None] | None = None, **overrides: str
    ) -> Service:
        settings = Settings.from_env({**base_env, **overrides})
        container = Container(settings=settings)
        if configure is not None:
            configure(container)
        runner = web.AppRunner(create_app(settings, container), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        service = Service(runner, f"http://{host}:{port}", http, responses)
        started.append(service)
        return service

    yield start

    for service in started:
        await service.stop()
    await http.close()
    # caplog.records holds only the current phase's records, and structured
    # `extra` fields are where log secrets would hide: check every attribute
    # of every record of all three phases.
    records = [
        record
        for phase in ("setup", "call", "teardown")
        for record in caplog.get_records(phase)
    ]
    logged = "\n".join(
        record.getMessage() + json.dumps(vars(record), default=str)
        for record in records
    )
    secrets = filter(None, [*secrets_seen, ghl.client_secret, *ghl.oauth.issued])
    leaks = [
        secret
        for secret in secrets
        if secret in logged or any(secret in body for body in responses)
    ]
    assert leaks == [], "a secret appeared in a log line or a response"


@pytest.fixture
async def service(make_service, ghl, secrets_seen) -> Service:
    """castghl with one installed location configured with a Cast key."""
    running = await make_service()
    secrets_seen.extend(await install_location(running, ghl, LOCATION))
    status, _ = await running.admin(
        "PUT",
        f"/locations/{LOCATION}",
        json={"sender_id": "CASTGHL", "cast_api_key": API_KEY},
    )
    assert status == 200
    return running
