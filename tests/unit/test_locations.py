"""Location settings rules: sender IDs, Cast key format, masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_core.errors import InvalidSetting
from castghl_core.locations import check_cast_api_key, check_sender_id, mask_secret

LIVE = "cast_" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "key", [LIVE, "cast_test_" + "ab" * 16, "cast_test_" + "f" * 64]
)
def test_live_and_sandbox_keys_are_accepted(key):
    """cast_ + hex, with or without the sandbox's test_ prefix."""
    assert check_cast_api_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "cast_",
        "cast_abc",
        "cast_test_short",
        "CAST_" + "a" * 64,
        LIVE + " ",
        "x" + LIVE,
    ],
)
def test_malformed_keys_are_refused_without_being_echoed(key):
    """The error describes the format and never repeats the key."""
    with pytest.raises(InvalidSetting) as caught:
        check_cast_api_key(key)
    assert len(key) < 8 or key not in str(caught.value)


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=128))
def test_a_mask_shows_the_prefix_and_four_characters_only(digits):
    """Masks keep at most 4 key characters of at least 32."""
    for key in (f"cast_{digits}", f"cast_test_{digits}"):
        masked = mask_secret(key)
        assert masked.endswith("…" + digits[-4:])
        assert digits not in masked


def test_short_secrets_are_masked_entirely():
    """A value too short for four characters to be a small part shows none."""
    assert mask_secret("cast_test_abcd") == "cast_test_…"


@pytest.mark.parametrize("sender", ["CASTGHL", "My Shop", "A.B&C-D", "X" * 20])
def test_sender_ids_within_the_rules_are_accepted(sender):
    """Letters, digits, spaces, '.', '&', '-', up to 20 characters."""
    assert check_sender_id(sender) == sender


@pytest.mark.parametrize("sender", ["", " lead", "X" * 21, "a/b", "émoji😀"])
def test_other_sender_ids_are_refused(sender):
    """Empty, too long, or with other characters."""
    with pytest.raises(InvalidSetting):
        check_sender_id(sender)
