"""Per-location settings in SQLite, apart from tokens so reinstalls keep them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from castghl_adapters.sqlite import _documents
from castghl_adapters.sqlite.database import SqliteDatabase
from castghl_core.locations import LocationSettings


class SqliteLocationSettingsStore:
    """Location settings in the ``location_settings`` table."""

    def __init__(self, db: SqliteDatabase) -> None:
        """Keep settings in `db`."""
        self._db = db

    async def get(self, location_id: str) -> LocationSettings | None:
        """The settings of a location, if any."""
        async with self._db.read() as connection:
            rows = list(
                await connection.execute_fetchall(
                    "SELECT location_id, document FROM location_settings"
                    " WHERE location_id = ?",
                    (location_id,),
                )
            )
        return _from_row(rows[0]) if rows else None

    async def put(self, settings: LocationSettings) -> None:
        """Create or replace a location's settings."""
        document = _documents.to_document(settings)
        del document["location_id"]
        async with self._db.write() as connection:
            await connection.execute(
                "INSERT INTO location_settings (location_id, document) VALUES (?, ?)"
                " ON CONFLICT (location_id) DO UPDATE SET document = excluded.document",
                (settings.location_id, _documents.dump(document)),
            )

    async def list(self) -> Sequence[LocationSettings]:
        """Every location's settings, in location_id order."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT location_id, document FROM location_settings"
                " ORDER BY location_id"
            )
        return [_from_row(row) for row in rows]

    async def delete(self, location_id: str) -> None:
        """Forget a location's settings; no error if absent."""
        async with self._db.write() as connection:
            await connection.execute(
                "DELETE FROM location_settings WHERE location_id = ?", (location_id,)
            )


def _from_row(row: Any) -> LocationSettings:
    location_id, text = row
    document = _documents.load(text)
    document["location_id"] = location_id
    return _documents.from_document(document, LocationSettings)
