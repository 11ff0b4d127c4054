"""The outbox in MongoDB: claim-once on the messageId key, leased pick-up.

Every write is a single-document operation, atomic on its own, so replicas
sharing the database never both claim, both lease or both update one job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from castghl_adapters.mongo import _documents
from castghl_adapters.mongo.database import OUTBOX_JOBS, MongoDatabase, MongoUnavailable
from castghl_core.jobs import UNFINISHED_STATES, JobState, OutboundJob

logger = logging.getLogger(__name__)

_KEY = "message_id"

_UNFINISHED = [state.value for state in JobState if not state.is_final]

_PICK_ORDER = [("due_at", ASCENDING), ("_id", ASCENDING)]
"""Earliest due first, ties by message id: the order of the state_due_at index."""


class MongoOutbox:
    """Outbound jobs in the ``outbox_jobs`` collection, ``_id`` = messageId."""

    def __init__(self, db: MongoDatabase) -> None:
        """Keep jobs in `db`."""
        self._db = db

    async def claim(self, job: OutboundJob) -> bool:
        """Insert `job` unless its message_id exists; True if it was inserted."""
        try:
            with self._db.translate_errors():
                await self._db.collection(OUTBOX_JOBS).insert_one(
                    _documents.to_document(job, _KEY)
                )
        except DuplicateKeyError:
            return False
        return True

    async def get(self, message_id: str) -> OutboundJob | None:
        """The job for `message_id`, if any."""
        with self._db.translate_errors():
            document = await self._db.collection(OUTBOX_JOBS).find_one(
                {"_id": message_id}
            )
        return None if document is None else _from_document(document)

    async def lease_due(
        self, owner: str, now: datetime, lease_for: timedelta, limit: int
    ) -> list[OutboundJob]:
        """Lease up to `limit` unfinished jobs due by `now`, earliest first.

        One find_one_and_update per job: each checks that the job is still
        due and unleased and writes the lease in the same atomic step, takes
        the earliest by the pick-up index, and returns the job as leased. An
        update_many could do neither the limit, nor the order, nor say which
        jobs it took; a find-then-update would need a second, racing step.
        """
        leased: list[OutboundJob] = []
        lease = {"$set": {"lease_owner": owner, "lease_expires_at": now + lease_for}}
        jobs = self._db.collection(OUTBOX_JOBS)
        try:
            with self._db.translate_errors():
                while len(leased) < limit:
                    document = await jobs.find_one_and_update(
                        _due(now),
                        lease,
                        sort=_PICK_ORDER,
                        return_document=ReturnDocument.AFTER,
                    )
                    if document is None:
                        break
                    leased.append(_from_document(document))
        except MongoUnavailable:
            # Jobs leased before the outage are ours: work on them rather
            # than leave them idle until their lease expires.
            if not leased:
                raise
            logger.warning(
                "outbox.lease_interrupted", extra={"owner": owner, "count": len(leased)}
            )

        if leased:
            logger.debug("outbox.leased", extra={"owner": owner, "count": len(leased)})
        return leased

    async def update(self, job: OutboundJob, *, owner: str) -> bool:
        """Write `job` if `owner` still holds its lease; False if it lost it."""
        with self._db.translate_errors():
            result = await self._db.collection(OUTBOX_JOBS).replace_one(
                {"_id": job.message_id, "lease_owner": owner},
                _documents.to_document(job, _KEY),
            )
        return result.matched_count == 1

    async def count_by_state(self) -> Mapping[JobState, int]:
        """How many jobs are in each state (states with none are left out)."""
        # Reads every job, finished ones included: for the admin and tests,
        # not for probes (readiness and the backlog use count_unfinished).
        with self._db.translate_errors():
            cursor = await self._db.collection(OUTBOX_JOBS).aggregate(
                [{"$group": {"_id": "$state", "count": {"$sum": 1}}}]
            )
            return {
                JobState(document["_id"]): int(document["count"])
                async for document in cursor
            }

    async def count_unfinished(self) -> int:
        """How many jobs are not yet reported or dead (uses state_due_at)."""
        with self._db.translate_errors():
            return int(
                await self._db.collection(OUTBOX_JOBS).count_documents(
                    {"state": {"$in": [state.value for state in UNFINISHED_STATES]}}
                )
            )


def _due(now: datetime) -> dict[str, Any]:
    """Unfinished, due by `now`, and not under an unexpired lease."""
    return {
        "state": {"$in": _UNFINISHED},
        "due_at": {"$lte": now},
        # A missing or null expiry means never leased (or released).
        "$or": [
            {"lease_expires_at": None},
            {"lease_expires_at": {"$lte": now}},
        ],
    }


def _from_document(document: Mapping[str, Any]) -> OutboundJob:
    return _documents.from_document(document, _KEY, OutboundJob)
