"""Philippine mobile numbers: the only numbers castghl sends to.

Parsing is libphonenumber's (it knows every way people write a number); the
rule for "mobile" is structural, +63 9XX XXX XXXX, so a newly allocated
prefix is not refused by stale metadata.
"""

from __future__ import annotations

import re

import attrs
import phonenumbers

from castghl_core.errors import PhoneNumberRejected

_ALLOWED_CHARACTERS = re.compile(r"^\+?[0-9 ()\-.]{7,24}$")
_PH_MOBILE_NATIONAL = re.compile(r"^9[0-9]{9}$")
_PH_COUNTRY_CODE = 63
_E164_DIGITS = 12


@attrs.frozen
class PhilippineMobile:
    """A Philippine mobile number, held in E.164 form (+639XXXXXXXXX)."""

    e164: str = attrs.field(validator=attrs.validators.matches_re(r"^\+639\d{9}$"))

    @property
    def local(self) -> str:
        """The 11-digit local form (09XXXXXXXXX) every Cast API generation takes."""
        return "0" + self.e164[3:]


def normalize_ph_mobile(raw: str) -> PhilippineMobile:
    """Read a number as written by people or GHL; refuse all but PH mobiles."""
    text = raw.strip()
    if not text:
        raise PhoneNumberRejected("MISSING_NUMBER", "the message has no phone number")
    if not _ALLOWED_CHARACTERS.match(text):
        raise PhoneNumberRejected("INVALID_NUMBER", f"{text!r} is not a phone number")

    digits = re.sub(r"\D", "", text)
    # "639171234567" is E.164 without its plus; libphonenumber would read it as
    # a national number, so give it the plus back.
    if (
        not text.startswith("+")
        and digits.startswith("63")
        and len(digits) == _E164_DIGITS
    ):
        text = "+" + digits
    try:
        parsed = phonenumbers.parse(text, "PH")
    except phonenumbers.NumberParseException as error:
        raise PhoneNumberRejected(
            "INVALID_NUMBER", f"{raw!r} is not a phone number"
        ) from error

    if parsed.country_code != _PH_COUNTRY_CODE:
        raise PhoneNumberRejected(
            "NOT_PHILIPPINE_NUMBER",
            f"{text} is not a Philippine number (country code "
            f"+{parsed.country_code}); castghl sends only to Philippine mobiles",
        )
    national = str(parsed.national_number)
    if not _PH_MOBILE_NATIONAL.match(national):
        raise PhoneNumberRejected(
            "NOT_MOBILE_NUMBER",
            f"+63{national} is not a Philippine mobile number (+639XXXXXXXXX)",
        )
    return PhilippineMobile(e164=f"+63{national}")
