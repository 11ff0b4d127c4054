"""Philippine mobile normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_core.errors import PhoneNumberRejected
from castghl_core.phone import normalize_ph_mobile

subscriber = st.text(alphabet="0123456789", min_size=9, max_size=9)


@pytest.mark.parametrize(
    "written",
    [
        "+639171234567",
        "+63 917 123 4567",
        "639171234567",
        "9171234567",
        "09171234567",
        "0917-123-4567",
        "(0917) 123 4567",
        " +63-917-123-4567 ",
    ],
)
def test_every_common_way_of_writing_a_mobile_reads_the_same(written):
    """All the forms seen in the wild give one E.164 number and local form."""
    number = normalize_ph_mobile(written)
    assert number.e164 == "+639171234567"
    assert number.local == "09171234567"


@given(subscriber)
def test_e164_and_local_forms_round_trip(digits):
    """Reading the E.164 or the local form of a mobile gives the same number."""
    e164 = f"+639{digits}"
    from_e164 = normalize_ph_mobile(e164)
    from_local = normalize_ph_mobile(from_e164.local)
    assert from_e164.e164 == from_local.e164 == e164
    assert from_local.local == f"09{digits}"


@given(
    st.sampled_from(["1", "44", "61", "65", "81", "852", "86"]),
    st.text(alphabet="0123456789", min_size=8, max_size=10),
)
def test_numbers_of_other_countries_are_refused(country, rest):
    """An international number outside +63 is refused, never sent."""
    with pytest.raises(PhoneNumberRejected) as caught:
        normalize_ph_mobile(f"+{country}{rest}")
    assert caught.value.code in {"NOT_PHILIPPINE_NUMBER", "INVALID_NUMBER"}


@given(
    st.sampled_from("2345678"), st.text(alphabet="0123456789", min_size=7, max_size=8)
)
def test_philippine_landlines_are_refused(area, rest):
    """+63 numbers that do not start with 9 are not mobiles."""
    with pytest.raises(PhoneNumberRejected) as caught:
        normalize_ph_mobile(f"+63{area}{rest}")
    assert caught.value.code in {"NOT_MOBILE_NUMBER", "INVALID_NUMBER"}


def test_the_ghl_documentation_sample_number_is_refused_as_not_philippine():
    """HighLevel's sample +15864603685 fails with a specific reason."""
    with pytest.raises(PhoneNumberRejected) as caught:
        normalize_ph_mobile("+15864603685")
    assert caught.value.code == "NOT_PHILIPPINE_NUMBER"
    assert "+1" in str(caught.value)


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("", "MISSING_NUMBER"),
        ("   ", "MISSING_NUMBER"),
        ("0917-CALL-ME", "INVALID_NUMBER"),
        ("12", "INVALID_NUMBER"),
        ("091712345678901234567890", "INVALID_NUMBER"),
        ("0917123456", "NOT_MOBILE_NUMBER"),
    ],
)
def test_malformed_numbers_get_a_specific_code(written, code):
    """Empty, lettered, too short and too long inputs each say what is wrong."""
    with pytest.raises(PhoneNumberRejected) as caught:
        normalize_ph_mobile(written)
    assert caught.value.code == code


@given(st.text(max_size=30))
def test_any_text_either_normalises_to_a_mobile_or_is_refused(text):
    """No input crashes the parser or yields something that is not +639…"""
    try:
        number = normalize_ph_mobile(text)
    except PhoneNumberRejected:
        return
    assert number.e164.startswith("+639")
    assert len(number.e164) == 13
