"""The outbound dispatcher: leases due jobs and runs them, a bounded few at once.

It is supervised by the aiohttp app: started on start-up, stopped gracefully
on shutdown (in-flight jobs get a grace period; any still running are
cancelled and stay leased until their lease expires, then any replica takes
them over and resends with the same idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from datetime import timedelta

from castghl_core.dispatch_outbound import DispatchOutbound
from castghl_core.jobs import OutboundJob
from castghl_core.ports import Clock, Outbox

logger = logging.getLogger(__name__)


class Dispatcher:
    """Runs due outbound jobs until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        dispatch: DispatchOutbound,
        clock: Clock,
        *,
        concurrency: int,
        lease_for: timedelta,
        idle_poll: float = 0.5,
        owner: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.dispatch = dispatch
        self.clock = clock
        self.concurrency = concurrency
        self.lease_for = lease_for
        self.idle_poll = idle_poll
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._running_ids: set[str] = set()
        self._pickups = itertools.count(1)
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def is_alive(self) -> bool:
        """Whether the pick-up loop is running."""
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """Look for due jobs now (a job was just accepted)."""
        self._wake.set()

    def start(self) -> None:
        """Start the pick-up loop on the running event loop."""
        self._loop_task = asyncio.create_task(self._supervise(), name=self.owner)
        logger.info("dispatcher.started", extra={"owner": self.owner})

    async def stop(self, grace: float = 10.0) -> None:
        """Stop picking up; let in-flight jobs finish for up to `grace` seconds."""
        self._stopping.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        logger.info("dispatcher.stopped", extra={"owner": self.owner})

    async def _supervise(self) -> None:
        """Run the pick-up loop, restarting it if it ever fails."""
        restarts = 0
        while not self._stopping.is_set():
            try:
                await self._loop()
            except Exception:
                restarts += 1
                logger.exception(
                    "dispatcher.loop_crashed", extra={"restarts": restarts}
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), min(30.0, 0.5 * 2**restarts)
                    )

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            leased: list[OutboundJob] = []
            if free > 0:
                # Each pick-up leases under its own name, so a run that outlived
                # its lease cannot write over the run that took the job over,
                # even in this same process.
                pickup = f"{self.owner}#{next(self._pickups)}"
                try:
                    leased = await self.outbox.lease_due(
                        pickup, self.clock.now(), self.lease_for, free
                    )
                except Exception:
                    # A store outage must not end the loop; readiness shows it.
                    logger.exception("dispatcher.lease_failed")
            for job in leased:
                if job.message_id in self._running_ids:
                    # Still running here past its lease: the old run's writes
                    # are now refused; the job is retried after this lease.
                    logger.warning(
                        "dispatcher.lease_outlived",
                        extra={"message_id": job.message_id},
                    )
                    continue
                task = asyncio.create_task(self._run(job))
                self._running.add(task)
                task.add_done_callback(self._finished)
            # Either nothing more is due or every slot is busy: wait for a
            # wake-up (a new job, a finished one) or the next poll.
            await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.idle_poll)
        self._wake.clear()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _run(self, job: OutboundJob) -> None:
        assert job.lease_owner is not None  # noqa: S101  (set by lease_due)
        self._running_ids.add(job.message_id)
        try:
            await self.dispatch.run(job, job.lease_owner)
        except asyncio.CancelledError:
            raise
        except Exception:
            # DispatchOutbound bounds failures of a step itself; this is a
            # failure to write the job (the store is down): its lease expires
            # and it is picked up again once the store answers.
            logger.exception(
                "dispatcher.job_crashed",
                extra={"message_id": job.message_id, "location_id": job.location_id},
            )
        finally:
            self._running_ids.discard(job.message_id)
