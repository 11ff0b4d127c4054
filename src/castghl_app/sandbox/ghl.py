"""A local stand-in for HighLevel: signs deliveries, answers status updates,
and plays the OAuth side (consent, tokens, installed locations, app webhooks).

Written from the reference (ghl.md) and HighLevel's OpenAPI files, not from
castghl's client: it imports nothing from castghl_core or castghl_adapters,
so a misreading of the protocol cannot hide in both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import attrs
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from castghl_app.sandbox.ghl_oauth import (
    COMPANY,
    LOCATION,
    OAuthBook,
    OAuthRefusal,
    ghl_id,
)

logger = logging.getLogger(__name__)

CONVERSATIONS_VERSION = "2021-04-15"
"""The only Version the OpenAPI file allows on the conversations calls."""
OAUTH_VERSION = "2021-07-28"
"""The only Version oauth.json allows on locationToken and installedLocations."""

MESSAGE_STATUSES = ("delivered", "failed", "pending", "read")
NOT_READY_MESSAGE = "No conversation provider found for this message"
INVALID_TOKEN_MESSAGE = "Invalid token: access token is invalid"  # noqa: S105
SAMPLE_PHONE = "+639171234567"

SignatureMode = Literal["valid", "missing", "na", "forged", "legacy-only"]

_HOST = "127.0.0.1"
_LEGACY_RSA_BITS = 2048  # HighLevel's key is 4096 bits; 2048 keeps tests fast.
_DELIVERY_TIMEOUT = aiohttp.ClientTimeout(total=30)
_RATE_LIMIT_WINDOW_MS = 10_000
_RATE_LIMIT_MAX = 100
_LAST_STATUS = 599
_FORM = "application/x-www-form-urlencoded"


@attrs.frozen
class StatusUpdate:
    """One accepted status update, recorded as the caller sent it."""

    message_id: str
    status: str
    error: dict[str, Any] | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The update as the control surface lists it."""
        return {
            "message_id": self.message_id,
            "status": self.status,
            "error": self.error,
            "at": self.at.isoformat(),
        }


@attrs.frozen
class Fault:
    """An injected failure of the status-update call.

    The sandbox waits `hang` seconds (cut short when it stops), then answers
    `status` with a GHL-shaped error body and `Retry-After` if given. A tuple
    `message` is sent as a list, as GHL does for validation errors (422).
    """

    status: int = 500
    message: str | tuple[str, ...] = "Internal server error"
    retry_after: float | None = None
    hang: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Fault:
        """A 429, with Retry-After unless `retry_after` is None."""
        return cls(429, "Too many requests", retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        """A 500."""
        return cls()

    @classmethod
    def stall(cls, seconds: float = 60.0) -> Fault:
        """No answer for `seconds` (then a 504): for timeout tests."""
        return cls(504, "Gateway timeout", hang=seconds)


@attrs.frozen
class _Message:
    """A message GHL handed to the provider."""

    location_id: str
    conversation_id: str
    delivered_at: float
    """Monotonic time of the delivery, the start of the 403 window."""


# --- the sandbox ------------------------------------------------------------


class GhlSandbox:
    """HighLevel's side of the Conversation Provider protocol, on 127.0.0.1,
    and of the marketplace app's OAuth (consent page, token endpoints).

    Use it in-process (issue_location_token, deliver, inject, status_updates;
    `oauth` for consent choices, switches and counters; app_event,
    install_later, uninstall and send_app_webhook for app webhooks) or from
    another process through the `/_sandbox/` control routes.
    """

    def __init__(
        self,
        *,
        not_ready_for: float = 5.0,
        signing_key: Ed25519PrivateKey | None = None,
        legacy_signing_key: rsa.RSAPrivateKey | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.not_ready_for = not_ready_for
        """Seconds after a delivery during which status updates get 403."""
        self.company_id = ghl_id()
        self.status_updates: list[StatusUpdate] = []
        self.oauth = OAuthBook(
            company_id=self.company_id,
            # Shaped like a marketplace app's: `<appId>-<suffix>`.
            client_id=client_id or f"{secrets.token_hex(12)}-{ghl_id()[:8].lower()}",
            client_secret=client_secret or f"sbx-secret-{secrets.token_urlsafe(24)}",
        )
        """The OAuth side: app, locations, tokens, switches and counters."""
        self._signing_key = signing_key or Ed25519PrivateKey.generate()
        self._legacy_key = legacy_signing_key
        self._messages: dict[str, _Message] = {}
        self._faults: list[Fault] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- keys and signing ---------------------------------------------------

    @property
    def public_key_pem(self) -> str:
        """The Ed25519 public key its deliveries verify under (SPKI PEM)."""
        return _public_pem(self._signing_key.public_key())

    @property
    def legacy_public_key_pem(self) -> str:
        """The RSA public key of its legacy `X-WH-Signature` (SPKI PEM)."""
        return _public_pem(self._legacy_signing_key().public_key())

    def sign(self, body: bytes) -> str:
        """The base64 Ed25519 signature of `body`, as in X-GHL-Signature."""
        return base64.b64encode(self._signing_key.sign(body)).decode("ascii")

    def sign_legacy(self, body: bytes) -> str:
        """The base64 RSA-SHA256 signature of `body`, as in X-WH-Signature."""
        signature = self._legacy_signing_key().sign(
            body, padding.PKCS1v15(), hashes.SHA256()
        )
        return base64.b64encode(signature).decode("ascii")

    def _legacy_signing_key(self) -> rsa.RSAPrivateKey:
        # Made on first use: most tests never need the slow RSA key.
        if self._legacy_key is None:
            self._legacy_key = rsa.generate_private_key(65537, _LEGACY_RSA_BITS)
        return self._legacy_key

    # --- state --------------------------------------------------------------

    def issue_location_token(
        self, location_id: str, *, expires_in: int = 86399
    ) -> dict[str, Any]:
        """A location token response, its access token valid for `location_id`."""
        grant = self.oauth.issue(
            user_type=LOCATION, location_id=location_id, expires_in=expires_in
        )
        return grant.to_token_response()

    @property
    def client_id(self) -> str:
        """The marketplace app's OAuth client id."""
        return self.oauth.client_id

    @property
    def client_secret(self) -> str:
        """The marketplace app's OAuth client secret."""
        return self.oauth.client_secret

    def register_message(self, message_id: str, location_id: str) -> None:
        """Mark a message as handed to the provider now (no HTTP delivery).

        A second registration (GHL retrying a delivery) keeps the first time.
        """
        if message_id not in self._messages:
            self._messages[message_id] = _Message(
                location_id=location_id,
                conversation_id=ghl_id(),
                delivered_at=time.monotonic(),
            )

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Make the next `times` status-update calls fail with `fault`."""
        self._faults.extend([fault] * times)

    def statuses_for(self, message_id: str) -> list[StatusUpdate]:
        """The accepted status updates of one message, oldest first."""
        return [u for u in self.status_updates if u.message_id == message_id]

    def reset(self) -> None:
        """Forget tokens, messages, faults and status updates; keep the keys."""
        self.oauth.clear()
        self._messages.clear()
        self._faults.clear()
        self.status_updates.clear()

    # --- deliveries (GHL -> provider) ---------------------------------------

    def sample_delivery(self, **overrides: Any) -> dict[str, Any]:
        """HighLevel's documented ProviderOutboundMessage sample.

        The phone is a Philippine mobile and the messageId is new on every
        call; keyword arguments (camelCase payload keys) replace fields.
        """
        payload: dict[str, Any] = {
            "contactId": "GKBhT6BfwY9mjzXAU3sq",
            "locationId": "GKAWb4yu7A4LSc0skQ6g",
            "messageId": ghl_id(),
            "type": "SMS",
            "phone": SAMPLE_PHONE,
            "message": "The text message to be sent to the contact",
            "attachments": ["https://example.com/image.png"],
            "userId": "GK56r6wdJDrkUPd0xsmx",
        }
        payload.update(overrides)
        return payload

    async def deliver(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        signature: SignatureMode = "valid",
    ) -> tuple[int, dict[str, Any] | str]:
        """POST `payload` to a Delivery URL on this machine, as GHL would.

        The body is serialised once and signed over those exact bytes. The
        message is registered first, starting its 403 window. Returns the
        answer's status and its JSON object (or its text).
        """
        _require_loopback(url)
        message_id, location_id = payload.get("messageId"), payload.get("locationId")
        if isinstance(message_id, str) and isinstance(location_id, str):
            self.register_message(message_id, location_id)
        return await self._post_signed(url, payload, signature)

    async def _post_signed(
        self, url: str, payload: Mapping[str, Any], signature: SignatureMode
    ) -> tuple[int, dict[str, Any] | str]:
        _require_loopback(url)
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        headers.update(self._signature_headers(body, signature))

        session = self._client_session()
        async with session.post(url, data=body, headers=headers) as response:
            text = await response.text()
            status = response.status
        try:
            answer = json.loads(text)
        except ValueError:
            return status, text
        return status, answer if isinstance(answer, dict) else text

    # --- app webhooks (GHL -> the app's webhook URL) ------------------------

    def app_event(
        self,
        event_type: str,
        *,
        location_id: str | None = None,
        company_id: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """An INSTALL or UNINSTALL body as GHL sends it, stamped now.

        Without a location it is an agency-level event. Keyword arguments
        (camelCase keys) replace fields; a value of None drops the field.
        """
        payload: dict[str, Any] = {
            "type": event_type,
            "appId": self.oauth.app_id,
            "companyId": company_id or self.company_id,
            # GHL writes UTC with a Z, e.g. 2023-06-27T11:58:25.346Z.
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "webhookId": str(uuid.uuid4()),
        }
        if location_id is not None:
            payload["locationId"] = location_id
        if event_type == "INSTALL":
            payload.update(
                {
                    "versionId": self.oauth.app_id,
                    "installType": LOCATION if location_id else COMPANY,
                    "userId": ghl_id(),
                    "companyName": "Sandbox Agency",
                }
            )
        payload.update(overrides)
        return {key: value for key, value in payload.items() if value is not None}

    def install_later(self, location_id: str) -> dict[str, Any]:
        """Install the app on one more of the agency's locations; the INSTALL."""
        self.oauth.set_installed(location_id, installed=True)
        return self.app_event("INSTALL", location_id=location_id)

    def uninstall(
        self, location_id: str | None = None, *, company: bool = False
    ) -> dict[str, Any]:
        """Uninstall from a location (or the whole agency); the UNINSTALL.

        The tokens of what was uninstalled stop working.
        """
        if company:
            for known in list(self.oauth.locations):
                self.oauth.set_installed(known, installed=False)
            self.oauth.revoke(self.company_id)
            return self.app_event("UNINSTALL")
        if location_id is None:
            raise ValueError("name a location, or uninstall the whole company")
        self.oauth.set_installed(location_id, installed=False)
        return self.app_event("UNINSTALL", location_id=location_id)

    async def send_app_webhook(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        signature: SignatureMode = "valid",
    ) -> tuple[int, dict[str, Any] | str]:
        """POST an app webhook (INSTALL, UNINSTALL) to a URL on this machine."""
        return await self._post_signed(url, payload, signature)

    def _signature_headers(self, body: bytes, mode: SignatureMode) -> dict[str, str]:
        if mode == "valid":
            return {"X-GHL-Signature": self.sign(body)}
        if mode == "missing":
            return {}
        if mode == "na":
            return {"X-GHL-Signature": "N/A"}
        if mode == "forged":
            # Well-formed (64 bytes, base64) but made with a key nobody trusts.
            forged = Ed25519PrivateKey.generate().sign(body)
            return {"X-GHL-Signature": base64.b64encode(forged).decode("ascii")}
        if mode == "legacy-only":
            return {"X-WH-Signature": self.sign_legacy(body)}
        raise ValueError(f"unknown signature mode: {mode!r}")

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_DELIVERY_TIMEOUT)
        return self._session

    # --- serving ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the sandbox listens; only valid after start()."""
        if self._base_url is None:
            raise RuntimeError("the GHL sandbox is not started")
        return self._base_url

    def make_app(self) -> web.Application:
        """The sandbox's aiohttp application (HighLevel's routes and control)."""
        app = web.Application(middlewares=[_ghl_shaped_errors])
        app.router.add_put(
            "/conversations/messages/{message_id}/status", self._update_status
        )
        for prefix in ("", "/v2"):  # newer docs show the /v2 path
            app.router.add_get(f"{prefix}/oauth/chooselocation", self._consent)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/oauth/locationToken", self._location_token)
        app.router.add_get("/oauth/installedLocations", self._installed_locations)
        app.router.add_post("/_sandbox/consent", self._control_consent)
        app.router.add_post("/_sandbox/locations/{location_id}", self._control_location)
        app.router.add_get("/_sandbox/oauth", self._control_oauth)
        app.router.add_post("/_sandbox/faults", self._control_faults)
        app.router.add_get("/_sandbox/status-updates", self._control_status_updates)
        app.router.add_post("/_sandbox/reset", self._control_reset)
        app.router.add_post("/_sandbox/location-tokens", self._control_token)
        app.router.add_post("/_sandbox/messages", self._control_message)
        return app

    async def start(self, host: str = _HOST, port: int = 0) -> str:
        """Listen on 127.0.0.1 (a free port by default); return the base URL."""
        if host != _HOST:
            raise ValueError(f"the GHL sandbox listens on {_HOST} only, not {host}")
        if self._runner is not None:
            raise RuntimeError("the GHL sandbox is already started")
        self._stopping.clear()
        runner = web.AppRunner(self.make_app(), shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{_HOST}:{bound_port}"
        logger.info("ghl_sandbox.started", extra={"base_url": self._base_url})
        return self._base_url

    async def stop(self) -> None:
        """Stop serving, cutting short any injected hang; safe to call twice."""
        self._stopping.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._base_url = None

    # --- PUT /conversations/messages/{messageId}/status ---------------------

    async def _update_status(self, request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        if self._faults:
            return await self._answer_fault(self._faults.pop(0))

        message = self._messages.get(message_id)
        self._check_token(request, message)
        _check_version(request, CONVERSATIONS_VERSION)
        body = await _json_object(request)
        problems = status_body_problems(body)
        if problems:
            return _error(HTTPStatus.UNPROCESSABLE_ENTITY, problems)

        if message is None or self._in_not_ready_window(message):
            return _error(HTTPStatus.FORBIDDEN, NOT_READY_MESSAGE)

        self.status_updates.append(
            StatusUpdate(
                message_id=message_id,
                status=body["status"],
                error=body.get("error"),
                at=datetime.now(UTC),
            )
        )
        # The documented 200 body (SendMessageResponseDto) plus `success`.
        return web.json_response(
            {
                "success": True,
                "conversationId": message.conversation_id,
                "messageId": message_id,
                "status": body["status"],
            }
        )

    def _check_token(self, request: web.Request, message: _Message | None) -> None:
        """Refuse unless the Bearer token is live for the message's location.

        For a message GHL never delivered any live token passes, on to the
        403 that follows.
        """
        grant = self.oauth.live(_bearer_token(request))
        if grant is None or (
            message is not None and grant.location_id != message.location_id
        ):
            raise _Refusal(_error(HTTPStatus.UNAUTHORIZED, INVALID_TOKEN_MESSAGE))

    def _in_not_ready_window(self, message: _Message) -> bool:
        return time.monotonic() - message.delivered_at < self.not_ready_for

    async def _answer_fault(self, fault: Fault) -> web.Response:
        if fault.hang > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.hang)
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.status == HTTPStatus.TOO_MANY_REQUESTS:
            headers["X-RateLimit-Max"] = str(_RATE_LIMIT_MAX)
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Interval-Milliseconds"] = str(_RATE_LIMIT_WINDOW_MS)
        message = fault.message
        return _error(
            fault.status,
            message if isinstance(message, str) else list(message),
            headers=headers,
        )

    # --- OAuth: consent page and token endpoints ----------------------------

    async def _consent(self, request: web.Request) -> web.Response:
        """The consent page, approved at once with what `choose` set up."""
        code = self.oauth.consent(request.query)
        extra = {"code": code}
        if "state" in request.query:
            extra["state"] = request.query["state"]
        target = _with_query(request.query["redirect_uri"], extra)
        return web.Response(status=HTTPStatus.FOUND, headers={"Location": target})

    async def _token(self, request: web.Request) -> web.Response:
        form = await _form(request)
        return web.json_response(self.oauth.token(form))

    async def _location_token(self, request: web.Request) -> web.Response:
        _check_version(request, OAUTH_VERSION)
        bearer = _bearer_token(request)
        form = await _form(request)
        return web.json_response(self.oauth.location_token(bearer, form))

    async def _installed_locations(self, request: web.Request) -> web.Response:
        _check_version(request, OAUTH_VERSION)
        answer = self.oauth.installed_locations(_bearer_token(request), request.query)
        return web.json_response(answer)

    # --- /_sandbox/ control surface -----------------------------------------

    async def _control_faults(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        try:
            fault = Fault(
                status=int(spec.get("status", 500)),
                message=_fault_message(spec.get("message", "Internal server error")),
                retry_after=_optional_float(spec.get("retry_after")),
                hang=float(spec.get("hang", 0.0)),
            )
            times = int(spec.get("times", 1))
        except (TypeError, ValueError) as error:
            return _error(HTTPStatus.BAD_REQUEST, f"bad fault: {error}")
        if not HTTPStatus.BAD_REQUEST <= fault.status <= _LAST_STATUS:
            return _error(
                HTTPStatus.BAD_REQUEST, "bad fault: status must be 4xx or 5xx"
            )
        self.inject(fault, times)
        return web.json_response({"queued": len(self._faults)}, status=201)

    async def _control_status_updates(self, request: web.Request) -> web.Response:
        message_id = request.query.get("message_id")
        updates = (
            self.status_updates if message_id is None else self.statuses_for(message_id)
        )
        return web.json_response(
            {"status_updates": [update.to_json() for update in updates]}
        )

    async def _control_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    async def _control_token(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        location_id = spec.get("location_id")
        if not isinstance(location_id, str) or not location_id:
            return _error(HTTPStatus.BAD_REQUEST, "location_id is required")
        expires_in = spec.get("expires_in", 86399)
        if not isinstance(expires_in, int):
            return _error(HTTPStatus.BAD_REQUEST, "expires_in must be an integer")
        token = self.issue_location_token(location_id, expires_in=expires_in)
        return web.json_response(token, status=201)

    async def _control_message(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        message_id, location_id = spec.get("message_id"), spec.get("location_id")
        if not isinstance(message_id, str) or not isinstance(location_id, str):
            return _error(
                HTTPStatus.BAD_REQUEST, "message_id and location_id are required"
            )
        self.register_message(message_id, location_id)
        return web.Response(status=204)

    async def _control_consent(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        location_ids = spec.get("location_ids")
        if not isinstance(location_ids, list) or not all(
            isinstance(item, str) and item for item in location_ids
        ):
            return _error(HTTPStatus.BAD_REQUEST, "location_ids must be a list of ids")
        try:
            self.oauth.choose(location_ids, company=spec.get("user_type") == COMPANY)
        except ValueError as error:
            return _error(HTTPStatus.BAD_REQUEST, str(error))
        return web.Response(status=204)

    async def _control_location(self, request: web.Request) -> web.Response:
        location_id = request.match_info["location_id"]
        spec = await _json_object(request)
        self.oauth.add_location(location_id, str(spec.get("name", "")))
        if isinstance(spec.get("active"), bool):
            self.oauth.set_active(location_id, active=spec["active"])
        if spec.get("revoked") is True:
            self.oauth.revoke(location_id)
        return web.Response(status=204)

    async def _control_oauth(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "refresh_count": dict(self.oauth.refresh_count),
                "mint_count": dict(self.oauth.mint_count),
                "reused_refresh_tokens": self.oauth.reused_refresh_tokens,
                "token_calls": [
                    {
                        "endpoint": call.endpoint,
                        "grant_type": call.grant_type,
                        "owner_id": call.owner_id,
                        "outcome": call.outcome,
                        "at": call.at.isoformat(),
                    }
                    for call in self.oauth.calls
                ],
            }
        )


# --- request checks -----------------------------------------------------------


def status_body_problems(body: Mapping[str, Any]) -> list[str]:
    """What is wrong with an update-message-status body (UpdateMessageStatusDto).

    Unknown fields are allowed, as the schema does not forbid them.
    """
    problems: list[str] = []
    status = body.get("status")
    if status not in MESSAGE_STATUSES:
        problems.append(
            "status must be one of the following values: " + ", ".join(MESSAGE_STATUSES)
        )
    if "error" in body:
        error = body["error"]
        if not isinstance(error, dict):
            problems.append("error must be an object")
        else:
            problems.extend(
                f"error.{field} must be a string"
                for field in ("code", "type", "message")
                if not isinstance(error.get(field), str)
            )
    if "emailMessageId" in body and not isinstance(body["emailMessageId"], str):
        problems.append("emailMessageId must be a string")
    if "recipients" in body:
        recipients = body["recipients"]
        if not isinstance(recipients, list) or not all(
            isinstance(item, str) for item in recipients
        ):
            problems.append("each value in recipients must be a string")
    return problems


def _check_version(request: web.Request, expected: str) -> None:
    # The wording is the sandbox's own: GHL's text for this is not documented.
    version = request.headers.get("Version")
    if version is None:
        raise _Refusal(_error(HTTPStatus.BAD_REQUEST, "Version header is missing"))
    if version != expected:
        raise _Refusal(
            _error(HTTPStatus.BAD_REQUEST, f"Version {version!r} is not supported")
        )


def _bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _form(request: web.Request) -> dict[str, str]:
    """A form-encoded body, as the OAuth endpoints take (JSON is refused)."""
    if request.content_type != _FORM:
        raise _Refusal(
            _error(HTTPStatus.UNPROCESSABLE_ENTITY, [f"the body must be {_FORM}"])
        )
    form = await request.post()
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise _Refusal(
            _error(HTTPStatus.BAD_REQUEST, "body is not valid JSON")
        ) from None
    if not isinstance(body, dict):
        raise _Refusal(_error(HTTPStatus.BAD_REQUEST, "body must be a JSON object"))
    return body


def _fault_message(value: object) -> str | tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return str(value)


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


# --- answers ------------------------------------------------------------------


def _error(
    status: int,
    message: str | list[str],
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A GHL-shaped error: statusCode, message, error and a fresh traceId."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = {
        "statusCode": status,
        "message": message,
        "error": phrase,
        "traceId": str(uuid.uuid4()),
    }
    return web.json_response(body, status=status, headers=headers)


class _Refusal(Exception):
    """Stops a handler with a ready answer (a GHL-shaped error)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@web.middleware
async def _ghl_shaped_errors(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Refusals become their answers; unknown routes answer in GHL's shape."""
    try:
        return await handler(request)
    except _Refusal as refusal:
        return refusal.response
    except OAuthRefusal as refusal:
        return _error(refusal.status, refusal.message)
    except web.HTTPException as exception:
        if exception.status < HTTPStatus.BAD_REQUEST:
            raise
        return _error(exception.status, exception.reason)


# --- helpers ------------------------------------------------------------------


def _public_pem(key: Any) -> str:
    pem: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    """`url` with `extra` added to its query string."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), *extra.items()])
    return urlunsplit(parts._replace(query=query))


def _require_loopback(url: str) -> None:
    """Refuse to deliver anywhere but this machine."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the GHL sandbox delivers to this machine only, not {host}")
