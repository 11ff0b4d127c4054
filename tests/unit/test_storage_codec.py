"""The storage converter: records to snake_case documents and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from castghl_adapters.storage_codec import (
    format_datetime,
    make_storage_converter,
    parse_datetime,
    storage_converter,
)
from castghl_core.installations import Installation, InstallationState, UserType
from castghl_core.jobs import DeliveryStatus, JobState, OutboundJob, Outcome
from castghl_core.locations import LocationSettings

T0 = datetime(2026, 3, 1, 8, 30, 0, 5, tzinfo=UTC)
MANILA = timezone(timedelta(hours=8))


def make_job() -> OutboundJob:
    return OutboundJob(
        message_id="msg-1",
        location_id="loc-1",
        phone="+639171234567",
        text="hello",
        created_at=T0,
        due_at=T0,
        state=JobState.REPORTING,
        outcome=Outcome.failed("UNDELIVERED", "carrier said no"),
    )


def test_a_job_becomes_a_snake_case_document_of_plain_values():
    """Enums become their values, datetimes UTC text, Outcome a nested dict."""
    document = storage_converter.unstructure(make_job())

    assert document == {
        "message_id": "msg-1",
        "location_id": "loc-1",
        "phone": "+639171234567",
        "text": "hello",
        "created_at": "2026-03-01T08:30:00.000005+00:00",
        "due_at": "2026-03-01T08:30:00.000005+00:00",
        "contact_id": None,
        "state": "reporting",
        "attempt": 0,
        "cast_message_id": None,
        "parts": None,
        "sent_at": None,
        "outcome": {
            "status": "failed",
            "code": "UNDELIVERED",
            "reason": "carrier said no",
        },
        "last_error": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": None,
    }
    assert type(document["state"]) is str
    assert type(document["outcome"]["status"]) is str


def test_structured_enums_are_enum_members():
    """Reading a document gives enum members, not bare strings."""
    job = storage_converter.structure(
        storage_converter.unstructure(make_job()), OutboundJob
    )

    assert job.state is JobState.REPORTING
    assert job.outcome.status is DeliveryStatus.FAILED


def test_a_job_round_trips():
    """A job's document structures back into an equal job."""
    job = make_job()

    assert (
        storage_converter.structure(storage_converter.unstructure(job), OutboundJob)
        == job
    )


def test_an_installation_round_trips_with_enum_values_and_scope_list():
    """Installation enums are stored by value and scopes as a list."""
    installation = Installation(
        owner_id="company-1",
        user_type=UserType.COMPANY,
        access_token="a",
        refresh_token=None,
        expires_at=T0,
        scopes=("contacts.readonly", "conversations.write"),
        state=InstallationState.NEEDS_REAUTH,
    )

    document = storage_converter.unstructure(installation)

    assert (document["user_type"], document["state"]) == ("Company", "needs_reauth")
    assert document["scopes"] == ["contacts.readonly", "conversations.write"]
    assert storage_converter.structure(document, Installation) == installation


def test_location_settings_round_trip():
    """Inbound DIDs are stored as a list and read back as a tuple."""
    settings = LocationSettings("loc-1", "CASTPH", ("+639170001111",), T0)

    document = storage_converter.unstructure(settings)

    assert document["inbound_dids"] == ["+639170001111"]
    assert storage_converter.structure(document, LocationSettings) == settings


def test_unknown_keys_are_ignored():
    """A document with fields this release does not know still reads."""
    document = storage_converter.unstructure(LocationSettings("loc-1"))
    document["added_by_a_later_release"] = {"x": 1}

    assert storage_converter.structure(document, LocationSettings) == LocationSettings(
        "loc-1"
    )


def test_missing_optional_keys_take_their_defaults():
    """A document written before a field existed reads with its default."""
    settings = storage_converter.structure({"location_id": "loc-1"}, LocationSettings)

    assert settings == LocationSettings("loc-1")


def test_datetimes_in_another_zone_are_stored_as_utc():
    """A Manila time is stored as the same instant in UTC."""
    assert format_datetime(datetime(2026, 3, 1, 16, 30, tzinfo=MANILA)) == (
        "2026-03-01T08:30:00.000000+00:00"
    )


def test_naive_datetimes_are_refused():
    """A datetime with no zone names no instant, so it is not stored."""
    with pytest.raises(ValueError, match="timezone-aware"):
        format_datetime(datetime(2026, 3, 1, 8, 30))  # noqa: DTZ001


@pytest.mark.parametrize(
    "stored",
    [
        "2026-03-01T08:30:00.000005+00:00",
        "2026-03-01T08:30:00.000005Z",
        "2026-03-01T16:30:00.000005+08:00",
        "2026-03-01T08:30:00.000005",
    ],
)
def test_stored_text_parses_to_utc(stored):
    """Offsets, 'Z' and naive text (taken as UTC) all read as the UTC instant."""
    parsed = parse_datetime(stored)

    assert parsed == T0
    assert parsed.tzinfo is UTC


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=st.just(UTC)),
)
def test_stored_text_sorts_in_time_order(first, second):
    """Comparing stored text gives the same answer as comparing the times."""
    assert (format_datetime(first) < format_datetime(second)) == (first < second)


def test_the_native_variant_keeps_datetimes_as_utc_datetimes():
    """For BSON, datetimes stay datetime objects, converted to UTC."""
    converter = make_storage_converter(native_datetimes=True)
    job = attrs.evolve(make_job(), created_at=T0.astimezone(MANILA))

    document = converter.unstructure(job)

    assert document["created_at"] == T0
    assert document["created_at"].tzinfo is UTC


def test_the_native_variant_reads_naive_datetimes_as_utc():
    """A BSON driver's naive UTC datetimes structure as aware UTC ones."""
    converter = make_storage_converter(native_datetimes=True)
    document = converter.unstructure(make_job())
    document["created_at"] = T0.replace(tzinfo=None)

    job = converter.structure(document, OutboundJob)

    assert job.created_at == T0
    assert job.created_at.tzinfo is UTC
