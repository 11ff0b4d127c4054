"""The Leases contract: one holder per name until the lease expires."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
TTL = timedelta(seconds=30)


async def test_a_free_name_is_acquired(leases):
    """Nobody holds a new name, so the first owner gets it."""
    assert await leases.acquire("token-refresh", "worker-a", T0, TTL) is True


async def test_another_owner_is_refused_while_the_lease_runs(leases):
    """A second owner cannot take a name held unexpired."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)

    almost_expired = T0 + TTL - timedelta(milliseconds=1)

    assert (
        await leases.acquire("token-refresh", "worker-b", almost_expired, TTL) is False
    )


async def test_the_holder_renews_its_lease(leases):
    """The holder acquiring again succeeds and pushes the expiry out."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)
    renewed_at = T0 + TTL / 2

    renewed = await leases.acquire("token-refresh", "worker-a", renewed_at, TTL)
    after_first_expiry = T0 + TTL + timedelta(seconds=1)
    taken = await leases.acquire("token-refresh", "worker-b", after_first_expiry, TTL)

    assert (renewed, taken) == (True, False)


async def test_an_expired_lease_goes_to_a_new_owner(leases):
    """At its expiry instant a lease is free for anyone."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)

    assert await leases.acquire("token-refresh", "worker-b", T0 + TTL, TTL) is True
    assert await leases.acquire("token-refresh", "worker-a", T0 + TTL, TTL) is False


async def test_release_frees_the_name_at_once(leases):
    """After the holder releases, another owner acquires before the expiry."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)

    await leases.release("token-refresh", "worker-a")

    assert await leases.acquire("token-refresh", "worker-b", T0, TTL) is True


async def test_release_by_another_owner_does_nothing(leases):
    """Only the holder can release: the lease still stands after a stranger tries."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)

    await leases.release("token-refresh", "worker-b")

    assert await leases.acquire("token-refresh", "worker-b", T0, TTL) is False


async def test_release_of_an_unknown_name_is_harmless(leases):
    """Releasing a name nobody holds raises nothing and blocks nothing."""
    await leases.release("never-held", "worker-a")

    assert await leases.acquire("never-held", "worker-b", T0, TTL) is True


async def test_names_are_independent(leases):
    """Holding one name says nothing about another."""
    await leases.acquire("token-refresh", "worker-a", T0, TTL)

    assert await leases.acquire("outbox-sweep", "worker-b", T0, TTL) is True


async def test_concurrent_acquires_have_one_winner(leases):
    """Of 20 owners acquiring one name at once, exactly one gets it."""
    results = await asyncio.gather(
        *(leases.acquire("token-refresh", f"worker-{n}", T0, TTL) for n in range(20))
    )

    assert results.count(True) == 1


async def test_acquires_from_two_handles_have_one_winner(backend):
    """Two service processes racing for one name: exactly one gets it."""
    first, second = await backend.connect(), await backend.connect()

    results = await asyncio.gather(
        *(
            (first if n % 2 else second).leases.acquire(
                "token-refresh", f"worker-{n}", T0, TTL
            )
            for n in range(20)
        )
    )

    assert results.count(True) == 1
