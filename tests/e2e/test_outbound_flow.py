"""The outbound flow end to end: GHL's delivery to Cast's SMS and back."""

from __future__ import annotations

import asyncio
import json

from castghl_app.sandbox.cast import Fault
from castghl_core.jobs import JobState

from harness import LOCATION, eventually


async def test_the_sample_delivery_is_sent_once_and_reported_delivered(
    service, ghl, cast
):
    """HighLevel's sample (with a PH number) reaches Cast once, then `delivered`."""
    sample = ghl.sample_delivery()
    status, body = await ghl.deliver(service.delivery_url, sample)
    assert (status, body["status"]) == (200, "accepted")

    updates = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert [u.status for u in updates] == ["delivered"]
    [sms] = cast.sent
    assert sms.to == "09171234567"
    assert sms.sender_id == "CASTGHL"
    assert sms.idempotency_key == sample["messageId"]
    assert sms.message == (
        "The text message to be sent to the contact\nhttps://example.com/image.png"
    )
    await service.jobs_settle_at({JobState.REPORTED: 1})


async def test_five_concurrent_deliveries_of_one_message_send_one_sms(
    service, ghl, cast
):
    """GHL's at-least-once delivery, all at once, still makes one SMS."""
    sample = ghl.sample_delivery()
    answers = await asyncio.gather(
        *(ghl.deliver(service.delivery_url, sample) for _ in range(5))
    )
    assert (
        sorted(body["status"] for _, body in answers)
        == ["accepted"] + ["duplicate"] * 4
    )
    await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    await asyncio.sleep(0.3)
    assert len(cast.sent) == 1
    assert len(cast.requests) == 1


async def test_a_non_philippine_number_is_reported_failed_and_not_sent(
    service, ghl, cast
):
    """A US number fails with NOT_PHILIPPINE_NUMBER and never reaches Cast."""
    sample = ghl.sample_delivery(phone="+15864603685")
    await ghl.deliver(service.delivery_url, sample)
    [update] = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert update.status == "failed"
    assert update.error["code"] == "NOT_PHILIPPINE_NUMBER"
    assert "Philippine" in update.error["message"]
    assert cast.requests == []


async def test_a_rate_limited_send_is_retried_after_retry_after_and_sent_once(
    service, ghl, cast
):
    """Cast's 429 with Retry-After, then success: one SMS, reported delivered."""
    cast.inject(Fault.rate_limited(retry_after=0.5))
    sample = ghl.sample_delivery()
    await ghl.deliver(service.delivery_url, sample)

    updates = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert [u.status for u in updates] == ["delivered"]
    assert len(cast.requests) == 2
    assert len(cast.sent) == 1
    gap = cast.requests[1].at - cast.requests[0].at
    assert gap.total_seconds() >= 0.5


async def test_a_send_whose_answer_timed_out_is_not_sent_twice(service, ghl, cast):
    """Cast sends but answers after the client's timeout: the retry is a replay."""
    cast.inject(Fault.timeout(3.0))
    sample = ghl.sample_delivery()
    await ghl.deliver(service.delivery_url, sample)

    updates = await eventually(
        lambda: ghl.statuses_for(sample["messageId"]), timeout=20
    )
    assert [u.status for u in updates] == ["delivered"]
    assert len(cast.requests) >= 2
    assert len(cast.sent) == 1


async def test_insufficient_credits_is_reported_failed_with_that_code(
    service, ghl, cast
):
    """Cast's INSUFFICIENT_CREDITS is final and reaches GHL as the error code."""
    cast.inject(Fault.insufficient_credits())
    sample = ghl.sample_delivery()
    await ghl.deliver(service.delivery_url, sample)
    [update] = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert update.status == "failed"
    assert update.error["code"] == "INSUFFICIENT_CREDITS"
    assert cast.sent == []


async def test_an_undelivered_message_is_reported_failed(service, ghl, cast):
    """A carrier rejection after a successful send becomes `failed`."""
    cast.undeliverable("+639171234567")
    sample = ghl.sample_delivery()
    await ghl.deliver(service.delivery_url, sample)
    [update] = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert update.status == "failed"
    assert update.error["code"] == "UNDELIVERED"
    assert len(cast.sent) == 1


async def test_ghls_early_403_on_status_updates_is_retried_until_accepted(
    service, ghl, cast
):
    """GHL refuses status updates for a while after a delivery; castghl waits."""
    ghl.not_ready_for = 1.5
    sample = ghl.sample_delivery(phone="+15864603685")
    await ghl.deliver(service.delivery_url, sample)
    [update] = await eventually(
        lambda: ghl.statuses_for(sample["messageId"]), timeout=15
    )
    assert update.status == "failed"
    job = await service.finished_job(sample["messageId"])
    assert job.state is JobState.REPORTED
    assert (update.at - job.created_at).total_seconds() >= 1.5


async def test_a_location_without_an_installation_is_refused(service, ghl, cast):
    """A delivery for a location that never installed gets 404; nothing stored."""
    sample = ghl.sample_delivery(locationId="NotInstalledLoc")
    status, body = await ghl.deliver(service.delivery_url, sample)
    assert status == 404
    assert body["error"] == "location_not_installed"
    assert await service.jobs() == {}


async def test_an_email_delivery_is_acknowledged_and_ignored(service, ghl, cast):
    """Email payloads are answered 200 `ignored`; nothing is stored or sent."""
    sample = ghl.sample_delivery(type="Email")
    status, body = await ghl.deliver(service.delivery_url, sample)
    assert (status, body["status"]) == (200, "ignored")
    assert await service.jobs() == {}


async def test_a_service_restarted_on_the_same_file_finishes_claimed_jobs(
    make_service, ghl, cast, secrets_seen
):
    """Jobs claimed (and mid-send) when a service stops are finished by the next
    one on the same store (SQLite file or MongoDB database), each SMS sent
    exactly once."""
    from harness import API_KEY, install_location  # noqa: PLC0415

    fast = {
        "CASTGHL_LEASE_SECONDS": "1",
        "CASTGHL_HTTP_TIMEOUT_SECONDS": "0.25",
        "CASTGHL_SHUTDOWN_GRACE_SECONDS": "0",
    }
    first = await make_service(**fast)
    secrets_seen.extend(await install_location(first, ghl, LOCATION))
    await first.admin("PUT", f"/locations/{LOCATION}", json={"cast_api_key": API_KEY})
    cast.inject(Fault.timeout(1.5), times=3)
    samples = [ghl.sample_delivery() for _ in range(5)]
    for sample in samples:
        status, _ = await ghl.deliver(first.delivery_url, sample)
        assert status == 200
    await eventually(lambda: len(cast.requests) >= 3)
    await first.stop()  # cancels the three sends waiting on Cast
    unfinished = {
        sample["messageId"]
        for sample in samples
        if not ghl.statuses_for(sample["messageId"])
    }
    assert len(unfinished) >= 3

    second = await make_service(**fast)
    for sample in samples:
        await eventually(lambda s=sample: ghl.statuses_for(s["messageId"]), timeout=20)
    keys = sorted(sms.idempotency_key for sms in cast.sent)
    assert keys == sorted(sample["messageId"] for sample in samples)
    await second.jobs_settle_at({JobState.REPORTED: 5})
    statuses = [ghl.statuses_for(s["messageId"])[-1].status for s in samples]
    assert statuses == ["delivered"] * 5


async def test_the_stored_job_says_what_happened(service, ghl, cast):
    """The outbox keeps Cast's message id and part count for each message."""
    sample = ghl.sample_delivery(message="x" * 200)
    await ghl.deliver(service.delivery_url, json.loads(json.dumps(sample)))
    await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    job = await service.finished_job(sample["messageId"])
    assert job.cast_message_id == cast.sent[0].cast_message_id
    assert job.parts == 2
    assert job.outcome.status.value == "delivered"


async def test_a_full_backlog_asks_ghl_to_retry_later_and_stores_nothing(
    make_service, ghl, cast, secrets_seen
):
    """Past CASTGHL_MAX_BACKLOG unfinished jobs, deliveries get 503 + Retry-After."""
    from harness import install_location  # noqa: PLC0415

    running = await make_service(CASTGHL_MAX_BACKLOG="2")
    secrets_seen.extend(await install_location(running, ghl, LOCATION))
    # No Cast key: jobs fail and report, but GHL's 403 keeps them unfinished.
    ghl.not_ready_for = 60
    for _ in range(2):
        status, _ = await ghl.deliver(running.delivery_url, ghl.sample_delivery())
        assert status == 200
    running.services.backlog.expire()  # count again now
    sample = ghl.sample_delivery()
    status, body = await ghl.deliver(running.delivery_url, sample)
    assert (status, body["error"]) == (503, "backlog_full")
    assert await running.services.outbox.get(sample["messageId"]) is None
