"""RefreshingAccessTokens: the one way code gets a GHL token, refreshed safely."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import attrs
import pytest

from castghl_adapters.memory import MemoryInstallationStore, MemoryLeases
from castghl_core.backoff import Backoff
from castghl_core.errors import (
    GhlUnauthorized,
    GhlUnavailable,
    LocationInactive,
    LocationNotInstalled,
    TokenUnavailable,
)
from castghl_core.installations import Installation, InstallationState, UserType
from castghl_core.tokens import LEASE_PREFIX, RefreshingAccessTokens, TokenPolicy

from fakes import LOCATION, FakeClock, FakeOAuth

COMPANY = "COMPANY1"
MARGIN = timedelta(minutes=5)


class YieldingClock(FakeClock):
    """A fake clock whose sleep also lets other tasks run."""

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock():
    return YieldingClock()


@pytest.fixture
def oauth():
    return FakeOAuth()


@pytest.fixture
def store():
    return MemoryInstallationStore()


@pytest.fixture
def leases():
    return MemoryLeases()


@pytest.fixture
def policy():
    return TokenPolicy(
        margin=MARGIN,
        peer_wait=timedelta(seconds=5),
        peer_poll=0.1,
        inactive_backoff=Backoff(base=60, cap=3600, jitter=lambda: 1.0),
    )


@pytest.fixture
def tokens(store, leases, oauth, clock, policy):
    return RefreshingAccessTokens(store, leases, oauth, clock, policy, owner="proc-a")


def other_process(store, leases, oauth, clock, policy) -> RefreshingAccessTokens:
    """A second service process sharing the store and leases."""
    return RefreshingAccessTokens(store, leases, oauth, clock, policy, owner="proc-b")


async def install(store, oauth, clock, owner_id=LOCATION, **changes) -> Installation:
    """Store an installation from a fresh grant, then apply `changes`."""
    user_type = changes.pop("user_type", UserType.LOCATION)
    grant = oauth.grant(
        user_type,
        owner_id if user_type is UserType.LOCATION else None,
        COMPANY,
        with_refresh=changes.pop("with_refresh", True),
    )
    installation = attrs.evolve(grant.installation(clock.now(), owner_id), **changes)
    await store.put(installation)
    return installation


async def expire(store, clock, owner_id=LOCATION, seconds_ago=1) -> Installation:
    """Make the stored token of `owner_id` expired `seconds_ago` seconds ago."""
    installation = await store.get(owner_id)
    expired = attrs.evolve(
        installation, expires_at=clock.now() - timedelta(seconds=seconds_ago)
    )
    await store.put(expired)
    return expired


# --- handing out tokens ---------------------------------------------------------


async def test_a_fresh_token_is_handed_out_without_a_refresh(
    tokens, store, oauth, clock
):
    """A token far from expiry is returned as stored; GHL is not called."""
    installed = await install(store, oauth, clock)

    assert await tokens.for_location(LOCATION) == installed.access_token
    assert oauth.refreshes == []


async def test_a_token_within_the_margin_is_refreshed_and_stored_first(
    tokens, store, oauth, clock
):
    """Near expiry, the rotated pair is in the store when the token is returned."""
    installed = await install(store, oauth, clock)
    clock.advance(oauth.lifetime - MARGIN.total_seconds() + 1)

    token = await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert oauth.refreshes == [installed.refresh_token]
    assert token == stored.access_token != installed.access_token
    assert stored.refresh_token not in {None, installed.refresh_token}
    assert stored.expires_at == clock.now() + timedelta(seconds=oauth.lifetime)


async def test_an_unknown_or_uninstalled_location_is_not_installed(
    tokens, store, oauth, clock
):
    """No installation, or an uninstalled one, raises LocationNotInstalled."""
    with pytest.raises(LocationNotInstalled):
        await tokens.for_location("NOWHERE")
    await install(store, oauth, clock, state=InstallationState.UNINSTALLED)
    with pytest.raises(LocationNotInstalled):
        await tokens.for_location(LOCATION)


# --- single flight ----------------------------------------------------------------


async def test_a_hundred_concurrent_callers_cause_one_refresh(
    tokens, store, oauth, clock
):
    """Every task of a process awaits the same refresh of an expired token."""
    await install(store, oauth, clock)
    await expire(store, clock)

    answers = await asyncio.gather(*(tokens.for_location(LOCATION) for _ in range(100)))

    assert len(oauth.refreshes) == 1
    assert set(answers) == {(await store.get(LOCATION)).access_token}


async def test_two_processes_racing_on_one_expired_token_refresh_once(
    tokens, store, leases, oauth, clock, policy
):
    """The lease makes the second process wait for the first one's pair."""
    await install(store, oauth, clock)
    await expire(store, clock)
    second = other_process(store, leases, oauth, clock, policy)

    answers = await asyncio.gather(
        *((tokens if n % 2 else second).for_location(LOCATION) for n in range(40))
    )

    stored = await store.get(LOCATION)
    assert len(oauth.refreshes) == 1
    assert oauth.reused == 0
    assert set(answers) == {stored.access_token}
    assert stored.refresh_token in oauth._live_refresh


async def test_a_process_finding_the_lease_taken_waits_for_the_peers_pair(
    tokens, store, leases, oauth, clock
):
    """While another process holds the lease, its stored result is used."""
    await install(store, oauth, clock)
    expired = await expire(store, clock)
    await leases.acquire(LEASE_PREFIX + LOCATION, "proc-b", clock.now(), MARGIN)

    async def peer_refreshes():
        await asyncio.sleep(0)
        grant = await oauth.refresh(expired.refresh_token, UserType.LOCATION)
        await store.replace_if_refresh_token(
            grant.installation(clock.now()), expired.refresh_token
        )

    answer, _ = await asyncio.gather(tokens.for_location(LOCATION), peer_refreshes())

    assert answer == (await store.get(LOCATION)).access_token
    assert oauth.refreshes == [expired.refresh_token]  # the peer's, not ours


async def test_a_peer_that_never_finishes_leaves_a_retryable_error(
    tokens, store, leases, oauth, clock
):
    """An expired token and a stuck peer: retry later, GHL not called by us."""
    await install(store, oauth, clock)
    await expire(store, clock)
    await leases.acquire(LEASE_PREFIX + LOCATION, "proc-b", clock.now(), MARGIN)

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    assert caught.value.retryable is True
    assert oauth.refreshes == []


# --- compare-and-set and invalid grant -----------------------------------------


async def test_a_lost_compare_and_set_returns_the_stored_pair(
    tokens, store, oauth, clock
):
    """If the store moved on during our refresh, its pair wins over ours."""
    installed = await install(store, oauth, clock)
    await expire(store, clock)
    theirs = attrs.evolve(oauth.grant().installation(clock.now()), owner_id=LOCATION)

    async def another_writer():
        await store.put(theirs)

    oauth.during_call = another_writer

    assert await tokens.for_location(LOCATION) == theirs.access_token
    assert (await store.get(LOCATION)).refresh_token == theirs.refresh_token
    assert oauth.refreshes == [installed.refresh_token]


async def test_invalid_grant_after_a_concurrent_refresh_reloads_the_store(
    tokens, store, oauth, clock
):
    """Our refresh token was used by another worker: take its pair, stay active."""
    installed = await install(store, oauth, clock)
    await expire(store, clock)

    async def lapsed_peer_refreshes_first():
        grant = await oauth.refresh(installed.refresh_token, UserType.LOCATION)
        await store.replace_if_refresh_token(
            grant.installation(clock.now()), installed.refresh_token
        )

    oauth.during_call = lapsed_peer_refreshes_first

    token = await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert token == stored.access_token
    assert stored.state is InstallationState.ACTIVE


async def test_a_real_revocation_marks_needs_reauth(
    tokens, store, oauth, clock, caplog
):
    """Invalid grant nobody explains: needs_reauth, a final error, GHL left alone."""
    await install(store, oauth, clock)
    await expire(store, clock)
    oauth.revoke()

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert caught.value.retryable is False
    assert "re-authorisation" in caught.value.reason
    assert stored.state is InstallationState.NEEDS_REAUTH
    assert "Invalid grant" in stored.state_reason
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        "token.needs_reauth"
    ]

    calls = len(oauth.refreshes)
    with pytest.raises(TokenUnavailable) as again:
        await tokens.for_location(LOCATION)
    assert again.value.retryable is False
    assert len(oauth.refreshes) == calls


# --- Location is not active ----------------------------------------------------------


async def test_an_inactive_location_keeps_its_token_and_backs_off(
    tokens, store, oauth, clock
):
    """ "Location is not active": tokens kept, no refresh again before the wait."""
    installed = await install(store, oauth, clock)
    await expire(store, clock)
    oauth.errors.append(LocationInactive("Location is not active"))

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert caught.value.retryable is True
    assert stored.refresh_token == installed.refresh_token
    assert stored.state is InstallationState.ACTIVE
    assert stored.refresh_failures == 1
    assert stored.retry_refresh_at == clock.now() + timedelta(seconds=60)

    clock.advance(30)
    with pytest.raises(TokenUnavailable):
        await tokens.for_location(LOCATION)
    assert len(oauth.refreshes) == 1


async def test_an_inactive_location_waits_longer_each_time(tokens, store, oauth, clock):
    """The second refusal in a row doubles the wait."""
    await install(store, oauth, clock)
    await expire(store, clock)
    oauth.errors.extend([LocationInactive("Location is not active")] * 2)

    for _ in range(2):
        with pytest.raises(TokenUnavailable):
            await tokens.for_location(LOCATION)
        clock.advance(61)

    stored = await store.get(LOCATION)
    assert stored.refresh_failures == 2
    assert stored.retry_refresh_at - stored.updated_at == timedelta(seconds=120)


async def test_an_inactive_location_recovers_by_itself(tokens, store, oauth, clock):
    """Once GHL reactivates the location, the next try after the wait works."""
    await install(store, oauth, clock)
    await expire(store, clock)
    oauth.errors.append(LocationInactive("Location is not active"))
    with pytest.raises(TokenUnavailable):
        await tokens.for_location(LOCATION)

    clock.advance(60)
    token = await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert token == stored.access_token
    assert (stored.refresh_failures, stored.retry_refresh_at) == (0, None)
    assert stored.state_reason is None


async def test_a_still_valid_token_is_used_while_refreshes_fail(
    tokens, store, oauth, clock
):
    """Inside the margin, a failed refresh falls back to the unexpired token."""
    installed = await install(store, oauth, clock)
    clock.advance(oauth.lifetime - 60)
    oauth.errors.append(GhlUnavailable("GHL token answered 503"))

    assert await tokens.for_location(LOCATION) == installed.access_token


async def test_ghl_unavailable_on_an_expired_token_is_retryable(
    tokens, store, oauth, clock
):
    """A 5xx from the token endpoint: try again later, nothing marked."""
    await install(store, oauth, clock)
    await expire(store, clock)
    oauth.errors.append(GhlUnavailable("GHL token answered 503"))

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    assert caught.value.retryable is True
    assert (await store.get(LOCATION)).state is InstallationState.ACTIVE


# --- tokens minted from a company token --------------------------------------


async def test_a_location_token_without_refresh_token_is_minted_again(
    tokens, store, oauth, clock
):
    """No refresh token: a new location token comes from the company token."""
    company = await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock)

    token = await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert oauth.mints == [(company.access_token, COMPANY, LOCATION)]
    assert oauth.refreshes == []
    assert token == stored.access_token
    assert stored.refresh_token is None
    assert stored.company_id == COMPANY


async def test_minting_with_an_expired_company_token_refreshes_it_first(
    tokens, store, oauth, clock
):
    """The company token is refreshed (once) before it mints."""
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock, COMPANY)
    await expire(store, clock)

    await tokens.for_location(LOCATION)

    company = await store.get(COMPANY)
    assert len(oauth.refreshes) == 1
    assert oauth.mints == [(company.access_token, COMPANY, LOCATION)]


async def test_a_minted_token_with_a_refresh_token_is_refreshed_next_time(
    tokens, store, oauth, clock
):
    """Newer GHL gives minted tokens a refresh token: it is kept and used."""
    oauth.location_tokens_with_refresh = True
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock)
    await tokens.for_location(LOCATION)
    minted = await store.get(LOCATION)
    await expire(store, clock)

    await tokens.for_location(LOCATION)

    assert minted.refresh_token is not None
    assert oauth.refreshes == [minted.refresh_token]
    assert len(oauth.mints) == 1


async def test_a_revoked_company_leaves_its_minted_locations_needing_reauth(
    tokens, store, oauth, clock
):
    """No company token, no location token: the location says why."""
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock, COMPANY)
    await expire(store, clock)
    oauth.revoke()

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    assert caught.value.retryable is False
    assert (await store.get(COMPANY)).state is InstallationState.NEEDS_REAUTH
    location = await store.get(LOCATION)
    assert location.state is InstallationState.NEEDS_REAUTH
    assert COMPANY in location.state_reason


async def test_a_token_that_cannot_be_renewed_needs_reauth(tokens, store, oauth, clock):
    """No refresh token and no company: nothing can renew it."""
    await install(store, oauth, clock, with_refresh=False, company_id=None)
    await expire(store, clock)

    with pytest.raises(TokenUnavailable) as caught:
        await tokens.for_location(LOCATION)

    assert caught.value.retryable is False
    assert (await store.get(LOCATION)).state is InstallationState.NEEDS_REAUTH


# --- after a 401 -----------------------------------------------------------------


async def test_a_401_refreshes_once_even_before_expiry(tokens, store, oauth, clock):
    """GHL refused a token far from expiry: one refresh, a new token."""
    installed = await install(store, oauth, clock)

    fresh = await tokens.after_unauthorized(LOCATION, installed.access_token)

    assert oauth.refreshes == [installed.refresh_token]
    assert fresh == (await store.get(LOCATION)).access_token != installed.access_token


async def test_a_401_for_a_token_already_replaced_refreshes_nothing(
    tokens, store, oauth, clock
):
    """A caller holding an old token gets the stored, newer one."""
    installed = await install(store, oauth, clock)
    newer = await tokens.after_unauthorized(LOCATION, installed.access_token)

    again = await tokens.after_unauthorized(LOCATION, installed.access_token)

    assert again == newer
    assert len(oauth.refreshes) == 1


async def test_concurrent_401s_for_one_token_cause_one_refresh(
    tokens, store, oauth, clock
):
    """Twenty tasks told 401 for the same token share one refresh."""
    installed = await install(store, oauth, clock)

    rejected = installed.access_token
    answers = await asyncio.gather(
        *(tokens.after_unauthorized(LOCATION, rejected) for _ in range(20))
    )

    assert len(oauth.refreshes) == 1
    assert len(set(answers)) == 1


async def test_call_with_token_retries_once_after_a_401(tokens, store, oauth, clock):
    """A 401 then success: one refresh, two calls, the second with the new token."""
    await install(store, oauth, clock)
    seen = []

    async def call(token):
        seen.append(token)
        if len(seen) == 1:
            raise GhlUnauthorized("Invalid token: access token is invalid")
        return "ok"

    assert await tokens.call_with_token(LOCATION, call) == "ok"
    assert len(oauth.refreshes) == 1
    assert seen[1] == (await store.get(LOCATION)).access_token != seen[0]


async def test_call_with_token_gives_up_after_a_second_401(tokens, store, oauth, clock):
    """Two 401s in a row: the second is raised, no second refresh."""
    await install(store, oauth, clock)
    calls = 0

    async def call(token):
        nonlocal calls
        calls += 1
        raise GhlUnauthorized("Invalid token: access token is invalid")

    with pytest.raises(GhlUnauthorized):
        await tokens.call_with_token(LOCATION, call)
    assert (calls, len(oauth.refreshes)) == (2, 1)


# --- ahead of expiry --------------------------------------------------------------


async def test_refresh_ahead_leaves_a_token_not_yet_due(tokens, store, oauth, clock):
    """A token expiring after the lead time is not refreshed."""
    await install(store, oauth, clock)

    assert await tokens.refresh_ahead(LOCATION, timedelta(hours=1)) is False
    assert oauth.refreshes == []


async def test_refresh_ahead_skips_a_token_another_process_refreshes(
    tokens, store, leases, oauth, clock
):
    """With the lease held elsewhere, the worker moves on without waiting."""
    await install(store, oauth, clock)
    clock.advance(oauth.lifetime - 1800)
    await leases.acquire(LEASE_PREFIX + LOCATION, "proc-b", clock.now(), MARGIN)

    assert await tokens.refresh_ahead(LOCATION, timedelta(hours=1)) is False
    assert oauth.refreshes == []


async def test_a_thousand_refresh_cycles_never_reuse_a_refresh_token(
    tokens, store, oauth, clock
):
    """Refreshed ahead of expiry 1,000 times: 1,000 distinct tokens, each once."""
    await install(store, oauth, clock)
    lead = timedelta(hours=1)

    for _ in range(1000):
        clock.advance(oauth.lifetime - lead.total_seconds() + 1)
        assert await tokens.refresh_ahead(LOCATION, lead) is True
        assert (await store.get(LOCATION)).expires_at > clock.now()

    assert len(oauth.refreshes) == len(set(oauth.refreshes)) == 1000
    assert oauth.reused == 0
    assert (await store.get(LOCATION)).refresh_token in oauth._live_refresh


async def test_no_token_is_logged(tokens, store, oauth, clock, caplog):
    """Refreshes, failures and revocations log owner ids, never a token."""
    caplog.set_level(logging.DEBUG)
    await install(store, oauth, clock)
    await expire(store, clock)
    await tokens.for_location(LOCATION)
    await expire(store, clock)
    oauth.revoke()
    with pytest.raises(TokenUnavailable):
        await tokens.for_location(LOCATION)

    logged = " ".join(str(vars(record)) for record in caplog.records)
    assert "token.refreshed" in logged
    assert LOCATION in logged
    assert "access-" not in logged
    assert "refresh-" not in logged


async def test_closing_lets_a_refresh_under_way_store_its_pair(
    tokens, store, oauth, clock
):
    """Shutdown waits for a refresh GHL is answering, so no pair is lost."""
    installed = await install(store, oauth, clock)
    await expire(store, clock)
    answering = asyncio.Event()
    release = asyncio.Event()

    async def slow_ghl():
        answering.set()
        await release.wait()

    oauth.during_call = slow_ghl
    caller = asyncio.create_task(tokens.for_location(LOCATION))
    await answering.wait()
    caller.cancel()  # the job that asked is cancelled by the shutdown

    closing = asyncio.create_task(tokens.close(grace=5))
    await asyncio.sleep(0)
    release.set()
    await closing

    stored = await store.get(LOCATION)
    assert stored.refresh_token not in {installed.refresh_token, None}
    assert stored.refresh_token in oauth._live_refresh


# --- a store that fails after GHL rotated the pair ------------------------------


class FlakyStore(MemoryInstallationStore):
    """A memory store whose next `failures` compare-and-sets raise."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def replace_if_refresh_token(self, installation, expected_refresh_token):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the store is down")
        return await super().replace_if_refresh_token(
            installation, expected_refresh_token
        )


@pytest.fixture
def flaky():
    return FlakyStore()


async def test_a_store_failure_after_rotation_is_retried_until_the_pair_lands(
    flaky, leases, oauth, clock, policy
):
    """A store failing twice right after GHL rotated the pair still gets it."""
    tokens = RefreshingAccessTokens(flaky, leases, oauth, clock, policy)
    installed = await install(flaky, oauth, clock)
    await expire(flaky, clock)
    flaky.failures = 2

    token = await tokens.for_location(LOCATION)

    stored = await flaky.get(LOCATION)
    assert token == stored.access_token != installed.access_token
    assert stored.refresh_token in oauth._live_refresh


async def test_a_pair_the_store_refuses_is_kept_and_written_before_any_refresh(
    flaky, leases, oauth, clock, policy
):
    """A pair the store never took is used from memory, then stored, not lost."""
    tokens = RefreshingAccessTokens(flaky, leases, oauth, clock, policy)
    installed = await install(flaky, oauth, clock)
    await expire(flaky, clock)
    flaky.failures = policy.store_attempts

    first = await tokens.for_location(LOCATION)
    assert (await flaky.get(LOCATION)).refresh_token == installed.refresh_token

    second = await tokens.for_location(LOCATION)  # the store is back

    stored = await flaky.get(LOCATION)
    assert first == second == stored.access_token != installed.access_token
    assert stored.refresh_token in oauth._live_refresh
    assert oauth.refreshes == [installed.refresh_token]


async def test_the_next_refresh_uses_the_pair_kept_in_memory(
    flaky, leases, oauth, clock, policy
):
    """When the kept pair expires, it (not the dead stored one) is refreshed."""
    tokens = RefreshingAccessTokens(flaky, leases, oauth, clock, policy)
    installed = await install(flaky, oauth, clock)
    await expire(flaky, clock)
    flaky.failures = policy.store_attempts + 1  # the resumed write fails too
    kept = await tokens.for_location(LOCATION)
    clock.advance(oauth.lifetime)

    token = await tokens.for_location(LOCATION)

    stored = await flaky.get(LOCATION)
    assert token == stored.access_token not in {kept, installed.access_token}
    assert oauth.reused == 0
    assert len(oauth.refreshes) == 2
    assert stored.state is InstallationState.ACTIVE


# --- an UNINSTALL landing during a refresh ----------------------------------------


def uninstall_meanwhile(store, clock):
    """A during_call that stores the UNINSTALL webhook's record."""

    async def uninstall():
        current = await store.get(LOCATION)
        await store.put(
            attrs.evolve(
                current,
                access_token="",
                refresh_token=None,
                state=InstallationState.UNINSTALLED,
                uninstalled_at=clock.now(),
            )
        )

    return uninstall


async def test_an_uninstall_during_a_mint_is_not_overwritten(
    tokens, store, oauth, clock
):
    """A minted token never re-activates a location uninstalled meanwhile."""
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock)
    oauth.during_call = uninstall_meanwhile(store, clock)

    with pytest.raises(LocationNotInstalled):
        await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert stored.state is InstallationState.UNINSTALLED
    assert stored.uninstalled_at is not None


async def test_an_uninstall_during_a_refused_mint_is_not_marked_needs_reauth(
    tokens, store, oauth, clock
):
    """needs_reauth is never written over an uninstall that landed meanwhile."""
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock)
    oauth.mint_errors[LOCATION] = GhlUnauthorized("Invalid token")
    oauth.revoke()
    oauth.during_call = uninstall_meanwhile(store, clock)

    with pytest.raises(LocationNotInstalled):
        await tokens.for_location(LOCATION)

    assert (await store.get(LOCATION)).state is InstallationState.UNINSTALLED


async def test_an_uninstall_during_an_inactive_mint_is_not_backed_off(
    tokens, store, oauth, clock
):
    """The backoff record is never written over an uninstall."""
    await install(store, oauth, clock, COMPANY, user_type=UserType.COMPANY)
    await install(store, oauth, clock, with_refresh=False, company_id=COMPANY)
    await expire(store, clock)
    oauth.mint_errors[LOCATION] = LocationInactive("Location is not active")
    oauth.during_call = uninstall_meanwhile(store, clock)

    with pytest.raises((TokenUnavailable, LocationNotInstalled)):
        await tokens.for_location(LOCATION)

    stored = await store.get(LOCATION)
    assert stored.state is InstallationState.UNINSTALLED
    assert stored.retry_refresh_at is None
