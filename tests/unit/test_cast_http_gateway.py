"""CastHttpGateway on answers beyond the contract: odd, broken or hostile ones.

A scripted aiohttp server answers each request with whatever the test says,
so the client's reading of Cast can be checked where the sandbox is faithful.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from castghl_adapters.cast import CastHttpGateway
from castghl_adapters.cast.client import _retry_after
from castghl_core.errors import CastRejected, CastUnavailable
from castghl_core.gateway import CastStatus, SmsRequest

API_KEY = "cast_test_" + "c0ffee" * 4

Answer = Callable[[web.Request], web.StreamResponse]


class Script:
    """Answers every request with `answer`; keeps what arrived."""

    def __init__(self) -> None:
        self.answer: Answer = lambda _: web.json_response({})
        self.seen: list[web.Request] = []
        self.bodies: list[object] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        raw = await request.read()
        self.bodies.append(json.loads(raw) if raw else None)
        return self.answer(request)


@pytest.fixture
async def script(aiohttp_server):
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    script.server = await aiohttp_server(app)
    return script


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def gateway(session, script):
    return CastHttpGateway(
        session, str(script.server.make_url("/")), timeout=0.3, per_key_rate=1000
    )


def sms(key: str = "msg-1", message: str = "hello") -> SmsRequest:
    return SmsRequest(
        api_key=API_KEY,
        to="09171234567",
        message=message,
        sender_id=None,
        idempotency_key=key,
    )


def json_answer(body: object, status: int = 200, **headers: str) -> Answer:
    return lambda _: web.json_response(body, status=status, headers=headers)


# --- what is sent ---------------------------------------------------------


async def test_send_posts_json_with_key_and_idempotency_headers(gateway, script):
    """The send is a POST of {to, message} with X-API-Key and X-Idempotency-Key."""
    script.answer = json_answer({"success": True, "message_id": "CAST1", "parts": 1})

    await gateway.send(sms("ghl-123"))

    [request] = script.seen
    assert (request.method, request.path) == ("POST", "/api/v1/sms/send")
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["X-Idempotency-Key"] == "ghl-123"
    assert script.bodies == [{"to": "09171234567", "message": "hello"}]


async def test_base_url_with_a_trailing_slash_is_joined_once(session, script):
    """A base URL ending in / still reaches /api/v1/sms/send."""
    script.answer = json_answer({"success": True, "message_id": "CAST1", "parts": 1})
    gateway = CastHttpGateway(session, str(script.server.make_url("/")) + "/")

    await gateway.send(sms())

    assert script.seen[0].path == "/api/v1/sms/send"


def test_base_url_must_be_absolute_http(session):
    """A base URL without scheme or host is refused at construction."""
    with pytest.raises(ValueError, match="absolute"):
        CastHttpGateway(session, "api.cast.ph")


@pytest.mark.parametrize(
    ("api_key", "idempotency_key", "code"),
    [
        (API_KEY + "\r\nX-Evil: 1", "msg-1", "INVALID_API_KEY"),
        (API_KEY, "msg\n1", "INVALID_REQUEST"),
    ],
)
async def test_header_breaking_values_are_refused_unsent(
    gateway, script, api_key, idempotency_key, code
):
    """A key with control characters is refused before any request is made."""
    request = SmsRequest(
        api_key=api_key,
        to="09171234567",
        message="hi",
        sender_id=None,
        idempotency_key=idempotency_key,
    )

    with pytest.raises(CastRejected) as caught:
        await gateway.send(request)

    assert (caught.value.code, caught.value.http_status) == (code, 0)
    assert API_KEY not in str(caught.value)
    assert script.seen == []


# --- odd success answers --------------------------------------------------


async def test_missing_parts_are_estimated_from_the_text(gateway, script):
    """A receipt without `parts` counts them locally instead of failing a sent SMS."""
    script.answer = json_answer({"success": True, "message_id": "CAST1"})

    receipt = await gateway.send(sms(message="x" * 161))

    assert receipt.cast_message_id == "CAST1"
    assert receipt.parts == 2


async def test_success_without_message_id_is_unavailable(gateway, script):
    """A 2xx without a message id may or may not have sent: retry, never reject."""
    script.answer = json_answer({"success": True, "parts": 1})

    with pytest.raises(CastUnavailable, match="without a message id"):
        await gateway.send(sms())


async def test_non_json_success_is_unavailable(gateway, script):
    """A 2xx that is not JSON is ambiguous, so retryable."""
    script.answer = lambda _: web.Response(text="<html>OK</html>")

    with pytest.raises(CastUnavailable):
        await gateway.send(sms())


async def test_2xx_saying_no_with_a_final_code_is_rejected(gateway, script):
    """A 2xx with success false and a final error_code is Cast's refusal."""
    script.answer = json_answer(
        {"success": False, "error": "Sender ID not approved", "error_code": "X_SENDER"}
    )

    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms())

    assert (caught.value.code, caught.value.reason) == (
        "X_SENDER",
        "Sender ID not approved",
    )
    assert caught.value.http_status == 200


async def test_2xx_saying_no_without_a_code_is_unavailable(gateway, script):
    """A 2xx with success false but no error_code is ambiguous, so retryable."""
    script.answer = json_answer({"success": False, "error": "hmm"})

    with pytest.raises(CastUnavailable):
        await gateway.send(sms())


# --- error answers --------------------------------------------------------


async def test_html_bad_gateway_is_unavailable(gateway, script):
    """A proxy's HTML 502 is retryable and says it had no JSON body."""
    script.answer = lambda _: web.Response(status=502, text="<h1>Bad Gateway</h1>")

    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert caught.value.reason == "Cast answered HTTP 502 (no JSON body)"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_REQUEST"),
        (402, "CREDIT_LIMIT_REACHED"),
        (403, "API_KEY_REVOKED"),
        (403, "API_KEY_EXPIRED"),
        (403, "USER_INACTIVE"),
        (403, "IP_NOT_WHITELISTED"),
        (403, "CHANNEL_NOT_ALLOWED"),
    ],
)
async def test_final_error_codes_are_rejected(gateway, script, status, code):
    """Every final error_code in Cast's table is a CastRejected with that code."""
    script.answer = json_answer(
        {"success": False, "error": "no", "error_code": code}, status=status
    )

    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms())

    assert (caught.value.code, caught.value.http_status) == (code, status)


async def test_4xx_without_a_code_is_rejected_with_the_status(gateway, script):
    """A 4xx without error_code is refused as HTTP_<status>."""
    script.answer = lambda _: web.Response(status=404, text="Not Found")

    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms())

    assert caught.value.code == "HTTP_404"
    assert caught.value.http_status == 404


async def test_retryable_code_on_a_4xx_is_unavailable(gateway, script):
    """A retryable error_code wins over a 4xx status."""
    script.answer = json_answer(
        {"success": False, "error": "slow down", "error_code": "RATE_LIMIT_EXCEEDED"},
        status=400,
    )

    with pytest.raises(CastUnavailable):
        await gateway.send(sms())


async def test_redirects_are_not_followed(gateway, script):
    """A redirect is not followed, so the API key never travels elsewhere."""
    script.answer = lambda _: web.Response(
        status=307, headers={"Location": "/elsewhere"}
    )

    with pytest.raises(CastUnavailable, match="HTTP 307"):
        await gateway.send(sms())

    assert [request.path for request in script.seen] == ["/api/v1/sms/send"]


async def test_oversized_answer_is_not_read_as_json(gateway, script):
    """An answer far larger than Cast's is not parsed, and a 5xx stays retryable."""
    padding = "x" * 100_000
    script.answer = json_answer({"error_code": "INVALID_API_KEY", "p": padding}, 503)

    with pytest.raises(CastUnavailable, match="no JSON body"):
        await gateway.send(sms())


async def test_error_text_is_cut_short(gateway, script):
    """Cast's error text is bounded in the raised error."""
    script.answer = json_answer(
        {"success": False, "error": "e" * 5000, "error_code": "INVALID_REQUEST"}, 400
    )

    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms())

    assert len(caught.value.reason) == 300


# --- Retry-After ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_are_bounded(header, seconds):
    """Retry-After in seconds is read, clamped to [0, 3600]; nonsense is None."""
    assert _retry_after(header) == seconds


def test_retry_after_http_date_is_seconds_from_now():
    """Retry-After as an HTTP-date is the number of seconds until it."""
    when = datetime.now(UTC) + timedelta(seconds=30)

    seconds = _retry_after(format_datetime(when, usegmt=True))

    assert seconds is not None
    assert 28 <= seconds <= 30


async def test_retry_after_is_read_from_a_503(gateway, script):
    """Retry-After on a 503 reaches the CastUnavailable."""
    script.answer = json_answer(
        {"success": False, "error": "down", "error_code": "SERVICE_UNAVAILABLE"},
        status=503,
        **{"Retry-After": "12"},
    )

    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert caught.value.retry_after == 12.0


# --- status -----------------------------------------------------------------


async def test_status_reads_case_insensitively_and_prefers_the_error(gateway, script):
    """Status strings are matched without case; error_message beats dlr_status."""
    script.answer = json_answer(
        {
            "message_id": "CAST1",
            "status": "UNDELIVERED",
            "dlr_status": "REJECTD",
            "error_message": "Blocked by carrier",
        }
    )

    report = await gateway.status(API_KEY, "CAST1")

    assert report.status is CastStatus.UNDELIVERED
    assert report.detail == "Blocked by carrier"
    assert script.seen[0].headers["X-API-Key"] == API_KEY


async def test_unknown_status_is_pending_with_the_raw_value(gateway, script):
    """A status the client does not know keeps the message waiting, not final."""
    script.answer = json_answer({"message_id": "CAST1", "status": "queued_at_smsc"})

    report = await gateway.status(API_KEY, "CAST1")

    assert report.status is CastStatus.PENDING
    assert report.detail == "Cast reported an unknown status 'queued_at_smsc'"


async def test_status_answer_without_status_is_unavailable(gateway, script):
    """A status answer without a status is retryable."""
    script.answer = json_answer({"message_id": "CAST1"})

    with pytest.raises(CastUnavailable, match="without a status"):
        await gateway.status(API_KEY, "CAST1")


# --- pacing -----------------------------------------------------------------


async def test_sends_are_paced_per_api_key(session, script):
    """Sends with one key are spaced 1/rate apart; another key does not wait."""
    script.answer = json_answer({"success": True, "message_id": "CAST1", "parts": 1})
    gateway = CastHttpGateway(
        session, str(script.server.make_url("/")), per_key_rate=20
    )
    other = SmsRequest(
        api_key="cast_test_other",
        to="09171234567",
        message="hi",
        sender_id=None,
        idempotency_key="o",
    )

    started = time.monotonic()
    await asyncio.gather(*(gateway.send(sms(str(n))) for n in range(5)))
    paced = time.monotonic() - started
    started = time.monotonic()
    await gateway.send(other)
    unpaced = time.monotonic() - started

    assert paced >= 4 * 0.05 - 0.01
    assert unpaced < 0.05


async def test_a_saturated_key_is_unavailable_after_the_timeout(session, script):
    """Waiting for a key's turn is bounded by the timeout, then retryable."""
    script.answer = json_answer({"success": True, "message_id": "CAST1", "parts": 1})
    gateway = CastHttpGateway(
        session, str(script.server.make_url("/")), timeout=0.2, per_key_rate=1
    )
    await gateway.send(sms("1"))

    with pytest.raises(CastUnavailable, match="queued") as caught:
        await gateway.send(sms("2"))

    assert caught.value.retry_after == 1.0
    assert len(script.seen) == 1
