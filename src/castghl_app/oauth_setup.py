"""The install flow's configuration, and the signed, expiring OAuth `state`.

GHL passes `state` from the consent link back to the callback untouched;
castghl signs it (HMAC-SHA256) with an expiry, so a callback that did not
start at /oauth/install, or started too long ago, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import attrs

from castghl_app.settings import Settings
from castghl_core.ports import Clock

logger = logging.getLogger(__name__)

INSTALL_PATH = "/oauth/install"
CALLBACK_PATH = "/oauth/callback"
APP_WEBHOOK_PATH = "/webhooks/ghl/app"

_VERSION = "v1"
_MAX_STATE_LENGTH = 512
_DERIVATION_LABEL = b"castghl oauth state v1"


class InvalidState(Exception):
    """A callback's state is missing, forged or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen(repr=False)
class StateSigner:
    """Issues and checks `v1.<expires>.<nonce>.<mac>` states."""

    key: bytes
    lifetime: timedelta
    clock: Clock

    def __repr__(self) -> str:
        return f"StateSigner(lifetime={self.lifetime})"

    def issue(self) -> str:
        """A new state, valid for `lifetime`."""
        expires = int((self.clock.now() + self.lifetime).timestamp())
        payload = f"{_VERSION}.{expires}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._mac(payload)}"

    def check(self, state: str | None) -> None:
        """Return if `state` is one of ours and unexpired; raise InvalidState."""
        if not state:
            raise InvalidState("the callback carries no state")
        if len(state) > _MAX_STATE_LENGTH:
            raise InvalidState("the state is not one castghl issued")
        payload, _, mac = state.rpartition(".")
        version, _, rest = payload.partition(".")
        expires_text, _, _nonce = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(
            mac.encode(), self._mac(payload).encode()
        ):
            raise InvalidState("the state is not one castghl issued")
        if int(expires_text) < self.clock.now().timestamp():
            raise InvalidState("the install link has expired")

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@attrs.frozen(repr=False)
class OAuthSetup:
    """What the install routes need; exists only when installs are configured."""

    client_id: str
    scopes: tuple[str, ...]
    consent_url: str
    public_url: str
    """Empty: the redirect URI is built from the URL the request came in on."""
    signer: StateSigner

    def __repr__(self) -> str:
        return f"OAuthSetup(client_id={self.client_id!r})"

    def redirect_uri(self, request_origin: str) -> str:
        """The callback URL GHL sends the browser back to."""
        return (self.public_url or request_origin).rstrip("/") + CALLBACK_PATH

    def consent_link(self, redirect_uri: str, state: str) -> str:
        """GHL's consent page for this app, carrying a signed state."""
        query = urlencode(
            {
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "scope": " ".join(self.scopes),
                "state": state,
            }
        )
        return f"{self.consent_url}/oauth/chooselocation?{query}"


def make_oauth_setup(settings: Settings, clock: Clock) -> OAuthSetup | None:
    """The install flow's setup, or None (with a warning) if it is not set."""
    if not settings.oauth_enabled:
        logger.warning(
            "oauth.not_configured",
            extra={
                "hint": "set CASTGHL_GHL_CLIENT_ID and CASTGHL_GHL_CLIENT_SECRET "
                "to let agencies and locations install castghl"
            },
        )
        return None
    if not settings.public_url:
        logger.warning(
            "oauth.public_url_unset",
            extra={
                "hint": "set CASTGHL_PUBLIC_URL; redirect URIs are built from "
                "each request's own URL until then"
            },
        )
    key = (
        settings.oauth_state_secret.encode()
        if settings.oauth_state_secret
        else hmac.new(
            settings.ghl_client_secret.encode(), _DERIVATION_LABEL, hashlib.sha256
        ).digest()
    )
    signer = StateSigner(key, timedelta(seconds=settings.oauth_state_seconds), clock)
    return OAuthSetup(
        client_id=settings.ghl_client_id,
        scopes=settings.ghl_scopes,
        consent_url=settings.ghl_consent_url,
        public_url=settings.public_url,
        signer=signer,
    )
