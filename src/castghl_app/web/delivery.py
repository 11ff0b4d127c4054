"""The Delivery URL: GHL posts each outbound SMS here (the main job's entry).

The answer is 200 only once the message is durably claimed; the dispatcher
(castghl_app.workers.dispatcher) then sends it through Cast and reports back.
"""

from __future__ import annotations

from aiohttp import web

from castghl_app.web.errors import read_capped
from castghl_app.web.keys import SERVICES
from castghl_core.accept_outbound import Acceptance


async def receive_outbound(request: web.Request) -> web.Response:
    """Verify, parse and claim one ProviderOutboundMessage."""
    services = request.app[SERVICES]
    body = await read_capped(request, services.settings.max_body_bytes)

    result = await services.accept_outbound(body, request.headers)

    if result.acceptance is Acceptance.ACCEPTED:
        services.dispatcher.wake()
    return web.json_response(
        {"status": result.acceptance.value, "messageId": result.message.message_id}
    )
