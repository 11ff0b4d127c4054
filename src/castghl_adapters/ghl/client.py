"""The GhlApi port over HTTP: HighLevel's REST API through one aiohttp session.

Paths and Version headers live in GhlEndpoints; every call goes through
`_request`, which adds the headers, bounds the time and classifies failures.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs

from castghl_core.errors import (
    GhlError,
    GhlNotReady,
    GhlRateLimited,
    GhlRejected,
    GhlUnauthorized,
    GhlUnavailable,
)
from castghl_core.jobs import DeliveryStatus

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
OAUTH_VERSION = "2021-07-28"

ERROR_TYPE = "sms"
"""The `type` of the error object sent with a `failed` status.

HighLevel documents the field only as a string ("saas" in its example). The
codes castghl sends come from the SMS leg (Cast's error codes, or castghl's
own refusals of a number or text), so the type names that channel rather
than borrowing a label whose meaning GHL does not define.
"""

_MAX_RESPONSE_BYTES = 1 << 20
_MAX_LOGGED_MESSAGE = 500
_NOT_READY_HINT = "no conversation provider"


@attrs.frozen
class GhlRoute:
    """One GHL call: its method, path template and Version header (if any)."""

    name: str
    method: str
    path: str
    version: str | None

    def url(self, base_url: str, params: Mapping[str, str]) -> str:
        """The absolute URL, with each path parameter escaped as one segment."""
        escaped = {key: quote(value, safe="") for key, value in params.items()}
        return base_url.rstrip("/") + self.path.format(**escaped)


@attrs.frozen
class GhlEndpoints:
    """Every GHL call castghl makes, in one place.

    HighLevel's named version v3 renames some paths; moving to it means
    building another GhlEndpoints, not editing the calls.
    """

    update_message_status: GhlRoute = GhlRoute(
        "update_message_status",
        "PUT",
        "/conversations/messages/{message_id}/status",
        CONVERSATIONS_VERSION,
    )
    add_inbound_message: GhlRoute = GhlRoute(
        "add_inbound_message",
        "POST",
        "/conversations/messages/inbound",
        CONVERSATIONS_VERSION,
    )
    find_contact_by_phone: GhlRoute = GhlRoute(
        "find_contact_by_phone", "GET", "/contacts/search/duplicate", CONTACTS_VERSION
    )
    upsert_contact: GhlRoute = GhlRoute(
        "upsert_contact", "POST", "/contacts/upsert", CONTACTS_VERSION
    )
    token: GhlRoute = GhlRoute("token", "POST", "/oauth/token", None)
    location_token: GhlRoute = GhlRoute(
        "location_token", "POST", "/oauth/locationToken", OAUTH_VERSION
    )
    installed_locations: GhlRoute = GhlRoute(
        "installed_locations", "GET", "/oauth/installedLocations", OAUTH_VERSION
    )


class GhlHttpClient:
    """HighLevel's API over a shared aiohttp session (a GhlApi adapter).

    Every call is bounded by `timeout` seconds in total. Access tokens go in
    the Authorization header only: they are never logged and never appear in
    an exception's text, even if GHL echoes one back.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 15.0,
        endpoints: GhlEndpoints | None = None,
        error_type: str = ERROR_TYPE,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._endpoints = endpoints or GhlEndpoints()
        self._error_type = error_type

    async def update_message_status(
        self,
        access_token: str,
        message_id: str,
        status: DeliveryStatus,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Tell GHL a message's outcome; `error` is (code, message) for failures.

        Raises GhlNotReady, GhlUnauthorized, GhlRateLimited, GhlUnavailable
        or GhlRejected.
        """
        body: dict[str, object] = {"status": DeliveryStatus(status).value}
        if error is not None:
            code, message = error
            # All three fields are required strings; an empty message would
            # leave the user with nothing to read, so fall back to the code.
            body["error"] = {
                "code": code,
                "type": self._error_type,
                "message": message or code,
            }

        await self._request(
            self._endpoints.update_message_status,
            access_token,
            path={"message_id": message_id},
            json_body=body,
            context={"message_id": message_id},
        )
        logger.debug(
            "ghl.status_updated",
            extra={"message_id": message_id, "status": body["status"]},
        )

    async def _request(
        self,
        route: GhlRoute,
        access_token: str | None,
        *,
        path: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        form: Mapping[str, str] | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Any:
        """Make one call; return its JSON (or text, or None) or raise a GhlError.

        `context` is logged with any failure (ids only: never a secret).
        """
        headers = {"Accept": "application/json"}
        if route.version is not None:
            headers["Version"] = route.version
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        fields = {"ghl_call": route.name, **(context or {})}

        try:
            async with self._session.request(
                route.method,
                route.url(self._base_url, path or {}),
                headers=headers,
                params=params,
                json=json_body,
                data=form,
                timeout=self._timeout,
                # A redirect would be unexpected and could carry the token away.
                allow_redirects=False,
            ) as response:
                raw = await _read_capped(response, _MAX_RESPONSE_BYTES)
                status = response.status
                retry_after = _retry_after(response.headers)
        except TimeoutError:
            raise self._unreachable(route, "timed out", fields) from None
        except aiohttp.ClientError as error:
            reason = f"{type(error).__name__}: {error}"
            raise self._unreachable(route, reason, fields) from None

        reply = _parse(raw)
        if 200 <= status < 300:  # noqa: PLR2004
            return reply
        raise self._failure(
            route,
            status,
            reply,
            retry_after=retry_after,
            access_token=access_token,
            fields=fields,
        )

    def _unreachable(
        self, route: GhlRoute, reason: str, fields: Mapping[str, str]
    ) -> GhlUnavailable:
        logger.warning("ghl.unreachable", extra={**fields, "reason": reason})
        return GhlUnavailable(f"GHL {route.name} failed: {reason}")

    def _failure(
        self,
        route: GhlRoute,
        status: int,
        reply: object,
        *,
        retry_after: float | None,
        access_token: str | None,
        fields: Mapping[str, str],
    ) -> GhlError:
        """The GhlError for a non-2xx answer, logged with GHL's traceId."""
        message, trace_id = _error_details(reply, status)
        if access_token:
            message = message.replace(access_token, "[redacted]")
        text = f"GHL {route.name} answered {status}: {message}"
        if trace_id is not None:
            text += f" (traceId {trace_id})"

        error = _classify(status, message, text, trace_id, retry_after)
        level = logging.INFO if isinstance(error, GhlNotReady) else logging.WARNING
        logger.log(
            level,
            "ghl.request_failed",
            extra={
                **fields,
                "http_status": status,
                "trace_id": trace_id,
                "ghl_message": message,
                "error_class": type(error).__name__,
            },
        )
        return error


def _classify(
    status: int,
    message: str,
    text: str,
    trace_id: str | None,
    retry_after: float | None,
) -> GhlError:
    """Map an HTTP answer to the error family the use cases act on."""
    # Right after a delivery GHL does not know the message for some seconds;
    # it says so with a 403 (formerly a 401 naming the missing provider).
    # That is not a bad token: a refresh would not help.
    not_ready = status == 403 or (  # noqa: PLR2004
        status == 401 and _NOT_READY_HINT in message.lower()  # noqa: PLR2004
    )
    if not_ready:
        return GhlNotReady(text, trace_id)
    if status == 401:  # noqa: PLR2004
        return GhlUnauthorized(text, trace_id)
    if status == 429:  # noqa: PLR2004
        return GhlRateLimited(text, retry_after, trace_id)
    if 400 <= status < 500:  # noqa: PLR2004
        return GhlRejected(text, status, trace_id)
    # 5xx, and anything unexpected (a 3xx from an API host): try again later.
    return GhlUnavailable(text, trace_id)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body: enough for any answer GHL gives."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _parse(raw: bytes) -> object:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _error_details(reply: object, status: int) -> tuple[str, str | None]:
    """GHL's message (a string or a list of them) and traceId from an error."""
    trace_id: str | None = None
    message: object = None
    if isinstance(reply, dict):
        message = reply.get("message") or reply.get("error")
        if isinstance(reply.get("traceId"), str):
            trace_id = reply["traceId"]
    elif isinstance(reply, str):
        message = reply

    if isinstance(message, list):
        message = "; ".join(str(item) for item in message)
    if not isinstance(message, str) or not message:
        message = f"HTTP {status}"
    return message[:_MAX_LOGGED_MESSAGE], trace_id


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from Retry-After, else the rate-limit window's length."""
    value = headers.get("Retry-After")
    if value:
        seconds = _seconds(value)
        if seconds is None:
            seconds = _seconds_until(value)
        if seconds is not None:
            return seconds
    interval = headers.get("X-RateLimit-Interval-Milliseconds")
    if interval:
        milliseconds = _seconds(interval)
        if milliseconds is not None:
            return milliseconds / 1000
    return None


def _seconds(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def _seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
