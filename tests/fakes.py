"""Fakes that implement the core's ports and record what happened."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import attrs

from castghl_core.errors import CastError, GhlError, SignatureRejected
from castghl_core.gateway import CastStatus, SendReceipt, SmsRequest, StatusReport
from castghl_core.jobs import DeliveryStatus

EPOCH = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
LOCATION = "LOC1"
API_KEY = "cast_test_" + "ab" * 16
TOKEN = "ghl-location-token-secret"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeVerifier:
    """Accepts bodies whose `X-Test-Signature` header is `good`."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        if headers.get("X-Test-Signature") != "good":
            raise SignatureRejected("signature does not match")


@attrs.define
class FakeGateway:
    """An SMS gateway that records sends and answers from scripts.

    `send_errors` and `status_answers` are consumed first to last; once
    empty, sends succeed and statuses answer `delivered`.
    """

    sent: list[SmsRequest] = attrs.Factory(list)
    send_errors: list[CastError] = attrs.Factory(list)
    status_answers: list[CastStatus | CastError] = attrs.Factory(list)
    status_lookups: int = 0

    async def send(self, request: SmsRequest) -> SendReceipt:
        if self.send_errors:
            raise self.send_errors.pop(0)
        self.sent.append(request)
        return SendReceipt(cast_message_id=f"CAST{len(self.sent):04d}", parts=1)

    async def status(self, api_key: str, cast_message_id: str) -> StatusReport:
        self.status_lookups += 1
        answer = self.status_answers.pop(0) if self.status_answers else None
        if isinstance(answer, CastError):
            raise answer
        status = answer or CastStatus.DELIVERED
        detail = "UNDELIV" if status is CastStatus.UNDELIVERED else None
        return StatusReport(cast_message_id, status, detail)


@attrs.frozen
class ReportedStatus:
    token: str
    message_id: str
    status: DeliveryStatus
    error: tuple[str, str] | None


@attrs.define
class FakeGhl:
    """A GHL API that records status updates and raises scripted errors."""

    reports: list[ReportedStatus] = attrs.Factory(list)
    errors: list[GhlError] = attrs.Factory(list)
    calls: int = 0

    async def update_message_status(
        self,
        access_token: str,
        message_id: str,
        status: DeliveryStatus,
        error: tuple[str, str] | None = None,
    ) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.reports.append(ReportedStatus(access_token, message_id, status, error))
