"""Use case: dispatch outbound (send, follow delivery, report to GHL)."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from castghl_core.errors import (
    CastRejected,
    CastUnavailable,
    GhlNotReady,
    GhlRateLimited,
    GhlRejected,
    GhlUnavailable,
    SecretUnreadable,
)
from castghl_core.gateway import CastStatus
from castghl_core.jobs import DeliveryStatus, JobState, OutboundJob

from fakes import API_KEY, LOCATION, TOKEN, ReportedStatus

OWNER = "worker-1"


async def claimed(outbox, clock, **changes):
    fields = {
        "message_id": "M1",
        "location_id": LOCATION,
        "phone": "+63 917 123 4567",
        "text": "Hello from castghl",
        "created_at": clock.now(),
        "due_at": clock.now(),
        **changes,
    }
    job = OutboundJob(**fields)
    assert await outbox.claim(job)
    return job


async def run_due(outbox, dispatch, clock):
    """Lease whatever is due and run it, as the dispatcher would."""
    jobs = await outbox.lease_due(OWNER, clock.now(), timedelta(seconds=60), 10)
    for job in jobs:
        await dispatch.run(job, OWNER)
    return await outbox.get("M1")


async def test_a_message_is_sent_once_then_reported_delivered(
    outbox, dispatch, clock, gateway, ghl
):
    """The happy path: one send with the key, sender and idempotency key."""
    await claimed(outbox, clock)

    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.SENT
    assert job.cast_message_id == "CAST0001"
    assert ghl.reports == []  # queued at Cast is not delivered
    [request] = gateway.sent
    assert (request.api_key, request.to, request.sender_id) == (
        API_KEY,
        "09171234567",
        "CASTDEMO",
    )
    assert request.idempotency_key == "M1"

    clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTED
    assert ghl.reports == [ReportedStatus(TOKEN, "M1", DeliveryStatus.DELIVERED, None)]
    assert len(gateway.sent) == 1
    assert job.lease_owner is None


async def test_the_status_is_not_looked_up_before_the_first_poll_delay(
    outbox, dispatch, clock, gateway
):
    """After the send the job waits first_poll_after before asking Cast."""
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    clock.advance(1)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.SENT
    assert gateway.status_lookups == 0


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("+15864603685", "NOT_PHILIPPINE_NUMBER"),
        ("+6328123456", "NOT_MOBILE_NUMBER"),
        ("", "MISSING_NUMBER"),
    ],
)
async def test_a_number_castghl_cannot_send_to_is_reported_failed(
    outbox, dispatch, clock, gateway, ghl, phone, code
):
    """Nothing is sent and GHL hears `failed` with the specific code."""
    await claimed(outbox, clock, phone=phone)
    job = await run_due(outbox, dispatch, clock)
    assert gateway.sent == []
    assert job.state is JobState.REPORTED
    [report] = ghl.reports
    assert report.status is DeliveryStatus.FAILED
    assert report.error is not None
    assert report.error[0] == code


async def test_a_location_without_a_cast_key_fails_clearly(
    outbox, dispatch, clock, gateway, ghl, secrets
):
    """Missing configuration is reported, not retried forever."""
    await secrets.delete(LOCATION)
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    assert gateway.sent == []
    assert ghl.reports[0].error[0] == "CAST_NOT_CONFIGURED"


async def test_a_message_longer_than_the_part_limit_fails(
    outbox, dispatch, clock, gateway, ghl
):
    """Four GSM-7 parts against a limit of three: failed, with the count."""
    await claimed(outbox, clock, text="x" * 460)
    await run_due(outbox, dispatch, clock)
    assert gateway.sent == []
    code, reason = ghl.reports[0].error
    assert code == "MESSAGE_TOO_LONG"
    assert "4 SMS parts" in reason


async def test_a_rate_limited_send_waits_for_retry_after_then_sends_once(
    outbox, dispatch, clock, gateway, ghl
):
    """429 with Retry-After reschedules; the next try sends exactly once."""
    gateway.send_errors.append(CastUnavailable("HTTP 429", retry_after=7))
    await claimed(outbox, clock)

    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.ACCEPTED
    assert job.attempt == 1
    assert job.due_at == clock.now() + timedelta(seconds=7)
    assert gateway.sent == []

    clock.advance(6)
    await run_due(outbox, dispatch, clock)
    assert gateway.sent == []
    clock.advance(1)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.SENT
    assert len(gateway.sent) == 1


async def test_a_rejected_send_reports_cast_error_code(
    outbox, dispatch, clock, gateway, ghl
):
    """INSUFFICIENT_CREDITS is final: failed with that code and Cast's text."""
    gateway.send_errors.append(
        CastRejected("INSUFFICIENT_CREDITS", "Not enough credits", 402)
    )
    await claimed(outbox, clock)
    job = await run_due(outbox, dispatch, clock)
    assert job.outcome.code == "INSUFFICIENT_CREDITS"
    assert ghl.reports[0].error == ("INSUFFICIENT_CREDITS", "Not enough credits")


async def test_sends_stop_being_retried_after_the_send_window(
    outbox, dispatch, clock, gateway, ghl
):
    """Cast down for longer than send_window: the message is reported failed."""
    await claimed(outbox, clock)
    gateway.send_errors.append(CastUnavailable("HTTP 503"))
    await run_due(outbox, dispatch, clock)
    clock.advance(3601)
    gateway.send_errors.append(CastUnavailable("HTTP 503"))
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTED
    assert job.outcome.code == "CAST_UNAVAILABLE"
    assert gateway.sent == []


async def test_an_undelivered_message_is_reported_failed_with_the_reason(
    outbox, dispatch, clock, gateway, ghl
):
    """Cast's `undelivered` becomes GHL's `failed`, with Cast's detail."""
    gateway.status_answers.append(CastStatus.UNDELIVERED)
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert job.outcome.status is DeliveryStatus.FAILED
    assert ghl.reports[0].error == ("UNDELIVERED", "UNDELIV")


async def test_pending_status_is_polled_again_until_delivered(
    outbox, dispatch, clock, gateway, ghl
):
    """`sent` and `pending` keep the job waiting with growing delays."""
    gateway.status_answers += [CastStatus.SENT, CastStatus.PENDING]
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert (job.state, job.attempt) == (JobState.SENT, 1)
    assert job.due_at == clock.now() + timedelta(seconds=1)
    clock.advance(1)
    job = await run_due(outbox, dispatch, clock)
    assert job.due_at == clock.now() + timedelta(seconds=2)
    clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTED
    assert ghl.reports[0].status is DeliveryStatus.DELIVERED
    assert gateway.status_lookups == 3


async def test_a_status_that_never_becomes_final_is_reported_unconfirmed(
    outbox, dispatch, clock, gateway, ghl
):
    """Past delivery_timeout the message is reported failed, never delivered."""
    gateway.status_answers += [CastStatus.SENT] * 100
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    for _ in range(100):
        clock.advance(60)
        job = await run_due(outbox, dispatch, clock)
        if job.state is not JobState.SENT:
            break
    assert job.state is JobState.REPORTED
    assert job.outcome.code == "DELIVERY_UNCONFIRMED"
    assert clock.now() - job.sent_at >= timedelta(minutes=30)


async def test_status_lookup_errors_are_transient(
    outbox, dispatch, clock, gateway, ghl
):
    """A failed lookup is retried; it does not fail the message."""
    gateway.status_answers += [CastUnavailable("timeout"), CastStatus.DELIVERED]
    await claimed(outbox, clock)
    await run_due(outbox, dispatch, clock)
    clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.SENT
    assert "timeout" in job.last_error
    clock.advance(1)
    job = await run_due(outbox, dispatch, clock)
    assert ghl.reports[0].status is DeliveryStatus.DELIVERED


async def test_ghl_not_ready_is_retried_quickly_until_accepted(
    outbox, dispatch, clock, gateway, ghl
):
    """The 403 race after a delivery is retried, not treated as a token fault."""
    ghl.errors += [GhlNotReady("No conversation provider found")] * 3
    await claimed(outbox, clock, phone="+15864603685")
    for _ in range(4):
        job = await run_due(outbox, dispatch, clock)
        clock.advance(5)
    assert job.state is JobState.REPORTED
    assert ghl.calls == 4
    assert len(ghl.reports) == 1


async def test_ghl_not_ready_long_after_the_delivery_ends_in_dead(
    outbox, dispatch, clock, ghl
):
    """Past not_ready_window a 403 counts as a failure and retries are bounded."""
    ghl.errors += [GhlNotReady("No conversation provider found")] * 50
    await claimed(outbox, clock, phone="+15864603685")
    for _ in range(50):
        job = await run_due(outbox, dispatch, clock)
        if job.state.is_final:
            break
        clock.advance(61)
    assert job.state is JobState.DEAD
    assert "gave up" in job.last_error


async def test_ghl_rate_limit_waits_for_its_window(outbox, dispatch, clock, ghl):
    """429 from GHL reschedules the report after Retry-After."""
    ghl.errors.append(GhlRateLimited("too many", retry_after=9))
    await claimed(outbox, clock, phone="+15864603685")
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTING
    assert job.due_at == clock.now() + timedelta(seconds=9)


async def test_a_final_ghl_refusal_ends_the_job_dead(outbox, dispatch, clock, ghl):
    """A 422 from GHL will not change on retry: the job ends dead with why."""
    ghl.errors.append(GhlRejected("bad status", 422))
    await claimed(outbox, clock, phone="+15864603685")
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.DEAD
    assert "bad status" in job.last_error


async def test_a_worker_that_lost_its_lease_writes_nothing_more(
    outbox, dispatch, clock, gateway
):
    """When another owner took the job over, the slow worker's write is refused."""
    await claimed(outbox, clock)
    [job] = await outbox.lease_due(OWNER, clock.now(), timedelta(seconds=60), 1)
    clock.advance(61)
    [taken] = await outbox.lease_due("worker-2", clock.now(), timedelta(seconds=60), 1)
    result = await dispatch.run(job, OWNER)
    stored = await outbox.get("M1")
    assert result.state is JobState.ACCEPTED
    assert stored.lease_owner == "worker-2"
    assert stored.state is JobState.ACCEPTED
    assert attrs.evolve(stored, lease_expires_at=None) == attrs.evolve(
        taken, lease_expires_at=None
    )


async def test_early_not_ready_answers_do_not_spend_the_report_budget(
    outbox, dispatch, clock, ghl
):
    """After a long 403 window, a passing GHL outage is still retried."""
    ghl.errors += [GhlNotReady("No conversation provider found")] * 25  # 50 s
    ghl.errors += [GhlUnavailable("HTTP 503")]
    await claimed(outbox, clock, phone="+15864603685")
    while ghl.errors:
        job = await run_due(outbox, dispatch, clock)
        assert job.state is JobState.REPORTING
        clock.advance(2)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTED


class BrokenSecrets:
    """A secret store that fails the way no port promises."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, location_id):
        raise self.error


async def test_an_unexpected_failure_is_retried_then_ends_the_job_dead(
    outbox, dispatch, clock, gateway
):
    """A step that keeps crashing is not retried at every lease forever."""
    dispatch.secrets = BrokenSecrets(RuntimeError("disk on fire"))
    await claimed(outbox, clock)
    for _ in range(10):
        job = await run_due(outbox, dispatch, clock)
        if job.state.is_final:
            break
        assert "disk on fire" in job.last_error
        clock.advance(400)
    assert job.state is JobState.DEAD
    assert "gave up after 5 tries" in job.last_error
    assert job.lease_owner is None
    assert gateway.sent == []


async def test_an_unreadable_cast_key_is_reported_failed_clearly(
    outbox, dispatch, clock, gateway, ghl
):
    """A key sealed with another encryption key fails with its own code."""
    dispatch.secrets = BrokenSecrets(SecretUnreadable("wrong encryption key"))
    await claimed(outbox, clock)
    job = await run_due(outbox, dispatch, clock)
    assert job.state is JobState.REPORTED
    assert ghl.reports[0].error == ("CAST_KEY_UNREADABLE", "wrong encryption key")
    assert gateway.sent == []
