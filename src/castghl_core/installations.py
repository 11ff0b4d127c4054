"""An app installation: what castghl needs to call GHL for a location."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class InstallationState(enum.StrEnum):
    """Whether an installation's tokens can be used."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    UNINSTALLED = "uninstalled"


class UserType(enum.StrEnum):
    """GHL's token kinds: one location, or an agency (company)."""

    LOCATION = "Location"
    COMPANY = "Company"


@attrs.frozen(repr=False)
class Installation:
    """OAuth tokens for one location (or one company, for agency installs).

    `repr` leaves the tokens out, so a stray log line cannot leak them.
    """

    owner_id: str
    """The location id, or the company id for a Company installation."""
    user_type: UserType
    access_token: str
    refresh_token: str | None
    expires_at: datetime
    company_id: str | None = None
    scopes: tuple[str, ...] = ()
    state: InstallationState = InstallationState.ACTIVE
    state_reason: str | None = None
    updated_at: datetime | None = None
    refresh_failures: int = 0
    """Refreshes refused in a row because GHL says the location is not active."""
    retry_refresh_at: datetime | None = None
    """No refresh is tried before this (backoff after "Location is not active")."""
    uninstalled_at: datetime | None = None
    """When GHL said the app was uninstalled; settings and keys are forgotten
    a grace period after it."""
    installed_at: datetime | None = None
    """When an install (the OAuth callback or a mint) made this record; an
    UNINSTALL webhook stamped earlier than this is a late retry, ignored."""

    def __repr__(self) -> str:
        return (
            f"Installation(owner_id={self.owner_id!r}, "
            f"user_type={self.user_type.value}, state={self.state.value}, "
            f"expires_at={self.expires_at.isoformat()})"
        )

    @property
    def is_active(self) -> bool:
        """Whether GHL calls may be made with this installation."""
        return self.state is InstallationState.ACTIVE

    @property
    def is_company(self) -> bool:
        """Whether this is an agency (Company) installation."""
        return self.user_type is UserType.COMPANY
