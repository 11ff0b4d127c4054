"""Use case: move one leased outbound job forward until it waits or ends.

    accepted  -> send through Cast with the location's key and sender ID
    sent      -> follow Cast's delivery status until final or out of time
    reporting -> tell GHL `delivered` or `failed` (with the reason)

Every step ends in a store write under the job's lease; retryable failures
reschedule the job with capped exponential backoff, never a loop in memory.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import attrs

from castghl_core.backoff import Backoff
from castghl_core.errors import (
    CastRejected,
    CastUnavailable,
    GhlError,
    GhlNotReady,
    GhlRateLimited,
    GhlRejected,
    GhlUnauthorized,
    LocationNotInstalled,
    PhoneNumberRejected,
    SecretUnreadable,
    TokenUnavailable,
)
from castghl_core.gateway import CastStatus, SmsRequest
from castghl_core.jobs import JobState, OutboundJob, Outcome
from castghl_core.phone import normalize_ph_mobile
from castghl_core.ports import (
    AccessTokens,
    Clock,
    GhlApi,
    LocationSettingsStore,
    Outbox,
    SecretStore,
    SmsGateway,
)
from castghl_core.sms_parts import count_parts

logger = logging.getLogger(__name__)


@attrs.frozen
class DispatchPolicy:
    """Bounds on every retry and wait of the outbound flow."""

    max_parts: int = 10
    lease_for: timedelta = timedelta(seconds=60)
    send_backoff: Backoff = Backoff(base=2, cap=300)
    send_window: timedelta = timedelta(hours=1)
    """Stop retrying a send after this; well inside Cast's 24 h idempotency."""
    first_poll_after: timedelta = timedelta(seconds=3)
    poll_backoff: Backoff = Backoff(base=5, cap=300)
    delivery_timeout: timedelta = timedelta(minutes=30)
    report_backoff: Backoff = Backoff(base=1, cap=300)
    not_ready_window: timedelta = timedelta(seconds=120)
    """How long after a delivery GHL's 'no conversation provider' is expected."""
    max_report_attempts: int = 20
    max_unexpected_failures: int = 5
    """Steps that fail in ways castghl does not expect end the job after this."""


def _seconds(delay: float) -> timedelta:
    return timedelta(seconds=delay)


@attrs.define
class DispatchOutbound:
    """Sends, follows and reports outbound jobs; see the module docstring."""

    outbox: Outbox
    location_settings: LocationSettingsStore
    secrets: SecretStore
    gateway: SmsGateway
    ghl: GhlApi
    tokens: AccessTokens
    clock: Clock
    policy: DispatchPolicy = DispatchPolicy()

    async def run(self, job: OutboundJob, owner: str) -> OutboundJob:
        """Take steps while the job is due, writing each under the lease.

        The write after the last step also releases the lease. Returns the
        last written job; stops early if the lease was lost (a slower step
        let it expire and another worker took the job over).
        """
        while self._is_due(job):
            before = job
            try:
                job = await self.step(job)
            except Exception as error:  # noqa: BLE001  (bounded below, never lost)
                job = self._unexpected(job, error)

            keep_going = self._is_due(job)
            job = attrs.evolve(
                job,
                lease_owner=owner if keep_going else None,
                lease_expires_at=(
                    self.clock.now() + self.policy.lease_for if keep_going else None
                ),
            )
            if not await self.outbox.update(job, owner=owner):
                logger.warning("outbound.lease_lost", extra=_log(before))
                return before
            if not keep_going:
                return job

        # Leased but not due (clocks of replicas disagree): hand it back.
        released = attrs.evolve(job, lease_owner=None, lease_expires_at=None)
        await self.outbox.update(released, owner=owner)
        return released

    def _is_due(self, job: OutboundJob) -> bool:
        return not job.state.is_final and job.due_at <= self.clock.now()

    async def step(self, job: OutboundJob) -> OutboundJob:
        """Take the one step the job's state calls for."""
        if job.state is JobState.ACCEPTED:
            return await self._send(job)
        if job.state is JobState.SENT:
            return await self._follow(job)
        if job.state is JobState.REPORTING:
            return await self._report(job)
        return job

    def _unexpected(self, job: OutboundJob, error: Exception) -> OutboundJob:
        """A step failed in a way no port promised (a bug, a broken store,
        an unreadable secret): retry a few times, then end the job dead
        rather than retry it at every lease expiry forever."""
        reason = f"unexpected {type(error).__name__}: {error}"
        logger.error("outbound.step_crashed", extra=_log(job), exc_info=error)
        if job.attempt + 1 >= self.policy.max_unexpected_failures:
            return self._dead(job, f"gave up after {job.attempt + 1} tries: {reason}")
        now = self.clock.now()
        delay = self.policy.send_backoff.delay(job.attempt)
        return job.retry_at(now + _seconds(delay), reason, now)

    # --- accepted: send through Cast --------------------------------------

    async def _send(self, job: OutboundJob) -> OutboundJob:
        now = self.clock.now()
        try:
            request = await self._sms_request(job)
        except _Refused as refusal:
            return self._failed(job, refusal.code, str(refusal), now)

        try:
            receipt = await self.gateway.send(request)
        except CastRejected as error:
            return self._failed(job, error.code, error.reason, self.clock.now())
        except CastUnavailable as error:
            return self._retry_send(job, error)

        logger.info(
            "outbound.sent",
            extra={
                **_log(job),
                "cast_message_id": receipt.cast_message_id,
                "parts": receipt.parts,
                "replayed": receipt.replayed,
                "to": _masked_phone(request.to),
                "sender_id": request.sender_id,
            },
        )
        now = self.clock.now()
        return job.move_to(
            JobState.SENT,
            now,
            due_at=now + self.policy.first_poll_after,
            cast_message_id=receipt.cast_message_id,
            parts=receipt.parts,
            sent_at=now,
        )

    async def _sms_request(self, job: OutboundJob) -> SmsRequest:
        try:
            phone = normalize_ph_mobile(job.phone)
        except PhoneNumberRejected as error:
            raise _Refused(error.code, str(error)) from error
        if not job.text.strip():
            raise _Refused("EMPTY_MESSAGE", "the message has no text to send")
        parts = count_parts(job.text)
        if parts.parts > self.policy.max_parts:
            raise _Refused(
                "MESSAGE_TOO_LONG",
                f"the message needs {parts.parts} SMS parts ({parts.encoding}, "
                f"{parts.units} units); the limit is {self.policy.max_parts}",
            )

        try:
            api_key = await self.secrets.get(job.location_id)
        except SecretUnreadable as error:
            raise _Refused("CAST_KEY_UNREADABLE", str(error)) from error
        if api_key is None:
            raise _Refused(
                "CAST_NOT_CONFIGURED",
                f"no Cast API key is set for location {job.location_id}",
            )
        settings = await self.location_settings.get(job.location_id)
        return SmsRequest(
            api_key=api_key,
            to=phone.local,
            message=job.text,
            sender_id=settings.sender_id if settings else None,
            idempotency_key=job.message_id,
        )

    def _retry_send(self, job: OutboundJob, error: CastUnavailable) -> OutboundJob:
        now = self.clock.now()
        if now - job.created_at >= self.policy.send_window:
            return self._failed(
                job,
                "CAST_UNAVAILABLE",
                f"Cast could not take the message for {self.policy.send_window}: "
                f"{error.reason}",
                now,
            )
        delay = self.policy.send_backoff.delay(job.attempt, error.retry_after)
        logger.warning(
            "outbound.send_retry",
            extra={**_log(job), "reason": error.reason, "retry_in": round(delay, 3)},
        )
        return job.retry_at(now + _seconds(delay), error.reason, now)

    # --- sent: follow Cast's delivery status ------------------------------

    async def _follow(self, job: OutboundJob) -> OutboundJob:
        assert job.cast_message_id is not None  # noqa: S101  (set with SENT)
        now = self.clock.now()
        deadline = (job.sent_at or job.created_at) + self.policy.delivery_timeout
        detail = f"no Cast API key is set for location {job.location_id}"
        api_key = await self.secrets.get(job.location_id)
        if api_key is not None:
            try:
                report = await self.gateway.status(api_key, job.cast_message_id)
            except (CastUnavailable, CastRejected) as error:
                detail = f"status lookup failed: {error}"
            else:
                if report.status is CastStatus.DELIVERED:
                    return self._delivered(job)
                if report.status.is_final:
                    code = report.status.value.upper()
                    reason = report.detail or f"Cast reports the message {code}"
                    return self._failed(job, code, reason, self.clock.now())
                detail = f"Cast status is still {report.status}"

        now = self.clock.now()
        if now >= deadline:
            return self._failed(
                job,
                "DELIVERY_UNCONFIRMED",
                f"Cast queued the message ({job.cast_message_id}) but confirmed "
                f"no delivery within {self.policy.delivery_timeout}",
                now,
            )
        delay = self.policy.poll_backoff.delay(job.attempt)
        due = min(now + _seconds(delay), deadline)
        return job.retry_at(due, detail, now)

    # --- reporting: tell GHL ----------------------------------------------

    async def _report(self, job: OutboundJob) -> OutboundJob:
        assert job.outcome is not None  # noqa: S101  (set with REPORTING)
        try:
            token = await self.tokens.for_location(job.location_id)
            await self._update_status(job, token)
        except (LocationNotInstalled, TokenUnavailable, GhlError) as error:
            return self._after_report_error(job, error)

        logger.info(
            "outbound.reported",
            extra={**_log(job), "status": job.outcome.status.value},
        )
        return job.move_to(JobState.REPORTED, self.clock.now())

    def _after_report_error(
        self,
        job: OutboundJob,
        error: LocationNotInstalled | TokenUnavailable | GhlError,
    ) -> OutboundJob:
        """Retry what time can fix; give up on what it cannot."""
        if isinstance(error, GhlNotReady):
            early = self.clock.now() - job.created_at < self.policy.not_ready_window
            return self._retry_report(job, str(error), None, not_ready=early)
        if isinstance(error, GhlRateLimited):
            return self._retry_report(job, str(error), error.retry_after)
        if isinstance(error, GhlRejected):
            return self._dead(job, f"GHL refused the status update: {error}")
        if isinstance(error, LocationNotInstalled) or (
            isinstance(error, TokenUnavailable) and not error.retryable
        ):
            return self._dead(job, str(error))
        return self._retry_report(job, str(error), None)

    async def _update_status(self, job: OutboundJob, token: str) -> None:
        assert job.outcome is not None  # noqa: S101
        outcome = job.outcome
        error = None
        if outcome.code is not None:
            error = (outcome.code, outcome.reason or outcome.code)
        try:
            await self.ghl.update_message_status(
                token, job.message_id, outcome.status, error
            )
        except GhlUnauthorized:
            fresh = await self.tokens.after_unauthorized(job.location_id, token)
            await self.ghl.update_message_status(
                fresh, job.message_id, outcome.status, error
            )

    def _retry_report(
        self,
        job: OutboundJob,
        reason: str,
        retry_after: float | None,
        *,
        not_ready: bool = False,
    ) -> OutboundJob:
        now = self.clock.now()
        if not_ready:
            # GHL needs a few seconds to learn the message: try again soon,
            # without spending the budget meant for real failures.
            delay = self.policy.report_backoff.delay(1)
            logger.info(
                "outbound.report_retry",
                extra={**_log(job), "reason": reason, "retry_in": round(delay, 3)},
            )
            return attrs.evolve(
                job, due_at=now + _seconds(delay), last_error=reason, updated_at=now
            )
        if job.attempt + 1 >= self.policy.max_report_attempts:
            return self._dead(job, f"gave up after {job.attempt + 1} tries: {reason}")
        delay = self.policy.report_backoff.delay(job.attempt, retry_after)
        logger.info(
            "outbound.report_retry",
            extra={**_log(job), "reason": reason, "retry_in": round(delay, 3)},
        )
        return job.retry_at(now + _seconds(delay), reason, now)

    # --- outcomes -----------------------------------------------------------

    def _delivered(self, job: OutboundJob) -> OutboundJob:
        logger.info("outbound.delivered", extra=_log(job))
        return job.finish(Outcome.delivered(), self.clock.now())

    def _failed(
        self, job: OutboundJob, code: str, reason: str, now: datetime
    ) -> OutboundJob:
        logger.info("outbound.failed", extra={**_log(job), "code": code})
        return job.finish(Outcome.failed(code, reason), now)

    def _dead(self, job: OutboundJob, reason: str) -> OutboundJob:
        logger.error("outbound.dead", extra={**_log(job), "reason": reason})
        return job.move_to(JobState.DEAD, self.clock.now(), last_error=reason)


class _Refused(Exception):
    """A message that cannot be sent at all, with the code GHL will see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _masked_phone(number: str) -> str:
    """Enough of a number to tell messages apart in a log, not to dial it."""
    return number[:4] + "*" * max(len(number) - 8, 0) + number[-4:]


def _log(job: OutboundJob) -> dict[str, object]:
    return {
        "message_id": job.message_id,
        "location_id": job.location_id,
        "state": job.state.value,
        "attempt": job.attempt,
    }
