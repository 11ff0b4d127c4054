"""Per-location Cast API keys in MongoDB, sealed by a cipher before they land."""

from __future__ import annotations

from collections.abc import Sequence

from castghl_adapters.crypto import SecretCipher
from castghl_adapters.mongo.database import SECRETS, MongoDatabase


class MongoSecretStore:
    """Cast API keys in the ``secrets`` collection: ``{_id: location id,
    ciphertext}``, each sealed with its location id as associated data.

    With a PlaintextCipher the keys are stored readable; the app warns when
    it is configured that way.
    """

    def __init__(self, db: MongoDatabase, cipher: SecretCipher) -> None:
        """Keep keys in `db`, sealed by `cipher`."""
        self._db = db
        self._cipher = cipher

    async def get(self, location_id: str) -> str | None:
        """The location's Cast API key, if one is set."""
        with self._db.translate_errors():
            document = await self._db.collection(SECRETS).find_one({"_id": location_id})
        if document is None:
            return None
        return self._cipher.decrypt(
            str(document["ciphertext"]), associated_data=location_id
        )

    async def put(self, location_id: str, api_key: str) -> None:
        """Set or replace the location's Cast API key."""
        sealed = self._cipher.encrypt(api_key, associated_data=location_id)
        with self._db.translate_errors():
            await self._db.collection(SECRETS).replace_one(
                {"_id": location_id},
                {"_id": location_id, "ciphertext": sealed},
                upsert=True,
            )

    async def delete(self, location_id: str) -> None:
        """Remove the location's key; no error if absent."""
        with self._db.translate_errors():
            await self._db.collection(SECRETS).delete_one({"_id": location_id})

    async def list_names(self) -> Sequence[str]:
        """The location ids that have a key, sorted."""
        with self._db.translate_errors():
            cursor = self._db.collection(SECRETS).find({}, {"_id": 1}).sort("_id", 1)
            return [str(document["_id"]) async for document in cursor]
