"""Records to rows and back: storage-codec documents as JSON text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from castghl_adapters.storage_codec import storage_converter

T = TypeVar("T")


def to_document(record: object) -> dict[str, Any]:
    """The storage document (a snake_case dict) of a record."""
    document: dict[str, Any] = storage_converter.unstructure(record)
    return document


def from_document(document: Mapping[str, Any], record_type: type[T]) -> T:
    """The record of type `record_type` from its storage document."""
    return storage_converter.structure(dict(document), record_type)


def dump(document: Mapping[str, Any]) -> str:
    """JSON text for the document column."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def load(text: str) -> dict[str, Any]:
    """The document from the document column."""
    document: dict[str, Any] = json.loads(text)
    return document
