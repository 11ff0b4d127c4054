"""The InstallationStore contract: installations by owner, refresh by CAS."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import attrs

from castghl_core.installations import Installation, InstallationState, UserType

T0 = datetime(2026, 3, 1, 8, 30, 0, 500000, tzinfo=UTC)

# Shaped like GHL's tokens: long, dotted, with base64url characters.
ACCESS = "eyJhbGciOiJSUzI1NiJ9.eyJhdXRoQ2xhc3MiOiJMb2NhdGlvbiJ9.c2lnbmF0dXJl-_"
REFRESH = "eyJhbGciOiJIUzI1NiJ9.cmVmcmVzaA.b3JpZ2luYWw_-"


def make_installation(owner_id: str = "loc-1", **changes: object) -> Installation:
    installation = Installation(
        owner_id=owner_id,
        user_type=UserType.LOCATION,
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=T0 + timedelta(hours=24),
    )
    return attrs.evolve(installation, **changes)  # type: ignore[arg-type]


def rotated(installation: Installation, n: int) -> Installation:
    """The installation after a refresh that returned token pair `n`."""
    return attrs.evolve(
        installation,
        access_token=f"access-{n}",
        refresh_token=f"refresh-{n}",
        updated_at=T0 + timedelta(seconds=n),
    )


async def test_get_of_an_unknown_owner_is_none(installations):
    """Nothing is found for an owner never installed."""
    assert await installations.get("loc-unknown") is None


async def test_every_field_survives_put_and_get(installations):
    """A company installation with every field set reads back equal."""
    installation = Installation(
        owner_id="company-1",
        user_type=UserType.COMPANY,
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=T0,
        company_id="company-1",
        scopes=("conversations/message.write", "contacts.readonly"),
        state=InstallationState.NEEDS_REAUTH,
        state_reason="GHL said invalid_grant",
        updated_at=T0 - timedelta(minutes=3),
        installed_at=T0 - timedelta(days=2),
    )

    await installations.put(installation)

    stored = await installations.get("company-1")
    assert stored == installation
    assert stored.user_type is UserType.COMPANY
    assert stored.state is InstallationState.NEEDS_REAUTH
    assert stored.scopes == ("conversations/message.write", "contacts.readonly")
    assert (stored.access_token, stored.refresh_token) == (ACCESS, REFRESH)


async def test_a_missing_refresh_token_survives_put_and_get(installations):
    """An installation without a refresh token reads back with None."""
    installation = make_installation(refresh_token=None, scopes=())

    await installations.put(installation)

    assert await installations.get("loc-1") == installation


async def test_put_replaces_the_installation(installations):
    """A second put for an owner replaces the first."""
    await installations.put(make_installation())
    newer = rotated(make_installation(), 1)

    await installations.put(newer)

    assert await installations.get("loc-1") == newer


async def test_list_returns_every_installation_in_owner_order(installations):
    """list gives every installation sorted by owner id."""
    for owner_id in ["loc-c", "company-z", "loc-a"]:
        await installations.put(make_installation(owner_id))

    listed = await installations.list()

    assert [i.owner_id for i in listed] == ["company-z", "loc-a", "loc-c"]
    assert {i.access_token for i in listed} == {ACCESS}


async def test_delete_forgets_an_installation(installations):
    """After delete the owner has no installation."""
    await installations.put(make_installation("loc-1"))
    await installations.put(make_installation("loc-2"))

    await installations.delete("loc-1")

    assert await installations.get("loc-1") is None
    assert [i.owner_id for i in await installations.list()] == ["loc-2"]


async def test_delete_of_an_unknown_owner_is_harmless(installations):
    """Deleting an installation that does not exist raises nothing."""
    await installations.delete("loc-unknown")

    assert await installations.get("loc-unknown") is None


# --- compare-and-set ----------------------------------------------------------


async def test_cas_with_the_stored_refresh_token_writes(installations):
    """A replacement expecting the stored refresh token is written."""
    await installations.put(make_installation())
    newer = rotated(make_installation(), 1)

    assert await installations.replace_if_refresh_token(newer, REFRESH) is True

    assert await installations.get("loc-1") == newer


async def test_cas_with_a_stale_refresh_token_is_refused(installations):
    """A replacement expecting a refresh token already rotated writes nothing."""
    current = rotated(make_installation(), 1)
    await installations.put(current)

    written = await installations.replace_if_refresh_token(
        rotated(make_installation(), 2), REFRESH
    )

    assert written is False
    assert await installations.get("loc-1") == current


async def test_cas_of_an_unknown_owner_is_refused(installations):
    """Compare-and-set never creates an installation."""
    written = await installations.replace_if_refresh_token(make_installation(), None)

    assert written is False
    assert await installations.get("loc-1") is None


async def test_cas_expecting_no_refresh_token_matches_none(installations):
    """Expecting None matches an installation stored without a refresh token."""
    await installations.put(make_installation(refresh_token=None))
    newer = rotated(make_installation(), 1)

    assert await installations.replace_if_refresh_token(newer, None) is True
    assert await installations.get("loc-1") == newer


async def test_cas_expecting_no_refresh_token_refuses_a_stored_one(installations):
    """Expecting None does not match a stored refresh token."""
    await installations.put(make_installation())

    written = await installations.replace_if_refresh_token(
        rotated(make_installation(), 1), None
    )

    assert written is False
    assert (await installations.get("loc-1")).refresh_token == REFRESH


async def test_concurrent_cas_with_one_expected_token_has_one_winner(installations):
    """Of 20 refreshes racing from the same token, exactly one is stored."""
    await installations.put(make_installation())
    candidates = [rotated(make_installation(), n) for n in range(20)]

    results = await asyncio.gather(
        *(installations.replace_if_refresh_token(c, REFRESH) for c in candidates)
    )

    assert results.count(True) == 1
    assert await installations.get("loc-1") == candidates[results.index(True)]


async def test_cas_from_two_handles_has_one_winner(backend):
    """Two service processes refreshing one location at once: one pair is kept."""
    first, second = await backend.connect(), await backend.connect()
    await first.installations.put(make_installation())
    candidates = [rotated(make_installation(), n) for n in range(20)]

    results = await asyncio.gather(
        *(
            (first if n % 2 else second).installations.replace_if_refresh_token(
                candidate, REFRESH
            )
            for n, candidate in enumerate(candidates)
        )
    )

    assert results.count(True) == 1
    assert await second.installations.get("loc-1") == candidates[results.index(True)]


async def test_the_refresh_and_uninstall_fields_survive_put_and_get(installations):
    """Backoff counters, retry time and uninstall time read back equal."""
    installation = make_installation(
        refresh_failures=3,
        retry_refresh_at=T0 + timedelta(minutes=4),
        state_reason="GHL says the location is not active",
    )

    await installations.put(installation)

    stored = await installations.get("loc-1")
    assert stored == installation
    assert stored.refresh_failures == 3
    assert stored.retry_refresh_at == T0 + timedelta(minutes=4)


async def test_an_uninstalled_installation_without_tokens_survives(installations):
    """An uninstall leaves an empty access token and no refresh token."""
    uninstalled = make_installation(
        access_token="",
        refresh_token=None,
        state=InstallationState.UNINSTALLED,
        uninstalled_at=T0,
    )

    await installations.put(uninstalled)

    assert await installations.get("loc-1") == uninstalled


async def test_cas_can_mark_needs_reauth_with_the_token_it_refused(installations):
    """The provider marks a revocation with a compare-and-set on that token."""
    await installations.put(make_installation())
    marked = make_installation(
        state=InstallationState.NEEDS_REAUTH, state_reason="Invalid grant"
    )

    assert await installations.replace_if_refresh_token(marked, REFRESH) is True
    assert (await installations.get("loc-1")).state is InstallationState.NEEDS_REAUTH


async def test_cas_never_writes_over_an_uninstall(installations):
    """An uninstalled record (no refresh token) refuses a CAS expecting None."""
    uninstalled = make_installation(
        access_token="",
        refresh_token=None,
        state=InstallationState.UNINSTALLED,
        uninstalled_at=T0,
    )
    await installations.put(uninstalled)

    written = await installations.replace_if_refresh_token(
        rotated(make_installation(), 1), None
    )

    assert written is False
    assert await installations.get("loc-1") == uninstalled


async def test_cas_never_writes_over_an_uninstall_keeping_its_token(installations):
    """Even with the expected refresh token still stored, an uninstall wins."""
    uninstalled = make_installation(state=InstallationState.UNINSTALLED)
    await installations.put(uninstalled)

    written = await installations.replace_if_refresh_token(
        make_installation(state=InstallationState.NEEDS_REAUTH), REFRESH
    )

    assert written is False
    assert (await installations.get("loc-1")).state is InstallationState.UNINSTALLED
