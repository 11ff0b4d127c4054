"""OAuth installations in MongoDB, tokens encrypted, refresh by compare-and-set."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from castghl_adapters.crypto import SecretCipher
from castghl_adapters.mongo import _documents
from castghl_adapters.mongo.database import INSTALLATIONS, MongoDatabase
from castghl_core.installations import Installation, InstallationState

_KEY = "owner_id"
_DIGEST = "refresh_token_sha256"


class MongoInstallationStore:
    """Installations in the ``installations`` collection, one document per owner.

    Both tokens pass through the cipher, bound to the owner id. A sealed
    token is different each time it is written (a fresh nonce), so a query
    cannot compare it; the document also keeps the SHA-256 of the refresh
    token, which the compare-and-set filters on (ADR 0010 says why an
    unkeyed digest is enough).
    """

    def __init__(self, db: MongoDatabase, cipher: SecretCipher) -> None:
        """Keep installations in `db`, tokens sealed by `cipher`."""
        self._db = db
        self._cipher = cipher

    async def get(self, owner_id: str) -> Installation | None:
        """The installation of a location or company, if any."""
        with self._db.translate_errors():
            document = await self._db.collection(INSTALLATIONS).find_one(
                {"_id": owner_id}
            )
        return None if document is None else self._from_document(document)

    async def put(self, installation: Installation) -> None:
        """Create or replace an installation."""
        document = self._to_document(installation)
        with self._db.translate_errors():
            await self._db.collection(INSTALLATIONS).replace_one(
                {"_id": installation.owner_id}, document, upsert=True
            )

    async def replace_if_refresh_token(
        self, installation: Installation, expected_refresh_token: str | None
    ) -> bool:
        """Write `installation` only if the stored refresh token is the expected
        one; False if another writer rotated it first (or there is none, or
        it is uninstalled)."""
        # One conditional replace: the server checks the digest and writes in
        # one step, so of two replicas refreshing from the same token one wins.
        document = self._to_document(installation)
        with self._db.translate_errors():
            result = await self._db.collection(INSTALLATIONS).replace_one(
                {
                    "_id": installation.owner_id,
                    _DIGEST: refresh_token_digest(expected_refresh_token),
                    "state": {"$ne": InstallationState.UNINSTALLED.value},
                },
                document,
            )
        return result.matched_count == 1

    async def list(self) -> Sequence[Installation]:
        """Every installation, in owner_id order."""
        with self._db.translate_errors():
            cursor = self._db.collection(INSTALLATIONS).find().sort("_id", 1)
            return [self._from_document(document) async for document in cursor]

    async def delete(self, owner_id: str) -> None:
        """Forget an installation; no error if absent."""
        with self._db.translate_errors():
            await self._db.collection(INSTALLATIONS).delete_one({"_id": owner_id})

    def _to_document(self, installation: Installation) -> dict[str, Any]:
        owner_id = installation.owner_id
        document = _documents.to_document(installation, _KEY)
        document["access_token"] = self._cipher.encrypt(
            installation.access_token, associated_data=owner_id
        )
        if installation.refresh_token is not None:
            document["refresh_token"] = self._cipher.encrypt(
                installation.refresh_token, associated_data=owner_id
            )
        document[_DIGEST] = refresh_token_digest(installation.refresh_token)
        return document

    def _from_document(self, document: Mapping[str, Any]) -> Installation:
        fields = dict(document)
        owner_id = str(fields["_id"])
        fields.pop(_DIGEST, None)
        fields["access_token"] = self._cipher.decrypt(
            fields["access_token"], associated_data=owner_id
        )
        if fields.get("refresh_token") is not None:
            fields["refresh_token"] = self._cipher.decrypt(
                fields["refresh_token"], associated_data=owner_id
            )
        return _documents.from_document(fields, _KEY, Installation)


def refresh_token_digest(refresh_token: str | None) -> str | None:
    """The hex SHA-256 of a refresh token (None for none): the CAS handle."""
    if refresh_token is None:
        return None
    return hashlib.sha256(refresh_token.encode()).hexdigest()
