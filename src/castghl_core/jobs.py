"""The outbound job: one GHL message on its way through Cast and back.

A job moves  accepted -> sent -> reporting -> reported,  or ends `dead` when
GHL cannot be told the outcome. Every move is a store write made under the
job's lease, so a crash at any point resumes from the last written state.

    accepted   claimed from the webhook; not yet queued at Cast
    sent       Cast queued it (cast_message_id known); following its status
    reporting  the outcome (delivered or failed) is known; telling GHL
    reported   GHL has the outcome                                      (end)
    dead       GHL could not be told; the reason is kept               (end)
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class JobState(enum.StrEnum):
    """Where an outbound job is in its life."""

    ACCEPTED = "accepted"
    SENT = "sent"
    REPORTING = "reporting"
    REPORTED = "reported"
    DEAD = "dead"

    @property
    def is_final(self) -> bool:
        """Whether the job needs no more work."""
        return self in {JobState.REPORTED, JobState.DEAD}


UNFINISHED_STATES = (JobState.ACCEPTED, JobState.SENT, JobState.REPORTING)


class DeliveryStatus(enum.StrEnum):
    """The statuses castghl reports to GHL (GHL has no `sent`)."""

    DELIVERED = "delivered"
    FAILED = "failed"


@attrs.frozen
class Outcome:
    """What became of a message, as GHL will be told."""

    status: DeliveryStatus
    code: str | None = None
    reason: str | None = None

    @classmethod
    def delivered(cls) -> Outcome:
        """The carrier confirmed delivery."""
        return cls(DeliveryStatus.DELIVERED)

    @classmethod
    def failed(cls, code: str, reason: str) -> Outcome:
        """The message was not (or not provably) delivered, and why."""
        return cls(DeliveryStatus.FAILED, code, reason)


@attrs.frozen
class OutboundJob:
    """The durable record of one outbound message, keyed by GHL's messageId."""

    message_id: str
    location_id: str
    phone: str
    text: str
    created_at: datetime
    due_at: datetime
    contact_id: str | None = None
    state: JobState = JobState.ACCEPTED
    attempt: int = 0
    """Tries of the current step; reset when the state changes."""
    cast_message_id: str | None = None
    parts: int | None = None
    sent_at: datetime | None = None
    outcome: Outcome | None = None
    last_error: str | None = None
    """Why the last try of the current step did not complete."""
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    updated_at: datetime | None = None

    def move_to(self, state: JobState, now: datetime, **changes: object) -> OutboundJob:
        """The job in a new state, due now, with its step counter reset."""
        fields: dict[str, object] = {
            "attempt": 0,
            "due_at": now,
            "last_error": None,
            "updated_at": now,
            **changes,
        }
        return attrs.evolve(self, state=state, **fields)  # type: ignore[arg-type]

    def retry_at(self, due_at: datetime, error: str, now: datetime) -> OutboundJob:
        """The job in the same state, due again later after a failed try."""
        return attrs.evolve(
            self,
            attempt=self.attempt + 1,
            due_at=due_at,
            last_error=error,
            updated_at=now,
        )

    def finish(self, outcome: Outcome, now: datetime) -> OutboundJob:
        """The job with its outcome known, ready to be reported to GHL."""
        return self.move_to(JobState.REPORTING, now, outcome=outcome)
