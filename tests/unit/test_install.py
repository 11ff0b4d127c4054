"""Installing and uninstalling the app: what is stored, minted and forgotten."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemorySecretStore,
)
from castghl_core.errors import GhlRejected, TokenRevoked
from castghl_core.install import InstallApp, UninstallApp
from castghl_core.installations import InstallationState, UserType
from castghl_core.locations import LocationSettings
from castghl_core.oauth import InstalledLocation
from castghl_core.tokens import RefreshingAccessTokens

from fakes import API_KEY, FakeClock, FakeOAuth

COMPANY = "COMPANY1"
REDIRECT = "https://castghl.example/oauth/callback"
AGENCY = ("LocA", "LocB", "LocC")
GRACE = timedelta(days=30)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def oauth():
    return FakeOAuth(location_tokens_with_refresh=True)


@pytest.fixture
def store():
    return MemoryInstallationStore()


@pytest.fixture
def settings():
    return MemoryLocationSettingsStore()


@pytest.fixture
def secrets():
    return MemorySecretStore()


@pytest.fixture
def tokens(store, oauth, clock):
    return RefreshingAccessTokens(store, MemoryLeases(), oauth, clock)


@pytest.fixture
def install(oauth, store, tokens, clock):
    return InstallApp(oauth, store, tokens, clock)


@pytest.fixture
def uninstall(store, settings, secrets, clock):
    return UninstallApp(store, settings, secrets, clock, GRACE)


def agency_code(oauth, approved=AGENCY) -> str:
    grant = attrs.evolve(
        oauth.grant(UserType.COMPANY, None, COMPANY),
        approved_locations=approved,
        is_bulk_installation=True,
    )
    return oauth.consent(grant)


async def test_a_location_install_stores_its_token(install, oauth, store):
    """The Location token of the consent is stored for its location."""
    grant = oauth.grant(UserType.LOCATION, "LocA", COMPANY)

    report = await install.complete(oauth.consent(grant), REDIRECT)

    stored = await store.get("LocA")
    assert [c.location_id for c in report.connected] == ["LocA"]
    assert report.failed == ()
    assert stored.user_type is UserType.LOCATION
    assert (stored.access_token, stored.refresh_token) == (
        grant.access_token,
        grant.refresh_token,
    )
    assert stored.state is InstallationState.ACTIVE


async def test_an_agency_install_mints_a_token_per_installed_location(
    install, oauth, store
):
    """The company is stored, and each installed location gets its own token."""
    oauth.installed = [InstalledLocation(loc, f"Shop {loc}") for loc in AGENCY]

    report = await install.complete(agency_code(oauth), REDIRECT)

    company = await store.get(COMPANY)
    assert company.user_type is UserType.COMPANY
    assert [(c.location_id, c.name) for c in report.connected] == [
        (loc, f"Shop {loc}") for loc in AGENCY
    ]
    assert [location for _, _, location in oauth.mints] == list(AGENCY)
    for location_id in AGENCY:
        stored = await store.get(location_id)
        assert stored.user_type is UserType.LOCATION
        assert stored.company_id == COMPANY
        assert stored.access_token in oauth.live_access


async def test_approved_locations_missing_from_the_listing_are_minted_too(
    install, oauth, store
):
    """approvedLocations complete the listing."""
    oauth.installed = [InstalledLocation("LocA", "Shop A")]

    report = await install.complete(agency_code(oauth), REDIRECT)

    assert {c.location_id for c in report.connected} == set(AGENCY)


async def test_a_failed_listing_falls_back_to_the_approved_locations(
    install, oauth, store
):
    """Without the listing, approvedLocations say where to mint."""
    oauth.listing_error = GhlRejected("GHL answered 403", 403)

    report = await install.complete(agency_code(oauth), REDIRECT)

    assert {c.location_id for c in report.connected} == set(AGENCY)


async def test_one_failed_location_does_not_stop_the_others(install, oauth, store):
    """A location GHL will not mint for is reported; the rest are connected."""
    oauth.mint_errors["LocB"] = GhlRejected("Location not found", 400, "t-9")

    report = await install.complete(agency_code(oauth), REDIRECT)

    assert [c.location_id for c in report.connected] == ["LocA", "LocC"]
    [failed] = report.failed
    assert failed.location_id == "LocB"
    assert "Location not found" in failed.reason
    assert await store.get("LocB") is None


async def test_a_refused_code_stores_nothing(install, oauth, store):
    """An invalid code raises GHL's error and leaves the store empty."""
    with pytest.raises(TokenRevoked):
        await install.complete("code-unknown", REDIRECT)

    assert await store.list() == []


# --- INSTALL webhooks ----------------------------------------------------------


async def test_a_later_install_under_a_stored_company_is_minted(install, oauth, store):
    """A fourth location installed later gets its token from the company's."""
    await install.complete(agency_code(oauth), REDIRECT)

    added = await install.add_location(COMPANY, "LocD")

    assert added is True
    assert (await store.get("LocD")).company_id == COMPANY


async def test_a_later_install_without_a_company_is_left_to_the_callback(
    install, oauth, store
):
    """No stored company: nothing to mint with, nothing stored."""
    assert await install.add_location("OtherCo", "LocD") is False
    assert oauth.mints == []
    assert await store.get("LocD") is None


async def test_a_later_install_of_an_active_location_changes_nothing(
    install, oauth, store
):
    """The callback already stored it: no second token is minted."""
    await install.complete(agency_code(oauth), REDIRECT)
    mints = len(oauth.mints)

    assert await install.add_location(COMPANY, "LocA") is False
    assert len(oauth.mints) == mints


# --- UNINSTALL and the grace period ------------------------------------------------


async def seed_settings(settings, secrets, location_id):
    await settings.put(LocationSettings(location_id=location_id, sender_id="SHOP"))
    await secrets.put(location_id, API_KEY)


async def test_uninstall_deletes_tokens_and_keeps_settings(
    install, uninstall, oauth, store, settings, secrets, clock
):
    """The location is uninstalled at once; its sender ID and key stay."""
    await install.complete(oauth.consent(oauth.grant()), REDIRECT)
    await seed_settings(settings, secrets, "LOC1")

    assert await uninstall.uninstall("LOC1", COMPANY) == ["LOC1"]

    stored = await store.get("LOC1")
    assert stored.state is InstallationState.UNINSTALLED
    assert (stored.access_token, stored.refresh_token) == ("", None)
    assert stored.uninstalled_at == clock.now()
    assert (await settings.get("LOC1")).sender_id == "SHOP"
    assert await secrets.get("LOC1") == API_KEY


async def test_a_company_uninstall_covers_its_locations(
    install, uninstall, oauth, store
):
    """Without a locationId, the company and all its locations go."""
    await install.complete(agency_code(oauth), REDIRECT)

    gone = await uninstall.uninstall(None, COMPANY)

    assert sorted(gone) == sorted([COMPANY, *AGENCY])
    states = {i.owner_id: i.state for i in await store.list()}
    assert set(states.values()) == {InstallationState.UNINSTALLED}


async def test_a_repeated_uninstall_keeps_the_first_time(
    install, uninstall, oauth, store, clock
):
    """The grace period counts from the first uninstall."""
    await install.complete(oauth.consent(oauth.grant()), REDIRECT)
    await uninstall.uninstall("LOC1", None)
    first = (await store.get("LOC1")).uninstalled_at
    clock.advance(3600)

    assert await uninstall.uninstall("LOC1", None) == []
    assert (await store.get("LOC1")).uninstalled_at == first


async def test_settings_are_forgotten_after_the_grace_period(
    install, uninstall, oauth, store, settings, secrets, clock
):
    """Within the grace period nothing goes; after it, everything does."""
    await install.complete(oauth.consent(oauth.grant()), REDIRECT)
    await seed_settings(settings, secrets, "LOC1")
    await uninstall.uninstall("LOC1", None)

    clock.advance(GRACE.total_seconds() - 1)
    assert await uninstall.forget_expired() == []
    clock.advance(1)
    assert await uninstall.forget_expired() == ["LOC1"]

    assert await store.get("LOC1") is None
    assert await settings.get("LOC1") is None
    assert await secrets.get("LOC1") is None


async def test_a_reinstall_within_the_grace_period_keeps_settings(
    install, uninstall, oauth, store, settings, secrets, clock
):
    """Reinstalled before the grace period ends: nothing is forgotten."""
    await install.complete(oauth.consent(oauth.grant()), REDIRECT)
    await seed_settings(settings, secrets, "LOC1")
    await uninstall.uninstall("LOC1", None)
    clock.advance(3600)

    await install.complete(oauth.consent(oauth.grant()), REDIRECT)
    clock.advance(GRACE.total_seconds())

    assert await uninstall.forget_expired() == []
    assert (await store.get("LOC1")).state is InstallationState.ACTIVE
    assert (await store.get("LOC1")).uninstalled_at is None
    assert await secrets.get("LOC1") == API_KEY
