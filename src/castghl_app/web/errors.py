"""Clear JSON errors for clients; no stack trace ever leaves the service."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from castghl_core.errors import (
    BacklogFull,
    ForeignApp,
    InvalidPayload,
    InvalidSetting,
    LocationNotInstalled,
    SignatureRejected,
    StaleWebhook,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, message: str) -> web.Response:
    """A short JSON error body: a stable `error` code and a readable message."""
    return web.json_response({"error": error, "message": message}, status=status)


class BodyTooLarge(Exception):
    """A request body exceeds the configured cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")


async def read_capped(request: web.Request, limit: int) -> bytes:
    """Read the raw body, refusing more than `limit` bytes without buffering it."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    # read(n) returns what has arrived so far, not n bytes: keep reading
    # until the body ends or passes the cap.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
    return b"".join(chunks)


class PublicUrlRequired(Exception):
    """An install route was reached on a public host with no CASTGHL_PUBLIC_URL."""

    def __init__(self) -> None:
        super().__init__(
            "set CASTGHL_PUBLIC_URL: redirect URIs are built from it, never from "
            "a request's Host header (which a client chooses), except on loopback"
        )


_CLIENT_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (PublicUrlRequired, 503, "public_url_required"),
    (SignatureRejected, 401, "invalid_signature"),
    (StaleWebhook, 400, "stale_webhook"),
    (ForeignApp, 403, "wrong_app"),
    (InvalidPayload, 400, "invalid_payload"),
    (InvalidSetting, 422, "invalid_setting"),
    (LocationNotInstalled, 404, "location_not_installed"),
    (BodyTooLarge, 413, "body_too_large"),
)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Map the errors a client can cause to 4xx, and anything else to a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:  # noqa: PLR2004
            raise
        return json_error(
            error.status, error.reason.lower().replace(" ", "_"), error.reason
        )
    except BacklogFull as error:
        logger.warning("http.backlog_full", extra={"path": request.path})
        response = json_error(503, "backlog_full", str(error))
        response.headers["Retry-After"] = "30"
        return response
    except Exception as error:
        for kind, status, code in _CLIENT_ERRORS:
            if isinstance(error, kind):
                logger.info(
                    "http.client_error",
                    extra={"path": request.path, "status": status, "error": code},
                )
                return json_error(status, code, str(error))
        logger.exception("http.internal_error", extra={"path": request.path})
        return json_error(500, "internal_error", "castghl failed; see its logs")
