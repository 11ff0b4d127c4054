"""`castghl demo`: the main job end to end, on the embedded store, offline.

Starts the service on a fresh SQLite file and local stand-ins of GHL and
Cast on 127.0.0.1, installs a location through GHL's OAuth flow (install
link, consent, callback), configures it through the admin API, then sends
HighLevel's sample delivery (with a Philippine number), one to a US number
and one duplicate, and prints what each stand-in saw. Exits 0 only if every
expected step was observed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from castghl_app.oauth_setup import CALLBACK_PATH, INSTALL_PATH
from castghl_app.sandbox.cast import CastSandbox
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_app.settings import Settings
from castghl_app.web.app import create_app
from castghl_app.web.keys import SERVICES
from castghl_app.web.routes import DELIVERY_PATH

LOCATION_ID = "GKAWb4yu7A4LSc0skQ6g"  # HighLevel's documentation sample
SENDER_ID = "CASTGHL"
WAIT_SECONDS = 30.0

Echo = Callable[[str], None]


class DemoFailed(Exception):
    """An expected step of the demo was not observed."""


_TRACED = {
    "outbound.accepted": "claimed in the outbox (state accepted)",
    "outbound.duplicate": "already claimed: nothing new happens",
    "outbound.sent": "Cast queued it (state sent)",
    "outbound.send_retry": "Cast asked to wait; retry scheduled",
    "outbound.delivered": "Cast reports it delivered (state reporting)",
    "outbound.failed": "cannot be sent (state reporting)",
    "outbound.report_retry": "GHL not ready for the status yet; retry scheduled",
    "outbound.reported": "GHL has the outcome (state reported)",
}


class _Trace(logging.Handler):
    """Echoes castghl's own outbound events as the demo's narration."""

    def __init__(self, echo: Echo) -> None:
        super().__init__(logging.INFO)
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        meaning = _TRACED.get(record.getMessage())
        if meaning is None:
            return
        detail = ""
        if record.getMessage() == "outbound.failed":
            detail = f" [{getattr(record, 'code', '')}]"
        self.echo(f"  castghl :: {meaning}{detail}")


def demo_settings(sqlite_path: Path, cast_url: str, ghl: GhlSandbox) -> Settings:
    """Settings for an offline run; everything else keeps its default.

    The marketplace app's client id and secret are the GHL stand-in's, and
    its consent page stands in for HighLevel's.
    """
    return Settings.from_env(
        {
            "CASTGHL_PORT": "0",
            "CASTGHL_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "CASTGHL_SQLITE_PATH": str(sqlite_path),
            "CASTGHL_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "CASTGHL_CAST_BASE_URL": cast_url,
            "CASTGHL_GHL_BASE_URL": ghl.base_url,
            "CASTGHL_GHL_CONSENT_URL": ghl.base_url,
            "CASTGHL_GHL_CLIENT_ID": ghl.client_id,
            "CASTGHL_GHL_CLIENT_SECRET": ghl.client_secret,
            "CASTGHL_GHL_WEBHOOK_PUBLIC_KEYS": ghl.public_key_pem,
            "CASTGHL_FIRST_POLL_SECONDS": "0.3",
            "CASTGHL_DISPATCH_POLL_SECONDS": "0.1",
        }
    )


async def start_service(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free port of 127.0.0.1; return the runner and URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    return runner, f"http://127.0.0.1:{port}"


async def wait_for(
    what: str, probe: Callable[[], Any], within: float = WAIT_SECONDS
) -> Any:
    """Poll `probe` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise DemoFailed(f"gave up after {within:.0f} s waiting for {what}")


async def run_demo(echo: Echo) -> int:
    """Run the demonstration; 0 if every step was observed, 1 otherwise."""
    trace = _Trace(echo)
    core_logger = logging.getLogger("castghl_core")
    quiet = logging.getLogger().level > logging.INFO
    core_logger.addHandler(trace)
    core_logger.setLevel(logging.INFO)
    core_logger.propagate = not quiet  # --verbose shows the full log too
    try:
        return await _run(echo)
    finally:
        core_logger.removeHandler(trace)
        core_logger.propagate = True


async def _run(echo: Echo) -> int:
    cast, ghl = CastSandbox(status_delay=0.5), GhlSandbox(not_ready_for=1.5)
    cast_url, ghl_url = await cast.start(), await ghl.start()
    with tempfile.TemporaryDirectory(prefix="castghl-demo-") as folder:
        settings = demo_settings(Path(folder) / "castghl.sqlite3", cast_url, ghl)
        runner, service_url = await start_service(create_app(settings))
        try:
            echo(f"castghl demo: service {service_url} on a fresh SQLite file")
            echo(f"  GHL stand-in {ghl_url}, Cast stand-in {cast_url}\n")
            await _demonstrate(
                echo,
                app=runner.app,
                settings=settings,
                service_url=service_url,
                cast=cast,
                ghl=ghl,
            )
        except DemoFailed as failure:
            echo(f"\nDEMO FAILED: {failure}")
            return 1
        finally:
            await runner.cleanup()
            await cast.stop()
            await ghl.stop()
    echo("\nDemo passed: every step above was observed at the stand-ins.")
    return 0


async def _demonstrate(
    echo: Echo,
    *,
    app: web.Application,
    settings: Settings,
    service_url: str,
    cast: CastSandbox,
    ghl: GhlSandbox,
) -> None:
    async with aiohttp.ClientSession() as http:
        await _install(echo, http, app, ghl, service_url)
        await _configure(echo, http, settings, service_url)
        delivery_url = service_url + DELIVERY_PATH

        sample = ghl.sample_delivery()
        await _deliver(echo, ghl, delivery_url, sample, expect="accepted")
        sms = await wait_for(
            "the SMS at Cast",
            lambda: [s for s in cast.sent if s.idempotency_key == sample["messageId"]],
        )
        for sent in sms:
            echo(
                f"  Cast    <- send to={sent.to} sender_id={sent.sender_id} "
                f"X-Idempotency-Key={sent.idempotency_key} parts={sent.parts}"
            )
        await _expect_status(echo, ghl, sample["messageId"], "delivered")

        abroad = ghl.sample_delivery(phone="+15864603685")
        echo("")
        await _deliver(echo, ghl, delivery_url, abroad, expect="accepted")
        update = await _expect_status(echo, ghl, abroad["messageId"], "failed")
        if update.error is None or "Philippine" not in update.error.get("message", ""):
            raise DemoFailed(f"the failure gave no clear reason: {update.error}")
        if any(s.idempotency_key == abroad["messageId"] for s in cast.sent):
            raise DemoFailed("the US number reached Cast")

        echo("")
        sends_before = len(cast.sent)
        await _deliver(echo, ghl, delivery_url, sample, expect="duplicate")
        await asyncio.sleep(1.0)
        if len(cast.sent) != sends_before or len(sms) != 1:
            raise DemoFailed("the duplicate delivery sent another SMS")
        echo("  Cast    <- nothing: the duplicate sent no SMS")


async def _install(
    echo: Echo,
    http: aiohttp.ClientSession,
    app: web.Application,
    ghl: GhlSandbox,
    service_url: str,
) -> None:
    """Install the app on the location as its owner would, in a browser.

    The code and the tokens are secrets: the narration names them only.
    """
    ghl.oauth.choose([LOCATION_ID])
    echo(f"1. install castghl on location {LOCATION_ID} through GHL's OAuth flow")

    consent = await _redirect(http, service_url + INSTALL_PATH, "castghl's link")
    page = urlsplit(consent)
    echo(
        f"  browser -> GET {INSTALL_PATH}: 302 to GHL's consent page "
        f"{page.path} (client id, scopes, signed state)"
    )
    callback = await _redirect(http, consent, "GHL's consent page")
    echo(
        f"  GHL     -> approved: 302 back to {CALLBACK_PATH} with a one-time "
        "code and the state"
    )
    async with http.get(callback) as response:
        text = await response.text()
    if response.status != 200 or LOCATION_ID not in text:  # noqa: PLR2004
        raise DemoFailed(f"the callback answered {response.status}: {text[:300]}")

    installation = await app[SERVICES].installations.get(LOCATION_ID)
    if installation is None or not installation.is_active:
        raise DemoFailed("the callback stored no installation")
    echo(
        "  castghl -> state checked, code exchanged at GHL's /oauth/token; "
        f"{installation.user_type.value} token stored encrypted (valid until "
        f"{installation.expires_at:%Y-%m-%d %H:%M} UTC, refreshed before then)"
    )
    echo("  castghl -> 200 'castghl is connected'; next: set a Cast API key")


async def _redirect(http: aiohttp.ClientSession, url: str, what: str) -> str:
    async with http.get(url, allow_redirects=False) as response:
        target = response.headers.get("Location")
    if response.status != 302 or not target:  # noqa: PLR2004
        raise DemoFailed(f"{what} answered {response.status} instead of a redirect")
    return target


async def _configure(
    echo: Echo, http: aiohttp.ClientSession, settings: Settings, service_url: str
) -> None:
    api_key = "cast_test_" + secrets.token_hex(16)
    async with http.put(
        f"{service_url}/api/admin/locations/{LOCATION_ID}",
        json={"sender_id": SENDER_ID, "cast_api_key": api_key},
        headers={"Authorization": f"Bearer {settings.admin_token}"},
    ) as response:
        body = await response.json()
    if response.status != 200 or body.get("cast_api_key") == api_key:  # noqa: PLR2004
        raise DemoFailed(f"admin API answered {response.status}: {body}")
    echo(
        f"2. admin API: sender_id={body['sender_id']} "
        f"cast_api_key={body['cast_api_key']} (write-only, shown masked)\n"
    )


async def _deliver(
    echo: Echo, ghl: GhlSandbox, url: str, payload: dict[str, Any], *, expect: str
) -> None:
    echo(
        f"  GHL     -> delivery messageId={payload['messageId']} "
        f"phone={payload['phone']} (signed Ed25519)"
    )
    status, body = await ghl.deliver(url, payload)
    if status != 200 or not isinstance(body, dict) or body.get("status") != expect:  # noqa: PLR2004
        raise DemoFailed(f"expected 200 {expect}, got {status} {body}")
    echo(f"  castghl -> 200 {expect}")


async def _expect_status(
    echo: Echo, ghl: GhlSandbox, message_id: str, status: str
) -> Any:
    updates = await wait_for(
        f"GHL to receive status '{status}' for {message_id}",
        lambda: ghl.statuses_for(message_id),
    )
    update = updates[-1]
    if update.status != status:
        raise DemoFailed(f"GHL got status {update.status!r}, expected {status!r}")
    reason = f" error={update.error}" if update.error else ""
    echo(f"  GHL     <- status {update.status}{reason}")
    return update
