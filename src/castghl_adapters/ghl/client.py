"""The GhlApi and GhlOAuth ports over HTTP: HighLevel's REST API, one session.

Paths and Version headers live in GhlEndpoints; every call goes through
`_request`, which adds the headers, bounds the time and classifies failures.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
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
    LocationInactive,
    OAuthNotConfigured,
    TokenRevoked,
)
from castghl_core.installations import UserType
from castghl_core.jobs import DeliveryStatus
from castghl_core.oauth import InstalledLocation, TokenGrant, app_id_of

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
_INVALID_GRANT_HINTS = ("invalid grant", "invalid_grant")
_INACTIVE_HINT = "location is not active"
_UNKNOWN_LIFETIME = 3600.0
"""Assumed seconds of an access token GHL gave no `expires_in` for: refreshing
early costs a call, refreshing late costs a failed GHL call."""


@attrs.frozen(repr=False)
class GhlCredentials:
    """The marketplace app's OAuth client id and secret."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"GhlCredentials(client_id={self.client_id!r}, client_secret=***)"

    @property
    def app_id(self) -> str:
        """The app id app webhooks carry: the client id before its first `-`."""
        return app_id_of(self.client_id)


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
    """HighLevel's API over a shared aiohttp session (GhlApi and GhlOAuth).

    Every call is bounded by `timeout` seconds in total. Access tokens go in
    the Authorization header only, and codes, refresh tokens and the client
    secret in form bodies only: none is logged or appears in an exception's
    text, even if GHL echoes one back. The OAuth calls need `credentials`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 15.0,
        endpoints: GhlEndpoints | None = None,
        error_type: str = ERROR_TYPE,
        credentials: GhlCredentials | None = None,
        page_size: int = 100,
        max_pages: int = 100,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._endpoints = endpoints or GhlEndpoints()
        self._error_type = error_type
        self._credentials = credentials
        self._page_size = page_size
        self._max_pages = max_pages

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

    # --- OAuth (GhlOAuth) ---------------------------------------------------

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        """The grant for an authorization code from the consent redirect."""
        credentials = self._require_credentials()
        form = {
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
        reply = await self._request(
            self._endpoints.token,
            None,
            form=form,
            secrets=(code, credentials.client_secret),
        )
        return _grant(reply, self._endpoints.token)

    async def refresh(
        self,
        refresh_token: str,
        user_type: UserType,
        *,
        owner_id: str | None = None,
        company_id: str | None = None,
    ) -> TokenGrant:
        """A new token pair; from then on GHL refuses the refresh token given.

        GHL has already rotated the pair when it answers 2xx, so an answer
        with both tokens is never refused: what it leaves out of the owner is
        taken from `owner_id` and `company_id`.
        """
        credentials = self._require_credentials()
        form = {
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "user_type": UserType(user_type).value,
        }
        reply = await self._request(
            self._endpoints.token,
            None,
            form=form,
            secrets=(refresh_token, credentials.client_secret),
            context={"user_type": UserType(user_type).value},
        )
        user_type = UserType(user_type)
        location = owner_id if user_type is UserType.LOCATION else None
        company = owner_id if user_type is UserType.COMPANY else company_id
        return _grant(
            reply,
            self._endpoints.token,
            user_type=user_type,
            location_id=location,
            company_id=company,
            rotated=True,
        )

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenGrant:
        """A location token minted with a company (agency) token."""
        reply = await self._request(
            self._endpoints.location_token,
            company_token,
            form={"companyId": company_id, "locationId": location_id},
            context={"company_id": company_id, "location_id": location_id},
        )
        return _grant(
            reply,
            self._endpoints.location_token,
            user_type=UserType.LOCATION,
            location_id=location_id,
            company_id=company_id,
        )

    async def installed_locations(
        self, company_token: str, company_id: str
    ) -> Sequence[InstalledLocation]:
        """Every location of the company the app is installed on (all pages)."""
        app_id = self._require_credentials().app_id
        found: dict[str, InstalledLocation] = {}
        for page in range(self._max_pages):
            params = {
                "companyId": company_id,
                "appId": app_id,
                "isInstalled": "true",
                "skip": str(page * self._page_size),
                "limit": str(self._page_size),
            }
            reply = await self._request(
                self._endpoints.installed_locations,
                company_token,
                params=params,
                context={"company_id": company_id, "page": str(page)},
            )
            items, total = _installed_page(reply)
            for location in items:
                found.setdefault(location.location_id, location)
            done = (page + 1) * self._page_size
            if len(items) < self._page_size or (total is not None and done >= total):
                return list(found.values())
        logger.warning(
            "ghl.installed_locations_truncated",
            extra={"company_id": company_id, "locations": len(found)},
        )
        return list(found.values())

    def _require_credentials(self) -> GhlCredentials:
        if self._credentials is None:
            raise OAuthNotConfigured(
                "GHL OAuth is not configured: set CASTGHL_GHL_CLIENT_ID and "
                "CASTGHL_GHL_CLIENT_SECRET"
            )
        return self._credentials

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
        secrets: Sequence[str] = (),
    ) -> Any:
        """Make one call; return its JSON (or text, or None) or raise a GhlError.

        `context` is logged with any failure (ids only: never a secret);
        `secrets` (and the access token) are masked should GHL echo them.
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
            secrets=(access_token or "", *secrets),
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
        secrets: Sequence[str],
        fields: Mapping[str, str],
    ) -> GhlError:
        """The GhlError for a non-2xx answer, logged with GHL's traceId."""
        message, trace_id = _error_details(reply, status)
        for secret in secrets:
            if secret:
                message = message.replace(secret, "[redacted]")
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
        return _refusal(status, message, text, trace_id)
    # 5xx, and anything unexpected (a 3xx from an API host): try again later.
    return GhlUnavailable(text, trace_id)


def _refusal(status: int, message: str, text: str, trace_id: str | None) -> GhlError:
    """A 4xx told apart by GHL's words: the token calls share status 400."""
    lowered = message.lower()
    if any(hint in lowered for hint in _INVALID_GRANT_HINTS):
        # Revoked, expired or already used: only the caller can tell a
        # concurrent refresh (the store moved on) from a revocation.
        return TokenRevoked(text, trace_id)
    if _INACTIVE_HINT in lowered:
        return LocationInactive(text, trace_id)
    return GhlRejected(text, status, trace_id)


def _grant(
    reply: object,
    route: GhlRoute,
    *,
    user_type: UserType | None = None,
    location_id: str | None = None,
    company_id: str | None = None,
    rotated: bool = False,
) -> TokenGrant:
    """A TokenGrant from a token answer; unusable answers are GhlUnavailable.

    With `rotated` (a refresh) an answer carrying both tokens is kept even if
    it names no owner: refusing it would lose a pair GHL already rotated.
    """
    if not isinstance(reply, dict) or not _text(reply.get("access_token")):
        # A refresh may have used up the refresh token all the same: the next
        # refresh then meets "Invalid grant", which says so clearly.
        raise GhlUnavailable(f"GHL {route.name} answered without an access_token")
    stated = reply.get("userType")
    if stated in {kind.value for kind in UserType}:
        user_type = UserType(stated)
    user_type = user_type or UserType.LOCATION
    owner = reply.get("locationId" if user_type is UserType.LOCATION else "companyId")
    has_pair = _text(reply.get("refresh_token")) is not None
    if not _text(owner) and not (location_id or company_id or (rotated and has_pair)):
        raise GhlUnavailable(f"GHL {route.name} answered a token for nobody")
    expires_in = reply.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = None
    approved = reply.get("approvedLocations")
    scope = reply.get("scope")
    return TokenGrant(
        access_token=reply["access_token"],
        refresh_token=_text(reply.get("refresh_token")),
        expires_in=(
            float(expires_in)
            if expires_in is not None and expires_in > 0
            else _UNKNOWN_LIFETIME
        ),
        user_type=user_type,
        location_id=_text(reply.get("locationId")) or location_id,
        company_id=_text(reply.get("companyId")) or company_id,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        approved_locations=(
            tuple(item for item in approved if isinstance(item, str) and item)
            if isinstance(approved, list)
            else ()
        ),
        is_bulk_installation=reply.get("isBulkInstallation") is True,
    )


def _installed_page(reply: object) -> tuple[list[InstalledLocation], int | None]:
    """The installed locations of one page, and the total GHL reports."""
    if not isinstance(reply, dict) or not isinstance(reply.get("locations"), list):
        raise GhlUnavailable("GHL installed_locations answered without locations")
    items = [
        InstalledLocation(item["_id"], _text(item.get("name")))
        for item in reply["locations"]
        if isinstance(item, dict)
        and _text(item.get("_id"))
        and item.get("isInstalled") is not False
    ]
    total = reply.get("count")
    counted = isinstance(total, int) and not isinstance(total, bool)
    return items, total if counted else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


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
