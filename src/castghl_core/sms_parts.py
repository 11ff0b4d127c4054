"""How many SMS parts a text costs, in GSM-7 or UCS-2.

GSM-7 fits 160 septets in one part and 153 in each part of a longer message;
its extension characters cost two septets and are never split across parts.
Any character outside GSM-7 switches the whole text to UCS-2: 70 UTF-16 units
in one part, 67 per part, a surrogate pair (an emoji) never split.
"""

from __future__ import annotations

import enum

import attrs
import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

_SINGLE = {"gsm-7": 160, "ucs-2": 70}
_MULTI = {"gsm-7": 153, "ucs-2": 67}


class Encoding(enum.StrEnum):
    """The two encodings an SMS can use."""

    GSM7 = "gsm-7"
    UCS2 = "ucs-2"


@attrs.frozen
class SmsParts:
    """What a text costs: its encoding, its length in units, its part count."""

    encoding: Encoding
    units: int
    parts: int


def _gsm7_costs(text: str) -> list[int] | None:
    costs = []
    for character in text:
        try:
            costs.append(len(character.encode("gsm03.38")))
        except UnicodeEncodeError:
            return None
    return costs


def _ucs2_costs(text: str) -> list[int]:
    return [2 if ord(character) > 0xFFFF else 1 for character in text]  # noqa: PLR2004


def _pack(costs: list[int], per_part: int) -> int:
    """Count parts, filling each greedily without splitting a character."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def count_parts(text: str) -> SmsParts:
    """Count the parts `text` needs, choosing GSM-7 when every character fits."""
    costs = _gsm7_costs(text)
    encoding = Encoding.GSM7
    if costs is None:
        costs, encoding = _ucs2_costs(text), Encoding.UCS2

    units = sum(costs)
    if units <= _SINGLE[encoding]:
        return SmsParts(encoding, units, 1)
    return SmsParts(encoding, units, _pack(costs, _MULTI[encoding]))
