"""SQLite adapters: the embedded default store, needing no server.

Every store lives in one file opened by a SqliteDatabase; records are JSON
documents with the fields that queries use kept in indexed columns (the
layout is described in `castghl_adapters.sqlite.database`). Secrets and
tokens pass through a SecretCipher before they are written.
"""

from castghl_adapters.sqlite.database import (
    SCHEMA_VERSION,
    SqliteDatabase,
    SqliteSchemaError,
    SqliteUnavailable,
)
from castghl_adapters.sqlite.installations import SqliteInstallationStore
from castghl_adapters.sqlite.leases import SqliteLeases
from castghl_adapters.sqlite.outbox import SqliteOutbox
from castghl_adapters.sqlite.secret_store import SqliteSecretStore
from castghl_adapters.sqlite.settings import SqliteLocationSettingsStore

__all__ = [
    "SCHEMA_VERSION",
    "SqliteDatabase",
    "SqliteInstallationStore",
    "SqliteLeases",
    "SqliteLocationSettingsStore",
    "SqliteOutbox",
    "SqliteSchemaError",
    "SqliteSecretStore",
    "SqliteUnavailable",
]
