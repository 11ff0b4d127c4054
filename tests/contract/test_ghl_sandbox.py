"""The GHL sandbox itself: signed deliveries, token answers, control routes.

Deliveries go to a small receiver guarded by castghl's GhlSignatureVerifier,
so the sandbox's signing and the verifier are checked against each other.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

from castghl_adapters.ghl.signatures import (
    GhlSignatureVerifier,
    load_ed25519_public_key,
    load_rsa_public_key,
)
from castghl_app.sandbox import ghl as sandbox_module
from castghl_app.sandbox import ghl_oauth as sandbox_oauth_module
from castghl_app.sandbox.ghl import Fault, GhlSandbox
from castghl_core.errors import SignatureRejected

from ghl_openapi import open_api

LOCATION = "GKAWb4yu7A4LSc0skQ6g"


@pytest.fixture
def sandbox(ghl_sandbox):
    return ghl_sandbox


def receiver_app(verifier: GhlSignatureVerifier, seen: list[bytes]) -> web.Application:
    """A Delivery URL that verifies the raw body and records what it got."""

    async def delivery(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verifier.verify(body, request.headers)
        except SignatureRejected as rejected:
            return web.json_response({"error": str(rejected)}, status=401)
        seen.append(body)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/ghl/delivery", delivery)
    return app


@pytest.fixture
async def receiver(aiohttp_server, sandbox):
    """(delivery URL, bodies accepted) for a receiver trusting the sandbox."""
    seen: list[bytes] = []
    verifier = GhlSignatureVerifier([load_ed25519_public_key(sandbox.public_key_pem)])
    server = await aiohttp_server(receiver_app(verifier, seen), host="127.0.0.1")
    return str(server.make_url("/ghl/delivery")), seen


# --- deliveries -------------------------------------------------------------


async def test_valid_delivery_is_accepted_over_the_raw_bytes(sandbox, receiver):
    """A delivery signed by the sandbox passes the verifier, bytes unchanged."""
    url, seen = receiver
    payload = sandbox.sample_delivery(message="Kumusta po?")

    status, answer = await sandbox.deliver(url, payload)

    assert (status, answer) == (200, {"ok": True})
    assert [json.loads(body) for body in seen] == [payload]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("missing", "missing X-GHL-Signature"),
        ("na", "X-GHL-Signature: unsigned (N/A)"),
        ("forged", "X-GHL-Signature: signature does not match"),
        (
            "legacy-only",
            "missing X-GHL-Signature (legacy X-WH-Signature is not accepted)",
        ),
    ],
)
async def test_badly_signed_delivery_is_refused(sandbox, receiver, mode, reason):
    """Each bad signature mode is refused by the verifier, for its reason."""
    url, seen = receiver

    status, answer = await sandbox.deliver(
        url, sandbox.sample_delivery(), signature=mode
    )

    assert (status, answer) == (401, {"error": reason})
    assert seen == []


async def test_legacy_delivery_passes_a_legacy_verifier(aiohttp_server, sandbox):
    """The legacy RSA signature verifies under the sandbox's RSA public key."""
    seen: list[bytes] = []
    verifier = GhlSignatureVerifier(
        [load_ed25519_public_key(sandbox.public_key_pem)],
        [load_rsa_public_key(sandbox.legacy_public_key_pem)],
        accept_legacy_rsa=True,
    )
    server = await aiohttp_server(receiver_app(verifier, seen), host="127.0.0.1")

    status, _ = await sandbox.deliver(
        str(server.make_url("/ghl/delivery")),
        sandbox.sample_delivery(),
        signature="legacy-only",
    )

    assert status == 200
    assert len(seen) == 1


async def test_delivery_starts_the_not_ready_window(sandbox, receiver, session):
    """Right after a delivery, a status update for it answers 403."""
    sandbox.not_ready_for = 30.0
    url, _ = receiver
    payload = sandbox.sample_delivery()
    token = sandbox.issue_location_token(payload["locationId"])["access_token"]
    await sandbox.deliver(url, payload)

    async with session.put(
        f"{sandbox.base_url}/conversations/messages/{payload['messageId']}/status",
        json={"status": "delivered"},
        headers={"Authorization": f"Bearer {token}", "Version": "2021-04-15"},
    ) as answer:
        body = await answer.json()

    assert answer.status == 403
    assert body["message"] == "No conversation provider found for this message"


def test_sample_delivery_is_the_documented_one_with_a_ph_mobile():
    """The sample is HighLevel's, with a PH mobile and a fresh messageId."""
    sandbox = GhlSandbox()

    first, second = sandbox.sample_delivery(), sandbox.sample_delivery()

    assert first["phone"] == "+639171234567"
    assert first["type"] == "SMS"
    assert first["locationId"] == "GKAWb4yu7A4LSc0skQ6g"
    assert first["messageId"] != second["messageId"]
    assert sandbox.sample_delivery(messageId="m1", type="Email")["messageId"] == "m1"


async def test_deliver_refuses_other_hosts():
    """The sandbox delivers to this machine only."""
    with pytest.raises(ValueError, match="this machine only"):
        await GhlSandbox().deliver("http://192.0.2.1/ghl", {})


# --- tokens -----------------------------------------------------------------


def test_location_token_is_shaped_like_ghls():
    """The token answer fits HighLevel's documented /oauth/token response."""
    oauth = open_api("apps/oauth.json")
    token = GhlSandbox().issue_location_token(LOCATION, expires_in=3600)

    schema = oauth.response_schema("/oauth/token", "post", 200)
    assert oauth.problems(token, schema) == []
    assert token["userType"] == "Location"
    assert token["locationId"] == LOCATION
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert {"access_token", "refresh_token", "scope", "companyId", "userId"} <= set(
        token
    )


# --- control surface --------------------------------------------------------


async def test_control_routes_drive_a_status_update(sandbox, session):
    """Another process can issue a token, register, fault and read updates."""
    base = sandbox.base_url
    async with session.post(
        f"{base}/_sandbox/location-tokens", json={"location_id": LOCATION}
    ) as answer:
        token = (await answer.json())["access_token"]
    async with session.post(
        f"{base}/_sandbox/messages",
        json={"message_id": "m1", "location_id": LOCATION},
    ) as answer:
        assert answer.status == 204
    async with session.post(
        f"{base}/_sandbox/faults", json={"status": 429, "retry_after": 3}
    ) as answer:
        assert answer.status == 201

    statuses = []
    for _ in range(2):
        async with session.put(
            f"{base}/conversations/messages/m1/status",
            json={"status": "delivered"},
            headers={"Authorization": f"Bearer {token}", "Version": "2021-04-15"},
        ) as answer:
            statuses.append((answer.status, answer.headers.get("Retry-After")))
    async with session.get(f"{base}/_sandbox/status-updates") as answer:
        updates = (await answer.json())["status_updates"]

    assert statuses == [(429, "3"), (200, None)]
    assert [(u["message_id"], u["status"], u["error"]) for u in updates] == [
        ("m1", "delivered", None)
    ]


async def test_reset_forgets_everything_but_the_keys(sandbox, session):
    """After a reset, tokens, messages, faults and updates are gone."""
    pem = sandbox.public_key_pem
    token = sandbox.issue_location_token(LOCATION)["access_token"]
    sandbox.register_message("m1", LOCATION)
    sandbox.inject(Fault.server_error(), times=3)

    async with session.post(f"{sandbox.base_url}/_sandbox/reset") as answer:
        assert answer.status == 204

    assert sandbox._messages == {}
    assert sandbox._faults == []
    assert sandbox.oauth.live(token) is None
    assert sandbox.public_key_pem == pem


async def test_bad_fault_is_refused(sandbox, session):
    """A fault spec the sandbox cannot use is a 400 naming the problem."""
    async with session.post(
        f"{sandbox.base_url}/_sandbox/faults", json={"status": 200}
    ) as answer:
        body = await answer.json()

    assert answer.status == 400
    assert "4xx or 5xx" in body["message"]


async def test_unknown_route_answers_in_ghls_shape(sandbox, session):
    """Even a 404 has statusCode, message and traceId."""
    async with session.get(f"{sandbox.base_url}/nowhere") as answer:
        body = await answer.json()

    assert answer.status == 404
    assert body["statusCode"] == 404
    assert body["traceId"]


async def test_start_refuses_other_interfaces():
    """The sandbox listens on 127.0.0.1 only."""
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 only"):
        await GhlSandbox().start(host="0.0.0.0")  # noqa: S104


@pytest.mark.parametrize("module", [sandbox_module, sandbox_oauth_module])
def test_sandbox_imports_nothing_from_castghl(module):
    """The sandbox is written from the reference: no castghl import can leak in.

    Its own modules may import each other, and nothing else of castghl.
    """
    source = Path(module.__file__).read_text(encoding="utf-8")

    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)

    outside = {name for name in imported if not name.startswith(SANDBOX_PACKAGE)}
    assert {name.split(".")[0] for name in outside} <= ALLOWED_SANDBOX_IMPORTS


SANDBOX_PACKAGE = "castghl_app.sandbox."
ALLOWED_SANDBOX_IMPORTS = {
    "__future__",
    "aiohttp",
    "attrs",
    "cryptography",
    *sys.stdlib_module_names,
}
