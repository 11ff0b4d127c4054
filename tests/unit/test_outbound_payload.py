"""Parsing GHL's ProviderOutboundMessage."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_core.errors import InvalidPayload
from castghl_core.outbound import parse_outbound

SAMPLE = {
    "contactId": "GKBhT6BfwY9mjzXAU3sq",
    "locationId": "GKAWb4yu7A4LSc0skQ6g",
    "messageId": "GKJxs4P5L8dWc5CFUITM",
    "type": "SMS",
    "phone": "+15864603685",
    "message": "The text message to be sent to the contact",
    "attachments": ["https://example.com/image.png"],
    "userId": "GK56r6wdJDrkUPd0xsmx",
}


def test_the_documented_sample_parses_field_by_field():
    """Every field of HighLevel's sample lands where it belongs."""
    message = parse_outbound(json.dumps(SAMPLE).encode())
    assert message.message_id == "GKJxs4P5L8dWc5CFUITM"
    assert message.location_id == "GKAWb4yu7A4LSc0skQ6g"
    assert message.contact_id == "GKBhT6BfwY9mjzXAU3sq"
    assert message.phone == "+15864603685"
    assert message.message == "The text message to be sent to the contact"
    assert message.attachments == ("https://example.com/image.png",)
    assert message.user_id == "GK56r6wdJDrkUPd0xsmx"
    assert message.is_sendable


def test_unknown_fields_are_ignored():
    """Fields GHL adds later do not break parsing."""
    payload = {**SAMPLE, "conversationProviderId": "x", "newField": {"a": [1]}}
    assert (
        parse_outbound(json.dumps(payload).encode()).message_id == SAMPLE["messageId"]
    )


@pytest.mark.parametrize(
    ("kind", "sendable"),
    [("SMS", True), ("Custom", True), ("Email", False), ("X", False)],
)
def test_only_sms_and_custom_are_sendable(kind, sendable):
    """Email and unknown types parse but are not sent."""
    message = parse_outbound(json.dumps({**SAMPLE, "type": kind}).encode())
    assert message.is_sendable is sendable


@pytest.mark.parametrize("field", ["messageId", "locationId", "type"])
def test_a_missing_routing_field_is_refused_by_name(field):
    """messageId, locationId and type are required, and the error names them."""
    payload = {k: v for k, v in SAMPLE.items() if k != field}
    with pytest.raises(InvalidPayload, match=field):
        parse_outbound(json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messageId": 12}, "messageId"),
        ({"messageId": ""}, "messageId"),
        ({"phone": 639171234567}, "phone"),
        ({"message": ["a"]}, "message"),
        ({"attachments": "https://x"}, "attachments"),
        ({"attachments": [1]}, "attachments"),
    ],
)
def test_wrongly_typed_fields_are_refused_by_name(change, field):
    """A field of the wrong JSON type is named in the error."""
    with pytest.raises(InvalidPayload, match=field):
        parse_outbound(json.dumps({**SAMPLE, **change}).encode())


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"a":1'], ids=repr
)
def test_malformed_bodies_are_refused(body):
    """Bodies that are not one JSON object raise InvalidPayload."""
    with pytest.raises(InvalidPayload):
        parse_outbound(body)


def test_a_missing_phone_or_message_parses_so_the_failure_can_be_reported():
    """Content problems are reported to GHL as failed, not refused at the door."""
    payload = {k: v for k, v in SAMPLE.items() if k not in {"phone", "message"}}
    message = parse_outbound(json.dumps(payload).encode())
    assert message.phone == ""
    assert message.message == ""


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_invalid_payload(body):
    """No body makes the parser raise anything but InvalidPayload."""
    with contextlib.suppress(InvalidPayload):
        parse_outbound(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(sorted(SAMPLE)), json_values, max_size=8))
def test_any_json_object_parses_or_names_a_field(payload):
    """Objects with wrong or missing fields always get an InvalidPayload."""
    with contextlib.suppress(InvalidPayload):
        parse_outbound(json.dumps(payload).encode())
        return
    with pytest.raises(InvalidPayload, match="field"):
        parse_outbound(json.dumps(payload).encode())


def test_deeply_nested_json_is_refused_not_crashed():
    """A body nested thousands deep is a 400-class error, not a RecursionError."""
    with pytest.raises(InvalidPayload, match="nested"):
        parse_outbound(b"[" * 100_000 + b"]" * 100_000)


def test_a_lone_surrogate_is_refused_by_field_name():
    """JSON may carry half an emoji; it cannot be stored or sent, so say so."""
    body = json.dumps({**SAMPLE, "message": "half an emoji \ud83d"}).encode()
    with pytest.raises(InvalidPayload, match="message"):
        parse_outbound(body)
