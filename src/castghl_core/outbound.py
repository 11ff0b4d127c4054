"""GHL's ProviderOutboundMessage: what the Delivery URL receives."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from castghl_core.errors import InvalidPayload

MAX_ID_LENGTH = 128


class MessageType(enum.StrEnum):
    """The `type` values GHL documents for a Conversation Provider."""

    SMS = "SMS"
    CUSTOM = "Custom"
    EMAIL = "Email"


SENDABLE_TYPES = frozenset({MessageType.SMS.value, MessageType.CUSTOM.value})


@attrs.frozen
class OutboundMessage:
    """One message GHL asks us to send.

    `type` stays a string: GHL adds types over time and an unknown one is
    ignored, not refused. `phone` and `message` are checked when the message
    is sent, so a bad number is reported to GHL as `failed` with its reason.
    """

    message_id: str
    location_id: str
    type: str
    phone: str = ""
    message: str = ""
    contact_id: str | None = None
    user_id: str | None = None
    attachments: tuple[str, ...] = ()

    @property
    def is_sendable(self) -> bool:
        """Whether this is an SMS castghl should send (SMS or Custom)."""
        return self.type in SENDABLE_TYPES


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, turning every way it can be malformed into one error."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidPayload(f"body is not valid JSON: {error}") from error
    except RecursionError:
        raise InvalidPayload("body is nested too deeply") from None


def _check_unicode(key: str, value: str) -> str:
    """Refuse lone surrogates (legal in JSON, not in UTF-8 text or storage)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload(f"field '{key}' is not valid Unicode text") from None
    return value


def _required_id(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload(f"field '{key}' is required and must be a string")
    _check_unicode(key, value)
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidPayload(f"field '{key}' is not a valid id")
    return value


def _optional_text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"field '{key}' must be a string")
    return _check_unicode(key, value)


def _attachments(payload: dict[str, Any]) -> tuple[str, ...]:
    value = payload.get("attachments")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidPayload("field 'attachments' must be a list of URLs")
    return tuple(_check_unicode("attachments", url) for url in value)


def parse_outbound(body: bytes) -> OutboundMessage:
    """Parse a Delivery URL body: strict on the fields used, blind to others."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidPayload("body must be a JSON object")

    return OutboundMessage(
        message_id=_required_id(payload, "messageId"),
        location_id=_required_id(payload, "locationId"),
        type=_required_id(payload, "type"),
        phone=_optional_text(payload, "phone") or "",
        message=_optional_text(payload, "message") or "",
        contact_id=_optional_text(payload, "contactId"),
        user_id=_optional_text(payload, "userId"),
        attachments=_attachments(payload),
    )
