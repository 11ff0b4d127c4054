"""The core's interfaces: what the use cases need from the outside world.

Each port has a contract suite in tests/contract/ that every adapter passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from castghl_core.gateway import SendReceipt, SmsRequest, StatusReport
from castghl_core.installations import Installation, UserType
from castghl_core.jobs import DeliveryStatus, JobState, OutboundJob
from castghl_core.locations import LocationSettings
from castghl_core.oauth import InstalledLocation, TokenGrant


class Clock(Protocol):
    """Where time comes from, so time-based behaviour is testable."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SignatureVerifier(Protocol):
    """Checks that a webhook body was signed by GHL."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return if `body` is signed by a trusted key; raise SignatureRejected."""
        ...


class Outbox(Protocol):
    """Durable outbound jobs keyed by GHL messageId.

    Pick-up is lease-based: `lease_due` hands a job to one owner until the
    lease expires, and `update` writes only while that owner still holds it.
    """

    async def claim(self, job: OutboundJob) -> bool:
        """Insert `job` unless its message_id exists; True if it was inserted."""
        ...

    async def get(self, message_id: str) -> OutboundJob | None:
        """The job for `message_id`, if any."""
        ...

    async def lease_due(
        self, owner: str, now: datetime, lease_for: timedelta, limit: int
    ) -> list[OutboundJob]:
        """Lease up to `limit` unfinished jobs due by `now` and not leased."""
        ...

    async def update(self, job: OutboundJob, *, owner: str) -> bool:
        """Write `job` if `owner` still holds its lease; False if it lost it."""
        ...

    async def count_by_state(self) -> Mapping[JobState, int]:
        """How many jobs are in each state (reads every job: not a hot path)."""
        ...

    async def count_unfinished(self) -> int:
        """How many jobs are not yet reported or dead (an indexed count)."""
        ...


class Admission(Protocol):
    """Decides whether a new outbound job may be taken in now."""

    async def check(self) -> None:
        """Return if there is room; raise BacklogFull if not."""
        ...


class Leases(Protocol):
    """Named leases so one process at a time does a piece of shared work."""

    async def acquire(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> bool:
        """Take or renew `name` for `owner` unless another holds it unexpired."""
        ...

    async def release(self, name: str, owner: str) -> None:
        """Give `name` up if `owner` holds it."""
        ...


class InstallationStore(Protocol):
    """OAuth installations per location (and per company)."""

    async def get(self, owner_id: str) -> Installation | None:
        """The installation of a location or company, if any."""
        ...

    async def put(self, installation: Installation) -> None:
        """Create or replace an installation."""
        ...

    async def replace_if_refresh_token(
        self, installation: Installation, expected_refresh_token: str | None
    ) -> bool:
        """Write `installation` only if the stored refresh token is the expected
        one (compare-and-set); False if another writer rotated it first.

        Never writes over an installation stored as `uninstalled` (False):
        an UNINSTALL landing during a refresh or a mint wins over it.
        """
        ...

    async def list(self) -> Sequence[Installation]:
        """Every installation, in owner_id order."""
        ...

    async def delete(self, owner_id: str) -> None:
        """Forget an installation; no error if absent."""
        ...


class LocationSettingsStore(Protocol):
    """Per-location settings, kept apart from tokens so reinstalls keep them."""

    async def get(self, location_id: str) -> LocationSettings | None:
        """The settings of a location, if any."""
        ...

    async def put(self, settings: LocationSettings) -> None:
        """Create or replace a location's settings."""
        ...

    async def list(self) -> Sequence[LocationSettings]:
        """Every location's settings, in location_id order."""
        ...

    async def delete(self, location_id: str) -> None:
        """Forget a location's settings; no error if absent."""
        ...


class SecretStore(Protocol):
    """Per-location Cast API keys."""

    async def get(self, location_id: str) -> str | None:
        """The location's Cast API key, if one is set."""
        ...

    async def put(self, location_id: str, api_key: str) -> None:
        """Set or replace the location's Cast API key."""
        ...

    async def delete(self, location_id: str) -> None:
        """Remove the location's key; no error if absent."""
        ...

    async def list_names(self) -> Sequence[str]:
        """The location ids that have a key, sorted."""
        ...


class SmsGateway(Protocol):
    """Sends SMS and reports their delivery (Cast)."""

    async def send(self, request: SmsRequest) -> SendReceipt:
        """Queue one SMS; raise CastRejected (final) or CastUnavailable (retry)."""
        ...

    async def status(self, api_key: str, cast_message_id: str) -> StatusReport:
        """Look up a message's delivery status."""
        ...


class GhlApi(Protocol):
    """The HighLevel calls castghl makes with a location's access token."""

    async def update_message_status(
        self,
        access_token: str,
        message_id: str,
        status: DeliveryStatus,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Tell GHL a message's outcome; `error` is (code, message) for failures.

        Raises GhlNotReady, GhlUnauthorized, GhlRateLimited, GhlUnavailable
        or GhlRejected.
        """
        ...


class GhlOAuth(Protocol):
    """HighLevel's OAuth calls: codes and refresh tokens for access tokens.

    Each raises TokenRevoked ("Invalid grant"), LocationInactive ("Location
    is not active"), GhlUnauthorized (a Bearer token refused), GhlRateLimited,
    GhlUnavailable, GhlRejected, or OAuthNotConfigured.
    """

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        """The grant for an authorization code from the consent redirect."""
        ...

    async def refresh(
        self,
        refresh_token: str,
        user_type: UserType,
        *,
        owner_id: str | None = None,
        company_id: str | None = None,
    ) -> TokenGrant:
        """A new token pair; from then on GHL refuses the refresh token given.

        `owner_id` and `company_id` are what the caller knows of the owner:
        they fill in a grant whose answer leaves them out.
        """
        ...

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenGrant:
        """A location token minted with a company (agency) token."""
        ...

    async def installed_locations(
        self, company_token: str, company_id: str
    ) -> Sequence[InstalledLocation]:
        """Every location of the company the app is installed on (all pages)."""
        ...


class AccessTokens(Protocol):
    """The one way code gets a GHL access token for a location."""

    async def for_location(self, location_id: str) -> str:
        """A working access token; raise TokenUnavailable or LocationNotInstalled."""
        ...

    async def after_unauthorized(self, location_id: str, rejected: str) -> str:
        """A fresh token after GHL refused `rejected` (refreshes at most once)."""
        ...
