"""Named leases in SQLite, so one process at a time does a piece of shared work."""

from __future__ import annotations

from datetime import datetime, timedelta

from castghl_adapters.sqlite.database import SqliteDatabase
from castghl_adapters.storage_codec import format_datetime


class SqliteLeases:
    """Leases in the ``leases`` table: one row per name, holder and expiry."""

    def __init__(self, db: SqliteDatabase) -> None:
        """Keep leases in `db`."""
        self._db = db

    async def acquire(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> bool:
        """Take or renew `name` for `owner` unless another holds it unexpired."""
        # One upsert: the row is written only if it is new, already ours or
        # expired; otherwise nothing changes and no row counts.
        async with self._db.write() as connection:
            cursor = await connection.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE"
                " SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (name, owner, format_datetime(now + ttl), format_datetime(now)),
            )
            return cursor.rowcount == 1

    async def release(self, name: str, owner: str) -> None:
        """Give `name` up if `owner` holds it."""
        async with self._db.write() as connection:
            await connection.execute(
                "DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner)
            )
