"""Use case: accept a GHL outbound delivery (verify, parse, claim once).

Only a durable claim earns a 2xx: the caller answers 200 after this returns.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping

import attrs

from castghl_core.errors import LocationNotInstalled
from castghl_core.jobs import OutboundJob
from castghl_core.outbound import OutboundMessage, parse_outbound
from castghl_core.ports import (
    Admission,
    Clock,
    InstallationStore,
    Outbox,
    SignatureVerifier,
)

logger = logging.getLogger(__name__)


class Acceptance(enum.StrEnum):
    """What became of a delivery."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@attrs.frozen
class AcceptResult:
    """The answer to a delivery, and the message it carried."""

    acceptance: Acceptance
    message: OutboundMessage


def _message_text(message: OutboundMessage) -> str:
    """The SMS text: GHL's message, with attachments sent as links.

    Cast sends text only (no MMS), so each attachment URL goes on a line of
    its own rather than being dropped without a word.
    """
    lines = [message.message] if message.message else []
    return "\n".join([*lines, *message.attachments])


@attrs.define
class AcceptOutbound:
    """Turns a signed ProviderOutboundMessage into one durable outbound job."""

    verifier: SignatureVerifier
    installations: InstallationStore
    outbox: Outbox
    clock: Clock
    admission: Admission | None = None
    """Checked last before the claim; None admits everything."""

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> AcceptResult:
        """Accept `body`; raise SignatureRejected, InvalidPayload,
        LocationNotInstalled or BacklogFull, in which case nothing is stored."""
        self.verifier.verify(body, headers)
        message = parse_outbound(body)
        log = {"message_id": message.message_id, "location_id": message.location_id}

        if not message.is_sendable:
            logger.info("outbound.ignored", extra={**log, "type": message.type})
            return AcceptResult(Acceptance.IGNORED, message)

        installation = await self.installations.get(message.location_id)
        if installation is None:
            raise LocationNotInstalled(message.location_id)
        if not installation.is_active:
            raise LocationNotInstalled(
                message.location_id, f"its installation is {installation.state}"
            )
        if self.admission is not None:
            await self.admission.check()

        now = self.clock.now()
        job = OutboundJob(
            message_id=message.message_id,
            location_id=message.location_id,
            contact_id=message.contact_id,
            phone=message.phone,
            text=_message_text(message),
            created_at=now,
            due_at=now,
            updated_at=now,
        )
        if not await self.outbox.claim(job):
            logger.info("outbound.duplicate", extra=log)
            return AcceptResult(Acceptance.DUPLICATE, message)

        logger.info("outbound.accepted", extra=log)
        return AcceptResult(Acceptance.ACCEPTED, message)
