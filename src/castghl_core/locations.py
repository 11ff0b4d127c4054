"""Per-location settings an operator manages, and the Cast API key rules."""

from __future__ import annotations

import re
from datetime import datetime

import attrs

from castghl_core.errors import InvalidSetting

SENDER_ID_MAX_LENGTH = 20
_SENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .&\-]*$")
_CAST_API_KEY = re.compile(r"^cast_(?:test_)?[0-9A-Fa-f]{32,128}$")


def check_sender_id(sender_id: str) -> str:
    """Return a valid sender ID or say what is wrong with it.

    Cast's first API generation capped sender IDs at 11 characters and the
    current one at 20: castghl accepts 20 and leaves the account's own cap to
    Cast, whose VALIDATION_ERROR is then reported to GHL.
    """
    if not 1 <= len(sender_id) <= SENDER_ID_MAX_LENGTH:
        raise InvalidSetting(
            f"sender_id must be 1 to {SENDER_ID_MAX_LENGTH} characters long"
        )
    if not _SENDER_ID.match(sender_id):
        raise InvalidSetting(
            "sender_id may hold letters, digits, spaces, '.', '&' and '-' and "
            "must start with a letter or digit"
        )
    return sender_id


def check_cast_api_key(api_key: str) -> str:
    """Return a well-formed Cast API key or say what is wrong (never echo it)."""
    if not _CAST_API_KEY.match(api_key):
        raise InvalidSetting(
            "cast_api_key must be 'cast_' followed by the key's hex digits "
            "(64 for live keys; sandbox keys start with 'cast_test_')"
        )
    return api_key


def mask_secret(secret: str) -> str:
    """Show enough of a key to recognise it and nothing to use it."""
    prefix = "cast_test_" if secret.startswith("cast_test_") else secret[:5]
    body = len(secret) - len(prefix)
    # Show four characters only of a key long enough that four are a
    # small part of it.
    return f"{prefix}…{secret[-4:]}" if body >= 16 else f"{prefix}…"  # noqa: PLR2004


@attrs.frozen
class LocationSettings:
    """How castghl sends for one GHL location (the key lives in a SecretStore)."""

    location_id: str
    sender_id: str | None = None
    inbound_dids: tuple[str, ...] = ()
    updated_at: datetime | None = None
