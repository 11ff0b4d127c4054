"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

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

    Locations whose installation needs re-authorisation are listed: they do
    not make the service unready, but an operator must act on them.
    """
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    needs_reauth: list[str] = []
    try:
        counts = await services.outbox.count_by_state()
        needs_reauth = [
            installation.owner_id
            for installation in await services.installations.list()
            if installation.state is InstallationState.NEEDS_REAUTH
        ]
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
        counts = {}
        checks["store"] = f"unreachable ({type(error).__name__})"
    checks["dispatcher"] = "ok" if services.dispatcher.is_alive else "stopped"
    checks["token_refresher"] = "ok" if services.keeper.is_alive else "stopped"

    ok = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": checks,
        "jobs": {state.value: count for state, count in counts.items()},
        "installs": "on" if services.oauth is not None else "off",
        "needs_reauth": needs_reauth,
    }
    return web.json_response(body, status=200 if ok else 503)
