"""The outbox in SQLite: claim-once on the message_id key, leased pick-up.

Every method is one SQL statement, so each is atomic on its own; the write
transaction around it takes the file's write lock first, so processes sharing
the file never both lease or both claim one job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from castghl_adapters.sqlite import _documents
from castghl_adapters.sqlite.database import SqliteDatabase
from castghl_adapters.storage_codec import format_datetime
from castghl_core.jobs import UNFINISHED_STATES, JobState, OutboundJob

logger = logging.getLogger(__name__)

_COLUMNS = ("message_id", "state", "due_at", "lease_owner", "lease_expires_at")
"""The job fields kept in columns (and out of the document)."""

_SELECT_JOB = """
    SELECT message_id, state, due_at, lease_owner, lease_expires_at, document
    FROM outbox_jobs WHERE message_id = ?
"""

_UNFINISHED = tuple(state.value for state in JobState if not state.is_final)

# Only placeholders are formatted in, one per unfinished state.
_LEASE_DUE = """
    UPDATE outbox_jobs
    SET lease_owner = ?, lease_expires_at = ?
    WHERE message_id IN (
        SELECT message_id FROM outbox_jobs
        WHERE state IN ({unfinished})
          AND due_at <= ?
          AND (lease_expires_at IS NULL OR lease_expires_at <= ?)
        ORDER BY due_at, message_id
        LIMIT ?
    )
    RETURNING message_id, state, due_at, lease_owner, lease_expires_at, document
""".format(unfinished=", ".join("?" * len(_UNFINISHED)))  # noqa: S608
"""Lease the earliest due, unfinished, unleased jobs in one statement."""


class SqliteOutbox:
    """Outbound jobs in the ``outbox_jobs`` table."""

    def __init__(self, db: SqliteDatabase) -> None:
        """Keep jobs in `db`."""
        self._db = db

    async def claim(self, job: OutboundJob) -> bool:
        """Insert `job` unless its message_id exists; True if it was inserted."""
        inserted = await self._db.write_one(
            "INSERT INTO outbox_jobs"
            " (message_id, state, due_at, lease_owner, lease_expires_at, document)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (message_id) DO NOTHING",
            _to_row(job),
        )
        return inserted == 1

    async def get(self, message_id: str) -> OutboundJob | None:
        """The job for `message_id`, if any."""
        async with self._db.read() as connection:
            rows = list(
                await connection.execute_fetchall(
                    _SELECT_JOB,
                    (message_id,),
                )
            )
        return _from_row(rows[0]) if rows else None

    async def lease_due(
        self, owner: str, now: datetime, lease_for: timedelta, limit: int
    ) -> list[OutboundJob]:
        """Lease up to `limit` unfinished jobs due by `now`, earliest first."""
        # SQLite reads LIMIT -1 as "no limit".
        if limit <= 0:
            return []

        moment = format_datetime(now)
        async with self._db.write() as connection:
            rows = await connection.execute_fetchall(
                _LEASE_DUE,
                (
                    owner,
                    format_datetime(now + lease_for),
                    *_UNFINISHED,
                    moment,
                    moment,
                    limit,
                ),
            )
            leased = [_from_row(row) for row in rows]

        # RETURNING promises no order.
        leased.sort(key=lambda job: (job.due_at, job.message_id))
        if leased:
            logger.debug("outbox.leased", extra={"owner": owner, "count": len(leased)})
        return leased

    async def update(self, job: OutboundJob, *, owner: str) -> bool:
        """Write `job` if `owner` still holds its lease; False if it lost it."""
        message_id, state, due_at, lease_owner, lease_expires_at, document = _to_row(
            job
        )
        async with self._db.write() as connection:
            cursor = await connection.execute(
                "UPDATE outbox_jobs"
                " SET state = ?, due_at = ?, lease_owner = ?, lease_expires_at = ?,"
                " document = ?"
                " WHERE message_id = ? AND lease_owner = ?",
                (
                    state,
                    due_at,
                    lease_owner,
                    lease_expires_at,
                    document,
                    message_id,
                    owner,
                ),
            )
            return cursor.rowcount == 1

    async def count_by_state(self) -> Mapping[JobState, int]:
        """How many jobs are in each state (states with none are left out)."""
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                "SELECT state, COUNT(*) FROM outbox_jobs GROUP BY state"
            )
        return {JobState(state): int(count) for state, count in rows}

    async def count_unfinished(self) -> int:
        """How many jobs are not yet reported or dead (uses the state index)."""
        marks = ", ".join("?" * len(UNFINISHED_STATES))
        async with self._db.read() as connection:
            rows = await connection.execute_fetchall(
                f"SELECT COUNT(*) FROM outbox_jobs WHERE state IN ({marks})",  # noqa: S608
                [state.value for state in UNFINISHED_STATES],
            )
        return int(next(iter(rows))[0])


def _to_row(job: OutboundJob) -> tuple[Any, ...]:
    """The column values of `job`, in _COLUMNS order, then its document."""
    document = _documents.to_document(job)
    columns = [document.pop(name) for name in _COLUMNS]
    return (*columns, _documents.dump(document))


def _from_row(row: Any) -> OutboundJob:
    *columns, text = row
    document = _documents.load(text)
    document.update(zip(_COLUMNS, columns, strict=True))
    return _documents.from_document(document, OutboundJob)
