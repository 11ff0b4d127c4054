"""Per-location Cast API keys in SQLite, sealed by a cipher before they land."""

from __future__ import annotations

from collections.abc import Sequence

from castghl_adapters.crypto import SecretCipher
from castghl_adapters.sqlite.database import SqliteDatabase


class SqliteSecretStore:
    """Cast API keys in the ``secrets`` table, bound to their location id.

    With a PlaintextCipher the keys are stored readable; the app warns when
    it is configured that way.
    """

    def __init__(self, db: SqliteDatabase, cipher: SecretCipher) -> None:
        """Keep keys in `db`, sealed by `cipher`."""
        self._db = db
        self._cipher = cipher

    async def get(self, location_id: str) -> str | None:
        """The location's Cast API key, if one is set."""
        async with self._db.read() as connection:
            rows = list(
                await connection.execute_fetchall(
                    "SELECT ciphertext FROM secrets WHERE location_id = ?",
                    (location_id,),
                )
            )
        if not rows:
            return None
        return self._cipher.decrypt(str(rows[0][0]), associated_data=location_id)

    async def put(self, location_id: str, api_key: str) -> None:
        """Set or replace the location's Cast API key."""
        sealed = self._cipher.encrypt(api_key, associated_data=location_id)
        async with self._db.write() as connection:
            await connection.execute(
                "INSERT INTO secrets (location_id, ciphertext) VALUES (?, ?)"
                " ON CONFLICT (location_id)"
                " DO UPDATE SET ciphertext = excluded.ciphertext",
                (location_id, sealed),
            )

    async def delete(self, location_id: str) -> None:
        """Remove the location's key; no error if absent."""
        async with self._db.write() as connection:
            await connection.execute(
                "DELETE FROM secrets WHERE location_id = ?", (location_id,)
            )

    async def list_names(self) -> Sequence[str]:
        """The location ids that have a key, sorted."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT location_id FROM secrets ORDER BY location_id"
            )
        return [str(row[0]) for row in rows]
