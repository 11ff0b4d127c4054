"""The GhlApi contract: castghl's HTTP client against the local GHL sandbox.

The sandbox is written from HighLevel's documentation, not from the client,
and both are checked against HighLevel's OpenAPI file for the call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time

import pytest
from aiohttp import web

from castghl_adapters.ghl import GhlEndpoints, GhlHttpClient, GhlRoute
from castghl_app.sandbox.ghl import Fault
from castghl_core.errors import (
    GhlError,
    GhlNotReady,
    GhlRateLimited,
    GhlRejected,
    GhlUnauthorized,
    GhlUnavailable,
)
from castghl_core.jobs import DeliveryStatus

from ghl_openapi import OpenApiFile, open_api

LOCATION = "GKAWb4yu7A4LSc0skQ6g"
OTHER_LOCATION = "ve9EPM428h8vShlRW1KT"
TIMEOUT = 0.5
STATUS_PATH = "/conversations/messages/{messageId}/status"


def new_message_id() -> str:
    return secrets.token_hex(10)


@pytest.fixture
def sandbox(ghl_sandbox):
    return ghl_sandbox


@pytest.fixture
def client(sandbox, session):
    return GhlHttpClient(session, sandbox.base_url, timeout=TIMEOUT)


@pytest.fixture
def token(sandbox):
    return sandbox.issue_location_token(LOCATION)["access_token"]


@pytest.fixture
def message_id(sandbox):
    message_id = new_message_id()
    sandbox.register_message(message_id, LOCATION)
    return message_id


@pytest.fixture
def conversations():
    return open_api("apps/conversations.json")


# --- outcomes reach GHL as sent ---------------------------------------------


async def test_delivered_is_recorded_without_error(client, sandbox, token, message_id):
    """A delivered outcome reaches GHL as status `delivered` and no error."""
    await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    [update] = sandbox.statuses_for(message_id)
    assert (update.message_id, update.status, update.error) == (
        message_id,
        "delivered",
        None,
    )


async def test_failed_is_recorded_with_its_error(client, sandbox, token, message_id):
    """A failure reaches GHL with the code and message given, typed `sms`."""
    await client.update_message_status(
        token,
        message_id,
        DeliveryStatus.FAILED,
        ("CAST_INVALID_NUMBER", "The number is not a Philippine mobile"),
    )

    [update] = sandbox.statuses_for(message_id)
    assert update.status == "failed"
    assert update.error == {
        "code": "CAST_INVALID_NUMBER",
        "type": "sms",
        "message": "The number is not a Philippine mobile",
    }


async def test_empty_error_message_falls_back_to_code(
    client, sandbox, token, message_id
):
    """An empty failure message is replaced by the code, never sent empty."""
    await client.update_message_status(
        token, message_id, DeliveryStatus.FAILED, ("E42", "")
    )

    [update] = sandbox.statuses_for(message_id)
    assert update.error == {"code": "E42", "type": "sms", "message": "E42"}


# --- the race right after a delivery ----------------------------------------


async def test_update_inside_window_is_not_ready(client, sandbox, token):
    """Right after a delivery GHL answers 403, which is GhlNotReady."""
    sandbox.not_ready_for = 5.0
    message_id = new_message_id()
    sandbox.register_message(message_id, LOCATION)

    with pytest.raises(GhlNotReady) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert "No conversation provider found" in str(caught.value)
    assert sandbox.statuses_for(message_id) == []


async def test_update_after_window_succeeds(client, sandbox, token):
    """Once the window has passed, the same update is accepted."""
    sandbox.not_ready_for = 0.2
    message_id = new_message_id()
    sandbox.register_message(message_id, LOCATION)
    with pytest.raises(GhlNotReady):
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    await asyncio.sleep(0.25)
    await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert [u.status for u in sandbox.statuses_for(message_id)] == ["delivered"]


async def test_never_delivered_message_is_not_ready(client, token):
    """A message GHL never delivered gets the same 403: GhlNotReady."""
    with pytest.raises(GhlNotReady):
        await client.update_message_status(
            token, new_message_id(), DeliveryStatus.DELIVERED
        )


async def test_former_401_not_ready_is_not_ready(client, sandbox, token, message_id):
    """The older 401 naming no conversation provider is GhlNotReady too."""
    sandbox.inject(Fault(401, "No conversation provider found for this message"))

    with pytest.raises(GhlNotReady):
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)


# --- tokens -----------------------------------------------------------------


async def test_unknown_token_is_unauthorized(client, message_id):
    """A token GHL does not know is GhlUnauthorized, with GHL's traceId."""
    with pytest.raises(GhlUnauthorized) as caught:
        await client.update_message_status(
            "not-a-token", message_id, DeliveryStatus.DELIVERED
        )

    assert "Invalid token" in str(caught.value)
    assert caught.value.trace_id
    assert caught.value.trace_id in str(caught.value)


async def test_expired_token_is_unauthorized(client, sandbox, message_id):
    """An access token past its expiry is GhlUnauthorized."""
    expired = sandbox.issue_location_token(LOCATION, expires_in=0)["access_token"]

    with pytest.raises(GhlUnauthorized):
        await client.update_message_status(
            expired, message_id, DeliveryStatus.DELIVERED
        )


async def test_other_locations_token_is_unauthorized(client, sandbox, message_id):
    """A live token of another location cannot update this one's message."""
    other = sandbox.issue_location_token(OTHER_LOCATION)["access_token"]

    with pytest.raises(GhlUnauthorized):
        await client.update_message_status(other, message_id, DeliveryStatus.DELIVERED)


# --- rate limits, outages, refusals -----------------------------------------


async def test_429_is_rate_limited_with_retry_after(client, sandbox, token, message_id):
    """A 429 is GhlRateLimited carrying the Retry-After seconds."""
    sandbox.inject(Fault.rate_limited(retry_after=2.5))

    with pytest.raises(GhlRateLimited) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert caught.value.retry_after == 2.5


async def test_429_without_retry_after_waits_the_window(
    client, sandbox, token, message_id
):
    """Without Retry-After, the rate-limit window's length is the wait."""
    sandbox.inject(Fault.rate_limited(retry_after=None))

    with pytest.raises(GhlRateLimited) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert caught.value.retry_after == 10.0


async def test_500_is_unavailable(client, sandbox, token, message_id):
    """A 5xx is GhlUnavailable, and the update can be retried after it."""
    sandbox.inject(Fault.server_error())

    with pytest.raises(GhlUnavailable):
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)
    await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert len(sandbox.statuses_for(message_id)) == 1


async def test_hang_is_unavailable_within_the_timeout(
    client, sandbox, token, message_id
):
    """A GHL that does not answer is GhlUnavailable after about the timeout."""
    sandbox.inject(Fault.stall(30))
    started = time.monotonic()

    with pytest.raises(GhlUnavailable) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    elapsed = time.monotonic() - started
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1.0
    assert "timed out" in str(caught.value)


async def test_connection_refused_is_unavailable(session, token):
    """A GHL that cannot be reached is GhlUnavailable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = GhlHttpClient(session, f"http://127.0.0.1:{closed_port}", timeout=1.0)

    with pytest.raises(GhlUnavailable):
        await client.update_message_status(token, "m1", DeliveryStatus.DELIVERED)


async def test_422_is_rejected_with_ghls_messages(client, sandbox, token, message_id):
    """A 422 is GhlRejected with the status and GHL's list of messages."""
    sandbox.inject(Fault(422, ("status must be a string", "error must be an object")))

    with pytest.raises(GhlRejected) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert caught.value.http_status == 422
    assert "status must be a string; error must be an object" in str(caught.value)


async def test_wrong_version_is_rejected(sandbox, session, token, message_id):
    """A Version GHL does not accept for the call is refused (400, GhlRejected)."""
    wrong = GhlEndpoints(
        update_message_status=GhlRoute(
            "update_message_status",
            "PUT",
            "/conversations/messages/{message_id}/status",
            "2021-07-28",
        )
    )
    client = GhlHttpClient(session, sandbox.base_url, endpoints=wrong)

    with pytest.raises(GhlRejected) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert caught.value.http_status == 400


async def test_failure_log_carries_trace_id(client, sandbox, token, message_id, caplog):
    """A failed call is logged with GHL's traceId and the message id."""
    sandbox.inject(Fault.server_error())
    caplog.set_level(logging.DEBUG, logger="castghl_adapters")

    with pytest.raises(GhlUnavailable) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    [record] = [r for r in caplog.records if r.msg == "ghl.request_failed"]
    assert record.trace_id == caught.value.trace_id
    assert record.message_id == message_id
    assert record.http_status == 500


# --- secrets ----------------------------------------------------------------

FAILURES = {
    "403": Fault(403, "No conversation provider found for this message"),
    "401": Fault(401, "Invalid token: access token is invalid"),
    "429": Fault.rate_limited(),
    "500": Fault.server_error(),
    "422": Fault(422, ("status must be one of the following values",)),
    "hang": Fault.stall(30),
}


@pytest.mark.parametrize("fault", FAILURES.values(), ids=FAILURES.keys())
async def test_token_never_appears_in_errors_or_logs(
    client, sandbox, token, message_id, caplog, fault
):
    """Whatever goes wrong, the access token is in no exception and no log."""
    caplog.set_level(logging.DEBUG)
    sandbox.inject(fault)

    with pytest.raises(GhlError) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert_secret_absent(token, caught.value, caplog.records)


async def test_token_echoed_by_ghl_is_redacted(
    client, sandbox, token, message_id, caplog
):
    """A token GHL echoes back in its message is removed from error and log."""
    caplog.set_level(logging.DEBUG)
    sandbox.inject(Fault(400, f"Malformed token {token}"))

    with pytest.raises(GhlRejected) as caught:
        await client.update_message_status(token, message_id, DeliveryStatus.DELIVERED)

    assert "[redacted]" in str(caught.value)
    assert_secret_absent(token, caught.value, caplog.records)


def assert_secret_absent(secret, error, records):
    assert secret not in str(error)
    assert secret not in repr(error)
    assert secret not in repr(error.args)
    assert secret not in repr(vars(error))
    for record in records:
        assert secret not in record.getMessage()
        assert secret not in repr(vars(record))


# --- HighLevel's OpenAPI file -----------------------------------------------


@pytest.fixture
async def recorder(aiohttp_server):
    """A stand-in GHL that records each request and answers 200."""
    seen: list[dict[str, object]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": await request.json(),
            }
        )
        return web.json_response({"success": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")), seen


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (DeliveryStatus.DELIVERED, None),
        (DeliveryStatus.FAILED, ("CAST_REJECTED", "Sender ID not approved")),
    ],
)
async def test_client_request_matches_openapi(
    recorder, session, conversations: OpenApiFile, status, error
):
    """The request fits the documented path, Version and UpdateMessageStatusDto."""
    base_url, seen = recorder
    client = GhlHttpClient(session, base_url)

    await client.update_message_status("tkn", "ve9EPM428h8vShlRW1KT", status, error)

    [request] = seen
    operation = conversations.operation(STATUS_PATH, "put")
    [version] = [p for p in operation["parameters"] if p["name"] == "Version"]
    assert request["method"] == "PUT"
    assert request["path"] == "/conversations/messages/ve9EPM428h8vShlRW1KT/status"
    assert request["headers"]["Version"] in version["schema"]["enum"]
    assert request["headers"]["Authorization"] == "Bearer tkn"
    assert request["headers"]["Accept"] == "application/json"
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == conversations.schema("UpdateMessageStatusDto")
    assert conversations.problems(request["body"], schema) == []


async def test_sandbox_success_matches_openapi(
    sandbox, session, token, message_id, conversations
):
    """The sandbox's 200 body fits the documented SendMessageResponseDto."""
    answer = await put_status(sandbox, session, token, message_id, {"status": "read"})

    schema = conversations.response_schema(STATUS_PATH, "put", 200)
    assert answer.status == 200
    assert conversations.problems(await answer.json(), schema) == []


async def test_sandbox_401_matches_openapi(sandbox, session, message_id, conversations):
    """The sandbox's bad-token answer fits UnauthorizedDTO and has a traceId."""
    answer = await put_status(sandbox, session, "nope", message_id, {"status": "read"})

    body = await answer.json()
    assert answer.status == 401
    schema = conversations.response_schema(STATUS_PATH, "put", 401)
    assert conversations.problems(body, schema) == []
    assert body["message"] == "Invalid token: access token is invalid"
    assert body["traceId"]


async def test_sandbox_400_matches_openapi(
    sandbox, session, token, message_id, conversations
):
    """The sandbox's missing-Version answer fits BadRequestDTO, with a traceId."""
    answer = await put_status(
        sandbox, session, token, message_id, {"status": "read"}, version=None
    )

    body = await answer.json()
    assert answer.status == 400
    schema = conversations.response_schema(STATUS_PATH, "put", 400)
    assert conversations.problems(body, schema) == []
    assert body["traceId"]


BODIES = [
    {"status": "delivered"},
    {"status": "read"},
    {"status": "pending"},
    {"status": "failed", "error": {"code": "1", "type": "saas", "message": "x"}},
    {"status": "delivered", "unknownField": 1},
    {"status": "delivered", "emailMessageId": "e1", "recipients": ["a@b.c"]},
    {},
    {"status": "sent"},
    {"status": 1},
    {"status": None},
    {"status": "failed", "error": "boom"},
    {"status": "failed", "error": None},
    {"status": "failed", "error": {"code": "1", "message": "x"}},
    {"status": "failed", "error": {"code": 1, "type": "sms", "message": "x"}},
    {"status": "delivered", "recipients": "a@b.c"},
    {"status": "delivered", "recipients": [1]},
    {"status": "delivered", "emailMessageId": 5},
]


@pytest.mark.parametrize("body", BODIES)
async def test_sandbox_accepts_what_openapi_accepts(
    sandbox, session, token, message_id, conversations, body
):
    """The sandbox accepts a body exactly when UpdateMessageStatusDto does."""
    answer = await put_status(sandbox, session, token, message_id, body)

    conforms = (
        conversations.problems(body, conversations.schema("UpdateMessageStatusDto"))
        == []
    )
    assert (answer.status == 200) == conforms
    if not conforms:
        reply = await answer.json()
        assert answer.status == 422
        assert isinstance(reply["message"], list)


async def put_status(
    sandbox, session, token, message_id, body, *, version="2021-04-15"
):
    headers = {"Authorization": f"Bearer {token}"}
    if version is not None:
        headers["Version"] = version
    url = f"{sandbox.base_url}/conversations/messages/{message_id}/status"
    async with session.put(url, json=body, headers=headers) as answer:
        await answer.read()
        return answer
