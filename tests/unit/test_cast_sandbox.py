"""The Cast sandbox keeps to the Cast reference: parts, validation, control surface."""

from __future__ import annotations

import ast
import asyncio
import inspect

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import castghl_app.sandbox.cast as sandbox_module
from castghl_app.sandbox.cast import CastSandbox, Fault, count_sms_parts, local_digits
from castghl_core.sms_parts import count_parts

SANDBOX_KEY = "cast_test_" + "ab12" * 8
LIVE_KEY = "cast_" + "9f" * 32


@pytest.fixture
def sandbox():
    return CastSandbox(status_delay=0.05, accepted_keys=[LIVE_KEY])


@pytest.fixture
async def client(aiohttp_client, sandbox):
    return await aiohttp_client(sandbox.make_app())


async def send(client, body=None, *, key=SANDBOX_KEY, idempotency_key=None):
    headers = {"X-API-Key": key} if key else {}
    if idempotency_key is not None:
        headers["X-Idempotency-Key"] = idempotency_key
    body = {"to": "09171234567", "message": "hi"} if body is None else body
    response = await client.post("/api/v1/sms/send", json=body, headers=headers)
    return response, await response.json()


# --- parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters cost two septets
        ("€" * 81, 2),
        ("a" * 158 + "€", 1),
        ("a" * 159 + "€", 2),
        ("a" * 152 + "€" + "a" * 152, 3),  # an escape pair is never split
        ("ж" * 70, 1),  # outside GSM-7: UCS-2
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("a" * 69 + "á", 1),  # one non-GSM character switches the whole text
        ("a" * 70 + "á", 2),
        ("😀" * 35, 1),  # an emoji is two UTF-16 units
        ("😀" * 36, 2),
    ],
)
def test_parts_follow_gsm7_and_ucs2_limits(text, parts):
    """Parts are 160/153 GSM-7 septets or 70/67 UCS-2 units."""
    assert count_sms_parts(text) == parts


@given(
    st.text(max_size=400)
    | st.text(alphabet="a €^{}\\[~]|\f", min_size=150, max_size=400)
    | st.text(alphabet="aж😀", min_size=60, max_size=200)
)
def test_parts_agree_with_the_core_count(text):
    """The sandbox's count, written apart, agrees with the core's count."""
    assert count_sms_parts(text) == count_parts(text).parts


# --- numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["09171234567", "+639171234567", "639171234567", "9171234567"]
)
def test_philippine_forms_share_local_digits(number):
    """Local, E.164 and bare forms of one mobile compare equal."""
    assert local_digits(number) == "09171234567"


@pytest.mark.parametrize(
    "to", ["09171234567", "+639171234567", "+63(917)123-4567", "1234567"]
)
async def test_valid_to_is_accepted(client, to):
    """7-20 characters of digits and + ( ) - are a valid `to`."""
    response, _ = await send(client, {"to": to, "message": "hi"})

    assert response.status == 200


@pytest.mark.parametrize(
    "to", ["123456", "1" * 21, "0917 123 4567", "0917a234567", 9171234567, None]
)
async def test_invalid_to_is_a_validation_error(client, sandbox, to):
    """Anything else is a 400 VALIDATION_ERROR, and nothing is sent."""
    response, body = await send(client, {"to": to, "message": "hi"})

    assert response.status == 400
    assert body["success"] is False
    assert body["error_code"] == "VALIDATION_ERROR"
    assert body["error"].startswith("to must be")
    assert sandbox.sent == []


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"message": "a" * 10_000}, True),
        ({"message": "a" * 10_001}, False),
        ({"message": "  "}, False),
        ({"message": "hi", "sender_id": "S" * 20}, True),
        ({"message": "hi", "sender_id": "S" * 21}, False),
        ({"message": "hi", "sender_id": None}, True),
    ],
)
async def test_message_and_sender_id_limits(client, body, accepted):
    """Messages are 1-10,000 characters, sender IDs at most 20."""
    response, answer = await send(client, {"to": "09171234567", **body})

    assert response.status == (200 if accepted else 400)
    assert answer["success"] is accepted


async def test_body_that_is_not_a_json_object_is_invalid(client):
    """A non-object body is a 400 INVALID_REQUEST."""
    response, body = await send(client, ["to", "message"])

    assert response.status == 400
    assert body["error_code"] == "INVALID_REQUEST"


# --- keys and ids -----------------------------------------------------------


@pytest.mark.parametrize("key", [None, "nope", "cast_" + "9f" * 31, "cast_test_"])
async def test_missing_or_unknown_key_is_refused(client, sandbox, key):
    """No key, or one neither sandbox-shaped nor accepted, is 401 INVALID_API_KEY."""
    response, body = await send(client, key=key)

    assert response.status == 401
    assert body == {
        "success": False,
        "error": "Invalid or missing API key",
        "error_code": "INVALID_API_KEY",
    }
    assert sandbox.sent == []


async def test_sandbox_key_gets_a_sandbox_mock(client, sandbox):
    """A cast_test_ key's send is flagged sandbox with a SANDBOX_ + 16 hex id."""
    response, body = await send(client, {"to": "09171234567", "message": "x" * 161})

    assert response.status == 200
    assert body["success"] is True
    assert body["sandbox"] is True
    assert body["parts"] == 2
    assert body["message_id"].startswith("SANDBOX_")
    assert len(body["message_id"]) == len("SANDBOX_") + 16


async def test_accepted_live_key_gets_a_cast_id(client, sandbox):
    """An accepted live key's send has a CAST… id and no sandbox flag."""
    _, body = await send(client, key=LIVE_KEY)

    assert body["message_id"].startswith("CAST")
    assert "sandbox" not in body
    assert sandbox.sent[0].api_key_hint == LIVE_KEY[-4:]


def test_accepted_keys_must_look_live():
    """accepted_keys that are not cast_ + 64 hex are refused at construction."""
    with pytest.raises(ValueError, match="64 hex"):
        CastSandbox(accepted_keys=["cast_short"])


async def test_legacy_path_is_an_alias(client, sandbox):
    """The older /api/sms/send reaches the same handler."""
    response = await client.post(
        "/api/sms/send",
        json={"to": "09171234567", "message": "hi"},
        headers={"X-API-Key": SANDBOX_KEY},
    )

    assert response.status == 200
    assert len(sandbox.sent) == 1


async def test_unknown_path_is_a_json_not_found(client):
    """Paths Cast does not serve answer 404 NOT_FOUND in Cast's error shape."""
    response = await client.get("/api/v1/nothing")

    assert response.status == 404
    assert (await response.json())["error_code"] == "NOT_FOUND"


# --- idempotency -----------------------------------------------------------


async def test_repeat_is_replayed_and_counted_as_a_request(client, sandbox):
    """A repeated idempotency key replays the first answer and records no send."""
    first, first_body = await send(client, idempotency_key="k1")
    again, again_body = await send(client, idempotency_key="k1")

    assert "X-Idempotent-Replay" not in first.headers
    assert again.headers["X-Idempotent-Replay"] == "true"
    assert again_body == first_body
    assert len(sandbox.sent) == 1
    assert [attempt.idempotency_key for attempt in sandbox.requests] == ["k1", "k1"]


async def test_too_long_idempotency_key_is_a_validation_error(client):
    """Idempotency keys are at most 255 characters."""
    response, body = await send(client, idempotency_key="k" * 256)

    assert response.status == 400
    assert body["error_code"] == "VALIDATION_ERROR"


# --- faults -------------------------------------------------------------------


async def test_faults_apply_in_order_then_stop(client, sandbox):
    """Injected faults answer the next requests first in, first out."""
    sandbox.inject(Fault.server_error(502), times=2)
    sandbox.inject(Fault.rate_limited(3))

    answers = [await send(client) for _ in range(4)]

    assert [response.status for response, _ in answers] == [502, 502, 429, 200]
    assert answers[0][1]["error_code"] == "PROVIDER_ERROR"
    assert answers[2][0].headers["Retry-After"] == "3"
    assert len(sandbox.sent) == 1
    assert len(sandbox.requests) == 4


async def test_faults_come_before_authentication(client, sandbox):
    """A fault answers even a request with a bad key, as a failing gateway would."""
    sandbox.inject(Fault.insufficient_credits())

    response, body = await send(client, key="bad")

    assert response.status == 402
    assert body["error_code"] == "INSUFFICIENT_CREDITS"


async def test_timeout_fault_answers_late_but_sends(client, sandbox):
    """Fault.timeout delays the answer; the send itself still happens."""
    sandbox.inject(Fault.timeout(0.1))

    started = asyncio.get_running_loop().time()
    response, _ = await send(client)

    assert asyncio.get_running_loop().time() - started >= 0.1
    assert response.status == 200
    assert len(sandbox.sent) == 1


async def test_stop_cuts_hanging_requests_short():
    """Stopping the sandbox ends a hang at once, with no send recorded."""
    sandbox = CastSandbox()
    base_url = await sandbox.start()
    sandbox.inject(Fault.timeout(30))

    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(
            session.post(
                f"{base_url}/api/v1/sms/send",
                json={"to": "09171234567", "message": "hi"},
                headers={"X-API-Key": SANDBOX_KEY},
            )
        )
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        await sandbox.stop()
        stopped_in = asyncio.get_running_loop().time() - started
        pending.cancel()

    assert stopped_in < 2
    assert sandbox.sent == []
    assert sandbox.base_url is None


async def test_start_listens_on_loopback_only():
    """The sandbox refuses to listen anywhere but a loopback address."""
    with pytest.raises(ValueError, match="loopback"):
        await CastSandbox().start(host="0.0.0.0")  # noqa: S104


def test_inject_is_bounded():
    """No more than a thousand faults can wait at once."""
    sandbox = CastSandbox()

    with pytest.raises(ValueError, match="1000"):
        sandbox.inject(Fault.server_error(), times=1001)


# --- status -------------------------------------------------------------------


async def test_status_moves_from_sent_to_delivered(client, sandbox):
    """A message reads sent, then delivered with DELIVRD after status_delay."""
    _, sent = await send(client)
    path = f"/api/v1/sms/status/{sent['message_id']}"
    headers = {"X-API-Key": SANDBOX_KEY}

    early = await (await client.get(path, headers=headers)).json()
    await asyncio.sleep(0.06)
    late = await (await client.get(path, headers=headers)).json()

    assert early["status"] == "sent"
    assert early["sent_at"].endswith("Z")
    assert "dlr_status" not in early
    assert late["status"] == "delivered"
    assert late["dlr_status"] == "DELIVRD"
    assert late["message_id"] == sent["message_id"]
    assert "delivered_at" in late


async def test_undeliverable_number_matches_in_any_form(client, sandbox):
    """A number marked in one form is undeliverable when sent in another."""
    sandbox.undeliverable("0917-123-4567")
    _, sent = await send(client, {"to": "+639171234567", "message": "hi"})
    await asyncio.sleep(0.06)

    response = await client.get(
        f"/api/v1/sms/status/{sent['message_id']}", headers={"X-API-Key": SANDBOX_KEY}
    )
    body = await response.json()

    assert body["status"] == "undelivered"
    assert body["dlr_status"] == "UNDELIV"
    assert body["error_message"]
    assert "delivered_at" not in body


async def test_status_needs_a_key(client):
    """A status lookup without a key is 401."""
    response = await client.get("/api/v1/sms/status/SANDBOX_0")

    assert response.status == 401


# --- the HTTP control surface ------------------------------------------------


async def test_faults_can_be_injected_over_http(client):
    """POST /_sandbox/faults queues a fault for the next sends."""
    response = await client.post(
        "/_sandbox/faults",
        json={"status": 503, "error_code": "SERVICE_UNAVAILABLE", "times": 2},
    )
    answers = [await send(client) for _ in range(3)]

    assert (await response.json())["queued"] == 2
    assert [answer.status for answer, _ in answers] == [503, 503, 200]


@pytest.mark.parametrize(
    "body",
    [
        {"status": "x"},
        {"status": 600},
        {"status": 500, "error": 7},
        {"status": 500, "times": 0},
        {"status": 500, "hang": "long"},
        {"hang": 1},
        [1],
    ],
)
async def test_malformed_fault_is_a_validation_error(client, body):
    """A fault the sandbox cannot build is refused with 400."""
    response = await client.post("/_sandbox/faults", json=body)

    assert response.status == 400


async def test_sent_reset_and_undeliverable_over_http(client, sandbox):
    """GET /_sandbox/sent lists sends without keys; reset forgets them."""
    marked = await client.post("/_sandbox/undeliverable", json={"number": "0917"})
    await send(client, {"to": "09171234567", "message": "hi", "sender_id": "SHOP"})

    listed = await (await client.get("/_sandbox/sent")).json()
    await client.post("/_sandbox/reset")
    after = await (await client.get("/_sandbox/sent")).json()

    assert marked.status == 200
    [sms] = listed["sent"]
    assert sms["to"] == "09171234567"
    assert sms["sender_id"] == "SHOP"
    assert sms["api_key_hint"] == SANDBOX_KEY[-4:]
    assert SANDBOX_KEY not in str(listed)
    assert after["sent"] == []
    assert sandbox.requests == []


def test_sandbox_imports_nothing_of_castghl():
    """The sandbox stands apart from the code it checks: no castghl imports."""
    tree = ast.parse(inspect.getsource(sandbox_module))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }

    assert not any(name.startswith("castghl") for name in imported)
