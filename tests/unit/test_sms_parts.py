"""SMS part counting for GSM-7 and UCS-2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_core.sms_parts import Encoding, count_parts

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€"


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_boundaries_are_160_then_153_per_part(length, parts):
    """Plain text fits 160 in one part and 153 in each part when split."""
    counted = count_parts("a" * length)
    assert counted.encoding is Encoding.GSM7
    assert counted.units == length
    assert counted.parts == parts


@pytest.mark.parametrize(
    ("length", "parts"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_boundaries_are_70_then_67_per_part(length, parts):
    """Text needing UCS-2 fits 70 units in one part and 67 per part."""
    counted = count_parts("ж" * length)
    assert counted.encoding is Encoding.UCS2
    assert counted.units == length
    assert counted.parts == parts


def test_one_non_gsm_character_switches_the_whole_message_to_ucs2():
    """150 plain letters plus one emoji cost 152 UTF-16 units, 3 parts."""
    counted = count_parts("a" * 150 + "😀")
    assert counted.encoding is Encoding.UCS2
    assert counted.units == 152
    assert counted.parts == 3


@pytest.mark.parametrize("character", list(GSM_EXTENSION))
def test_extension_characters_cost_two_septets(character):
    """Each of ^ { } \\ [ ~ ] | € costs two septets: 80 fill one part, 81 do not."""
    assert count_parts(character * 80).parts == 1
    assert count_parts(character * 80).units == 160
    assert count_parts(character * 81).parts == 2


def test_an_extension_character_is_never_split_across_parts():
    """152 letters then '€' need a second part though 154 septets would split."""
    assert count_parts("a" * 152 + "€" + "a" * 7).parts == 2  # 152+2 > 153
    assert count_parts("a" * 152 + "€" + "a" * 152).parts == 3


def test_emoji_count_two_units_and_are_never_split():
    """35 emoji fill one UCS-2 part (70 units); 36 need two."""
    assert count_parts("😀" * 35).parts == 1
    assert count_parts("😀" * 36).units == 72
    assert count_parts("😀" * 36).parts == 2
    assert count_parts("a" + "😀" * 34).parts == 1
    # 66 units then an emoji: a lone high surrogate may not end part one.
    assert count_parts("ж" * 66 + "😀" + "ж" * 66).parts == 3


@given(st.text(alphabet=GSM_BASIC + GSM_EXTENSION, max_size=1000))
def test_gsm7_text_never_needs_more_parts_than_ucs2_would(text):
    """GSM-7 is chosen when it fits and its units count the extensions twice."""
    counted = count_parts(text)
    assert counted.encoding is Encoding.GSM7
    extensions = sum(text.count(c) for c in GSM_EXTENSION)
    assert counted.units == len(text) + extensions
    lower = 1 if counted.units <= 160 else -(-counted.units // 153)
    assert counted.parts >= lower
    assert counted.parts <= lower + counted.units // 153 + 1


@given(st.text(min_size=1, max_size=600))
def test_parts_hold_at_least_their_share_of_units(text):
    """For any text, parts x capacity covers the units, and one part is minimal."""
    counted = count_parts(text)
    single, multi = (160, 153) if counted.encoding is Encoding.GSM7 else (70, 67)
    if counted.units <= single:
        assert counted.parts == 1
    else:
        assert counted.parts * multi >= counted.units
        assert counted.parts >= 2
