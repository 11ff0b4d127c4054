"""Log formatting and the last-ditch redaction of secrets."""

from __future__ import annotations

import json
import logging

from castghl_app.logs import JsonFormatter, TextFormatter, redact

KEY = "cast_" + "0123456789abcdef" * 4


def record(message: str, **extra) -> logging.LogRecord:
    entry = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "t"})
    entry.__dict__.update(extra)
    return entry


def test_cast_keys_and_bearer_tokens_are_masked():
    """Anything shaped like a Cast key or a bearer token is replaced."""
    text = f"key={KEY} auth='Bearer abc.def-ghi_jkl' test=cast_test_1234abcd5678abcd"
    masked = redact(text)
    assert KEY not in masked
    assert "abc.def-ghi_jkl" not in masked
    assert "cast_test_1234abcd5678abcd" not in masked


def test_jwt_shaped_tokens_are_masked():
    """GHL's tokens are JWTs: one in a log line is masked even without Bearer."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJhdXRoQ2xhc3MiOiJMb2NhdGlvbiJ9.c2lnbmF0dXJl-_"

    masked = redact(f"refresh_token={token} location_id=LOC1")

    assert token not in masked
    assert "location_id=LOC1" in masked


def test_field_names_that_start_with_cast_are_left_alone():
    """`cast_message_id=...` is a field, not a key."""
    assert redact("cast_message_id=SANDBOX_1") == "cast_message_id=SANDBOX_1"


def test_json_lines_carry_the_event_and_its_fields():
    """One JSON object per record with the structured extra fields."""
    line = JsonFormatter().format(record("outbound.sent", message_id="M1", parts=2))
    entry = json.loads(line)
    assert entry["event"] == "outbound.sent"
    assert (entry["message_id"], entry["parts"]) == ("M1", 2)
    assert entry["level"] == "info"


def test_a_secret_in_an_extra_field_is_masked_in_both_formats():
    """Redaction covers the fields as well as the message."""
    for formatter in (JsonFormatter(), TextFormatter()):
        assert KEY not in formatter.format(record("x", api_key=KEY))


def test_connection_string_passwords_are_masked():
    """A MongoDB URI's password is masked; its user and host stay readable."""
    text = "uri=mongodb+srv://castghl:S3cr3t%2Fpw@cluster0.example.net/?w=majority"
    masked = redact(text)
    assert "S3cr3t" not in masked
    assert "mongodb+srv://castghl:[redacted]@cluster0.example.net/" in masked
