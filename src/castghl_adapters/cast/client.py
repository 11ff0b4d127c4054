"""CastHttpGateway: the SmsGateway port spoken over Cast's HTTP API.

Classifies every answer as a receipt, a final refusal (CastRejected) or a
reason to retry the same request later (CastUnavailable).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
import attrs
import yarl
from aiolimiter import AsyncLimiter

from castghl_core.errors import CastError, CastRejected, CastUnavailable
from castghl_core.gateway import CastStatus, SendReceipt, SmsRequest, StatusReport
from castghl_core.sms_parts import count_parts

logger = logging.getLogger(__name__)

_SEND_PATH: Final = "/api/v1/sms/send"
_STATUS_PATH: Final = "/api/v1/sms/status/"

_MAX_BODY: Final = 64 * 1024
"""Cast's answers are a few hundred bytes; anything far larger is not Cast."""
_MAX_TEXT: Final = 300
"""Foreign text (Cast's `error`, transport errors) is cut to this length."""
_MAX_RETRY_AFTER: Final = 3600.0
_MAX_LIMITERS: Final = 1024

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

_E = TypeVar("_E", bound=CastError)

# 408 and 425 mean "not processed, try again"; 429 is Cast's rate limit.
_RETRYABLE_HTTP: Final = frozenset({408, 425, 429})
_RETRYABLE_CODES: Final = frozenset(
    {"RATE_LIMIT_EXCEEDED", "INTERNAL_ERROR", "PROVIDER_ERROR", "SERVICE_UNAVAILABLE"}
)


class CastHttpGateway:
    """Sends SMS and reads delivery status through Cast's REST API.

    The aiohttp session is shared and owned by the caller. Sends are paced per
    API key (Cast allows about 10 messages/s per account) and every call has a
    timeout. No API key ever appears in an error message or a log line.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float = 15.0,
        per_key_rate: float = 10.0,
    ) -> None:
        url = yarl.URL(base_url)
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("Cast base URL must be an absolute http(s) URL")
        if timeout <= 0 or per_key_rate <= 0:
            raise ValueError("timeout and per_key_rate must be positive")

        self._session = session
        self._base_url = str(url).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seconds = timeout
        self._per_key_rate = per_key_rate
        self._limiters: OrderedDict[bytes, AsyncLimiter] = OrderedDict()

    async def send(self, request: SmsRequest) -> SendReceipt:
        """Queue one SMS; raise CastRejected (final) or CastUnavailable (retry)."""
        await self._pace(request.api_key)

        payload: dict[str, str] = {"to": request.to, "message": request.message}
        if request.sender_id is not None:
            payload["sender_id"] = request.sender_id
        headers = {
            "X-API-Key": request.api_key,
            "X-Idempotency-Key": request.idempotency_key,
        }
        url = self._base_url + _SEND_PATH
        answer = await self._call(
            "send", "POST", url, request.api_key, headers=headers, payload=payload
        )

        receipt = _receipt(answer, request)
        logger.debug(
            "cast.sent",
            extra={
                "idempotency_key": request.idempotency_key,
                "cast_message_id": receipt.cast_message_id,
                "parts": receipt.parts,
                "replayed": receipt.replayed,
                "sandbox": receipt.sandbox,
            },
        )
        return receipt

    async def status(self, api_key: str, cast_message_id: str) -> StatusReport:
        """Look up a message's delivery status.

        A status string this client does not know is reported as `pending`
        (not final, keep polling) with the raw value in `detail`: the caller's
        polling is time-bounded, so an unknown state ends in a clear timeout
        rather than a guessed outcome.
        """
        url = self._base_url + _STATUS_PATH + quote(cast_message_id, safe="")
        answer = await self._call(
            "status", "GET", url, api_key, headers={"X-API-Key": api_key}
        )
        return _status_report(answer, cast_message_id, api_key)

    # --- plumbing ---------------------------------------------------------

    async def _pace(self, api_key: str) -> None:
        """Wait for this key's turn; give up (retryably) after the timeout."""
        try:
            async with asyncio.timeout(self._seconds):
                await self._limiter(api_key).acquire()
        except TimeoutError as error:
            raise CastUnavailable(
                "too many sends are queued for this Cast API key",
                retry_after=1.0,
            ) from error

    def _limiter(self, api_key: str) -> AsyncLimiter:
        """This key's limiter; the least recently used is dropped past a bound.

        XXX: a dropped key that comes back starts a fresh limiter and may send
        once early; a shared store would fix it, but one process rarely sees
        more than a thousand active keys.
        """
        # Keyed by a digest so this table never holds the keys themselves.
        name = hashlib.sha256(api_key.encode()).digest()
        limiter = self._limiters.get(name)
        if limiter is not None:
            self._limiters.move_to_end(name)
            return limiter

        # One send every 1/rate seconds: evenly spaced, no burst, so any
        # one-second window sees about the rate and never a burst above it.
        limiter = AsyncLimiter(1, 1 / self._per_key_rate)
        self._limiters[name] = limiter
        if len(self._limiters) > _MAX_LIMITERS:
            self._limiters.popitem(last=False)
        return limiter

    async def _call(
        self,
        operation: str,
        method: str,
        url: str,
        api_key: str,
        *,
        headers: Mapping[str, str],
        payload: Mapping[str, str] | None = None,
    ) -> _Answer:
        """Make one request; a 2xx answer is returned, anything else raised."""
        for name, value in headers.items():
            if _CONTROL.search(value):
                # No HTTP request can carry it: refuse now, with http_status 0.
                code = "INVALID_API_KEY" if name == "X-API-Key" else "INVALID_REQUEST"
                reason = f"the {name} value holds control characters; nothing sent"
                raise _logged(operation, CastRejected(code, reason, 0))
        try:
            # Redirects are refused: following one would carry X-API-Key to
            # wherever the Location header points.
            async with self._session.request(
                method,
                url,
                headers=headers,
                json=payload,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                answer = _Answer(
                    http_status=response.status,
                    body=_json_object(await _read_capped(response)),
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                    replayed=response.headers.get("X-Idempotent-Replay") == "true",
                )
        except TimeoutError as error:
            reason = f"no answer from Cast within {self._seconds:g} s"
            raise _logged(operation, CastUnavailable(reason)) from error
        except aiohttp.ClientError as error:
            detail = _redact(str(error) or type(error).__name__, api_key)
            reason = f"could not reach Cast: {detail}"
            raise _logged(operation, CastUnavailable(reason)) from error

        if not 200 <= answer.http_status < 300:  # noqa: PLR2004
            raise _logged(operation, _error(answer, api_key))
        return answer


@attrs.frozen
class _Answer:
    """What came back from Cast, read once and bounded."""

    http_status: int
    body: Mapping[str, Any] | None
    """The JSON object answered, or None when the body was not one."""
    retry_after: float | None
    replayed: bool

    def text(self, key: str) -> str | None:
        """A non-empty string field of the body, if present."""
        value = self.body.get(key) if self.body is not None else None
        return value if isinstance(value, str) and value.strip() else None


def _receipt(answer: _Answer, request: SmsRequest) -> SendReceipt:
    body = answer.body or {}
    message_id = answer.text("message_id")
    if body.get("success") is not True or message_id is None:
        # A 2xx that says no with a final error_code is a refusal; any other
        # odd 2xx may or may not have queued the message. Retrying it with
        # the same idempotency key is safe, guessing "rejected" is not.
        code = answer.text("error_code")
        if body.get("success") is False and code and code not in _RETRYABLE_CODES:
            reason = _redact(answer.text("error") or code, request.api_key)
            raise _logged("send", CastRejected(code, reason, answer.http_status))
        reason = f"Cast answered HTTP {answer.http_status} without a message id"
        raise _logged("send", CastUnavailable(reason))

    parts = body.get("parts")
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        parts = count_parts(request.message).parts
        logger.warning(
            "cast.send_parts_missing",
            extra={"cast_message_id": message_id, "estimated_parts": parts},
        )
    return SendReceipt(
        cast_message_id=message_id,
        parts=parts,
        replayed=answer.replayed,
        sandbox=body.get("sandbox") is True,
    )


def _status_report(answer: _Answer, cast_message_id: str, api_key: str) -> StatusReport:
    raw = answer.text("status")
    if raw is None:
        reason = f"Cast answered HTTP {answer.http_status} without a status"
        raise _logged("status", CastUnavailable(reason))

    detail = answer.text("error_message") or answer.text("dlr_status")
    try:
        status = CastStatus(raw.strip().lower())
    except ValueError:
        status = CastStatus.PENDING
        detail = f"Cast reported an unknown status {raw[:40]!r}"
        logger.warning(
            "cast.status_unknown",
            extra={"cast_message_id": cast_message_id, "status": raw[:40]},
        )
    return StatusReport(
        cast_message_id, status, _redact(detail, api_key) if detail else None
    )


def _error(answer: _Answer, api_key: str) -> CastRejected | CastUnavailable:
    """Classify a non-2xx answer by error_code and HTTP status."""
    status = answer.http_status
    code = answer.text("error_code")
    text = answer.text("error")
    if text is not None:
        text = _redact(text, api_key)

    if (
        status in _RETRYABLE_HTTP
        or status >= 500  # noqa: PLR2004
        or code in _RETRYABLE_CODES
        or not 400 <= status < 500  # noqa: PLR2004  (a 1xx or 3xx is no refusal)
    ):
        said = f" {code}" if code else ""
        said += f": {text}" if text else ("" if answer.body else " (no JSON body)")
        return CastUnavailable(f"Cast answered HTTP {status}{said}", answer.retry_after)

    if code is None:
        return CastRejected(
            f"HTTP_{status}", text or f"Cast answered HTTP {status}", status
        )
    return CastRejected(code, text or code, status)


def _logged(operation: str, error: _E) -> _E:
    """Log a classified error at debug; the caller decides what matters."""
    fields: dict[str, object] = {"operation": operation}
    if isinstance(error, CastRejected):
        fields |= {"code": error.code, "http_status": error.http_status}
        logger.debug("cast.rejected", extra=fields)
    elif isinstance(error, CastUnavailable):
        fields |= {"reason": error.reason, "retry_after": error.retry_after}
        logger.debug("cast.unavailable", extra=fields)
    return error


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than any answer Cast gives."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(8192):
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(raw: bytes | None) -> Mapping[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now (delta or HTTP-date), bounded; else None."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _redact(text: str, api_key: str) -> str:
    """Foreign text, cut short and with the API key masked should it echo it."""
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return text[:_MAX_TEXT]
