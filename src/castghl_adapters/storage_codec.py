"""The one cattrs converter between core records and storage documents.

Documents are plain snake_case dicts, shared by every database adapter.
Enums are stored as their values and unknown keys are ignored on reading, so
an older release can read what a newer one wrote. Datetimes are stored as
fixed-width ISO-8601 UTC text (``2026-01-02T03:04:05.000006+00:00``), which
compares and sorts as text in time order and reads well in a database shell;
a BSON store may ask for native datetimes instead.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import cattrs


def format_datetime(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC text for `moment` (timezone-aware only)."""
    return _to_utc(moment).isoformat(timespec="microseconds")


def parse_datetime(value: object) -> datetime:
    """A timezone-aware UTC datetime from stored text or a stored datetime.

    Naive values (as a BSON driver returns by default) are taken to be UTC,
    which is how every writer stores them.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"a stored datetime must be text or a datetime, not {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_utc(moment: datetime) -> datetime:
    # A naive datetime has no defined instant; storing it would silently
    # shift every due time by the host's UTC offset.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("storage needs timezone-aware datetimes, got a naive one")
    return moment.astimezone(UTC)


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def make_storage_converter(*, native_datetimes: bool = False) -> cattrs.Converter:
    """A converter for OutboundJob, Installation and LocationSettings documents.

    With `native_datetimes`, datetimes stay `datetime` objects in UTC (for
    BSON); otherwise they become ISO-8601 text (for JSON and SQLite).
    """
    converter = cattrs.Converter(forbid_extra_keys=False)

    # Hooks for the enum bases themselves: a StrEnum member is also a str (and
    # an IntEnum one an int), whose pass-through hook would otherwise win and
    # hand the enum object to the database driver.
    for base in (enum.Enum, enum.StrEnum, enum.IntEnum):
        converter.register_unstructure_hook(base, _enum_value)

    if native_datetimes:
        converter.register_unstructure_hook(datetime, _to_utc)
    else:
        converter.register_unstructure_hook(datetime, format_datetime)
    converter.register_structure_hook(datetime, lambda value, _: parse_datetime(value))
    return converter


storage_converter = make_storage_converter()
"""The text-datetime converter, for JSON documents (SQLite)."""
