"""The Outbox contract: claim-once, leased pick-up, fenced updates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import attrs

from castghl_core.jobs import DeliveryStatus, JobState, OutboundJob, Outcome

# Whole milliseconds: BSON dates keep no finer time, and every backend must
# pass this suite.
T0 = datetime(2026, 3, 1, 8, 30, 0, 123000, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def make_job(message_id: str = "msg-1", **changes: object) -> OutboundJob:
    job = OutboundJob(
        message_id=message_id,
        location_id="loc-1",
        phone="+639171234567",
        text="Hello from castghl",
        created_at=T0,
        due_at=T0,
    )
    return attrs.evolve(job, **changes)  # type: ignore[arg-type]


def full_job() -> OutboundJob:
    """A job with every field set to something other than its default."""
    return OutboundJob(
        message_id="msg-full",
        location_id="loc-full",
        phone="+639998887777",
        text="Salamat po! ñ 🙏 «quoted» \"double\" 'single'\nsecond line",
        created_at=T0,
        due_at=T0 + timedelta(minutes=5),
        contact_id="contact-9",
        state=JobState.REPORTING,
        attempt=3,
        cast_message_id="cast-123",
        parts=2,
        sent_at=T0 + timedelta(seconds=2),
        outcome=Outcome.failed("INVALID_NUMBER", "the number is not reachable"),
        last_error="GHL answered 429",
        lease_owner=None,
        lease_expires_at=None,
        updated_at=T0 + timedelta(minutes=1),
    )


async def claim_all(outbox, *jobs: OutboundJob) -> None:
    for job in jobs:
        assert await outbox.claim(job)


# --- claim ------------------------------------------------------------------


async def test_claim_inserts_a_new_job(outbox):
    """Claiming an unknown message id stores the job and returns True."""
    job = make_job()

    assert await outbox.claim(job) is True

    assert await outbox.get("msg-1") == job


async def test_duplicate_claim_returns_false_and_keeps_the_first_job(outbox):
    """A second claim of a message id is refused and overwrites nothing."""
    first = make_job(text="first")
    await outbox.claim(first)

    assert await outbox.claim(make_job(text="second", phone="+639170000000")) is False

    assert await outbox.get("msg-1") == first


async def test_concurrent_claims_of_one_message_id_insert_it_once(outbox):
    """Of 50 simultaneous claims of one message id, exactly one wins."""
    jobs = [make_job(text=f"attempt {n}") for n in range(50)]

    results = await asyncio.gather(*(outbox.claim(job) for job in jobs))

    assert results.count(True) == 1
    winner = jobs[results.index(True)]
    assert await outbox.get("msg-1") == winner


async def test_claims_from_two_handles_insert_a_message_id_once(backend):
    """Two service processes claiming one message id at once: one wins."""
    first, second = await backend.connect(), await backend.connect()
    jobs = [make_job(text=f"attempt {n}") for n in range(40)]

    results = await asyncio.gather(
        *((first if n % 2 else second).outbox.claim(job) for n, job in enumerate(jobs))
    )

    assert results.count(True) == 1
    assert await second.outbox.get("msg-1") == jobs[results.index(True)]


async def test_get_of_an_unknown_message_id_is_none(outbox):
    """Nothing is found for a message id never claimed."""
    assert await outbox.get("never-claimed") is None


# --- round trip ---------------------------------------------------------------


async def test_every_field_survives_claim_and_get(outbox):
    """A job with every field set reads back equal, Outcome included."""
    job = full_job()
    await outbox.claim(job)

    stored = await outbox.get(job.message_id)

    assert stored == job
    assert stored.state is JobState.REPORTING
    assert stored.outcome.status is DeliveryStatus.FAILED


async def test_none_values_survive_claim_and_get(outbox):
    """A job with every optional field None reads back with them None."""
    job = make_job()
    await outbox.claim(job)

    stored = await outbox.get(job.message_id)

    assert stored == job
    assert stored.outcome is None
    assert stored.sent_at is None
    assert stored.contact_id is None


async def test_a_delivered_outcome_survives_claim_and_get(outbox):
    """An Outcome with no code or reason reads back as it was."""
    job = make_job(state=JobState.REPORTING, outcome=Outcome.delivered())
    await outbox.claim(job)

    stored = await outbox.get(job.message_id)

    assert stored.outcome == Outcome.delivered()


async def test_every_field_survives_update_and_get(outbox):
    """An update written under the lease reads back equal, lease fields too."""
    await outbox.claim(attrs.evolve(full_job(), state=JobState.SENT, due_at=T0))
    leased = await outbox.lease_due("worker-a", T0, LEASE, 10)
    assert [job.message_id for job in leased] == ["msg-full"]
    updated = attrs.evolve(
        full_job(), lease_owner="worker-a", lease_expires_at=T0 + 2 * LEASE
    )

    assert await outbox.update(updated, owner="worker-a") is True

    assert await outbox.get(updated.message_id) == updated


# --- lease_due ----------------------------------------------------------------


async def test_lease_due_hands_out_only_jobs_due_by_now(outbox):
    """Jobs due later than `now` stay where they are; one due at `now` is due."""
    await claim_all(
        outbox,
        make_job("past", due_at=T0 - timedelta(seconds=1)),
        make_job("now", due_at=T0),
        make_job("later", due_at=T0 + timedelta(microseconds=1000)),
    )

    leased = await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert [job.message_id for job in leased] == ["past", "now"]


async def test_lease_due_returns_the_earliest_due_first_up_to_the_limit(outbox):
    """With more due jobs than the limit, the earliest due are leased, in order."""
    offsets = {"e": 1, "b": 5, "d": 2, "a": 4, "c": 3}
    await claim_all(
        outbox,
        *(
            make_job(name, due_at=T0 - timedelta(minutes=minutes))
            for name, minutes in offsets.items()
        ),
    )

    leased = await outbox.lease_due("worker-a", T0, LEASE, 3)

    assert [job.message_id for job in leased] == ["b", "a", "c"]


async def test_lease_due_with_a_zero_limit_leases_nothing(outbox):
    """A limit of 0 leases no job."""
    await outbox.claim(make_job())

    assert await outbox.lease_due("worker-a", T0, LEASE, 0) == []
    assert (await outbox.get("msg-1")).lease_owner is None


async def test_lease_due_records_the_owner_and_the_expiry(outbox):
    """A leased job carries its owner and now + lease_for, as returned and stored."""
    await outbox.claim(make_job())

    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert leased.lease_owner == "worker-a"
    assert leased.lease_expires_at == T0 + LEASE
    assert await outbox.get("msg-1") == leased


async def test_lease_due_changes_nothing_but_the_lease(outbox):
    """Leasing leaves every other field of the job as it was."""
    job = attrs.evolve(full_job(), state=JobState.SENT, due_at=T0)
    await outbox.claim(job)

    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert attrs.evolve(leased, lease_owner=None, lease_expires_at=None) == job


async def test_lease_due_skips_jobs_under_an_unexpired_lease(outbox):
    """A job leased by one owner is not handed to another before expiry."""
    await outbox.claim(make_job())
    await outbox.lease_due("worker-a", T0, LEASE, 10)

    later = T0 + LEASE - timedelta(milliseconds=1)

    assert await outbox.lease_due("worker-b", later, LEASE, 10) == []


async def test_lease_due_skips_jobs_the_same_owner_already_holds(outbox):
    """Leasing again does not hand an owner the job it already holds."""
    await outbox.claim(make_job())
    await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert await outbox.lease_due("worker-a", T0, LEASE, 10) == []


async def test_an_expired_lease_can_be_taken_by_another_owner(outbox):
    """Once the lease expires, the job is leased again to a new owner."""
    await outbox.claim(make_job())
    await outbox.lease_due("worker-a", T0, LEASE, 10)
    later = T0 + LEASE + timedelta(seconds=1)

    [leased] = await outbox.lease_due("worker-b", later, LEASE, 10)

    assert leased.lease_owner == "worker-b"
    assert leased.lease_expires_at == later + LEASE


async def test_a_lease_expiring_exactly_now_can_be_taken(outbox):
    """A lease is over at its expiry instant."""
    await outbox.claim(make_job())
    await outbox.lease_due("worker-a", T0, LEASE, 10)

    leased = await outbox.lease_due("worker-b", T0 + LEASE, LEASE, 10)

    assert [job.lease_owner for job in leased] == ["worker-b"]


async def test_final_jobs_are_never_leased(outbox):
    """Reported and dead jobs are not handed out, however overdue."""
    past = T0 - timedelta(days=1)
    await claim_all(
        outbox,
        make_job("reported", state=JobState.REPORTED, due_at=past),
        make_job("dead", state=JobState.DEAD, due_at=past),
        make_job("sent", state=JobState.SENT, due_at=past),
    )

    leased = await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert [job.message_id for job in leased] == ["sent"]


async def test_every_unfinished_state_is_leased(outbox):
    """Accepted, sent and reporting jobs are all picked up when due."""
    await claim_all(
        outbox,
        make_job("a", state=JobState.ACCEPTED, due_at=T0 - timedelta(seconds=3)),
        make_job("b", state=JobState.SENT, due_at=T0 - timedelta(seconds=2)),
        make_job("c", state=JobState.REPORTING, due_at=T0 - timedelta(seconds=1)),
    )

    leased = await outbox.lease_due("worker-a", T0, LEASE, 10)

    assert [job.message_id for job in leased] == ["a", "b", "c"]


async def test_concurrent_owners_never_lease_the_same_job(outbox):
    """Five owners leasing at once share 20 jobs without overlap."""
    await claim_all(
        outbox,
        *(make_job(f"m{n:02}", due_at=T0 - timedelta(seconds=n)) for n in range(20)),
    )

    batches = await asyncio.gather(
        *(outbox.lease_due(f"worker-{n}", T0, LEASE, 6) for n in range(5))
    )

    leased = [job.message_id for batch in batches for job in batch]
    assert len(leased) == len(set(leased)) == 20
    for n, batch in enumerate(batches):
        assert {job.lease_owner for job in batch} <= {f"worker-{n}"}


async def test_two_handles_leasing_at_once_never_share_a_job(backend):
    """Two service processes leasing together never both get one job."""
    first, second = await backend.connect(), await backend.connect()
    await claim_all(
        first.outbox,
        *(make_job(f"m{n:02}", due_at=T0 - timedelta(seconds=n)) for n in range(30)),
    )

    batches = await asyncio.gather(
        *(
            handle.outbox.lease_due(f"worker-{n}", T0, LEASE, 4)
            for n, handle in enumerate([first, second] * 5)
        )
    )

    leased = [job.message_id for batch in batches for job in batch]
    assert len(leased) == len(set(leased)) == 30


# --- update -------------------------------------------------------------------


async def test_the_lease_holder_can_update_the_job(outbox):
    """The owner holding the lease writes a new state of the job."""
    await outbox.claim(make_job())
    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)
    sent = leased.move_to(JobState.SENT, T0, cast_message_id="cast-1", parts=1)

    assert await outbox.update(sent, owner="worker-a") is True

    assert await outbox.get("msg-1") == sent


async def test_an_owner_without_the_lease_cannot_update(outbox):
    """An update by an owner that does not hold the lease is refused."""
    await outbox.claim(make_job())
    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)

    changed = attrs.evolve(leased, text="changed")

    assert await outbox.update(changed, owner="worker-b") is False
    assert await outbox.get("msg-1") == leased


async def test_an_unleased_job_cannot_be_updated(outbox):
    """An update of a job nobody leased is refused."""
    job = make_job()
    await outbox.claim(job)

    assert await outbox.update(attrs.evolve(job, attempt=1), owner="worker-a") is False
    assert await outbox.get("msg-1") == job


async def test_an_update_of_an_unknown_job_is_refused(outbox):
    """Updating a message id that was never claimed writes nothing."""
    assert await outbox.update(make_job(), owner="worker-a") is False
    assert await outbox.get("msg-1") is None


async def test_a_stale_owner_cannot_update_after_another_re_leased(outbox):
    """Once a new owner leased the expired job, the old owner's write is refused."""
    await outbox.claim(make_job())
    [stale] = await outbox.lease_due("worker-a", T0, LEASE, 10)
    later = T0 + 2 * LEASE
    [fresh] = await outbox.lease_due("worker-b", later, LEASE, 10)

    refused = await outbox.update(stale.move_to(JobState.SENT, later), owner="worker-a")
    accepted = await outbox.update(
        fresh.move_to(JobState.SENT, later, cast_message_id="cast-b"),
        owner="worker-b",
    )

    assert (refused, accepted) == (False, True)
    assert (await outbox.get("msg-1")).cast_message_id == "cast-b"


async def test_releasing_by_update_makes_the_job_leasable_at_once(outbox):
    """A job written back without a lease is picked up by the next lease_due."""
    await outbox.claim(make_job())
    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)
    released = attrs.evolve(leased, lease_owner=None, lease_expires_at=None)
    await outbox.update(released, owner="worker-a")

    again = await outbox.lease_due("worker-b", T0, LEASE, 10)

    assert [job.lease_owner for job in again] == ["worker-b"]


async def test_an_update_can_postpone_a_job(outbox):
    """A job rescheduled by its holder is not due again before its new due time."""
    await outbox.claim(make_job())
    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)
    retry_at = T0 + timedelta(minutes=10)
    postponed = attrs.evolve(
        leased.retry_at(retry_at, "Cast unavailable", T0),
        lease_owner=None,
        lease_expires_at=None,
    )
    await outbox.update(postponed, owner="worker-a")

    before = await outbox.lease_due(
        "worker-b", retry_at - timedelta(seconds=1), LEASE, 9
    )
    after = await outbox.lease_due("worker-b", retry_at, LEASE, 9)

    assert before == []
    assert [job.attempt for job in after] == [1]


# --- count_by_state -------------------------------------------------------------


async def test_count_by_state_of_an_empty_outbox_is_empty(outbox):
    """No jobs, no counts."""
    assert dict(await outbox.count_by_state()) == {}


async def test_count_by_state_counts_the_jobs_in_each_state(outbox):
    """Each state with jobs maps to how many it has."""
    await claim_all(
        outbox,
        make_job("a"),
        make_job("b"),
        make_job("c", state=JobState.SENT),
        make_job("d", state=JobState.DEAD),
        make_job("e", state=JobState.REPORTED),
        make_job("f", state=JobState.REPORTED),
        make_job("g", state=JobState.REPORTED),
    )

    counts = await outbox.count_by_state()

    assert dict(counts) == {
        JobState.ACCEPTED: 2,
        JobState.SENT: 1,
        JobState.DEAD: 1,
        JobState.REPORTED: 3,
    }


async def test_count_by_state_follows_updates(outbox):
    """A job counts in the state it was last written in."""
    await outbox.claim(make_job())
    [leased] = await outbox.lease_due("worker-a", T0, LEASE, 10)
    await outbox.update(leased.move_to(JobState.SENT, T0), owner="worker-a")

    assert dict(await outbox.count_by_state()) == {JobState.SENT: 1}


async def test_count_unfinished_counts_every_state_but_reported_and_dead(outbox):
    """accepted, sent and reporting count; reported and dead do not."""
    assert await outbox.count_unfinished() == 0
    await claim_all(
        outbox,
        make_job("a"),
        make_job("b", state=JobState.SENT),
        make_job("c", state=JobState.REPORTING),
        make_job("d", state=JobState.DEAD),
        make_job("e", state=JobState.REPORTED),
    )
    assert await outbox.count_unfinished() == 3
