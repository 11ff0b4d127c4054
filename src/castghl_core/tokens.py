"""Access tokens for GHL calls: the one place any code gets one."""

from __future__ import annotations

import logging

import attrs

from castghl_core.errors import LocationNotInstalled, TokenUnavailable
from castghl_core.installations import InstallationState
from castghl_core.ports import Clock, InstallationStore

logger = logging.getLogger(__name__)


@attrs.define
class StoredAccessTokens:
    """Hands out the stored access token of an active installation.

    XXX: no refresh yet: an expired token is refused (TokenUnavailable) and a
    401 is not retried. The OAuth issue replaces this with a refreshing,
    single-flight provider behind the same AccessTokens port.
    """

    installations: InstallationStore
    clock: Clock

    async def for_location(self, location_id: str) -> str:
        """The stored, unexpired token of an active installation."""
        installation = await self.installations.get(location_id)
        if installation is None or installation.state is InstallationState.UNINSTALLED:
            raise LocationNotInstalled(location_id)
        if not installation.is_active:
            raise TokenUnavailable(
                location_id, f"installation is {installation.state}", retryable=False
            )
        if installation.expires_at <= self.clock.now():
            raise TokenUnavailable(location_id, "access token expired", retryable=True)
        return installation.access_token

    async def after_unauthorized(
        self,
        location_id: str,
        rejected: str,  # noqa: ARG002  (used once refresh exists)
    ) -> str:
        """Without refresh there is nothing better than the token GHL refused."""
        logger.warning("token.rejected", extra={"location_id": location_id})
        raise TokenUnavailable(
            location_id, "GHL refused the access token", retryable=True
        )
