"""Records exchanged with the SMS gateway (Cast)."""

from __future__ import annotations

import enum

import attrs


@attrs.frozen(repr=False)
class SmsRequest:
    """One SMS to send; `api_key` is the location's and never shown."""

    api_key: str
    to: str
    message: str
    sender_id: str | None
    idempotency_key: str

    def __repr__(self) -> str:
        return (
            f"SmsRequest(to={self.to!r}, sender_id={self.sender_id!r}, "
            f"idempotency_key={self.idempotency_key!r}, "
            f"message_length={len(self.message)})"
        )


@attrs.frozen
class SendReceipt:
    """Cast queued the message (queued is not delivered)."""

    cast_message_id: str
    parts: int
    replayed: bool = False
    """True when Cast answered from its idempotency cache and sent nothing."""
    sandbox: bool = False


class CastStatus(enum.StrEnum):
    """Cast's delivery statuses."""

    SENT = "sent"
    PENDING = "pending"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether Cast will not change this status again."""
        return self in {CastStatus.DELIVERED, CastStatus.UNDELIVERED, CastStatus.FAILED}


@attrs.frozen
class StatusReport:
    """Cast's answer to a delivery-status lookup."""

    cast_message_id: str
    status: CastStatus
    detail: str | None = None
    """Cast's error_message or carrier dlr_status, when it gives one."""
