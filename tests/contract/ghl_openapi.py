"""A small checker of values against HighLevel's OpenAPI schemas.

jsonschema is not installed, so this covers what the GHL files use on the
calls castghl makes: $ref (local and to ../common), allOf, type, nullable,
properties, required, enum and items. Unknown keywords are ignored.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OPENAPI_DIR = PROJECT_ROOT / ".." / "shared" / "reference" / "ghl-openapi"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


class OpenApiFile:
    """One of HighLevel's OpenAPI files, e.g. `apps/conversations.json`."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.document = _load(self.path)

    def schema(self, name: str) -> dict[str, Any]:
        """A reference to a named component schema of this file."""
        return {"$ref": f"#/components/schemas/{name}"}

    def operation(self, path: str, method: str) -> dict[str, Any]:
        """The operation object of `method` on `path`."""
        return self.document["paths"][path][method.lower()]

    def response_schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        """The JSON schema of a documented answer."""
        response = self.operation(path, method)["responses"][str(status)]
        return response["content"]["application/json"]["schema"]

    def problems(self, value: Any, schema: dict[str, Any]) -> list[str]:
        """Every way `value` breaks `schema`; empty when it conforms."""
        return _problems(value, schema, self.path, "$")


def open_api(relative: str) -> OpenApiFile:
    """A file under ghl-openapi/, or skip the test if the reference is absent."""
    path = OPENAPI_DIR / relative
    if not path.is_file():
        message = f"HighLevel's OpenAPI file is not at {path.resolve()}"
        if os.environ.get("CI"):
            # CI always has ../shared beside the clone: missing means broken.
            pytest.fail(message)
        pytest.skip(message)
    return OpenApiFile(path)


@cache
def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _resolve(ref: str, where: Path) -> tuple[dict[str, Any], Path]:
    file_part, _, pointer = ref.partition("#")
    file = (where.parent / file_part).resolve() if file_part else where
    node: Any = _load(file)
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, file


def _problems(value: Any, schema: dict[str, Any], where: Path, at: str) -> list[str]:
    if "$ref" in schema:
        target, file = _resolve(schema["$ref"], where)
        return _problems(value, target, file, at)
    if value is None and schema.get("nullable"):
        return []

    found: list[str] = []
    for part in schema.get("allOf", []):
        found += _problems(value, part, where, at)
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} is not one of {schema['enum']}")

    kind = schema.get("type")
    if kind in _TYPES and not _is(value, kind):
        found.append(f"{at}: {value!r} is not of type {kind}")
        return found
    return found + _member_problems(value, schema, where, at)


def _member_problems(
    value: Any, schema: dict[str, Any], where: Path, at: str
) -> list[str]:
    """Problems inside an object's properties or an array's items."""
    found: list[str] = []
    if isinstance(value, dict):
        found += [
            f"{at}: {name!r} is required"
            for name in schema.get("required", [])
            if name not in value
        ]
        for name, part in schema.get("properties", {}).items():
            if name in value:
                found += _problems(value[name], part, where, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _problems(item, schema["items"], where, f"{at}[{index}]")
    return found


def _is(value: Any, kind: str) -> bool:
    # JSON booleans are not numbers, though Python's bool is an int.
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, _TYPES[kind])
