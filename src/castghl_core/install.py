"""Use cases: install the app (OAuth callback, INSTALL webhook), uninstall it,
and forget an uninstalled location's settings once its grace period is over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from castghl_core.errors import (
    GhlError,
    LocationNotInstalled,
    TokenUnavailable,
)
from castghl_core.installations import Installation, InstallationState, UserType
from castghl_core.oauth import InstalledLocation, TokenGrant
from castghl_core.ports import (
    Clock,
    GhlOAuth,
    InstallationStore,
    LocationSettingsStore,
    SecretStore,
)
from castghl_core.tokens import RefreshingAccessTokens

logger = logging.getLogger(__name__)


@attrs.frozen
class ConnectedLocation:
    """A location that now has a working token."""

    location_id: str
    name: str | None = None


@attrs.frozen
class FailedLocation:
    """A location the install could not get a token for, and why."""

    location_id: str
    reason: str


@attrs.frozen
class InstallReport:
    """What an OAuth install connected."""

    user_type: UserType
    company_id: str | None
    connected: tuple[ConnectedLocation, ...]
    failed: tuple[FailedLocation, ...] = ()


@attrs.define
class InstallApp:
    """Turns GHL's consent into stored installations, one per location."""

    oauth: GhlOAuth
    installations: InstallationStore
    tokens: RefreshingAccessTokens
    clock: Clock
    mint_concurrency: int = 8
    """Location tokens minted at once for an agency install."""

    async def complete(self, code: str, redirect_uri: str) -> InstallReport:
        """Exchange the consent's code and store what it grants.

        A Location token is stored for its location. A Company token is
        stored as the company's installation, then a location token is
        minted for every location the app is installed on. Raises GhlError
        (nothing stored) if the code cannot be exchanged.
        """
        grant = await self.oauth.exchange_code(code, redirect_uri)
        now = self.clock.now()
        await self.installations.put(grant.installation(now))
        logger.info(
            "app.installed",
            extra={
                "user_type": grant.user_type.value,
                "owner_id": grant.owner_id,
                "company_id": grant.company_id,
            },
        )
        if grant.user_type is UserType.LOCATION:
            location = ConnectedLocation(grant.owner_id)
            return InstallReport(UserType.LOCATION, grant.company_id, (location,))

        company_id = grant.owner_id
        locations = await self._installed_locations(company_id, grant)
        limit = asyncio.Semaphore(self.mint_concurrency)

        async def connect(location: InstalledLocation) -> str | None:
            async with limit:
                return await self._connect(company_id, location.location_id)

        failures = await asyncio.gather(*(connect(loc) for loc in locations))
        connected = tuple(
            ConnectedLocation(location.location_id, location.name)
            for location, failure in zip(locations, failures, strict=True)
            if failure is None
        )
        failed = tuple(
            FailedLocation(location.location_id, failure)
            for location, failure in zip(locations, failures, strict=True)
            if failure is not None
        )
        return InstallReport(UserType.COMPANY, company_id, connected, failed)

    async def add_location(
        self,
        company_id: str | None,
        location_id: str,
        *,
        stamped: datetime | None = None,
    ) -> bool:
        """A location installed later under a stored company (INSTALL webhook).

        Returns False (nothing to do) when the location already has an active
        installation, was uninstalled after `stamped` (the webhook's
        timestamp: a late retry), or no active company installation can mint
        for it; a location-level install is completed by the OAuth callback
        instead. Raises GhlError or TokenUnavailable when minting fails.
        """
        existing = await self.installations.get(location_id)
        if existing is not None and existing.is_active:
            return False
        gone_at = existing.uninstalled_at if existing is not None else None
        if stamped is not None and gone_at is not None and stamped < gone_at:
            logger.warning(
                "app.install_outdated",
                extra={
                    "location_id": location_id,
                    "stamped": stamped.isoformat(),
                    "uninstalled_at": gone_at.isoformat(),
                },
            )
            return False
        company = await self.installations.get(company_id) if company_id else None
        if company is None or not company.is_company or not company.is_active:
            logger.info(
                "app.install_needs_callback",
                extra={"location_id": location_id, "company_id": company_id},
            )
            return False
        assert company_id is not None  # noqa: S101  (company was found by it)

        grant = await self.tokens.call_with_token(
            company_id, lambda token: self._mint(token, company_id, location_id)
        )
        await self._store_location(grant, company_id, location_id)
        return True

    async def _installed_locations(
        self, company_id: str, grant: TokenGrant
    ) -> list[InstalledLocation]:
        """Installed locations, and any approved ones the listing missed."""
        listed: Sequence[InstalledLocation] = ()
        try:
            listed = await self.tokens.call_with_token(
                company_id,
                lambda token: self.oauth.installed_locations(token, company_id),
            )
        except (GhlError, TokenUnavailable) as error:
            # The approved locations of the grant still say where to mint.
            logger.warning(
                "app.installed_locations_failed",
                extra={"company_id": company_id, **_error_fields(error)},
            )
        found = {location.location_id: location for location in listed}
        for location_id in grant.approved_locations:
            found.setdefault(location_id, InstalledLocation(location_id))
        return list(found.values())

    async def _connect(self, company_id: str, location_id: str) -> str | None:
        """Mint and store a location's token; the reason if that failed."""
        try:
            grant = await self.tokens.call_with_token(
                company_id, lambda token: self._mint(token, company_id, location_id)
            )
        except (GhlError, TokenUnavailable, LocationNotInstalled) as error:
            logger.warning(
                "app.location_token_failed",
                extra={
                    "company_id": company_id,
                    "location_id": location_id,
                    **_error_fields(error),
                },
            )
            return str(error)
        await self._store_location(grant, company_id, location_id)
        return None

    async def _mint(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenGrant:
        return await self.oauth.location_token(company_token, company_id, location_id)

    async def _store_location(
        self, grant: TokenGrant, company_id: str, location_id: str
    ) -> None:
        installation = attrs.evolve(
            grant.installation(self.clock.now(), location_id),
            user_type=UserType.LOCATION,
            company_id=company_id,
        )
        await self.installations.put(installation)
        logger.info(
            "app.location_connected",
            extra={
                "location_id": location_id,
                "company_id": company_id,
                "renewable": installation.refresh_token is not None,
            },
        )


@attrs.define
class UninstallApp:
    """Forgets tokens at once, and settings and keys after a grace period."""

    installations: InstallationStore
    settings: LocationSettingsStore
    secrets: SecretStore
    clock: Clock
    grace: timedelta = timedelta(days=30)
    """How long settings and keys outlive an uninstall, for a reinstall."""

    async def uninstall(
        self,
        location_id: str | None,
        company_id: str | None,
        *,
        stamped: datetime | None = None,
    ) -> list[str]:
        """Mark a location (or a company and its locations) uninstalled.

        Tokens are deleted now; settings and keys stay for `grace`. Returns
        the owner ids that were uninstalled by this call. An installation
        made after `stamped` (the webhook's timestamp) is kept: the webhook
        is a late retry of an uninstall the user has since undone.
        """
        if location_id:
            owners = [location_id]
        elif company_id:
            owners = [company_id] + [
                installation.owner_id
                for installation in await self.installations.list()
                if installation.company_id == company_id
                and installation.owner_id != company_id
            ]
        else:
            return []
        return [owner for owner in owners if await self._uninstall(owner, stamped)]

    async def forget_expired(self) -> list[str]:
        """Delete what uninstalls left once their grace period is over."""
        cutoff = self.clock.now() - self.grace
        forgotten = []
        for installation in await self.installations.list():
            if not _expired(installation, cutoff):
                continue
            # Read again: a reinstall since the listing must keep everything.
            # XXX: a reinstall between this read and the deletes still loses
            # its settings; a delete-if-unchanged in the store would close it.
            current = await self.installations.get(installation.owner_id)
            if current is None or not _expired(current, cutoff):
                continue
            if current.user_type is UserType.LOCATION:
                await self.settings.delete(current.owner_id)
                await self.secrets.delete(current.owner_id)
            await self.installations.delete(current.owner_id)
            forgotten.append(current.owner_id)
            logger.info("app.uninstall_forgotten", extra={"owner_id": current.owner_id})
        return forgotten

    async def _uninstall(self, owner_id: str, stamped: datetime | None) -> bool:
        installation = await self.installations.get(owner_id)
        if installation is None or installation.state is InstallationState.UNINSTALLED:
            return False
        installed_at = installation.installed_at
        if stamped is not None and installed_at is not None and stamped < installed_at:
            logger.warning(
                "app.uninstall_outdated",
                extra={
                    "owner_id": owner_id,
                    "stamped": stamped.isoformat(),
                    "installed_at": installed_at.isoformat(),
                },
            )
            return False
        now = self.clock.now()
        await self.installations.put(
            attrs.evolve(
                installation,
                access_token="",
                refresh_token=None,
                expires_at=now,
                state=InstallationState.UNINSTALLED,
                state_reason="the app was uninstalled in GHL",
                refresh_failures=0,
                retry_refresh_at=None,
                uninstalled_at=now,
                updated_at=now,
            )
        )
        logger.info(
            "app.uninstalled",
            extra={
                "owner_id": owner_id,
                "user_type": installation.user_type.value,
                "forget_after": (now + self.grace).isoformat(),
            },
        )
        return True


def _expired(installation: Installation, cutoff: datetime) -> bool:
    return (
        installation.state is InstallationState.UNINSTALLED
        and installation.uninstalled_at is not None
        and installation.uninstalled_at <= cutoff
    )


def _error_fields(error: Exception) -> dict[str, object]:
    fields: dict[str, object] = {"error_class": type(error).__name__}
    if isinstance(error, GhlError):
        fields["trace_id"] = error.trace_id
    fields["reason"] = str(error)
    return fields
