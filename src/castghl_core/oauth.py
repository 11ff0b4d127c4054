"""What GHL's OAuth calls answer: token grants and installed locations."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from castghl_core.installations import Installation, InstallationState, UserType


def app_id_of(client_id: str) -> str:
    """The marketplace app id in a client id shaped `<appId>-<suffix>`."""
    return client_id.split("-", 1)[0]


@attrs.frozen(repr=False)
class TokenGrant:
    """One answer of GHL's token endpoints: an access token and what it is for.

    `repr` leaves the tokens out, so a stray log line cannot leak them.
    """

    access_token: str
    refresh_token: str | None
    """None for a location token minted from a company token by older GHL
    versions: a new one is minted from the company token when it expires."""
    expires_in: float
    """Seconds the access token lives from the moment it was issued."""
    user_type: UserType
    location_id: str | None = None
    company_id: str | None = None
    scopes: tuple[str, ...] = ()
    approved_locations: tuple[str, ...] = ()
    """Locations an agency approved in a bulk install (Company tokens)."""
    is_bulk_installation: bool = False

    def __repr__(self) -> str:
        return (
            f"TokenGrant(user_type={self.user_type.value}, "
            f"location_id={self.location_id!r}, company_id={self.company_id!r}, "
            f"expires_in={self.expires_in})"
        )

    @property
    def owner_id(self) -> str:
        """The location id of a location token, else the company id."""
        owner = (
            self.location_id if self.user_type is UserType.LOCATION else self.company_id
        )
        if not owner:
            raise ValueError(f"a {self.user_type.value} token names no owner id")
        return owner

    def installation(self, now: datetime, owner_id: str | None = None) -> Installation:
        """The active installation this grant makes, issued at `now`."""
        return Installation(
            owner_id=owner_id or self.owner_id,
            user_type=self.user_type,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            expires_at=now + timedelta(seconds=self.expires_in),
            company_id=self.company_id,
            scopes=self.scopes,
            state=InstallationState.ACTIVE,
            updated_at=now,
            installed_at=now,
        )


@attrs.frozen
class InstalledLocation:
    """A location an agency's app is installed on."""

    location_id: str
    name: str | None = None
