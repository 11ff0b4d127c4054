"""OAuth installations in SQLite, tokens encrypted, refresh by compare-and-set."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from castghl_adapters.crypto import SecretCipher
from castghl_adapters.sqlite import _documents
from castghl_adapters.sqlite.database import SqliteDatabase
from castghl_core.installations import Installation, InstallationState

_UPSERT = (
    "INSERT INTO installations (owner_id, document) VALUES (?, ?)"
    " ON CONFLICT (owner_id) DO UPDATE SET document = excluded.document"
)


class SqliteInstallationStore:
    """Installations in the ``installations`` table, one row per owner id.

    Both tokens pass through the cipher, bound to the owner id, so a token
    copied onto another owner's row does not decrypt.
    """

    def __init__(self, db: SqliteDatabase, cipher: SecretCipher) -> None:
        """Keep installations in `db`, tokens sealed by `cipher`."""
        self._db = db
        self._cipher = cipher

    async def get(self, owner_id: str) -> Installation | None:
        """The installation of a location or company, if any."""
        async with self._db.read() as connection:
            rows = list(
                await connection.execute_fetchall(
                    "SELECT owner_id, document FROM installations WHERE owner_id = ?",
                    (owner_id,),
                )
            )
        return self._from_row(rows[0]) if rows else None

    async def put(self, installation: Installation) -> None:
        """Create or replace an installation."""
        row = self._to_row(installation)
        async with self._db.write() as connection:
            await connection.execute(_UPSERT, row)

    async def replace_if_refresh_token(
        self, installation: Installation, expected_refresh_token: str | None
    ) -> bool:
        """Write `installation` only if the stored refresh token is the expected
        one; False if another writer rotated it first (or there is none, or
        it is uninstalled)."""
        # The stored token is sealed with a fresh nonce each time, so SQL
        # cannot compare it; the comparison runs inside the write transaction,
        # which holds the file's write lock from the read to the write.
        row = self._to_row(installation)
        async with self._db.write() as connection:
            rows = list(
                await connection.execute_fetchall(
                    "SELECT owner_id, document FROM installations WHERE owner_id = ?",
                    (installation.owner_id,),
                )
            )
            if not rows:
                return False
            stored = self._from_row(rows[0])
            if stored.state is InstallationState.UNINSTALLED:
                return False
            if not _same_token(stored.refresh_token, expected_refresh_token):
                return False
            await connection.execute(_UPSERT, row)
            return True

    async def list(self) -> Sequence[Installation]:
        """Every installation, in owner_id order."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT owner_id, document FROM installations ORDER BY owner_id"
            )
        return [self._from_row(row) for row in rows]

    async def delete(self, owner_id: str) -> None:
        """Forget an installation; no error if absent."""
        async with self._db.write() as connection:
            await connection.execute(
                "DELETE FROM installations WHERE owner_id = ?", (owner_id,)
            )

    def _to_row(self, installation: Installation) -> tuple[str, str]:
        owner_id = installation.owner_id
        document = _documents.to_document(installation)
        del document["owner_id"]
        document["access_token"] = self._cipher.encrypt(
            installation.access_token, associated_data=owner_id
        )
        if installation.refresh_token is not None:
            document["refresh_token"] = self._cipher.encrypt(
                installation.refresh_token, associated_data=owner_id
            )
        return owner_id, _documents.dump(document)

    def _from_row(self, row: Any) -> Installation:
        owner_id, text = row
        document = _documents.load(text)
        document["owner_id"] = owner_id
        document["access_token"] = self._cipher.decrypt(
            document["access_token"], associated_data=owner_id
        )
        if document.get("refresh_token") is not None:
            document["refresh_token"] = self._cipher.decrypt(
                document["refresh_token"], associated_data=owner_id
            )
        return _documents.from_document(document, Installation)


def _same_token(stored: str | None, expected: str | None) -> bool:
    if stored is None or expected is None:
        return stored is expected
    # Constant time, as for any comparison of secrets.
    return hmac.compare_digest(stored.encode(), expected.encode())
