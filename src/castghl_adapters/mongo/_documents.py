"""Records to MongoDB documents and back: the storage codec with BSON dates.

A record's natural key becomes the document's ``_id``; every other field keeps
its snake_case name, so documents read the same as the SQLite ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from castghl_adapters.storage_codec import make_storage_converter

T = TypeVar("T")

_converter = make_storage_converter(native_datetimes=True)


def to_document(record: object, key: str) -> dict[str, Any]:
    """The document of `record`, its field `key` stored as ``_id``."""
    fields: dict[str, Any] = _converter.unstructure(record)
    return {"_id": fields.pop(key), **fields}


def from_document(document: Mapping[str, Any], key: str, record_type: type[T]) -> T:
    """The record of type `record_type` from its document, ``_id`` read as `key`."""
    fields = dict(document)
    fields[key] = fields.pop("_id")
    return _converter.structure(fields, record_type)
