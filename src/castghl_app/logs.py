"""Logging: one JSON object per line, with a last-ditch redaction of secrets.

Code never logs a secret on purpose; the filter here is the second line of
defence, masking anything shaped like a Cast key, a bearer token, a JWT
(GHL's access and refresh tokens are JWTs) or the password of a MongoDB
connection string.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRET_PATTERNS = (
    re.compile(r"\bcast_(?:test_)?[0-9A-Fa-f]{16,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"),
)
_URI_PASSWORD = re.compile(r"(?i)(mongodb(?:\+srv)?://[^:@/\s]*:)[^@\s]+@")
"""The password of ``mongodb://user:password@host``; the user name stays."""


def redact(text: str) -> str:
    """Mask every substring shaped like a Cast API key, bearer token or JWT,
    and connection-string passwords."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return _URI_PASSWORD.sub(r"\1[redacted]@", text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "logger", "event", ...extra}`."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line, secrets masked."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """Formats a record as `event key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """One readable line, secrets masked."""
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{record.levelname.lower():7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure_logging(level: str, *, json_lines: bool) -> None:
    """Send castghl's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # PyMongo logs every command with its documents at debug level: not for
    # castghl's debug level, and never a place for stored tokens.
    logging.getLogger("pymongo").setLevel(logging.WARNING)
