"""Use case: act on GHL's app webhooks (INSTALL, UNINSTALL) exactly once.

A webhook counts only if it is signed by GHL, names castghl's app, is recent
(its `timestamp` within the window) and was not seen before (its
`webhookId`); anything else is refused and changes nothing.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from castghl_core.errors import ForeignApp, InvalidPayload, StaleWebhook
from castghl_core.install import InstallApp, UninstallApp
from castghl_core.ports import Clock, Leases, SignatureVerifier

logger = logging.getLogger(__name__)

CLAIM_PREFIX = "app-webhook:"
_EPOCH_MILLISECONDS = 10**11
"""Numbers above this are epoch milliseconds (year 5138 in seconds)."""


class AppWebhookOutcome(enum.StrEnum):
    """What became of an app webhook that passed every check."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@attrs.frozen
class AppWebhookResult:
    """The answer to an app webhook."""

    outcome: AppWebhookOutcome
    event_type: str
    webhook_id: str | None = None


@attrs.define
class ReceiveAppWebhook:
    """Checks an app webhook, then installs or uninstalls what it names."""

    verifier: SignatureVerifier
    leases: Leases
    install: InstallApp
    uninstall: UninstallApp
    clock: Clock
    app_id: str
    window: timedelta = timedelta(minutes=5)
    """Webhooks stamped further than this from now are refused."""

    async def __call__(
        self, body: bytes, headers: Mapping[str, str]
    ) -> AppWebhookResult:
        """Handle `body`; raise SignatureRejected, InvalidPayload, StaleWebhook
        or ForeignApp (nothing changed), or the error of the action itself
        (nothing remembered: GHL's retry will try it again)."""
        self.verifier.verify(body, headers)
        event = _parse(body)
        event_type = event.get("type")
        if event_type not in {"INSTALL", "UNINSTALL"}:
            logger.info("app_webhook.ignored", extra={"type": str(event_type)})
            return AppWebhookResult(AppWebhookOutcome.IGNORED, str(event_type))

        webhook_id, stamped = self._check(event)
        fields = {
            "type": event_type,
            "webhook_id": webhook_id,
            "location_id": _text(event, "locationId"),
            "company_id": _text(event, "companyId"),
        }
        claim, claimant = CLAIM_PREFIX + webhook_id, uuid.uuid4().hex
        # Kept past the window, so a replay is caught for as long as its
        # timestamp would still pass. XXX: expired claims stay in the lease
        # store (a row each) until swept; installs are rare enough for now.
        kept_for = 2 * self.window + timedelta(minutes=1)
        if not await self.leases.acquire(claim, claimant, self.clock.now(), kept_for):
            logger.info("app_webhook.duplicate", extra=fields)
            return AppWebhookResult(AppWebhookOutcome.DUPLICATE, event_type, webhook_id)

        try:
            await self._act(event_type, event, stamped)
        except BaseException:
            await self.leases.release(claim, claimant)
            raise
        logger.info("app_webhook.handled", extra=fields)
        return AppWebhookResult(AppWebhookOutcome.HANDLED, event_type, webhook_id)

    def _check(self, event: Mapping[str, Any]) -> tuple[str, datetime]:
        """The webhookId and timestamp of an event for this app stamped inside
        the window."""
        if event.get("appId") != self.app_id:
            raise ForeignApp(
                f"the webhook is for app {event.get('appId')!r}, not castghl's"
            )
        stamped = _timestamp(event.get("timestamp"))
        if abs(self.clock.now() - stamped) > self.window:
            raise StaleWebhook(
                f"the webhook's timestamp {stamped.isoformat()} is more than "
                f"{self.window} from now"
            )
        webhook_id = _text(event, "webhookId")
        if webhook_id is None:
            raise InvalidPayload("the webhook has no webhookId")
        return webhook_id, stamped

    async def _act(
        self, event_type: str, event: Mapping[str, Any], stamped: datetime
    ) -> None:
        location_id = _text(event, "locationId")
        company_id = _text(event, "companyId")
        # GHL retries a webhook for a while: the timestamp, not the arrival,
        # orders an UNINSTALL against a reinstall (and an INSTALL after it).
        if event_type == "UNINSTALL":
            await self.uninstall.uninstall(location_id, company_id, stamped=stamped)
        elif location_id is not None:
            await self.install.add_location(company_id, location_id, stamped=stamped)
        else:
            # An agency-level install: its company token arrives through the
            # OAuth callback, which also mints for its locations.
            logger.info("app.install_needs_callback", extra={"company_id": company_id})


def _parse(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidPayload(f"the webhook body is not JSON: {error}") from error
    if not isinstance(event, dict):
        raise InvalidPayload("the webhook body must be a JSON object")
    return event


def _text(event: Mapping[str, Any], key: str) -> str | None:
    value = event.get(key)
    return value if isinstance(value, str) and value else None


def _timestamp(value: object) -> datetime:
    """GHL's ISO-8601 timestamp (or epoch seconds or milliseconds), in UTC."""
    try:
        if isinstance(value, str):
            stamped = datetime.fromisoformat(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > _EPOCH_MILLISECONDS else value
            stamped = datetime.fromtimestamp(seconds, UTC)
        else:
            raise StaleWebhook("the webhook has no timestamp")
    except (ValueError, OverflowError, OSError) as error:
        raise StaleWebhook(f"the webhook's timestamp is unreadable: {error}") from error
    return stamped if stamped.tzinfo else stamped.replace(tzinfo=UTC)
