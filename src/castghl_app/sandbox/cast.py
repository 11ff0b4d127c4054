"""CastSandbox: a local stand-in of Cast's SMS API, for tests and demos.

Written from the Cast reference (shared/reference/cast.md), not from the
client, and importing nothing of castghl, so that a misreading of the protocol
cannot hide in both. It keeps what it was sent, fakes delivery receipts, and
answers with injected faults on request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
from aiohttp import web

logger = logging.getLogger(__name__)

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_SANDBOX_KEY: Final = re.compile(r"cast_test_[0-9A-Za-z]+")
_LIVE_KEY: Final = re.compile(r"cast_[0-9a-f]{64}")
_TO: Final = re.compile(r"[0-9+()\-]{7,20}")
_MAX_MESSAGE: Final = 10_000
_MAX_SENDER_ID: Final = 20
_MAX_IDEMPOTENCY_KEY: Final = 255
_MAX_FAULTS: Final = 1000

# --- SMS parts --------------------------------------------------------------

# The GSM 03.38 default alphabet; \x1b (the escape to the extension table)
# is left out because it is no character of a text.
_GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the extension table cost an escape plus themselves.
_GSM7_EXTENDED: Final = frozenset("^{}\\[~]|€\f")


def count_sms_parts(text: str) -> int:
    """How many SMS parts Cast bills for `text`.

    GSM-7 when every character is in its alphabet (160 septets alone, 153 per
    part when split, extension characters two); otherwise UCS-2 (70 UTF-16
    units alone, 67 per part). A character is never split across two parts.
    """
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text):
        sizes = [2 if c in _GSM7_EXTENDED else 1 for c in text]
        single, per_part = 160, 153
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, per_part = 70, 67

    if sum(sizes) <= single:
        return 1
    parts, room = 1, per_part
    for size in sizes:
        if size > room:
            parts, room = parts + 1, per_part
        room -= size
    return parts


def local_digits(number: str) -> str:
    """A phone number's digits, Philippine E.164 forms turned local (09…)."""
    digits = "".join(c for c in number if c.isdigit())
    if digits.startswith("63") and len(digits) == 12:  # noqa: PLR2004
        return "0" + digits[2:]
    if digits.startswith("9") and len(digits) == 10:  # noqa: PLR2004
        return "0" + digits
    return digits


# --- records ----------------------------------------------------------------


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


_is_str: Final = attrs.validators.instance_of(str)


@attrs.frozen
class Fault:
    """An answer to force on the next send request(s).

    A `status` of 400 or more is answered as a Cast error. A lower status
    adds no error: after `hang` seconds the request is handled normally, which
    is a send that happened but answered too late for a client's timeout.
    Unlike the sandbox's own errors, a fault's body carries no `error_code`
    when it is None, so a client's handling of odd answers can be tested.
    """

    status: int = attrs.field(
        validator=[
            attrs.validators.instance_of(int),
            attrs.validators.ge(200),
            attrs.validators.le(599),
        ]
    )
    error_code: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_is_str)
    )
    error: str = attrs.field(default="injected fault", validator=_is_str)
    retry_after: float | None = attrs.field(default=None, validator=_non_negative)
    hang: float | None = attrs.field(default=None, validator=_non_negative)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Fault:
        """429 RATE_LIMIT_EXCEEDED with a Retry-After header."""
        return cls(429, "RATE_LIMIT_EXCEEDED", "Too many requests", retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """500 INTERNAL_ERROR, 502 PROVIDER_ERROR or 503 SERVICE_UNAVAILABLE."""
        code = {502: "PROVIDER_ERROR", 503: "SERVICE_UNAVAILABLE"}
        return cls(status, code.get(status, "INTERNAL_ERROR"), "Server error")

    @classmethod
    def insufficient_credits(cls) -> Fault:
        """402 INSUFFICIENT_CREDITS."""
        return cls(402, "INSUFFICIENT_CREDITS", "Insufficient credits")

    @classmethod
    def timeout(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` (the send does happen)."""
        return cls(200, hang=seconds)


@attrs.frozen
class SentSms:
    """One SMS the sandbox accepted (a replay is not a new one)."""

    cast_message_id: str
    api_key_hint: str
    """The last four characters of the API key; the key itself is not kept."""
    to: str
    message: str
    sender_id: str | None
    idempotency_key: str | None
    parts: int
    at: datetime


@attrs.frozen
class SendAttempt:
    """One POST to the send endpoint, whatever it was answered."""

    idempotency_key: str | None
    api_key_hint: str | None
    fault: Fault | None
    at: datetime


@attrs.frozen
class _Message:
    cast_message_id: str
    api_key: str
    sent_at: datetime
    sent_clock: float
    undeliverable: bool


# --- the server -------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CastSandbox:
    """Cast's send and status endpoints, plus a /_sandbox/ control surface.

    Sandbox keys (`cast_test_…`) and the live-shaped keys in `accepted_keys`
    are let in; a message reads `sent` until `status_delay` seconds have
    passed, then `delivered`, or `undelivered` for numbers marked with
    `undeliverable()`.

    XXX: answers are kept for idempotent replay for the sandbox's life, not
    24 h, as a sandbox lives minutes. Only successful answers are kept: the
    reference does not say whether Cast replays refusals too.
    """

    def __init__(
        self, *, status_delay: float = 0.3, accepted_keys: Iterable[str] = ()
    ) -> None:
        self.accepted_keys = frozenset(accepted_keys)
        for key in self.accepted_keys:
            if not _LIVE_KEY.fullmatch(key):
                raise ValueError("accepted_keys must look like cast_ + 64 hex")
        self.status_delay = status_delay
        self.sent: list[SentSms] = []
        self.requests: list[SendAttempt] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._undeliverable: set[str] = set()
        self._messages: dict[str, _Message] = {}
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}
        self.base_url: str | None = None
        """Where the sandbox serves, while `start()` has it running."""
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # --- control, in process ----------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Answer the next `times` send requests with `fault` (after any queued)."""
        if not isinstance(times, int):
            raise TypeError("times must be an integer")
        if not 1 <= times <= _MAX_FAULTS - len(self._faults):
            raise ValueError(f"at most {_MAX_FAULTS} faults can be queued")
        self._faults.extend([fault] * times)

    def undeliverable(self, number: str) -> None:
        """Make later sends to `number` (local or E.164 form) end undelivered."""
        self._undeliverable.add(local_digits(number))

    def reset(self) -> None:
        """Forget sends, requests, faults, marked numbers and replay answers."""
        self.sent.clear()
        self.requests.clear()
        self._faults.clear()
        self._undeliverable.clear()
        self._messages.clear()
        self._answers.clear()

    # --- serving ------------------------------------------------------------

    def make_app(self) -> web.Application:
        """An aiohttp application serving this sandbox."""
        app = web.Application(middlewares=[_json_errors])
        for prefix in ("/api/v1", "/api"):  # the older prefix is an alias
            app.router.add_post(f"{prefix}/sms/send", self._send)
            app.router.add_get(f"{prefix}/sms/status/{{message_id}}", self._status)
        app.router.add_post("/_sandbox/faults", self._post_fault)
        app.router.add_post("/_sandbox/undeliverable", self._post_undeliverable)
        app.router.add_get("/_sandbox/sent", self._get_sent)
        app.router.add_post("/_sandbox/reset", self._post_reset)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a loopback address; return the base URL."""
        if host not in _LOOPBACK:
            raise ValueError("the Cast sandbox listens on a loopback address only")
        if self._runner is not None:
            raise RuntimeError("the Cast sandbox is already running")

        self._stopping.clear()
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; hanging requests are cut short. Safe to call twice."""
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner, self.base_url = self._runner, None, None
            await runner.cleanup()

    # --- Cast's endpoints -------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        api_key = request.headers.get("X-API-Key")
        idempotency_key = request.headers.get("X-Idempotency-Key")
        fault = self._faults.popleft() if self._faults else None
        self.requests.append(
            SendAttempt(idempotency_key, _hint(api_key), fault, datetime.now(UTC))
        )
        # Read before any hang: a client that gives up closes the connection,
        # and a slow Cast has the request in hand before it is slow.
        body = await _json_body(request)
        if fault is not None and (forced := await self._answer_fault(fault)):
            return forced

        if api_key is None or not self._authorised(api_key):
            return _error(401, "INVALID_API_KEY", "Invalid or missing API key")
        if body is None:
            return _error(400, "INVALID_REQUEST", "Body must be a JSON object")
        problem = _send_problem(body, idempotency_key)
        if problem is not None:
            return _error(400, "VALIDATION_ERROR", problem)

        # Idempotency keys are scoped per API key.
        scope = (api_key, idempotency_key) if idempotency_key is not None else None
        answer = self._answers.get(scope) if scope is not None else None
        if answer is not None:
            return web.json_response(answer, headers={"X-Idempotent-Replay": "true"})
        answer = self._accept(api_key, body, idempotency_key)
        if scope is not None:
            self._answers[scope] = answer
        return web.json_response(answer)

    async def _answer_fault(self, fault: Fault) -> web.Response | None:
        """Hang as the fault says; its error answer, or None to carry on."""
        if fault.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.hang)
            if self._stopping.is_set():
                return _error(503, "SERVICE_UNAVAILABLE", "Shutting down")
        if fault.status < 400:  # noqa: PLR2004
            return None
        answer = _error(fault.status, fault.error_code, fault.error)
        if fault.retry_after is not None:
            answer.headers["Retry-After"] = f"{fault.retry_after:g}"
        return answer

    def _accept(
        self, api_key: str, body: Mapping[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        """Record a new send and build its answer."""
        sandbox = bool(_SANDBOX_KEY.fullmatch(api_key))
        if sandbox:
            message_id = "SANDBOX_" + secrets.token_hex(8).upper()
        else:
            message_id = "CAST" + secrets.token_hex(12).upper()
        now = datetime.now(UTC)
        parts = count_sms_parts(body["message"])

        self._messages[message_id] = _Message(
            cast_message_id=message_id,
            api_key=api_key,
            sent_at=now,
            sent_clock=time.monotonic(),
            undeliverable=local_digits(body["to"]) in self._undeliverable,
        )
        self.sent.append(
            SentSms(
                cast_message_id=message_id,
                api_key_hint=_hint(api_key) or "",
                to=body["to"],
                message=body["message"],
                sender_id=body.get("sender_id"),
                idempotency_key=idempotency_key,
                parts=parts,
                at=now,
            )
        )
        logger.debug(
            "cast_sandbox.sent", extra={"cast_message_id": message_id, "parts": parts}
        )

        answer: dict[str, Any] = {
            "success": True,
            "message_id": message_id,
            "parts": parts,
        }
        if sandbox:
            answer["sandbox"] = True
        return answer

    async def _status(self, request: web.Request) -> web.Response:
        api_key = request.headers.get("X-API-Key")
        if not self._authorised(api_key):
            return _error(401, "INVALID_API_KEY", "Invalid or missing API key")
        message = self._messages.get(request.match_info["message_id"])
        # Messages are visible to the key that sent them only.
        if message is None or message.api_key != api_key:
            return _error(404, "NOT_FOUND", "Message not found")

        answer: dict[str, Any] = {
            "success": True,
            "message_id": message.cast_message_id,
            "status": "sent",
            "sent_at": _iso(message.sent_at),
        }
        if time.monotonic() - message.sent_clock < self.status_delay:
            return web.json_response(answer)
        if message.undeliverable:
            answer |= {
                "status": "undelivered",
                "dlr_status": "UNDELIV",
                "error_message": "Carrier could not deliver to the handset",
            }
        else:
            delivered = message.sent_at + timedelta(seconds=self.status_delay)
            answer |= {
                "status": "delivered",
                "dlr_status": "DELIVRD",
                "delivered_at": _iso(delivered),
            }
        return web.json_response(answer)

    def _authorised(self, api_key: str | None) -> bool:
        if api_key is None:
            return False
        return bool(_SANDBOX_KEY.fullmatch(api_key)) or api_key in self.accepted_keys

    # --- the control surface, for tests in other processes ---------------

    async def _post_fault(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return _error(400, "INVALID_REQUEST", "Body must be a JSON object")
        fields = {key: body[key] for key in attrs.fields_dict(Fault) if key in body}
        try:
            self.inject(Fault(**fields), body.get("times", 1))
        except (TypeError, ValueError) as error:
            return _error(400, "VALIDATION_ERROR", str(error))
        return web.json_response({"success": True, "queued": len(self._faults)})

    async def _post_undeliverable(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        number = body.get("number") if body is not None else None
        if not isinstance(number, str) or not local_digits(number):
            return _error(400, "VALIDATION_ERROR", "number must be a phone number")
        self.undeliverable(number)
        return web.json_response({"success": True})

    async def _get_sent(self, _: web.Request) -> web.Response:
        sent = [attrs.asdict(sms, value_serializer=_json_value) for sms in self.sent]
        return web.json_response({"success": True, "sent": sent})

    async def _post_reset(self, _: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"success": True})


# --- helpers ----------------------------------------------------------------


def _send_problem(body: Mapping[str, Any], idempotency_key: str | None) -> str | None:
    """What is wrong with a send request, in Cast's words; None if nothing."""
    to, message = body.get("to"), body.get("message")
    sender_id = body.get("sender_id")
    if not isinstance(to, str) or not _TO.fullmatch(to):
        return "to must be 7-20 characters of digits and + ( ) -"
    if not isinstance(message, str) or not message.strip():
        return "message is required"
    if len(message) > _MAX_MESSAGE:
        return f"message must be at most {_MAX_MESSAGE} characters"
    if sender_id is not None and (
        not isinstance(sender_id, str) or not 1 <= len(sender_id) <= _MAX_SENDER_ID
    ):
        return f"sender_id must be 1-{_MAX_SENDER_ID} characters"
    if idempotency_key is not None and not (
        1 <= len(idempotency_key) <= _MAX_IDEMPOTENCY_KEY
    ):
        return f"X-Idempotency-Key must be 1-{_MAX_IDEMPOTENCY_KEY} characters"
    return None


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(status: int, code: str | None, text: str) -> web.Response:
    body: dict[str, Any] = {"success": False, "error": text}
    if code is not None:
        body["error_code"] = code
    return web.json_response(body, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Answer aiohttp's own errors (unknown path, body too large) in Cast's shape."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:  # noqa: PLR2004
            raise
        code = "NOT_FOUND" if error.status == 404 else "INVALID_REQUEST"  # noqa: PLR2004
        return _error(error.status, code, error.reason)


def _hint(api_key: str | None) -> str | None:
    return api_key[-4:] if api_key else None


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_value(_: object, __: attrs.Attribute[Any] | None, value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime) else value
