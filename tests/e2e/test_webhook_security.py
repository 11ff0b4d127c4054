"""The Delivery URL refuses what it must: forged, malformed, oversized."""

from __future__ import annotations

import asyncio
import json

import pytest

from castghl_app.settings import SettingsError
from castghl_app.web.routes import DELIVERY_PATH

from harness import LOCATION, install_location


@pytest.mark.parametrize("signature", ["missing", "na", "forged"])
async def test_unsigned_or_forged_deliveries_get_401_and_store_nothing(
    service, ghl, cast, signature
):
    """Without a valid X-GHL-Signature nothing is stored or sent."""
    status, body = await ghl.deliver(
        service.delivery_url, ghl.sample_delivery(), signature=signature
    )
    assert status == 401
    assert body["error"] == "invalid_signature"
    assert await service.jobs() == {}
    assert cast.requests == []


async def test_a_body_changed_after_signing_is_refused(service, ghl):
    """The signature covers the raw bytes: one changed byte breaks it."""
    body = json.dumps(ghl.sample_delivery()).encode()
    signature = ghl.sign(body)
    status, _ = await service.request(
        "POST",
        DELIVERY_PATH,
        data=body.replace(b"contact", b"Contact", 1),
        headers={"X-GHL-Signature": signature, "Content-Type": "application/json"},
    )
    assert status == 401
    assert await service.jobs() == {}


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"type": "SMS"}', b"\xff\xfe\x00"], ids=repr
)
async def test_signed_malformed_bodies_get_400_with_a_json_error(service, ghl, body):
    """A correctly signed body that is not a ProviderOutboundMessage is a 400."""
    status, answer = await service.request(
        "POST",
        DELIVERY_PATH,
        data=body,
        headers={"X-GHL-Signature": ghl.sign(body)},
    )
    assert status == 400
    assert answer["error"] == "invalid_payload"
    assert answer["message"]
    assert await service.jobs() == {}


async def test_a_body_over_the_size_cap_gets_413(service, ghl):
    """Bodies past CASTGHL_MAX_BODY_BYTES are refused before verification."""
    sample = ghl.sample_delivery(message="x" * 70_000)
    status, body = await ghl.deliver(service.delivery_url, sample)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert await service.jobs() == {}


async def test_a_chunked_body_over_the_cap_gets_413(service, ghl):
    """A body without Content-Length is cut off at the cap too."""

    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    status, body = await service.request("POST", DELIVERY_PATH, data=chunks())
    assert status == 413
    assert body["error"] == "body_too_large"


async def test_unknown_paths_and_methods_get_json_errors(service):
    """Routing errors are JSON too, never an HTML page."""
    status, body = await service.request("GET", DELIVERY_PATH)
    assert status == 405
    assert body["error"] == "method_not_allowed"
    status, body = await service.request("GET", "/nope")
    assert status == 404
    assert body["error"] == "not_found"


async def test_the_legacy_rsa_signature_is_refused_unless_configured(service, ghl):
    """X-WH-Signature alone is not enough when no RSA key is configured."""
    status, body = await ghl.deliver(
        service.delivery_url, ghl.sample_delivery(), signature="legacy-only"
    )
    assert status == 401
    assert "X-GHL-Signature" in body["message"]


async def test_the_legacy_rsa_signature_is_accepted_where_configured(make_service, ghl):
    """With an RSA key configured, a delivery signed only with it is accepted."""
    running = await make_service(
        CASTGHL_GHL_LEGACY_RSA_PUBLIC_KEY=ghl.legacy_public_key_pem,
        CASTGHL_GHL_LEGACY_RSA_UNPINNED="true",
    )
    await install_location(running, ghl, LOCATION)
    status, body = await ghl.deliver(
        running.delivery_url, ghl.sample_delivery(), signature="legacy-only"
    )
    assert (status, body["status"]) == (200, "accepted")


async def test_an_rsa_key_that_is_not_highlevels_stops_start_up(make_service, ghl):
    """Unless unpinned, a legacy key must match HighLevel's fingerprint."""
    with pytest.raises(SettingsError, match="fingerprint"):
        await make_service(CASTGHL_GHL_LEGACY_RSA_PUBLIC_KEY=ghl.legacy_public_key_pem)


async def test_a_signed_body_that_arrives_in_pieces_is_read_whole(service, ghl):
    """Proxies and slow links split bodies; the signature is checked on all of it."""
    sample = ghl.sample_delivery()
    body = json.dumps(sample).encode()

    async def pieces():
        for start in range(0, len(body), 40):
            yield body[start : start + 40]
            await asyncio.sleep(0.02)

    status, answer = await service.request(
        "POST",
        DELIVERY_PATH,
        data=pieces(),
        headers={"X-GHL-Signature": ghl.sign(body)},
    )
    assert (status, answer["status"]) == (200, "accepted")
    assert await service.services.outbox.get(sample["messageId"]) is not None
