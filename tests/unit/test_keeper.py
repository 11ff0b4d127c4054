"""The installation keeper: tokens refreshed ahead of expiry, without traffic."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import attrs
import pytest

from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemorySecretStore,
)
from castghl_app.workers.keeper import InstallationKeeper
from castghl_core.errors import GhlUnavailable
from castghl_core.install import UninstallApp
from castghl_core.installations import InstallationState, UserType
from castghl_core.tokens import RefreshingAccessTokens

from fakes import FakeClock, FakeOAuth

LEAD = timedelta(hours=1)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def oauth():
    return FakeOAuth()


@pytest.fixture
def store():
    return MemoryInstallationStore()


@pytest.fixture
def uninstall(store, clock):
    return UninstallApp(
        store,
        MemoryLocationSettingsStore(),
        MemorySecretStore(),
        clock,
        grace=timedelta(days=1),
    )


@pytest.fixture
def keeper(store, oauth, clock, uninstall):
    tokens = RefreshingAccessTokens(store, MemoryLeases(), oauth, clock)
    return InstallationKeeper(store, tokens, uninstall, clock, lead=LEAD)


async def install(store, oauth, clock, location_id, **changes):
    grant = oauth.grant(UserType.LOCATION, location_id)
    installation = attrs.evolve(grant.installation(clock.now()), **changes)
    await store.put(installation)
    return installation


async def test_a_token_far_from_expiry_is_left_alone(keeper, store, oauth, clock):
    """More than the lead time before expiry: no refresh."""
    await install(store, oauth, clock, "LocA")

    assert await keeper.scan_once() == 0
    assert oauth.refreshes == []


async def test_a_token_inside_the_lead_time_is_refreshed(keeper, store, oauth, clock):
    """Past lead time less the spread, the token is refreshed before expiry."""
    installed = await install(store, oauth, clock, "LocA")
    clock.advance(oauth.lifetime - LEAD.total_seconds() * 0.75 + 1)

    assert await keeper.scan_once() == 1

    stored = await store.get("LocA")
    assert oauth.refreshes == [installed.refresh_token]
    assert stored.expires_at > installed.expires_at
    assert clock.now() < installed.expires_at


async def test_tokens_issued_together_are_refreshed_apart(keeper, store, oauth, clock):
    """A spread over a quarter of the lead: at its middle, some but not all."""
    for n in range(40):
        await install(store, oauth, clock, f"Loc{n:02d}")
    clock.advance(oauth.lifetime - LEAD.total_seconds() * (1 - 0.125))

    refreshed = await keeper.scan_once()

    assert 0 < refreshed < 40


async def test_inactive_and_revoked_installations_are_skipped(
    keeper, store, oauth, clock
):
    """Backing off, needing reauth, or uninstalled: nothing is tried."""
    await install(
        store,
        oauth,
        clock,
        "LocPaused",
        retry_refresh_at=clock.now() + timedelta(days=2),
    )
    revoked, gone = InstallationState.NEEDS_REAUTH, InstallationState.UNINSTALLED
    await install(store, oauth, clock, "LocRevoked", state=revoked)
    await install(store, oauth, clock, "LocGone", state=gone)
    clock.advance(oauth.lifetime)

    assert await keeper.scan_once() == 0
    assert oauth.refreshes == []


async def test_a_failed_refresh_is_logged_with_the_location(
    keeper, store, oauth, clock, caplog
):
    """GHL failing: a warning naming the location, never a token."""
    installed = await install(store, oauth, clock, "LocA")
    clock.advance(oauth.lifetime - 60)
    oauth.errors.append(GhlUnavailable("GHL token answered 503"))

    assert await keeper.scan_once() == 0

    [failure] = [r for r in caplog.records if r.msg == "token.proactive_refresh_failed"]
    assert failure.location_id == "LocA"
    logged = " ".join(str(vars(r)) for r in caplog.records)
    assert installed.access_token not in logged
    assert installed.refresh_token not in logged


async def test_the_scan_forgets_expired_uninstalls(keeper, store, oauth, clock):
    """Uninstalled longer than the grace period: the installation is deleted."""
    await install(
        store,
        oauth,
        clock,
        "LocGone",
        state=InstallationState.UNINSTALLED,
        uninstalled_at=clock.now(),
    )
    clock.advance(timedelta(days=1).total_seconds())

    await keeper.scan_once()

    assert await store.get("LocGone") is None


async def test_the_keeper_starts_scans_and_stops(keeper, store, oauth, clock, caplog):
    """Started, it scans at once; stopped, it is no longer alive."""
    caplog.set_level(logging.INFO)
    await install(store, oauth, clock, "LocA")
    clock.advance(oauth.lifetime - 60)
    keeper.scan_every = 0.01

    keeper.start()
    try:
        for _ in range(100):
            if oauth.refreshes:
                break
            await asyncio.sleep(0.01)
        assert keeper.is_alive
    finally:
        await keeper.stop()

    assert len(oauth.refreshes) == 1
    assert not keeper.is_alive
