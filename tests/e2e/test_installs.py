"""Installing castghl through GHL's OAuth flow: the install link, the callback,
agency installs, and what a bad callback leaves behind (nothing)."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest

from castghl_app.oauth_setup import CALLBACK_PATH, INSTALL_PATH
from castghl_core.installations import InstallationState, UserType

from harness import API_KEY, eventually, expire_token, install_agency, install_location

NEW_LOCATION = "LocNewInstall0000001"
AGENCY = ["LocAgencyA0000000001", "LocAgencyB0000000002", "LocAgencyC0000000003"]


async def consent_redirect(service) -> tuple[str, dict[str, list[str]]]:
    """Follow castghl's install link to GHL's consent and stop at the callback."""
    async with service.http.get(
        service.url + INSTALL_PATH, allow_redirects=False
    ) as answer:
        consent = answer.headers["Location"]
    async with service.http.get(consent, allow_redirects=False) as answer:
        callback = urlsplit(answer.headers["Location"])
    return callback.path, parse_qs(callback.query)


async def installed(service) -> list[str]:
    return [i.owner_id for i in await service.services.installations.list()]


# --- the install link ---------------------------------------------------------


async def test_the_install_link_goes_to_ghls_consent_page(make_service, ghl):
    """Client id, scopes, redirect URI and a signed state, on the consent host."""
    service = await make_service()

    async with service.http.get(
        service.url + INSTALL_PATH, allow_redirects=False
    ) as answer:
        target = urlsplit(answer.headers["Location"])

    query = parse_qs(target.query)
    assert answer.status == 302
    assert f"{target.scheme}://{target.netloc}" == ghl.base_url
    assert target.path == "/oauth/chooselocation"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [ghl.client_id]
    assert query["redirect_uri"] == [service.url + CALLBACK_PATH]
    assert "conversations/message.write" in query["scope"][0].split()
    assert "oauth.write" in query["scope"][0].split()
    assert query["state"][0].startswith("v1.")


async def test_a_configured_public_url_makes_the_redirect_uri(make_service):
    """Behind a proxy the redirect URI is CASTGHL_PUBLIC_URL's, not the request's."""
    service = await make_service(CASTGHL_PUBLIC_URL="https://castghl.example")

    async with service.http.get(
        service.url + INSTALL_PATH, allow_redirects=False
    ) as answer:
        query = parse_qs(urlsplit(answer.headers["Location"]).query)

    assert query["redirect_uri"] == ["https://castghl.example/oauth/callback"]


@pytest.mark.parametrize("host", ["attacker.example", "castghl.example:443"])
async def test_a_public_host_without_a_public_url_is_refused(make_service, host):
    """The Host header is the client's to choose: off loopback, castghl builds
    no redirect URI from it and asks for CASTGHL_PUBLIC_URL instead."""
    service = await make_service()

    async with service.http.get(
        service.url + INSTALL_PATH, headers={"Host": host}, allow_redirects=False
    ) as answer:
        body = await answer.json()

    assert answer.status == 503
    assert body["error"] == "public_url_required"
    assert "Location" not in answer.headers


# --- a location install -------------------------------------------------------


async def test_a_location_install_stores_a_working_token(make_service, ghl):
    """After the flow the location is installed, its token live at GHL."""
    service = await make_service()
    ghl.oauth.choose([NEW_LOCATION])

    status, page = await service.request("GET", INSTALL_PATH)

    assert status == 200
    assert NEW_LOCATION in page
    assert "Cast API key" in page
    stored = await service.services.installations.get(NEW_LOCATION)
    assert stored.user_type is UserType.LOCATION
    assert stored.state is InstallationState.ACTIVE
    assert ghl.oauth.live(stored.access_token).location_id == NEW_LOCATION
    assert ghl.oauth.refresh_token_is_live(stored.refresh_token)


async def test_a_reinstall_says_the_cast_key_is_already_set(make_service, ghl):
    """A location that kept its key (grace period) is told so on the page."""
    service = await make_service()
    await install_location(service, ghl, NEW_LOCATION)
    await service.admin(
        "PUT", f"/locations/{NEW_LOCATION}", json={"cast_api_key": API_KEY}
    )

    _, page = await service.request("GET", INSTALL_PATH)

    assert "Cast key already set" in page


# --- callbacks that must store nothing ------------------------------------------


@pytest.mark.parametrize(
    "state", [None, "", "v1.9999999999.nonce.forgedmac", "not-a-state"]
)
async def test_a_missing_or_forged_state_stores_nothing(make_service, ghl, state):
    """The code is never exchanged: a clear 400 page, the store left empty."""
    service = await make_service()
    _, query = await consent_redirect(service)
    params = {"code": query["code"][0]}
    if state is not None:
        params["state"] = state

    status, page = await service.request("GET", CALLBACK_PATH, params=params)

    assert status == 400
    assert "This install link is not valid" in page
    assert await installed(service) == []
    assert ghl.oauth.calls == []


async def test_an_expired_state_stores_nothing(make_service, ghl):
    """A state past its lifetime is refused even though castghl signed it."""
    service = await make_service()
    _, query = await consent_redirect(service)
    signer = service.services.oauth.signer
    expired = attrs.evolve(signer, lifetime=timedelta(seconds=-5)).issue()

    status, page = await service.request(
        "GET", CALLBACK_PATH, params={"code": query["code"][0], "state": expired}
    )

    assert status == 400
    assert "expired" in page
    assert await installed(service) == []
    assert ghl.oauth.calls == []


async def test_a_declined_consent_stores_nothing(make_service, ghl):
    """GHL sending the user back with an error and no code: a 400 page."""
    service = await make_service()
    state = service.services.oauth.signer.issue()

    status, page = await service.request(
        "GET", CALLBACK_PATH, params={"state": state, "error": "access_denied"}
    )

    assert status == 400
    assert "not approved" in page
    assert await installed(service) == []


async def test_a_reloaded_callback_is_a_400_saying_the_link_was_used(
    make_service, ghl, caplog
):
    """A replayed callback: GHL says invalid grant; a 400 page says start again."""
    service = await make_service()
    path, query = await consent_redirect(service)
    params = {"code": query["code"][0], "state": query["state"][0]}
    assert (await service.request("GET", path, params=params))[0] == 200
    await service.services.installations.delete(ghl.oauth.next_consent.location_ids[0])

    status, page = await service.request("GET", path, params=params)

    [failure] = [r for r in caplog.records if r.msg == "oauth.exchange_failed"]
    assert status == 400
    assert "already used or has expired" in page
    assert INSTALL_PATH in page
    assert failure.trace_id
    assert failure.trace_id in page
    assert await installed(service) == []


async def test_a_bogus_code_with_a_valid_state_is_a_400(make_service, ghl):
    """A code GHL never issued is the link's fault, not HighLevel's: 400."""
    service = await make_service()
    state = service.services.oauth.signer.issue()

    status, page = await service.request(
        "GET", CALLBACK_PATH, params={"code": "made-up", "state": state}
    )

    assert status == 400
    assert "already used or has expired" in page
    assert await installed(service) == []


async def test_ghls_error_description_is_not_shown_on_the_page(make_service, caplog):
    """A declined consent's error_description is logged, never reflected."""
    service = await make_service()
    state = service.services.oauth.signer.issue()
    planted = "Call +63 900 000 0000 to claim your prize"

    status, page = await service.request(
        "GET",
        CALLBACK_PATH,
        params={"state": state, "error": "access_denied", "error_description": planted},
    )

    assert status == 400
    assert planted not in page
    [logged] = [r for r in caplog.records if r.msg == "oauth.not_approved"]
    assert logged.reason == planted


async def test_without_client_credentials_the_oauth_routes_answer_503(
    make_service, ghl, caplog
):
    """Installs are off, start-up says so, and the routes give a JSON 503."""
    service = await make_service(CASTGHL_GHL_CLIENT_ID="", CASTGHL_GHL_CLIENT_SECRET="")

    for method, path in [
        ("GET", INSTALL_PATH),
        ("GET", CALLBACK_PATH),
        ("POST", service.app_webhook_url.removeprefix(service.url)),
    ]:
        status, body = await service.request(method, path)
        assert (status, body["error"]) == (503, "oauth_not_configured"), path
    assert any(r.msg == "oauth.not_configured" for r in caplog.records)
    _, ready = await service.request("GET", "/readyz")
    assert ready["installs"] == "off"


# --- agency installs ---------------------------------------------------------------


@pytest.fixture
async def agency(make_service, ghl, cast):
    """castghl installed by an agency on three locations, each with a Cast key."""
    service = await make_service()
    page = await install_agency(service, ghl, AGENCY)
    for location_id in AGENCY:
        assert location_id in page
        status, _ = await service.admin(
            "PUT", f"/locations/{location_id}", json={"cast_api_key": API_KEY}
        )
        assert status == 200
    return service


async def send_one(service, ghl, location_id) -> str:
    """Deliver a message for the location; return GHL's final status for it."""
    sample = ghl.sample_delivery(locationId=location_id)
    status, body = await ghl.deliver(service.delivery_url, sample)
    assert (status, body["status"]) == (200, "accepted"), body
    [update] = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    return update.status


async def test_an_agency_install_gives_each_location_a_working_token(agency, ghl, cast):
    """Three locations, three minted tokens, three messages reported."""
    company = await agency.services.installations.get(ghl.company_id)
    assert company.user_type is UserType.COMPANY
    for location_id in AGENCY:
        stored = await agency.services.installations.get(location_id)
        assert stored.company_id == ghl.company_id
        assert ghl.oauth.live(stored.access_token).location_id == location_id
        assert await send_one(agency, ghl, location_id) == "delivered"
    assert sorted(ghl.oauth.mint_count) == sorted(AGENCY)


async def test_an_install_webhook_adds_a_fourth_location(agency, ghl, cast):
    """INSTALL for a new location of the agency mints and stores its token."""
    fourth = "LocAgencyD0000000004"

    status, body = await ghl.send_app_webhook(
        agency.app_webhook_url, ghl.install_later(fourth)
    )

    assert (status, body["status"]) == (200, "handled")
    stored = await agency.services.installations.get(fourth)
    assert ghl.oauth.live(stored.access_token).location_id == fourth
    await agency.admin("PUT", f"/locations/{fourth}", json={"cast_api_key": API_KEY})
    assert await send_one(agency, ghl, fourth) == "delivered"


async def test_an_uninstalled_location_is_refused_and_sends_nothing(agency, ghl, cast):
    """UNINSTALL removes the location's tokens; its deliveries get a clear 404."""
    gone = AGENCY[1]
    status, body = await ghl.send_app_webhook(
        agency.app_webhook_url, ghl.uninstall(gone)
    )
    assert (status, body["status"]) == (200, "handled")

    sample = ghl.sample_delivery(locationId=gone)
    status, answer = await ghl.deliver(agency.delivery_url, sample)

    assert status == 404
    assert answer["error"] == "location_not_installed"
    assert "uninstalled" in answer["message"]
    assert cast.requests == []
    stored = await agency.services.installations.get(gone)
    assert (stored.state, stored.access_token, stored.refresh_token) == (
        InstallationState.UNINSTALLED,
        "",
        None,
    )
    _, view = await agency.admin("GET", f"/locations/{gone}")
    assert view["cast_api_key"] is not None  # kept for the grace period
    assert await send_one(agency, ghl, AGENCY[0]) == "delivered"


async def test_a_minted_token_without_refresh_token_is_minted_again(
    make_service, ghl, cast
):
    """Older GHL minted no refresh token: on expiry a new one is minted."""
    ghl.oauth.location_tokens_with_refresh = False
    service = await make_service()
    await install_agency(service, ghl, AGENCY[:1])
    await service.admin(
        "PUT", f"/locations/{AGENCY[0]}", json={"cast_api_key": API_KEY}
    )
    await expire_token(service, ghl, AGENCY[0])

    assert await send_one(service, ghl, AGENCY[0]) == "delivered"
    assert ghl.oauth.mint_count[AGENCY[0]] == 2
    assert ghl.oauth.refresh_count == {}


async def test_the_keeper_forgets_settings_after_the_grace_period(
    make_service, ghl, cast
):
    """Once the grace period is over, the key and settings are deleted."""
    service = await make_service(
        CASTGHL_UNINSTALL_GRACE_SECONDS="0.2", CASTGHL_TOKEN_REFRESH_SCAN_SECONDS="0.05"
    )
    await install_location(service, ghl, NEW_LOCATION)
    await service.admin(
        "PUT",
        f"/locations/{NEW_LOCATION}",
        json={"cast_api_key": API_KEY, "sender_id": "SHOP"},
    )
    await ghl.send_app_webhook(service.app_webhook_url, ghl.uninstall(NEW_LOCATION))

    stored = await service.services.installations.get(NEW_LOCATION)
    assert stored.state is InstallationState.UNINSTALLED

    async def forgotten():
        status, _ = await service.admin("GET", f"/locations/{NEW_LOCATION}")
        return status == 404

    await eventually(forgotten, timeout=5)
    assert await service.services.secrets.get(NEW_LOCATION) is None


async def test_every_install_step_is_logged_without_tokens(make_service, ghl, caplog):
    """The install logs what happened (ids, counts); the leak check does the rest."""
    caplog.set_level(logging.INFO)
    service = await make_service()

    await install_agency(service, ghl, AGENCY)

    events = [r.msg for r in caplog.records if r.name.startswith("castghl")]
    assert "oauth.install_started" in events
    assert "app.installed" in events
    assert events.count("app.location_connected") == 3
    assert "oauth.install_completed" in events
