"""Named leases in MongoDB, so one replica at a time does a piece of shared work."""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from castghl_adapters.mongo.database import LEASES, MongoDatabase


class MongoLeases:
    """Leases in the ``leases`` collection: ``{_id: name, owner, expires_at}``.

    An expired lease stays in place until someone takes it over; expiry is
    the stored time compared in the query, not a TTL deletion.
    """

    def __init__(self, db: MongoDatabase) -> None:
        """Keep leases in `db`."""
        self._db = db

    async def acquire(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> bool:
        """Take or renew `name` for `owner` unless another holds it unexpired."""
        # One atomic upsert. It updates the lease if it is ours or expired;
        # if it is missing, it inserts it; if another holds it unexpired, the
        # filter matches nothing, the insert collides with the existing _id,
        # and the duplicate key says "taken". Racing inserts collide the same way.
        try:
            with self._db.translate_errors():
                await self._db.collection(LEASES).update_one(
                    {
                        "_id": name,
                        "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}],
                    },
                    {"$set": {"owner": owner, "expires_at": now + ttl}},
                    upsert=True,
                )
        except DuplicateKeyError:
            return False
        return True

    async def release(self, name: str, owner: str) -> None:
        """Give `name` up if `owner` holds it."""
        with self._db.translate_errors():
            await self._db.collection(LEASES).delete_one({"_id": name, "owner": owner})
