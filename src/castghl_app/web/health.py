"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from castghl_app.web.keys import SERVICES
from castghl_core.errors import CastGhlError
from castghl_core.installations import InstallationState

logger = logging.getLogger(__name__)


async def live(_: web.Request) -> web.Response:
    """The process answers."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """The store answers and the workers run; 503 with details if not.

    It is public, so it tells counts, never ids: how many jobs are waiting
    and how many locations need re-authorisation (they do not make the
    service unready, but an operator must act on them: the admin API lists
    them).
    """
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    unfinished: int | None = None
    needs_reauth: int | None = None
    try:
        unfinished = await services.outbox.count_unfinished()
        needs_reauth = await _needs_reauth(request.app)
        checks["store"] = "ok"
    except Exception as error:  # noqa: BLE001  (any failure means not ready)
        # Our own errors are written for operators and hold no secret (a
        # MongoDB one names the server by its redacted URI); others are
        # named by type only. The response body says less: it is public.
        detail = str(error) if isinstance(error, CastGhlError) else None
        logger.warning(
            "health.store_unreachable",
            extra={"error": type(error).__name__, "detail": detail},
        )
        checks["store"] = f"unreachable ({type(error).__name__})"
    checks["dispatcher"] = "ok" if services.dispatcher.is_alive else "stopped"
    checks["token_refresher"] = "ok" if services.keeper.is_alive else "stopped"

    ok = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": checks,
        "unfinished_jobs": unfinished,
        "installs": "on" if services.oauth is not None else "off",
        "needs_reauth": needs_reauth,
    }
    return web.json_response(body, status=200 if ok else 503)


_REAUTH_COUNT = web.AppKey("reauth_count", list)
_REAUTH_TTL = 30.0


async def _needs_reauth(app: web.Application) -> int:
    """Locations needing re-authorisation, counted at most every 30 s: the
    count reads every installation, too much for each probe."""
    cached = app[_REAUTH_COUNT]
    now = time.monotonic()
    if now - cached[0] < _REAUTH_TTL:
        return int(cached[1])
    count = sum(
        installation.state is InstallationState.NEEDS_REAUTH
        for installation in await app[SERVICES].installations.list()
    )
    cached[:] = [now, count]
    return count


def setup_health(app: web.Application) -> None:
    """Mount the health routes and their small cache."""
    app[_REAUTH_COUNT] = [float("-inf"), 0]
    app.router.add_get("/healthz", live)
    app.router.add_get("/readyz", ready)
