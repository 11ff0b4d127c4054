"""Per-location settings in MongoDB, apart from tokens so reinstalls keep them."""

from __future__ import annotations

from collections.abc import Sequence

from castghl_adapters.mongo import _documents
from castghl_adapters.mongo.database import LOCATION_SETTINGS, MongoDatabase
from castghl_core.locations import LocationSettings

_KEY = "location_id"


class MongoLocationSettingsStore:
    """Location settings in the ``location_settings`` collection, one document
    per location: ``{_id: location id, sender_id, inbound_dids, updated_at}``."""

    def __init__(self, db: MongoDatabase) -> None:
        """Keep settings in `db`."""
        self._db = db

    async def get(self, location_id: str) -> LocationSettings | None:
        """The settings of a location, if any."""
        with self._db.translate_errors():
            document = await self._db.collection(LOCATION_SETTINGS).find_one(
                {"_id": location_id}
            )
        if document is None:
            return None
        return _documents.from_document(document, _KEY, LocationSettings)

    async def put(self, settings: LocationSettings) -> None:
        """Create or replace a location's settings."""
        document = _documents.to_document(settings, _KEY)
        with self._db.translate_errors():
            await self._db.collection(LOCATION_SETTINGS).replace_one(
                {"_id": settings.location_id}, document, upsert=True
            )

    async def list(self) -> Sequence[LocationSettings]:
        """Every location's settings, in location_id order."""
        with self._db.translate_errors():
            cursor = self._db.collection(LOCATION_SETTINGS).find().sort("_id", 1)
            return [
                _documents.from_document(document, _KEY, LocationSettings)
                async for document in cursor
            ]

    async def delete(self, location_id: str) -> None:
        """Forget a location's settings; no error if absent."""
        with self._db.translate_errors():
            await self._db.collection(LOCATION_SETTINGS).delete_one(
                {"_id": location_id}
            )
