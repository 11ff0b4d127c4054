"""HighLevel's OAuth side for the GHL sandbox: consent, codes, tokens, locations.

Bookkeeping only; GhlSandbox serves it over HTTP. Written from the reference
(ghl.md) and HighLevel's oauth.json, not from castghl's client. As at GHL,
every refresh returns a new pair and the refresh token used dies: a second
use is refused and counted, so tests can prove it never happens.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

DEFAULT_LIFETIME = 86399
"""Seconds an access token lives, as GHL's `expires_in` says (about a day)."""
CODE_LIFETIME = 600.0
SAMPLE_LOCATION = "GKAWb4yu7A4LSc0skQ6g"  # HighLevel's documentation sample
SCOPES = (
    "conversations/message.write conversations/message.readonly"
    " conversations.readonly conversations.write contacts.readonly contacts.write"
)
COMPANY_SCOPES = SCOPES + " oauth.readonly oauth.write"
LOCATION, COMPANY = "Location", "Company"

INVALID_REFRESH = "Invalid grant: refresh token is invalid"
INVALID_CODE = "Invalid grant: authorization code is invalid"
INACTIVE = "Location is not active"
INVALID_TOKEN = "Invalid token: access token is invalid"  # noqa: S105
# The wording of these is the sandbox's own: GHL's is not documented.
INVALID_CLIENT = "Invalid client: client_id or client_secret is wrong"
NOT_INSTALLED = "The app is not installed on this location"


class OAuthRefusal(Exception):
    """A GHL-shaped refusal: an HTTP status and GHL's message (or messages)."""

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def ghl_id() -> str:
    """A random id shaped like GHL's (20 letters and digits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


@attrs.frozen
class Grant:
    """One issued token (pair) and what it may be used for."""

    access_token: str
    refresh_token: str | None
    user_type: str
    company_id: str
    location_id: str | None
    user_id: str
    scope: str
    expires_in: int
    expires_at: float
    """Monotonic time after which the access token is refused."""
    approved_locations: tuple[str, ...] = ()

    @property
    def owner_id(self) -> str:
        """The location of a location token, else the company."""
        return self.location_id if self.location_id is not None else self.company_id

    def to_token_response(self) -> dict[str, Any]:
        """The grant shaped like GHL's /oauth/token answer."""
        response: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
            "userType": self.user_type,
            "companyId": self.company_id,
            "userId": self.user_id,
            "isBulkInstallation": self.user_type == COMPANY,
        }
        if self.refresh_token is not None:
            response["refresh_token"] = self.refresh_token
        if self.location_id is not None:
            response["locationId"] = self.location_id
        if self.user_type == COMPANY:
            response["approvedLocations"] = list(self.approved_locations)
        return response

    def to_location_token_response(self) -> dict[str, Any]:
        """The grant shaped like /oauth/locationToken's answer (no userType)."""
        response: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
            "locationId": self.location_id,
            "userId": self.user_id,
        }
        if self.refresh_token is not None:
            response["refresh_token"] = self.refresh_token
        return response


@attrs.define
class SandboxLocation:
    """A sub-account of the sandbox's agency."""

    location_id: str
    name: str
    installed: bool = False
    active: bool = True


@attrs.frozen
class Consent:
    """What the next person on the consent page approves."""

    user_type: str
    location_ids: tuple[str, ...]


@attrs.frozen
class TokenCall:
    """One call to a token endpoint and how it ended (never the tokens)."""

    endpoint: str
    """`token` or `locationToken`."""
    grant_type: str | None
    owner_id: str | None
    outcome: str
    """issued, refreshed, minted, reused, revoked, unknown, inactive, refused."""
    at: datetime


@attrs.frozen
class _Code:
    client_id: str
    redirect_uri: str
    consent: Consent
    expires_at: float


class OAuthBook:
    """Every OAuth fact of the sandbox: the app, its locations and tokens."""

    def __init__(self, *, company_id: str, client_id: str, client_secret: str) -> None:
        self.company_id = company_id
        self.client_id = client_id
        self.client_secret = client_secret
        self._start_afresh()

    def _start_afresh(self) -> None:
        self.token_lifetime = DEFAULT_LIFETIME
        """`expires_in` of tokens issued from now on."""
        self.location_tokens_with_refresh = True
        """Whether minted location tokens carry a refresh token (newer GHL)."""
        self.next_consent = Consent(LOCATION, (SAMPLE_LOCATION,))
        self.locations: dict[str, SandboxLocation] = {}
        self.calls: list[TokenCall] = []
        self.refresh_count: Counter[str] = Counter()
        """Successful refreshes per owner (location or company id)."""
        self.mint_count: Counter[str] = Counter()
        """Location tokens minted per location."""
        self.reused_refresh_tokens = 0
        """Refresh attempts with a refresh token already used: GHL refuses them."""
        self.issued: list[str] = []
        """Every token and code handed out, for tests that look for leaks."""
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._used_refresh: set[str] = set()
        self._revoked_refresh: set[str] = set()
        self._codes: dict[str, _Code] = {}

    @property
    def app_id(self) -> str:
        """The app id: the client id before its first `-`."""
        return self.client_id.split("-", 1)[0]

    # --- set-up -----------------------------------------------------------

    def add_location(self, location_id: str | None = None, name: str = "") -> str:
        """Register a sub-account of the agency; return its id."""
        location_id = location_id or ghl_id()
        if location_id not in self.locations:
            self.locations[location_id] = SandboxLocation(
                location_id, name or f"Sandbox location {location_id[:6]}"
            )
        return location_id

    def choose(self, location_ids: Iterable[str], *, company: bool = False) -> None:
        """What the consent page approves from now on.

        A location install approves exactly one location; an agency (bulk)
        install any number, and gives a Company token.
        """
        chosen = tuple(location_ids)
        if not company and len(chosen) != 1:
            raise ValueError("a location install approves exactly one location")
        for location_id in chosen:
            self.add_location(location_id)
        self.next_consent = Consent(COMPANY if company else LOCATION, chosen)

    # --- consent ------------------------------------------------------------

    def consent(self, query: Mapping[str, str]) -> str:
        """Approve the install the query asks for; return the code."""
        problems = [
            f"{name} is required"
            for name in ("response_type", "client_id", "redirect_uri", "scope")
            if not query.get(name)
        ]
        if problems:
            raise OAuthRefusal(422, problems)
        if query["response_type"] != "code":
            raise OAuthRefusal(422, ["response_type must be code"])
        if query["client_id"] != self.client_id:
            raise OAuthRefusal(400, "Unknown client_id")

        for location_id in self.next_consent.location_ids:
            self.add_location(location_id)
            self.locations[location_id].installed = True
        code = f"sbx-code-{secrets.token_urlsafe(24)}"
        self.issued.append(code)
        self._codes[code] = _Code(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            consent=self.next_consent,
            expires_at=time.monotonic() + CODE_LIFETIME,
        )
        return code

    # --- POST /oauth/token ----------------------------------------------------

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer the token endpoint (authorization_code or refresh_token)."""
        missing = [
            f"{name} should not be empty"
            for name in ("client_id", "client_secret", "grant_type")
            if not form.get(name)
        ]
        if missing:
            raise OAuthRefusal(422, missing)
        grant_type = form["grant_type"]
        if not (
            secrets.compare_digest(form["client_id"], self.client_id)
            and secrets.compare_digest(form["client_secret"], self.client_secret)
        ):
            self._record("token", grant_type, None, "refused")
            raise OAuthRefusal(401, INVALID_CLIENT)
        if grant_type == "authorization_code":
            return self._redeem_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        allowed = "authorization_code, refresh_token, client_credentials"
        raise OAuthRefusal(
            422, [f"grant_type must be one of the following values: {allowed}"]
        )

    def _redeem_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        code = self._codes.pop(form.get("code", ""), None)
        if (
            code is None
            or code.expires_at <= time.monotonic()
            or code.redirect_uri != form.get("redirect_uri")
        ):
            self._record("token", "authorization_code", None, "refused")
            raise OAuthRefusal(400, INVALID_CODE)

        consent = code.consent
        if consent.user_type == COMPANY:
            grant = self.issue(
                user_type=COMPANY,
                location_id=None,
                approved_locations=consent.location_ids,
            )
        else:
            grant = self.issue(user_type=LOCATION, location_id=consent.location_ids[0])
        self._record("token", "authorization_code", grant.owner_id, "issued")
        return grant.to_token_response()

    def _refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        refresh_token = form.get("refresh_token", "")
        grant = self._by_refresh.get(refresh_token)
        if grant is None:
            outcome = "unknown"
            if refresh_token in self._used_refresh:
                self.reused_refresh_tokens += 1
                outcome = "reused"
            elif refresh_token in self._revoked_refresh:
                outcome = "revoked"
            self._record("token", "refresh_token", None, outcome)
            raise OAuthRefusal(400, INVALID_REFRESH)

        user_type = form.get("user_type")
        if user_type and user_type != grant.user_type:
            self._record("token", "refresh_token", grant.owner_id, "refused")
            raise OAuthRefusal(422, ["user_type does not match the refresh token"])
        location = self.locations.get(grant.location_id or "")
        if location is not None and not location.active:
            # The refresh token is kept: it works again once reactivated.
            self._record("token", "refresh_token", grant.owner_id, "inactive")
            raise OAuthRefusal(400, INACTIVE)

        del self._by_refresh[refresh_token]
        self._used_refresh.add(refresh_token)
        fresh = self.issue(
            user_type=grant.user_type,
            location_id=grant.location_id,
            approved_locations=grant.approved_locations,
            user_id=grant.user_id,
        )
        self.refresh_count[grant.owner_id] += 1
        self._record("token", "refresh_token", grant.owner_id, "refreshed")
        return fresh.to_token_response()

    # --- POST /oauth/locationToken ----------------------------------------------

    def location_token(self, bearer: str, form: Mapping[str, str]) -> dict[str, Any]:
        """Mint a location token with a live company token."""
        company = self._company_grant(bearer)
        missing = [
            f"{name} should not be empty"
            for name in ("companyId", "locationId")
            if not form.get(name)
        ]
        if missing:
            raise OAuthRefusal(422, missing)
        location_id = form["locationId"]
        location = self.locations.get(location_id)
        if form["companyId"] != company.company_id or location is None:
            self._record("locationToken", None, location_id, "refused")
            raise OAuthRefusal(400, "Location not found for this company")
        if not location.installed:
            self._record("locationToken", None, location_id, "refused")
            raise OAuthRefusal(400, NOT_INSTALLED)
        if not location.active:
            self._record("locationToken", None, location_id, "inactive")
            raise OAuthRefusal(400, INACTIVE)

        grant = self.issue(
            user_type=LOCATION,
            location_id=location_id,
            with_refresh=self.location_tokens_with_refresh,
        )
        self.mint_count[location_id] += 1
        self._record("locationToken", None, location_id, "minted")
        return grant.to_location_token_response()

    # --- GET /oauth/installedLocations ------------------------------------------

    def installed_locations(
        self, bearer: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        """One page of the agency's locations (installed ones if asked)."""
        company = self._company_grant(bearer)
        missing = [
            f"{name} should not be empty"
            for name in ("companyId", "appId")
            if not query.get(name)
        ]
        if missing:
            raise OAuthRefusal(422, missing)
        if query["companyId"] != company.company_id:
            raise OAuthRefusal(400, "companyId does not match the token")
        if query["appId"] != self.app_id:
            raise OAuthRefusal(400, "appId does not match the app")
        try:
            skip = int(query.get("skip", "0"))
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise OAuthRefusal(422, ["skip and limit must be numbers"]) from None
        if skip < 0 or limit < 1:
            raise OAuthRefusal(422, ["skip must be >= 0 and limit >= 1"])

        wanted = query.get("isInstalled", "").lower()
        matching = [
            location
            for _, location in sorted(self.locations.items())
            if wanted != "true" or location.installed
        ]
        return {
            "locations": [
                {
                    "_id": location.location_id,
                    "name": location.name,
                    "address": "1 Sandbox Street, Manila",
                    "isInstalled": location.installed,
                }
                for location in matching[skip : skip + limit]
            ],
            "count": len(matching),
        }

    # --- tokens -------------------------------------------------------------------

    def issue(
        self,
        *,
        user_type: str,
        location_id: str | None,
        expires_in: int | None = None,
        with_refresh: bool = True,
        approved_locations: tuple[str, ...] = (),
        user_id: str | None = None,
    ) -> Grant:
        """A new token (pair) for a location or the agency."""
        lifetime = self.token_lifetime if expires_in is None else expires_in
        grant = Grant(
            access_token=f"sbx-at-{secrets.token_urlsafe(32)}",
            refresh_token=(
                f"sbx-rt-{secrets.token_urlsafe(32)}" if with_refresh else None
            ),
            user_type=user_type,
            company_id=self.company_id,
            location_id=location_id,
            user_id=user_id or ghl_id(),
            scope=SCOPES if user_type == LOCATION else COMPANY_SCOPES,
            expires_in=lifetime,
            expires_at=time.monotonic() + lifetime,
            approved_locations=approved_locations,
        )
        self._by_access[grant.access_token] = grant
        self.issued.append(grant.access_token)
        if grant.refresh_token is not None:
            self._by_refresh[grant.refresh_token] = grant
            self.issued.append(grant.refresh_token)
        return grant

    def live(self, access_token: str) -> Grant | None:
        """The grant of an unexpired, unrevoked access token, if it is one."""
        grant = self._by_access.get(access_token)
        if grant is None or grant.expires_at <= time.monotonic():
            return None
        return grant

    def refresh_token_is_live(self, refresh_token: str | None) -> bool:
        """Whether a refresh token would be honoured now."""
        return refresh_token is not None and refresh_token in self._by_refresh

    def _company_grant(self, bearer: str) -> Grant:
        grant = self.live(bearer)
        if grant is None or grant.user_type != COMPANY:
            raise OAuthRefusal(401, INVALID_TOKEN)
        return grant

    def _record(
        self, endpoint: str, grant_type: str | None, owner_id: str | None, outcome: str
    ) -> None:
        self.calls.append(
            TokenCall(endpoint, grant_type, owner_id, outcome, datetime.now(UTC))
        )

    # --- switches -------------------------------------------------------------------

    def set_active(self, location_id: str, *, active: bool) -> None:
        """Pause a location ("Location is not active") or reactivate it."""
        self.locations[self.add_location(location_id)].active = active

    def revoke(self, owner_id: str) -> None:
        """Kill every token of a location or company, as a revocation would."""
        for token, grant in list(self._by_access.items()):
            if grant.owner_id == owner_id:
                del self._by_access[token]
        for token, grant in list(self._by_refresh.items()):
            if grant.owner_id == owner_id:
                del self._by_refresh[token]
                self._revoked_refresh.add(token)

    def expire_access_tokens(self, owner_id: str) -> None:
        """Make the owner's access tokens expired now (refresh tokens stay)."""
        for token, grant in list(self._by_access.items()):
            if grant.owner_id == owner_id:
                self._by_access[token] = attrs.evolve(grant, expires_at=0.0)

    def set_installed(self, location_id: str, *, installed: bool) -> None:
        """Install the app on a location, or uninstall it (killing its tokens)."""
        self.locations[self.add_location(location_id)].installed = installed
        if not installed:
            self.revoke(location_id)

    def clear(self) -> None:
        """Forget tokens, codes, locations, switches and counters; keep the app."""
        self._start_afresh()
