"""Contract of the SmsGateway port, run against every adapter of it.

Each adapter talks to a CastSandbox on 127.0.0.1, which stands in for Cast and
lets the tests force Cast's errors, slow answers and delivery outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest

from castghl_adapters.cast import CastHttpGateway
from castghl_app.sandbox.cast import CastSandbox, Fault
from castghl_core.errors import CastRejected, CastUnavailable
from castghl_core.gateway import CastStatus, SmsRequest
from castghl_core.ports import SmsGateway

SANDBOX_KEY = "cast_test_" + "5eC7e7" * 8
LIVE_KEY = "cast_" + "0123456789abcdef" * 4
OTHER_KEY = "cast_test_" + "0ther" * 6
CLIENT_TIMEOUT = 0.3
STATUS_DELAY = 0.1


@pytest.fixture
async def sandbox():
    sandbox = CastSandbox(status_delay=STATUS_DELAY, accepted_keys=[LIVE_KEY])
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


def _http_gateway(session: aiohttp.ClientSession, base_url: str) -> SmsGateway:
    return CastHttpGateway(session, base_url, timeout=CLIENT_TIMEOUT, per_key_rate=1000)


# Every SmsGateway adapter that speaks to Cast, built from a session and a URL.
ADAPTERS = {"http": _http_gateway}


@pytest.fixture(params=sorted(ADAPTERS))
def make_gateway(request, session):
    def make(base_url: str) -> SmsGateway:
        return ADAPTERS[request.param](session, base_url)

    return make


@pytest.fixture
def gateway(make_gateway, sandbox) -> SmsGateway:
    return make_gateway(sandbox.base_url)


def sms(
    key: str = "msg-1",
    *,
    api_key: str = SANDBOX_KEY,
    to: str = "09171234567",
    message: str = "Your table for two is ready.",
    sender_id: str | None = "CASTGHL",
) -> SmsRequest:
    return SmsRequest(
        api_key=api_key,
        to=to,
        message=message,
        sender_id=sender_id,
        idempotency_key=key,
    )


def closed_port_url() -> str:
    """A loopback URL where nothing listens (a port just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_key_hidden(error: BaseException, api_key: str = SANDBOX_KEY) -> None:
    for shown in (str(error), repr(error), repr(error.args), repr(vars(error))):
        assert api_key not in shown


# --- sending ----------------------------------------------------------------


async def test_send_returns_cast_message_id_and_parts(gateway, sandbox):
    """A send is queued once and answered with Cast's message id and part count."""
    receipt = await gateway.send(sms(message="a" * 200))

    assert receipt.cast_message_id.startswith("SANDBOX_")
    assert receipt.parts == 2
    assert receipt.replayed is False
    assert receipt.sandbox is True
    [sent] = sandbox.sent
    assert sent.cast_message_id == receipt.cast_message_id
    assert (sent.to, sent.message, sent.sender_id) == (
        "09171234567",
        "a" * 200,
        "CASTGHL",
    )
    assert sent.idempotency_key == "msg-1"


async def test_send_with_a_live_key_is_not_marked_sandbox(gateway, sandbox):
    """A live key's send carries a CAST… id and is not flagged as a sandbox mock."""
    receipt = await gateway.send(sms(api_key=LIVE_KEY))

    assert receipt.cast_message_id.startswith("CAST")
    assert receipt.sandbox is False
    assert sandbox.sent[0].api_key_hint == LIVE_KEY[-4:]


async def test_send_without_sender_id_leaves_it_to_cast(gateway, sandbox):
    """No sender ID means none is sent, so Cast uses the account's default."""
    await gateway.send(sms(sender_id=None))

    assert sandbox.sent[0].sender_id is None


async def test_repeated_idempotency_key_is_replayed_not_sent_again(gateway, sandbox):
    """A repeat with the same idempotency key gets the first answer, sends nothing."""
    first = await gateway.send(sms("msg-1"))
    again = await gateway.send(sms("msg-1"))

    assert again.replayed is True
    assert again.cast_message_id == first.cast_message_id
    assert again.parts == first.parts
    assert len(sandbox.sent) == 1
    assert len(sandbox.requests) == 2


async def test_idempotency_keys_are_scoped_per_api_key(gateway, sandbox):
    """The same idempotency key under another API key is another message."""
    first = await gateway.send(sms("msg-1"))
    other = await gateway.send(sms("msg-1", api_key=OTHER_KEY))

    assert other.replayed is False
    assert other.cast_message_id != first.cast_message_id
    assert len(sandbox.sent) == 2


# --- refusals: final ------------------------------------------------------


async def test_unknown_api_key_is_rejected(gateway, sandbox):
    """A key Cast does not know is a final INVALID_API_KEY refusal."""
    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms(api_key="cast_" + "f" * 64))

    assert caught.value.code == "INVALID_API_KEY"
    assert caught.value.http_status == 401
    assert sandbox.sent == []


async def test_invalid_number_is_rejected_as_validation_error(gateway, sandbox):
    """A `to` Cast cannot take is a final VALIDATION_ERROR with Cast's text."""
    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms(to="12"))

    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.http_status == 400
    assert "to must be" in caught.value.reason
    assert sandbox.sent == []


async def test_too_long_message_is_rejected_as_validation_error(gateway):
    """A message over Cast's 10,000 characters is a final VALIDATION_ERROR."""
    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms(message="a" * 10_001))

    assert caught.value.code == "VALIDATION_ERROR"


async def test_insufficient_credits_is_rejected(gateway, sandbox):
    """An account out of credit is a final INSUFFICIENT_CREDITS refusal."""
    sandbox.inject(Fault.insufficient_credits())

    with pytest.raises(CastRejected) as caught:
        await gateway.send(sms())

    assert caught.value.code == "INSUFFICIENT_CREDITS"
    assert caught.value.http_status == 402
    assert caught.value.reason == "Insufficient credits"


# --- refusals: retry later ------------------------------------------------


async def test_rate_limit_is_unavailable_with_retry_after(gateway, sandbox):
    """Cast's 429 is retryable after the Retry-After it gives."""
    sandbox.inject(Fault.rate_limited(retry_after=2))

    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert caught.value.retry_after == 2.0
    assert "RATE_LIMIT_EXCEEDED" in caught.value.reason
    assert sandbox.sent == []


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "INTERNAL_ERROR"), (502, "PROVIDER_ERROR"), (503, "SERVICE_UNAVAILABLE")],
)
async def test_server_errors_are_unavailable(gateway, sandbox, status, code):
    """Cast's 500, 502 and 503 are retryable, and say which they were."""
    sandbox.inject(Fault.server_error(status))

    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert f"HTTP {status} {code}" in caught.value.reason
    assert caught.value.retry_after is None


async def test_retry_after_a_server_error_sends_once(gateway, sandbox):
    """Retrying with the same idempotency key after a 5xx sends exactly once."""
    sandbox.inject(Fault.server_error(502))
    with pytest.raises(CastUnavailable):
        await gateway.send(sms("msg-7"))

    receipt = await gateway.send(sms("msg-7"))

    assert receipt.replayed is False
    assert [sent.cast_message_id for sent in sandbox.sent] == [receipt.cast_message_id]
    assert len(sandbox.requests) == 2


async def test_no_answer_within_the_timeout_is_unavailable(gateway, sandbox):
    """A Cast that does not answer in time gives CastUnavailable, about on time."""
    sandbox.inject(Fault.timeout(5.0))

    started = time.monotonic()
    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert time.monotonic() - started < CLIENT_TIMEOUT + 0.5
    assert "within" in caught.value.reason


async def test_retry_after_a_late_send_is_replayed(gateway, sandbox):
    """A send that timed out but did happen is replayed on retry, never sent twice."""
    sandbox.inject(Fault.timeout(CLIENT_TIMEOUT + 0.1))
    with pytest.raises(CastUnavailable):
        await gateway.send(sms("msg-9"))
    await asyncio.sleep(0.3)  # the slow send lands meanwhile

    receipt = await gateway.send(sms("msg-9"))

    assert receipt.replayed is True
    assert [sent.cast_message_id for sent in sandbox.sent] == [receipt.cast_message_id]


async def test_refused_connection_is_unavailable(make_gateway):
    """Nothing listening at Cast's address is retryable."""
    gateway = make_gateway(closed_port_url())

    with pytest.raises(CastUnavailable) as caught:
        await gateway.send(sms())

    assert "could not reach Cast" in caught.value.reason


# --- delivery status ------------------------------------------------------


async def test_status_is_sent_then_delivered(gateway):
    """A new message reads `sent`, then `delivered` with the carrier's DELIVRD."""
    receipt = await gateway.send(sms())

    early = await gateway.status(SANDBOX_KEY, receipt.cast_message_id)
    await asyncio.sleep(STATUS_DELAY + 0.05)
    late = await gateway.status(SANDBOX_KEY, receipt.cast_message_id)

    assert early.status is CastStatus.SENT
    assert not early.status.is_final
    assert early.cast_message_id == receipt.cast_message_id
    assert late.status is CastStatus.DELIVERED
    assert late.detail == "DELIVRD"


async def test_status_of_an_undeliverable_number_is_undelivered(gateway, sandbox):
    """A number the carrier cannot reach ends `undelivered`, with Cast's reason."""
    sandbox.undeliverable("+639171234567")
    receipt = await gateway.send(sms(to="09171234567"))
    await asyncio.sleep(STATUS_DELAY + 0.05)

    report = await gateway.status(SANDBOX_KEY, receipt.cast_message_id)

    assert report.status is CastStatus.UNDELIVERED
    assert report.status.is_final
    assert report.detail == "Carrier could not deliver to the handset"


async def test_status_of_an_unknown_message_is_not_found(gateway):
    """An id Cast never gave out is a final NOT_FOUND."""
    with pytest.raises(CastRejected) as caught:
        await gateway.status(SANDBOX_KEY, "SANDBOX_0000000000000000")

    assert caught.value.code == "NOT_FOUND"
    assert caught.value.http_status == 404


async def test_status_id_is_one_path_segment(gateway):
    """A message id with a slash or `..` cannot reach another endpoint."""
    for odd_id in ("a/b", "../../sms/send", "?x=1"):
        with pytest.raises(CastRejected) as caught:
            await gateway.status(SANDBOX_KEY, odd_id)
        assert caught.value.code == "NOT_FOUND"


async def test_status_of_another_keys_message_is_not_found(gateway):
    """A message is visible only to the API key that sent it."""
    receipt = await gateway.send(sms())

    with pytest.raises(CastRejected) as caught:
        await gateway.status(OTHER_KEY, receipt.cast_message_id)

    assert caught.value.code == "NOT_FOUND"


async def test_status_lookup_when_cast_is_down_is_unavailable(make_gateway):
    """A status lookup that cannot reach Cast is retryable."""
    gateway = make_gateway(closed_port_url())

    with pytest.raises(CastUnavailable):
        await gateway.status(SANDBOX_KEY, "SANDBOX_0000000000000000")


# --- secrets ----------------------------------------------------------------


async def test_api_key_never_appears_in_errors_or_logs(gateway, sandbox, caplog):
    """No error message and no log line shows the API key, even if Cast echoes it."""
    caplog.set_level(logging.DEBUG)
    sandbox.inject(Fault(401, "INVALID_API_KEY", f"Key {SANDBOX_KEY} is revoked"))
    sandbox.inject(Fault.rate_limited(1))
    sandbox.inject(Fault.server_error(503))
    sandbox.inject(Fault.timeout(1.0))
    errors: list[Exception] = []

    for _ in range(4):
        with pytest.raises((CastRejected, CastUnavailable)) as caught:
            await gateway.send(sms())
        errors.append(caught.value)
    receipt = await gateway.send(sms())
    await gateway.status(SANDBOX_KEY, receipt.cast_message_id)
    with pytest.raises(CastRejected) as caught:
        await gateway.status(SANDBOX_KEY, "SANDBOX_FFFFFFFFFFFFFFFF")
    errors.append(caught.value)

    assert isinstance(errors[0], CastRejected)
    assert errors[0].reason == "Key [redacted] is revoked"
    for error in errors:
        assert_key_hidden(error)
    assert SANDBOX_KEY not in caplog.text
    for record in caplog.records:
        assert SANDBOX_KEY not in repr(vars(record))
