"""Use case: accept outbound (verify, parse, claim once)."""

from __future__ import annotations

import asyncio
import json

import pytest

from castghl_core.accept_outbound import Acceptance
from castghl_core.errors import InvalidPayload, LocationNotInstalled, SignatureRejected
from castghl_core.jobs import JobState

from fakes import LOCATION

SIGNED = {"X-Test-Signature": "good"}


def delivery(**changes):
    payload = {
        "messageId": "M1",
        "locationId": LOCATION,
        "contactId": "C1",
        "type": "SMS",
        "phone": "+639171234567",
        "message": "Hello",
    }
    return json.dumps({**payload, **changes}).encode()


async def test_a_signed_sms_becomes_one_accepted_job(accept, outbox):
    """The job holds the message's id, location, phone and text, due now."""
    result = await accept(delivery(), SIGNED)
    assert result.acceptance is Acceptance.ACCEPTED
    job = await outbox.get("M1")
    assert job is not None
    assert (job.location_id, job.phone, job.text) == (
        LOCATION,
        "+639171234567",
        "Hello",
    )
    assert job.state is JobState.ACCEPTED
    assert job.due_at == job.created_at


async def test_a_bad_signature_stores_nothing(accept, outbox):
    """Unsigned deliveries are refused before they are parsed."""
    with pytest.raises(SignatureRejected):
        await accept(delivery(), {"X-Test-Signature": "forged"})
    assert await outbox.get("M1") is None


async def test_a_malformed_body_stores_nothing(accept, outbox):
    """A signed body that is not a ProviderOutboundMessage is refused."""
    with pytest.raises(InvalidPayload):
        await accept(b'{"type": "SMS"}', SIGNED)
    assert await outbox.count_by_state() == {}


async def test_the_same_message_id_is_claimed_once(accept, outbox):
    """Five concurrent deliveries of one messageId make one job."""
    results = await asyncio.gather(*(accept(delivery(), SIGNED) for _ in range(5)))
    kinds = sorted(r.acceptance.value for r in results)
    assert kinds == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert await outbox.count_by_state() == {JobState.ACCEPTED: 1}


async def test_email_is_ignored(accept, outbox):
    """Non-SMS types are answered without storing anything."""
    result = await accept(delivery(type="Email"), SIGNED)
    assert result.acceptance is Acceptance.IGNORED
    assert await outbox.get("M1") is None


async def test_an_unknown_location_is_refused(accept, outbox):
    """A location without an installation gets a clear error; nothing stored."""
    with pytest.raises(LocationNotInstalled, match="NOPE"):
        await accept(delivery(locationId="NOPE"), SIGNED)
    assert await outbox.get("M1") is None


async def test_attachments_are_sent_as_links(accept, outbox):
    """Cast has no MMS, so attachment URLs follow the text on their own lines."""
    await accept(delivery(attachments=["https://x.test/a.png"]), SIGNED)
    job = await outbox.get("M1")
    assert job is not None
    assert job.text == "Hello\nhttps://x.test/a.png"
