"""The dispatcher worker: bounded, supervised, graceful."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from castghl_adapters.memory import MemoryOutbox
from castghl_app.workers.dispatcher import Dispatcher
from castghl_core.jobs import OutboundJob

from fakes import FakeClock


class SlowDispatch:
    """Records how many jobs run at once; each takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.most = 0
        self.done: list[str] = []
        self.started = asyncio.Event()

    async def run(self, job: OutboundJob, owner: str) -> OutboundJob:
        self.started.set()
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
            self.done.append(job.message_id)
        finally:
            self.running -= 1
        return job


class FlakyOutbox(MemoryOutbox):
    """Fails the first `failures` pick-ups with an unexpected error."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def lease_due(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("store hiccup")
        return await super().lease_due(*args, **kwargs)


async def add_jobs(outbox, clock, count):
    for n in range(count):
        now = clock.now()
        job = OutboundJob(f"M{n}", "L", "+639171234567", "hi", now, now)
        await outbox.claim(job)


def dispatcher(outbox, work, clock, concurrency=3):
    return Dispatcher(
        outbox,
        work,
        clock,
        concurrency=concurrency,
        lease_for=timedelta(seconds=60),
        idle_poll=0.01,
    )


async def test_no_more_jobs_run_at_once_than_the_concurrency():
    """Ten due jobs with concurrency 3 never run more than 3 at a time."""
    clock, outbox, work = FakeClock(), MemoryOutbox(), SlowDispatch(0.05)
    await add_jobs(outbox, clock, 10)
    worker = dispatcher(outbox, work, clock)
    worker.start()
    for _ in range(200):
        if len(work.done) == 10:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    assert sorted(work.done) == sorted(f"M{n}" for n in range(10))
    assert work.most == 3


async def test_a_store_failure_does_not_stop_the_worker():
    """Pick-up errors are logged and retried; the worker stays alive."""
    clock, outbox, work = FakeClock(), FlakyOutbox(failures=3), SlowDispatch(0)
    await add_jobs(outbox, clock, 1)
    worker = dispatcher(outbox, work, clock)
    worker.start()
    for _ in range(200):
        if work.done:
            break
        await asyncio.sleep(0.01)
    assert worker.is_alive
    await worker.stop()
    assert work.done == ["M0"]
    assert not worker.is_alive


async def test_stop_lets_in_flight_jobs_finish_within_the_grace():
    """A job mid-run when stop() is called completes if it fits the grace."""
    clock, outbox, work = FakeClock(), MemoryOutbox(), SlowDispatch(0.1)
    await add_jobs(outbox, clock, 1)
    worker = dispatcher(outbox, work, clock)
    worker.start()
    await asyncio.wait_for(work.started.wait(), 5)
    await worker.stop(grace=5)
    assert work.done == ["M0"]


async def test_stop_cancels_jobs_that_outlast_the_grace():
    """A job still running after the grace is cancelled (its lease remains)."""
    clock, outbox, work = FakeClock(), MemoryOutbox(), SlowDispatch(10)
    await add_jobs(outbox, clock, 1)
    worker = dispatcher(outbox, work, clock)
    worker.start()
    await asyncio.wait_for(work.started.wait(), 5)
    await worker.stop(grace=0.05)
    assert work.done == []
    job = await outbox.get("M0")
    assert job.lease_owner.startswith(worker.owner + "#")


async def test_a_run_that_outlives_its_lease_cannot_overwrite_the_next_one():
    """Same process, lease shorter than a slow send: the stale run's writes are
    refused, and the job still ends with one report to GHL."""
    from castghl_adapters.memory import (  # noqa: PLC0415
        MemoryInstallationStore,
        MemoryLeases,
        MemoryLocationSettingsStore,
        MemorySecretStore,
    )
    from castghl_adapters.system import SystemClock  # noqa: PLC0415
    from castghl_core.backoff import Backoff  # noqa: PLC0415
    from castghl_core.dispatch_outbound import (  # noqa: PLC0415
        DispatchOutbound,
        DispatchPolicy,
    )
    from castghl_core.installations import Installation, UserType  # noqa: PLC0415
    from castghl_core.jobs import JobState  # noqa: PLC0415
    from castghl_core.tokens import RefreshingAccessTokens  # noqa: PLC0415

    from fakes import (  # noqa: PLC0415
        API_KEY,
        LOCATION,
        TOKEN,
        FakeGateway,
        FakeGhl,
        FakeOAuth,
    )

    class SlowFirstSend(FakeGateway):
        async def send(self, request):
            if not self.sent:
                await asyncio.sleep(0.3)
            return await super().send(request)

    clock, outbox = SystemClock(), MemoryOutbox()
    installations, secrets = MemoryInstallationStore(), MemorySecretStore()
    await installations.put(
        Installation(
            LOCATION, UserType.LOCATION, TOKEN, "r", clock.now() + timedelta(hours=1)
        )
    )
    await secrets.put(LOCATION, API_KEY)
    gateway, ghl = SlowFirstSend(), FakeGhl()
    fast = Backoff(base=0.01, cap=0.05)
    lease = timedelta(seconds=0.1)
    work = DispatchOutbound(
        outbox,
        MemoryLocationSettingsStore(),
        secrets,
        gateway,
        ghl,
        RefreshingAccessTokens(installations, MemoryLeases(), FakeOAuth(), clock),
        clock,
        DispatchPolicy(
            lease_for=lease,
            first_poll_after=timedelta(seconds=0.01),
            poll_backoff=fast,
            report_backoff=fast,
        ),
    )
    now = clock.now()
    await outbox.claim(OutboundJob("M1", LOCATION, "+639171234567", "hi", now, now))
    worker = Dispatcher(
        outbox, work, clock, concurrency=2, lease_for=lease, idle_poll=0.01
    )
    worker.start()
    for _ in range(300):
        job = await outbox.get("M1")
        if job.state.is_final:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    assert job.state is JobState.REPORTED
    assert len(ghl.reports) == 1
    assert job.cast_message_id == "CAST0002"  # the stale run's CAST0001 never landed
