"""Fakes that implement the core's ports and record what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from castghl_core.errors import (
    CastError,
    GhlError,
    GhlUnauthorized,
    SignatureRejected,
    TokenRevoked,
)
from castghl_core.gateway import CastStatus, SendReceipt, SmsRequest, StatusReport
from castghl_core.installations import UserType
from castghl_core.jobs import DeliveryStatus
from castghl_core.oauth import InstalledLocation, TokenGrant

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


@attrs.define
class FakeOAuth:
    """GHL's OAuth calls with single-use refresh tokens, recording every call.

    `errors` are raised by the next refresh or mint calls, first to last;
    `during_call` runs inside a call (after it is recorded, before it
    answers), to let another "process" act at the worst moment.
    """

    lifetime: float = 86399.0
    location_tokens_with_refresh: bool = False
    refreshes: list[str] = attrs.Factory(list)
    """The refresh token of every refresh call, in order."""
    mints: list[tuple[str, str, str]] = attrs.Factory(list)
    """(company token, company id, location id) of every mint call."""
    errors: list[GhlError] = attrs.Factory(list)
    reused: int = 0
    """Refresh calls with a refresh token already used: must stay 0."""
    during_call: Callable[[], Awaitable[None]] | None = None
    codes: dict[str, TokenGrant] = attrs.Factory(dict)
    """Grants the consent page handed out, by code (each usable once)."""
    installed: list[InstalledLocation] = attrs.Factory(list)
    """What installed_locations lists."""
    listing_error: GhlError | None = None
    mint_errors: dict[str, GhlError] = attrs.Factory(dict)
    """An error to raise when minting for a location id."""
    live_access: set[str] = attrs.Factory(set)
    _live_refresh: dict[str, tuple[UserType, str | None, str | None]] = attrs.Factory(
        dict
    )
    _used_refresh: set[str] = attrs.Factory(set)
    _serial: int = 0

    def grant(
        self,
        user_type: UserType = UserType.LOCATION,
        location_id: str | None = LOCATION,
        company_id: str | None = "COMPANY1",
        *,
        with_refresh: bool = True,
    ) -> TokenGrant:
        """Issue a token pair, as an install would."""
        self._serial += 1
        access = f"access-{self._serial}"
        refresh = f"refresh-{self._serial}" if with_refresh else None
        self.live_access.add(access)
        if refresh is not None:
            self._live_refresh[refresh] = (user_type, location_id, company_id)
        return TokenGrant(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.lifetime,
            user_type=user_type,
            location_id=location_id,
            company_id=company_id,
        )

    def know(self, access_token: str, refresh_token: str) -> None:
        """Treat a pair issued elsewhere (a fixture's) as live."""
        self.live_access.add(access_token)
        self._live_refresh[refresh_token] = (UserType.LOCATION, LOCATION, None)

    def consent(self, grant: TokenGrant) -> str:
        """A code that exchanges for `grant`."""
        code = f"code-{len(self.codes) + 1}"
        self.codes[code] = grant
        return code

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        await self._answer_later()
        grant = self.codes.pop(code, None)
        if grant is None:
            raise TokenRevoked("Invalid grant: the code is invalid", "trace-1")
        return grant

    async def refresh(
        self,
        refresh_token: str,
        user_type: UserType,
        *,
        owner_id: str | None = None,
        company_id: str | None = None,
    ) -> TokenGrant:
        self.refreshes.append(refresh_token)
        await self._answer_later()
        if refresh_token in self._used_refresh:
            self.reused += 1
            raise TokenRevoked("Invalid grant: refresh token is invalid")
        owner = self._live_refresh.pop(refresh_token, None)
        if owner is None:
            raise TokenRevoked("Invalid grant: refresh token is invalid")
        self._used_refresh.add(refresh_token)
        kind, location_id, company_id = owner
        assert kind is user_type, "refreshed with the wrong user_type"
        return self.grant(kind, location_id, company_id)

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenGrant:
        self.mints.append((company_token, company_id, location_id))
        await self._answer_later()
        if location_id in self.mint_errors:
            raise self.mint_errors[location_id]
        if company_token not in self.live_access:
            raise GhlUnauthorized("Invalid token: access token is invalid")
        return self.grant(
            UserType.LOCATION,
            location_id,
            company_id,
            with_refresh=self.location_tokens_with_refresh,
        )

    async def installed_locations(
        self, company_token: str, company_id: str
    ) -> Sequence[InstalledLocation]:
        if self.listing_error is not None:
            raise self.listing_error
        if company_token not in self.live_access:
            raise GhlUnauthorized("Invalid token: access token is invalid")
        return list(self.installed)

    def revoke(self) -> None:
        """Every refresh token and access token issued so far stops working."""
        self._live_refresh.clear()
        self.live_access.clear()

    async def _answer_later(self) -> None:
        await asyncio.sleep(0)  # let concurrent callers pile up, as over a network
        if self.during_call is not None:
            hook, self.during_call = self.during_call, None
            await hook()
        if self.errors:
            raise self.errors.pop(0)
