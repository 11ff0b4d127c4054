"""The app's webhook URL refuses what it must: forged, replayed, stale, foreign."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from castghl_core.installations import InstallationState

from harness import LOCATION, install_location

FOURTH = "LocLaterInstall00004"


@pytest.fixture
async def agency(make_service, ghl):
    """castghl with an agency installation covering one location."""
    service = await make_service()
    ghl.oauth.choose([LOCATION], company=True)
    status, _ = await service.request("GET", "/oauth/install")
    assert status == 200
    return service


async def state_of(service, owner_id):
    installation = await service.services.installations.get(owner_id)
    return installation.state if installation else None


@pytest.mark.parametrize("signature", ["missing", "na", "forged"])
async def test_an_unsigned_or_forged_install_changes_nothing(agency, ghl, signature):
    """Without a valid signature: 401, nothing minted or stored."""
    status, body = await ghl.send_app_webhook(
        agency.app_webhook_url, ghl.install_later(FOURTH), signature=signature
    )

    assert (status, body["error"]) == (401, "invalid_signature")
    assert await state_of(agency, FOURTH) is None
    assert FOURTH not in ghl.oauth.mint_count


async def test_a_replayed_uninstall_changes_nothing(agency, ghl):
    """A webhookId seen before is answered `duplicate` and not acted on again."""
    uninstall = ghl.uninstall(LOCATION)
    await ghl.send_app_webhook(agency.app_webhook_url, uninstall)
    status, body = await ghl.send_app_webhook(
        agency.app_webhook_url, ghl.install_later(LOCATION)
    )
    assert (status, body["status"]) == (200, "handled")
    assert await state_of(agency, LOCATION) is InstallationState.ACTIVE

    status, body = await ghl.send_app_webhook(agency.app_webhook_url, uninstall)

    assert (status, body["status"]) == (200, "duplicate")
    assert await state_of(agency, LOCATION) is InstallationState.ACTIVE


@pytest.mark.parametrize("minutes", [-10, 10])
async def test_a_stale_webhook_changes_nothing(agency, ghl, minutes):
    """Stamped ten minutes off: 400 stale_webhook, the location stays."""
    stamp = datetime.now(UTC) + timedelta(minutes=minutes)
    event = ghl.app_event(
        "UNINSTALL", location_id=LOCATION, timestamp=stamp.isoformat()
    )

    status, body = await ghl.send_app_webhook(agency.app_webhook_url, event)

    assert (status, body["error"]) == (400, "stale_webhook")
    assert await state_of(agency, LOCATION) is InstallationState.ACTIVE


async def test_a_webhook_for_another_app_changes_nothing(agency, ghl):
    """appId must be castghl's client id's app: 403 otherwise."""
    event = ghl.app_event("UNINSTALL", location_id=LOCATION, appId="someone-else")

    status, body = await ghl.send_app_webhook(agency.app_webhook_url, event)

    assert (status, body["error"]) == (403, "wrong_app")
    assert await state_of(agency, LOCATION) is InstallationState.ACTIVE


async def test_a_webhook_without_an_id_is_refused(agency, ghl):
    """No webhookId, no way to tell a replay: 400."""
    event = ghl.app_event("UNINSTALL", location_id=LOCATION, webhookId=None)

    status, body = await ghl.send_app_webhook(agency.app_webhook_url, event)

    assert (status, body["error"]) == (400, "invalid_payload")
    assert await state_of(agency, LOCATION) is InstallationState.ACTIVE


async def test_a_body_changed_after_signing_is_refused(agency, ghl):
    """The signature covers the raw bytes."""
    body = json.dumps(ghl.uninstall(LOCATION)).encode()
    signature = ghl.sign(body)

    status, answer = await agency.request(
        "POST",
        "/webhooks/ghl/app",
        data=body.replace(b"UNINSTALL", b"INSTALL"),
        headers={"X-GHL-Signature": signature},
    )

    assert (status, answer["error"]) == (401, "invalid_signature")


async def test_the_legacy_rsa_header_is_accepted_while_configured(make_service, ghl):
    """With HighLevel's RSA key configured, an X-WH-Signature alone is enough."""
    service = await make_service(
        CASTGHL_GHL_LEGACY_RSA_PUBLIC_KEY=ghl.legacy_public_key_pem,
        CASTGHL_GHL_LEGACY_RSA_UNPINNED="true",
    )
    await install_location(service, ghl, LOCATION)

    status, body = await ghl.send_app_webhook(
        service.app_webhook_url, ghl.uninstall(LOCATION), signature="legacy-only"
    )

    assert (status, body["status"]) == (200, "handled")
    assert await state_of(service, LOCATION) is InstallationState.UNINSTALLED


async def test_an_agency_uninstall_removes_every_location(agency, ghl):
    """UNINSTALL naming only the company uninstalls it and its locations."""
    status, _ = await ghl.send_app_webhook(
        agency.app_webhook_url, ghl.uninstall(company=True)
    )

    assert status == 200
    assert await state_of(agency, LOCATION) is InstallationState.UNINSTALLED
    assert await state_of(agency, ghl.company_id) is InstallationState.UNINSTALLED


async def test_an_install_webhook_without_a_company_is_acknowledged(make_service, ghl):
    """A location install with no stored company is left to the callback."""
    service = await make_service()

    status, body = await ghl.send_app_webhook(
        service.app_webhook_url, ghl.install_later(FOURTH)
    )

    assert (status, body["status"]) == (200, "handled")
    assert await state_of(service, FOURTH) is None
