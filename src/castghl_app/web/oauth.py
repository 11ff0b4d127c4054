"""The install flow and the app's webhook URL.

    GET  /oauth/install      -> 302 to GHL's consent page, with a signed state
    GET  /oauth/callback     -> checks the state, exchanges the code, stores
                                the installation(s), says what to do next
    POST /webhooks/ghl/app   -> INSTALL / UNINSTALL (signed, recent, once)

Without a client id and secret these routes answer 503 (JSON).
"""

from __future__ import annotations

import logging

from aiohttp import web

from castghl_app.oauth_setup import INSTALL_PATH, InvalidState, OAuthSetup
from castghl_app.services import Services
from castghl_app.web.errors import PublicUrlRequired, json_error, read_capped
from castghl_app.web.keys import SERVICES
from castghl_app.web.pages import html_page
from castghl_core.errors import (
    GhlError,
    GhlRejected,
    GhlUnavailable,
    TokenRevoked,
    TokenUnavailable,
)
from castghl_core.install import InstallReport

logger = logging.getLogger(__name__)

_NOT_CONFIGURED = (
    "installs are turned off: set CASTGHL_GHL_CLIENT_ID and "
    "CASTGHL_GHL_CLIENT_SECRET (the marketplace app's OAuth credentials)"
)
_BAD_REQUEST = 400


def _not_configured() -> web.Response:
    return json_error(503, "oauth_not_configured", _NOT_CONFIGURED)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _origin(request: web.Request, setup: OAuthSetup) -> str:
    """Where this service is reached: CASTGHL_PUBLIC_URL, or, on loopback only
    (the demo, tests), the URL the request came in on."""
    if setup.public_url:
        return setup.public_url
    if request.url.host not in _LOOPBACK_HOSTS:
        raise PublicUrlRequired
    return f"{request.scheme}://{request.host}"


async def install(request: web.Request) -> web.Response:
    """Send the browser to GHL's consent page for this app."""
    setup = request.app[SERVICES].oauth
    if setup is None:
        return _not_configured()
    redirect_uri = setup.redirect_uri(_origin(request, setup))
    link = setup.consent_link(redirect_uri, setup.signer.issue())
    logger.info("oauth.install_started", extra={"redirect_uri": redirect_uri})
    return web.Response(
        status=302, headers={"Location": link, "Cache-Control": "no-store"}
    )


async def callback(request: web.Request) -> web.Response:
    """Finish an install: check the state, exchange the code, store, report."""
    services = request.app[SERVICES]
    setup = services.oauth
    if setup is None:
        return _not_configured()
    query = request.query

    try:
        setup.signer.check(query.get("state"))
    except InvalidState as error:
        logger.warning("oauth.state_rejected", extra={"reason": error.reason})
        return html_page(
            400,
            "This install link is not valid",
            [f"castghl did not accept the callback: {error.reason}."],
            more=[f"Start the installation again from {INSTALL_PATH}."],
        )
    if "error" in query or not query.get("code"):
        # GHL's words are logged, never shown: the page would reflect any
        # text a crafted link put in the query on castghl's own domain.
        reason = query.get("error_description") or query.get("error") or "no code"
        logger.warning("oauth.not_approved", extra={"reason": reason[:100]})
        return html_page(
            400,
            "The installation was not approved",
            ["HighLevel sent no authorization code."],
            more=[f"Start the installation again from {INSTALL_PATH}."],
        )

    redirect_uri = setup.redirect_uri(_origin(request, setup))
    try:
        report = await services.install_app.complete(query["code"], redirect_uri)
    except GhlError as error:
        logger.warning(
            "oauth.exchange_failed",
            extra={
                "trace_id": error.trace_id,
                "error_class": type(error).__name__,
                "reason": str(error),
            },
        )
        return _exchange_failed(error)

    logger.info(
        "oauth.install_completed",
        extra={
            "user_type": report.user_type.value,
            "company_id": report.company_id,
            "connected": [c.location_id for c in report.connected],
            "failed": [f.location_id for f in report.failed],
        },
    )
    return await _connected_page(services, setup, report, _origin(request, setup))


def _exchange_failed(error: GhlError) -> web.Response:
    trace = f"GHL's traceId: {error.trace_id}." if error.trace_id else ""
    used_up = isinstance(error, TokenRevoked) or (
        isinstance(error, GhlRejected) and error.http_status == _BAD_REQUEST
    )
    if used_up:
        # A reloaded callback, or a code that is not GHL's: the browser's
        # request is what is wrong, not HighLevel.
        return html_page(
            400,
            "This install link was already used or has expired",
            [
                "HighLevel did not accept the authorization code.",
                f"Start again from {INSTALL_PATH}.",
                trace,
            ],
        )
    if isinstance(error, GhlUnavailable):
        return html_page(
            502,
            "HighLevel could not be reached",
            ["castghl could not finish the installation with HighLevel.", trace],
            more=[f"Nothing was stored. Start again from {INSTALL_PATH}."],
        )
    return html_page(
        502,
        "HighLevel refused the installation",
        ["HighLevel refused to exchange the authorization code.", trace],
        more=[
            (
                "Nothing was stored. Start the installation again from "
                f"{INSTALL_PATH}; if it keeps failing, give the traceId to "
                "HighLevel's support."
            )
        ],
    )


async def _connected_page(
    services: Services, setup: OAuthSetup, report: InstallReport, origin: str
) -> web.Response:
    items = []
    for location in report.connected:
        label = location.location_id
        if location.name:
            label = f"{location.name} ({location.location_id})"
        if await services.secrets.get(location.location_id) is not None:
            label += ": Cast key already set"
        items.append(label)
    items += [f"{f.location_id}: not connected ({f.reason})" for f in report.failed]

    count = len(report.connected)
    base = (setup.public_url or origin).rstrip("/")
    return html_page(
        200,
        "castghl is connected",
        [
            (
                f"HighLevel approved castghl for {count} "
                f"location{'s' if count != 1 else ''}:"
            )
        ],
        items=items,
        more=[
            (
                "Next: give each location its Cast API key and sender ID through "
                "castghl's admin API, then choose castghl as the SMS provider in "
                "the location's settings (Phone Numbers, Advanced, SMS Provider)."
            ),
        ],
        code=(
            f"curl -X PUT {base}/api/admin/locations/<locationId> \\\n"
            '  -H "Authorization: Bearer $CASTGHL_ADMIN_TOKEN" \\\n'
            """  -d '{"sender_id": "MYBRAND", "cast_api_key": "cast_..."}'"""
        ),
    )


async def receive_app_webhook(request: web.Request) -> web.Response:
    """INSTALL and UNINSTALL from GHL, acted on once."""
    services = request.app[SERVICES]
    if services.app_webhooks is None:
        return _not_configured()
    body = await read_capped(request, services.settings.max_body_bytes)
    try:
        result = await services.app_webhooks(body, request.headers)
    except (GhlError, TokenUnavailable) as error:
        # Not remembered: GHL retries a webhook that did not get a 2xx.
        logger.warning(
            "app_webhook.failed",
            extra={"error_class": type(error).__name__, "reason": str(error)},
        )
        return json_error(
            503, "ghl_unavailable", "castghl could not act on it now; retry later"
        )
    return web.json_response(
        {"status": result.outcome.value, "type": result.event_type}
    )
