"""The GHL sandbox's OAuth side: consent, switches, app webhooks, control routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from castghl_adapters.ghl import GhlSignatureVerifier
from castghl_adapters.ghl.signatures import load_ed25519_public_key, load_rsa_public_key

LOCATION = "GKAWb4yu7A4LSc0skQ6g"


@pytest.fixture
def sandbox(ghl_sandbox):
    return ghl_sandbox


def consent_query(sandbox, **changes):
    query = {
        "response_type": "code",
        "client_id": sandbox.client_id,
        "redirect_uri": "http://127.0.0.1:9/cb?keep=1",
        "scope": "contacts.readonly",
    }
    query.update(changes)
    return {key: value for key, value in query.items() if value is not None}


async def test_the_client_id_has_ghls_shape(sandbox):
    """`<appId>-<suffix>`, the app id being what app webhooks carry."""
    app_id, _, suffix = sandbox.client_id.partition("-")
    assert app_id == sandbox.oauth.app_id
    assert suffix


@pytest.mark.parametrize("path", ["/oauth/chooselocation", "/v2/oauth/chooselocation"])
async def test_consent_redirects_with_a_code_and_the_state(sandbox, session, path):
    """Both consent paths send the browser back with code and state added."""
    async with session.get(
        sandbox.base_url + path,
        params=consent_query(sandbox, state="xyz"),
        allow_redirects=False,
    ) as answer:
        location = answer.headers["Location"]

    assert answer.status == 302
    assert location.startswith("http://127.0.0.1:9/cb?keep=1&code=sbx-code-")
    assert location.endswith("&state=xyz")
    assert sandbox.oauth.locations[LOCATION].installed is True


@pytest.mark.parametrize(
    ("changes", "status"),
    [({"client_id": "other-app"}, 400), ({"redirect_uri": None}, 422)],
)
async def test_consent_refuses_a_bad_request(sandbox, session, changes, status):
    """An unknown client or a missing redirect_uri gets no code."""
    async with session.get(
        f"{sandbox.base_url}/oauth/chooselocation",
        params=consent_query(sandbox, **changes),
        allow_redirects=False,
    ) as answer:
        body = await answer.json()

    assert answer.status == status
    assert body["traceId"]
    assert sandbox.oauth.issued == []


def test_a_location_install_approves_one_location(sandbox):
    """Choosing several locations only makes sense for an agency install."""
    with pytest.raises(ValueError, match="exactly one"):
        sandbox.oauth.choose(["A", "B"])


async def test_control_routes_drive_consent_and_switches(sandbox, session):
    """Another process can choose the consent and pause a location over HTTP."""
    base = sandbox.base_url
    async with session.post(
        f"{base}/_sandbox/consent",
        json={"location_ids": ["LocA", "LocB"], "user_type": "Company"},
    ) as answer:
        assert answer.status == 204
    async with session.post(
        f"{base}/_sandbox/locations/LocA", json={"active": False}
    ) as answer:
        assert answer.status == 204
    async with session.get(f"{base}/_sandbox/oauth") as answer:
        counters = await answer.json()

    assert sandbox.oauth.next_consent.user_type == "Company"
    assert sandbox.oauth.next_consent.location_ids == ("LocA", "LocB")
    assert sandbox.oauth.locations["LocA"].active is False
    assert counters == {
        "refresh_count": {},
        "mint_count": {},
        "reused_refresh_tokens": 0,
        "token_calls": [],
    }


def test_uninstalling_kills_the_locations_tokens(sandbox):
    """After an uninstall neither the access nor the refresh token works."""
    issued = sandbox.issue_location_token(LOCATION)

    event = sandbox.uninstall(LOCATION)

    assert sandbox.oauth.live(issued["access_token"]) is None
    assert not sandbox.oauth.refresh_token_is_live(issued["refresh_token"])
    assert (event["type"], event["locationId"]) == ("UNINSTALL", LOCATION)


def test_reset_forgets_the_oauth_side(sandbox):
    """Tokens, locations and counters go; the app's credentials stay."""
    client_id = sandbox.client_id
    sandbox.oauth.choose(["LocA"])
    sandbox.issue_location_token("LocA")

    sandbox.reset()

    assert sandbox.oauth.locations == {}
    assert sandbox.oauth.issued == []
    assert sandbox.client_id == client_id


def test_install_events_carry_the_documented_fields(sandbox):
    """INSTALL has type, appId, installType, ids, timestamp and webhookId."""
    event = sandbox.install_later("LocNew")

    assert event["type"] == "INSTALL"
    assert event["appId"] == sandbox.oauth.app_id
    assert event["installType"] == "Location"
    assert event["locationId"] == "LocNew"
    assert event["companyId"] == sandbox.company_id
    stamped = datetime.fromisoformat(event["timestamp"])
    assert abs(datetime.now(UTC) - stamped) < timedelta(seconds=5)
    assert event["webhookId"]
    assert sandbox.oauth.locations["LocNew"].installed is True


def test_an_agency_uninstall_names_only_the_company(sandbox):
    """Uninstalling the whole agency sends companyId without a locationId."""
    event = sandbox.uninstall(company=True)

    assert event["companyId"] == sandbox.company_id
    assert "locationId" not in event


@pytest.mark.parametrize("mode", ["valid", "legacy-only"])
async def test_app_webhooks_are_signed_like_deliveries(sandbox, aiohttp_server, mode):
    """Ed25519 or the legacy RSA header, over the exact bytes posted."""
    verifier = GhlSignatureVerifier(
        [load_ed25519_public_key(sandbox.public_key_pem)],
        [load_rsa_public_key(sandbox.legacy_public_key_pem)],
        accept_legacy_rsa=True,
    )
    received = []

    async def receive(request):
        body = await request.read()
        verifier.verify(body, request.headers)
        received.append(json.loads(body))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app, host="127.0.0.1")
    event = sandbox.app_event("UNINSTALL", location_id=LOCATION)

    status, _ = await sandbox.send_app_webhook(
        str(server.make_url("/hook")), event, signature=mode
    )

    assert status == 200
    assert received == [event]
