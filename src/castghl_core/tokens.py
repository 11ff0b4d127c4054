"""Access tokens for GHL calls: the one place any code gets one.

A token close to expiry is refreshed before it is handed out. GHL's refresh
tokens are single use, so a refresh must never run twice for one owner:

- in a process, one asyncio task per owner refreshes and every other caller
  awaits that task (single flight);
- across processes, the refresher holds a lease named after the owner, and
  writes the rotated pair with a compare-and-set on the refresh token it
  used, before anyone uses the new access token.

"Invalid grant" after another worker's refresh is answered from the store;
only a refusal nobody explains marks the installation `needs_reauth`.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import attrs

from castghl_core.backoff import Backoff
from castghl_core.errors import (
    GhlError,
    GhlUnauthorized,
    LocationInactive,
    LocationNotInstalled,
    OAuthNotConfigured,
    TokenRevoked,
    TokenUnavailable,
)
from castghl_core.installations import Installation, InstallationState, UserType
from castghl_core.oauth import TokenGrant
from castghl_core.ports import Clock, GhlOAuth, InstallationStore, Leases

logger = logging.getLogger(__name__)

T = TypeVar("T")

LEASE_PREFIX = "token-refresh:"


class Trigger(enum.StrEnum):
    """Why a refresh was started (logged with it)."""

    EXPIRING = "expiring"
    """A caller needed a token within the refresh margin of its expiry."""
    UNAUTHORIZED = "unauthorized"
    """GHL answered 401 to the stored token."""
    PROACTIVE = "proactive"
    """The background worker, ahead of expiry."""


@attrs.frozen
class TokenPolicy:
    """When and how tokens are refreshed."""

    margin: timedelta = timedelta(minutes=5)
    """A token expiring within this is refreshed before it is handed out."""
    lease_for: timedelta = timedelta(seconds=60)
    """How long a refresher holds the owner's lease (longer than the calls)."""
    peer_wait: timedelta = timedelta(seconds=10)
    """How long to wait for another process's refresh before giving up."""
    peer_poll: float = 0.1
    """Seconds between looks at the store while waiting for that refresh."""
    inactive_backoff: Backoff = Backoff(base=60, cap=3600)
    """Waits between refreshes GHL refuses with "Location is not active"."""
    store_attempts: int = 4
    """Tries to store a pair GHL rotated before keeping it in memory only."""
    store_retry: Backoff = Backoff(base=0.2, cap=2.0)
    """Waits between those tries (the lease is still held)."""


class PeerRefreshing(TokenUnavailable):
    """Another process holds the owner's refresh lease."""

    def __init__(self, owner_id: str) -> None:
        super().__init__(
            owner_id, "another castghl process is refreshing the token", retryable=True
        )


class _StoreDown(Exception):
    """The store failed every try of a write."""


@attrs.frozen
class _Unsaved:
    """A pair GHL rotated that the store refused to take: kept in memory."""

    expected: str | None
    """The refresh token the store still holds (the dead one)."""
    rotated: Installation


@attrs.frozen
class _Flight:
    """What the first caller of a refresh asked for; later callers join it."""

    owner_id: str
    stale: str
    """The access token the caller found wanting."""
    within: timedelta
    """A stored token expiring later than this from now needs no refresh."""
    trigger: Trigger
    wait_for_peer: bool


class RefreshingAccessTokens:
    """The AccessTokens port with refresh; see the module docstring.

    One instance per process: its single-flight table is what keeps the tasks
    of a process from refreshing one owner twice.
    """

    def __init__(
        self,
        installations: InstallationStore,
        leases: Leases,
        oauth: GhlOAuth,
        clock: Clock,
        policy: TokenPolicy | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        self.installations = installations
        self.leases = leases
        self.oauth = oauth
        self.clock = clock
        self.policy = policy or TokenPolicy()
        self.owner = owner or f"tokens-{uuid.uuid4().hex[:12]}"
        """This process's name on refresh leases."""
        self._flights: dict[str, asyncio.Task[str]] = {}
        self._unsaved: dict[str, _Unsaved] = {}
        """Rotated pairs not yet in the store, by owner: written (or used)
        before any other refresh of that owner."""

    # --- the AccessTokens port ----------------------------------------------

    async def for_location(self, location_id: str) -> str:
        """A working access token; raise TokenUnavailable or LocationNotInstalled."""
        return await self._token(location_id)

    async def after_unauthorized(self, location_id: str, rejected: str) -> str:
        """A fresh token after GHL refused `rejected` (refreshes at most once)."""
        installation = await self._usable(location_id)
        if installation.access_token != rejected and not self._expiring(
            installation, self.policy.margin
        ):
            return installation.access_token  # someone refreshed meanwhile
        logger.info("token.rejected", extra=owner_fields(installation))
        return await self._fly(
            _Flight(
                location_id,
                rejected,
                self.policy.margin,
                Trigger.UNAUTHORIZED,
                wait_for_peer=True,
            )
        )

    # --- beyond the port ----------------------------------------------------

    async def for_company(self, company_id: str) -> str:
        """A working company (agency) access token, refreshed like any other."""
        return await self._token(company_id)

    async def call_with_token(
        self, owner_id: str, call: Callable[[str], Awaitable[T]]
    ) -> T:
        """`call(token)`; after a 401, one refresh and one more try."""
        token = await self._token(owner_id)
        try:
            return await call(token)
        except GhlUnauthorized:
            fresh = await self.after_unauthorized(owner_id, token)
            return await call(fresh)

    async def refresh_ahead(self, owner_id: str, lead: timedelta) -> bool:
        """Refresh if the token expires within `lead`; for the background worker.

        Returns False without calling GHL when the token is not due, when a
        backoff is running, or when another process holds the owner's lease.
        Raises TokenUnavailable or LocationNotInstalled when the refresh fails.
        """
        installation = await self._usable(owner_id)
        if not self._expiring(installation, lead) or self._backing_off(installation):
            return False
        try:
            await self._fly(
                _Flight(
                    owner_id,
                    installation.access_token,
                    lead,
                    Trigger.PROACTIVE,
                    wait_for_peer=False,
                )
            )
        except PeerRefreshing:
            return False
        return True

    async def close(self, grace: float = 10.0) -> None:
        """On shutdown: let refreshes under way finish, for up to `grace` s.

        A refresh cut short after GHL rotated the pair but before the store
        has it would lose the pair, so they are waited for first; only what
        is still running after `grace` is cancelled (its lease then lapses).
        """
        flights = list(self._flights.values())
        if not flights:
            return
        _, late = await asyncio.wait(flights, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    # --- getting a token ----------------------------------------------------

    async def _token(self, owner_id: str) -> str:
        installation = await self._usable(owner_id)
        unsaved = owner_id in self._unsaved  # the stored pair is dead: resume
        if not unsaved and not self._expiring(installation, self.policy.margin):
            return installation.access_token
        try:
            return await self._fly(
                _Flight(
                    owner_id,
                    installation.access_token,
                    self.policy.margin,
                    Trigger.EXPIRING,
                    wait_for_peer=True,
                )
            )
        except TokenUnavailable as error:
            # Inside the margin the old token still works: better than none.
            if error.retryable and installation.expires_at > self.clock.now():
                return installation.access_token
            raise

    async def _usable(self, owner_id: str) -> Installation:
        """The owner's installation if its tokens may be used at all."""
        installation = await self.installations.get(owner_id)
        if installation is None or installation.state is InstallationState.UNINSTALLED:
            raise LocationNotInstalled(owner_id)
        if installation.state is InstallationState.NEEDS_REAUTH:
            raise TokenUnavailable(
                owner_id,
                "the installation needs re-authorisation "
                f"({installation.state_reason or 'GHL refused its tokens'}); "
                "reinstall the app for this location",
                retryable=False,
            )
        return installation

    def _expiring(self, installation: Installation, within: timedelta) -> bool:
        return installation.expires_at - within <= self.clock.now()

    def _backing_off(self, installation: Installation) -> bool:
        retry_at = installation.retry_refresh_at
        return retry_at is not None and self.clock.now() < retry_at

    # --- single flight --------------------------------------------------------

    async def _fly(self, flight: _Flight) -> str:
        """Join the owner's refresh in this process, or start it."""
        task = self._flights.get(flight.owner_id)
        if task is None:
            task = asyncio.create_task(
                self._refresh(flight), name=f"refresh-{flight.owner_id}"
            )
            self._flights[flight.owner_id] = task
            task.add_done_callback(functools.partial(self._landed, flight.owner_id))
        # A caller that is cancelled leaves the refresh running for the others.
        return await asyncio.shield(task)

    def _landed(self, owner_id: str, task: asyncio.Task[str]) -> None:
        if self._flights.get(owner_id) is task:
            del self._flights[owner_id]
        if not task.cancelled():
            task.exception()  # marked retrieved: the awaiting callers re-raise it

    async def _refresh(self, flight: _Flight) -> str:
        """Refresh under the owner's lease, unless the store already has better."""
        installation = await self._usable(flight.owner_id)
        if self._fresh(installation, flight):
            return installation.access_token
        if self._backing_off(installation):
            raise TokenUnavailable(
                flight.owner_id,
                installation.state_reason or "waiting before the next refresh",
                retryable=True,
            )

        lease = LEASE_PREFIX + flight.owner_id
        if not await self._take_lease(lease):
            if not flight.wait_for_peer:
                raise PeerRefreshing(flight.owner_id)
            return await self._await_peer(installation)
        try:
            # Read again under the lease: another process may just have written.
            installation = await self._usable(flight.owner_id)
            unsaved = self._unsaved.get(flight.owner_id)
            if unsaved is not None:
                return await self._resume(unsaved, installation, flight)
            if self._fresh(installation, flight):
                return installation.access_token
            return await self._rotate(installation, flight.trigger)
        finally:
            await self.leases.release(lease, self.owner)

    def _fresh(self, installation: Installation, flight: _Flight) -> bool:
        return installation.access_token != flight.stale and not self._expiring(
            installation, flight.within
        )

    async def _take_lease(self, lease: str) -> bool:
        return await self.leases.acquire(
            lease, self.owner, self.clock.now(), self.policy.lease_for
        )

    async def _await_peer(self, seen: Installation) -> str:
        """Wait for another process's refresh to reach the store."""
        deadline = self.clock.now() + self.policy.peer_wait
        while self.clock.now() < deadline:
            await self.clock.sleep(self.policy.peer_poll)
            current = await self._usable(seen.owner_id)
            if current.refresh_token != seen.refresh_token or (
                current.access_token != seen.access_token
            ):
                return current.access_token
        logger.warning("token.peer_refresh_slow", extra=owner_fields(seen))
        raise PeerRefreshing(seen.owner_id)

    # --- the refresh itself ---------------------------------------------------

    async def _resume(
        self, unsaved: _Unsaved, stored: Installation, flight: _Flight
    ) -> str:
        """Write a pair the store refused earlier, before refreshing again."""
        owner_id = flight.owner_id
        if stored.refresh_token != unsaved.expected:
            # The store moved on (a reinstall, say): our pair is not wanted.
            del self._unsaved[owner_id]
            logger.warning("token.unsaved_pair_dropped", extra=owner_fields(stored))
            if self._fresh(stored, flight):
                return stored.access_token
            return await self._rotate(stored, flight.trigger)
        pair = unsaved.rotated
        try:
            if await self._write(pair, stored, attempts=1):
                logger.info("token.unsaved_pair_stored", extra=owner_fields(pair))
                stored = pair
        except _StoreDown:
            pass  # still in memory only: used, and written after a refresh

        if self._fresh(pair, flight):
            return pair.access_token
        # Refreshed from the pair GHL knows, never from the dead one.
        return await self._rotate(pair, flight.trigger, stored)

    async def _rotate(
        self,
        installation: Installation,
        trigger: Trigger,
        stored: Installation | None = None,
    ) -> str:
        """Get a new pair from GHL and store it before anyone uses it.

        `stored` is the record in the store, when it is not `installation`
        itself (a pair kept in memory that the store has not taken yet).
        """
        stored = stored or installation
        try:
            if installation.refresh_token is None:
                grant = await self._mint(installation)
            else:
                grant = await self.oauth.refresh(
                    installation.refresh_token,
                    installation.user_type,
                    owner_id=installation.owner_id,
                    company_id=installation.company_id,
                )
        except TokenRevoked as error:
            return await self._after_invalid_grant(installation, error)
        except LocationInactive as error:
            await self._back_off(installation, error)
            raise TokenUnavailable(
                installation.owner_id,
                "GHL says the location is not active; the token is kept and the "
                "refresh retried later",
                retryable=True,
            ) from error
        except OAuthNotConfigured as error:
            raise TokenUnavailable(
                installation.owner_id, str(error), retryable=True
            ) from error
        except GhlError as error:
            logger.warning(
                "token.refresh_failed",
                extra={
                    **owner_fields(installation),
                    "trigger": trigger.value,
                    "error_class": type(error).__name__,
                    "trace_id": error.trace_id,
                },
            )
            raise TokenUnavailable(
                installation.owner_id,
                f"the token refresh failed: {error}",
                retryable=True,
            ) from error

        return await self._store(installation, grant, trigger, stored)

    async def _store(
        self,
        installation: Installation,
        grant: TokenGrant,
        trigger: Trigger,
        stored: Installation,
    ) -> str:
        now = self.clock.now()
        rotated = attrs.evolve(
            installation,
            access_token=grant.access_token,
            # A minted location token may come without one: keep minting.
            refresh_token=grant.refresh_token,
            expires_at=now + timedelta(seconds=grant.expires_in),
            scopes=grant.scopes or installation.scopes,
            state_reason=None,
            refresh_failures=0,
            retry_refresh_at=None,
            updated_at=now,
        )
        try:
            written = await self._write(rotated, stored, self.policy.store_attempts)
        except _StoreDown:
            # XXX: GHL has rotated the pair and the store keeps refusing it.
            # It lives in this process's memory only (used, and written,
            # before any other refresh of the owner); a crash or restart of
            # the process now loses it, and the owner then needs_reauth.
            self._unsaved[installation.owner_id] = _Unsaved(
                stored.refresh_token, rotated
            )
            logger.error(  # noqa: TRY400 - the store retries logged each failure
                "token.store_failed", extra=owner_fields(installation)
            )
            return rotated.access_token
        if not written:
            # Our lease lapsed while GHL was slow and another process stored
            # its own rotation (or the app was uninstalled): the store wins.
            logger.warning("token.refresh_superseded", extra=owner_fields(installation))
            return (await self._usable(installation.owner_id)).access_token

        logger.info(
            "token.refreshed",
            extra={
                **owner_fields(installation),
                "trigger": trigger.value,
                "expires_at": rotated.expires_at.isoformat(),
                "minted": installation.refresh_token is None,
            },
        )
        return rotated.access_token

    async def _write(
        self, record: Installation, stored: Installation, attempts: int
    ) -> bool:
        """Compare-and-set `record` over `stored`; False if the store moved on.

        A store that fails is tried `attempts` times in all, with short waits
        (the caller holds the lease); then _StoreDown is raised.
        """
        for attempt in range(attempts):
            try:
                written = await self.installations.replace_if_refresh_token(
                    record, stored.refresh_token
                )
            except Exception as error:  # noqa: BLE001 - any store's failure
                logger.warning(
                    "token.store_retry",
                    extra={
                        **owner_fields(record),
                        "attempt": attempt + 1,
                        "error_class": type(error).__name__,
                    },
                )
                if attempt + 1 < attempts:
                    await self.clock.sleep(self.policy.store_retry.delay(attempt))
                continue
            if written:
                self._unsaved.pop(record.owner_id, None)
            return written
        raise _StoreDown(record.owner_id)

    async def _mint(self, installation: Installation) -> TokenGrant:
        """A new location token from the company token (no refresh token kept)."""
        location_id, company_id = installation.owner_id, installation.company_id
        if installation.is_company or company_id is None:
            raise await self._mark_needs_reauth(
                installation, "no refresh token, and no company token to mint one"
            )

        async def mint(company_token: str) -> TokenGrant:
            return await self.oauth.location_token(
                company_token, company_id, location_id
            )

        try:
            return await self.call_with_token(company_id, mint)
        except (LocationNotInstalled, TokenUnavailable) as error:
            if isinstance(error, TokenUnavailable) and error.retryable:
                raise
            raise await self._mark_needs_reauth(
                installation,
                f"its company installation {company_id} cannot mint tokens",
            ) from error

    async def _after_invalid_grant(
        self, installation: Installation, error: TokenRevoked
    ) -> str:
        """Tell a concurrent refresh from a revocation."""
        current = await self._usable(installation.owner_id)
        if current.refresh_token != installation.refresh_token:
            # Another worker rotated the pair first: ours was the old one.
            logger.info("token.refreshed_elsewhere", extra=owner_fields(current))
            return current.access_token
        if not await self._take_lease(LEASE_PREFIX + installation.owner_id):
            # Our lease lapsed and another process is refreshing right now:
            # its answer, not ours, says whether the grant is still good.
            return await self._await_peer(installation)
        raise await self._mark_needs_reauth(
            installation, f"GHL refused the refresh token: {error}"
        )

    async def _mark_needs_reauth(
        self, installation: Installation, reason: str
    ) -> TokenUnavailable:
        """Store `needs_reauth` (unless the store moved on); the error to raise."""
        marked = attrs.evolve(
            installation,
            state=InstallationState.NEEDS_REAUTH,
            state_reason=reason,
            updated_at=self.clock.now(),
        )
        if await self.installations.replace_if_refresh_token(
            marked, installation.refresh_token
        ):
            logger.error(
                "token.needs_reauth",
                extra={**owner_fields(installation), "reason": reason},
            )
            return TokenUnavailable(
                installation.owner_id,
                f"the installation needs re-authorisation ({reason}); "
                "reinstall the app for this location",
                retryable=False,
            )
        # The store moved on meanwhile (a refresh elsewhere, a reinstall or an
        # uninstall): raise what it now says, or let the caller try again.
        await self._usable(installation.owner_id)
        return TokenUnavailable(
            installation.owner_id, "the installation changed meanwhile", retryable=True
        )

    async def _back_off(self, installation: Installation, error: GhlError) -> None:
        """Keep the tokens; try again after a growing wait."""
        now = self.clock.now()
        delay = self.policy.inactive_backoff.delay(installation.refresh_failures)
        retry_at = now + timedelta(seconds=delay)
        paused = attrs.evolve(
            installation,
            state_reason="GHL says the location is not active",
            refresh_failures=installation.refresh_failures + 1,
            retry_refresh_at=retry_at,
            updated_at=now,
        )
        await self.installations.replace_if_refresh_token(
            paused, installation.refresh_token
        )
        logger.warning(
            "token.location_inactive",
            extra={
                **owner_fields(installation),
                "retry_at": retry_at.isoformat(),
                "failures": paused.refresh_failures,
                "trace_id": error.trace_id,
            },
        )


def owner_fields(installation: Installation) -> dict[str, object]:
    """Log fields naming the owner (never a token)."""
    key = "company_id" if installation.user_type is UserType.COMPANY else "location_id"
    return {key: installation.owner_id, "user_type": installation.user_type.value}
