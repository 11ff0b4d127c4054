"""The outbound flow's use of tokens: refresh on 401, clear ends on revocation."""

from __future__ import annotations

from datetime import timedelta

import attrs

from castghl_core.errors import GhlUnauthorized
from castghl_core.installations import InstallationState
from castghl_core.jobs import DeliveryStatus, JobState, OutboundJob, Outcome

from fakes import LOCATION, TOKEN

OWNER = "worker-1"


async def reporting_job(outbox, clock, message_id="M1") -> OutboundJob:
    """A leased job whose outcome (delivered) is ready to report."""
    now = clock.now()
    job = OutboundJob(
        message_id=message_id,
        location_id=LOCATION,
        phone="+639171234567",
        text="hello",
        created_at=now - timedelta(minutes=5),
        due_at=now,
    )
    await outbox.claim(job)
    [leased] = await outbox.lease_due(OWNER, now, timedelta(seconds=60), 1)
    ready = leased.finish(Outcome.delivered(), now)
    await outbox.update(ready, owner=OWNER)
    return ready


async def test_a_401_on_the_report_refreshes_once_and_retries_once(
    dispatch, outbox, ghl, oauth, clock
):
    """GHL refuses the token: one refresh, the report made with the new token."""
    job = await reporting_job(outbox, clock)
    ghl.errors.append(GhlUnauthorized("Invalid token: access token is invalid"))

    done = await dispatch.step(job)

    assert done.state is JobState.REPORTED
    assert oauth.refreshes == ["refresh-1"]
    [report] = ghl.reports
    assert report.token != TOKEN
    assert report.status is DeliveryStatus.DELIVERED


async def test_two_401s_in_a_row_reschedule_instead_of_looping(
    dispatch, outbox, ghl, oauth, clock
):
    """A second 401 after the refresh: the job waits; no second refresh."""
    job = await reporting_job(outbox, clock)
    ghl.errors.extend([GhlUnauthorized("Invalid token")] * 2)

    after = await dispatch.step(job)

    assert after.state is JobState.REPORTING
    assert after.attempt == 1
    assert after.due_at > clock.now()
    assert (ghl.calls, len(oauth.refreshes)) == (2, 1)


async def test_a_revoked_location_ends_its_jobs_with_the_reason(
    dispatch, outbox, ghl, oauth, clock, installations
):
    """Invalid grant on refresh: needs_reauth, and the job ends dead saying so."""
    job = await reporting_job(outbox, clock)
    stored = await installations.get(LOCATION)
    await installations.put(attrs.evolve(stored, expires_at=clock.now()))
    oauth.revoke()

    after = await dispatch.step(job)

    assert after.state is JobState.DEAD
    assert "re-authorisation" in after.last_error
    assert ghl.calls == 0
    state = (await installations.get(LOCATION)).state
    assert state is InstallationState.NEEDS_REAUTH
