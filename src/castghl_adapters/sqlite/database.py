"""One SQLite file shared by every store: connection, transactions, schema.

Layout (schema version 1). Each record is a JSON document (the storage codec's
snake_case dict) in a ``document`` column; the fields that queries filter,
order or fence on live in their own columns instead, and are left out of the
document so there is one truth for each:

    outbox_jobs        message_id (primary key: claim-once), state, due_at,
                       lease_owner, lease_expires_at, document;
                       index (state, due_at) for picking due jobs
    leases             name (primary key), owner, expires_at
    installations      owner_id (primary key), document (tokens encrypted)
    location_settings  location_id (primary key), document
    secrets            location_id (primary key), ciphertext
    schema_version     the one row saying which layout the file has

Datetimes are fixed-width UTC ISO-8601 text, so comparing them as text
compares them in time.

Several service processes may share the file: it runs in WAL mode (readers
never wait for the writer), writes are ``BEGIN IMMEDIATE`` transactions (a
writer takes the file's write lock before it reads, so a read-modify-write
cannot interleave with another process's) and a process waits up to
`busy_timeout` for that lock. Inside one process the single connection is
shared by every task, so its use is serialised with an asyncio lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from castghl_core.errors import CastGhlError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_MINIMUM_SQLITE = (3, 35, 0)
"""UPDATE ... RETURNING and UPSERT with a WHERE clause."""

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
"""Primary result codes meaning another connection holds a lock."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # Version 1: the first layout.
    (
        """
        CREATE TABLE IF NOT EXISTS outbox_jobs (
            message_id TEXT NOT NULL PRIMARY KEY,
            state TEXT NOT NULL,
            due_at TEXT NOT NULL,
            lease_owner TEXT,
            lease_expires_at TEXT,
            document TEXT NOT NULL
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS outbox_jobs_state_due_at
            ON outbox_jobs (state, due_at)
        """,
        """
        CREATE TABLE IF NOT EXISTS leases (
            name TEXT NOT NULL PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS installations (
            owner_id TEXT NOT NULL PRIMARY KEY,
            document TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS location_settings (
            location_id TEXT NOT NULL PRIMARY KEY,
            document TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS secrets (
            location_id TEXT NOT NULL PRIMARY KEY,
            ciphertext TEXT NOT NULL
        )
        """,
    ),
)


class SqliteUnavailable(CastGhlError):
    """The SQLite file cannot be opened."""


class SqliteSchemaError(CastGhlError):
    """The database file cannot be used by this version of castghl."""


class SqliteDatabase:
    """One SQLite file and this process's one connection to it.

    Open it before use and close it after (or use ``async with``); the stores
    built on it borrow its connection through `read` and `write`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        """Use the file at `path` (created on open); wait `busy_timeout` for locks."""
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._connection: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteDatabase({str(self.path)!r})"

    async def open(self) -> None:
        """Connect, set the file up for sharing and bring its schema up to date."""
        if self._connection is not None:
            raise RuntimeError(f"{self!r} is already open")
        if sqlite3.sqlite_version_info < _MINIMUM_SQLITE:
            raise SqliteSchemaError(
                f"SQLite {sqlite3.sqlite_version} is too old; castghl needs "
                f"{'.'.join(map(str, _MINIMUM_SQLITE))} or newer"
            )

        folder = Path(self.path).parent
        if not folder.is_dir():
            # Checked first: a failed aiosqlite.connect leaves its worker
            # thread behind, which then fails noisily at interpreter exit.
            raise SqliteUnavailable(
                f"cannot open the SQLite file {self.path}: its folder {folder} "
                "does not exist"
            )
        # isolation_level=None: no implicit transactions; `write` opens its own.
        try:
            connection = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.OperationalError as error:
            raise SqliteUnavailable(
                f"cannot open the SQLite file {self.path} ({error}); check that "
                "its folder exists and is writable"
            ) from error
        try:
            journal_mode = await _configure(connection, self.busy_timeout)
            self._connection = connection
            version = await self._migrate()
        except BaseException:
            self._connection = None
            await connection.close()
            raise

        logger.info(
            "sqlite.opened",
            extra={
                "path": str(self.path),
                "journal_mode": journal_mode,
                "schema_version": version,
            },
        )

    async def close(self) -> None:
        """Close the connection; no error if it is not open."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        async with self._lock:
            await connection.close()
        logger.info("sqlite.closed", extra={"path": str(self.path)})

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads, each statement seeing committed data.

        Holding the lock keeps a read out of another task's open transaction,
        where it could see writes that are then rolled back.
        """
        async with self._lock:
            yield self._open_connection()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside a ``BEGIN IMMEDIATE`` transaction.

        Committed when the block ends, rolled back if it raises. The write lock
        is taken up front, so what the block reads stays true until commit,
        even against other processes.
        """
        async with self._lock:
            connection = self._open_connection()
            try:
                await connection.execute("BEGIN IMMEDIATE")
                yield connection
                await connection.commit()
            except BaseException:
                await _roll_back(connection)
                raise

    async def write_one(self, statement: str, parameters: Sequence[Any]) -> int:
        """Run one write `statement` as a transaction of its own; rows changed.

        SQLite wraps a lone statement outside BEGIN in its own transaction,
        waiting up to `busy_timeout` for the file's write lock, and commits
        it (with ``synchronous = FULL``, durably) before the call returns: one
        trip to the connection's thread where `write` takes three (BEGIN, the
        statement, COMMIT), which is most of the cost of a claim. Only for a
        statement that needs no read before it. The lock keeps it out of
        another task's open transaction, which it would otherwise join.
        """
        async with self._lock:
            cursor = await self._open_connection().execute(statement, parameters)
            return cursor.rowcount

    def _open_connection(self) -> aiosqlite.Connection:
        if self._connection is None:
            raise RuntimeError(f"{self!r} is not open; call open() first")
        return self._connection

    async def _migrate(self) -> int:
        """Apply the layouts this file lacks; return the file's schema version."""
        async with self.write() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),"
                " version INTEGER NOT NULL)"
            )
            rows = list(
                await connection.execute_fetchall(
                    "SELECT version FROM schema_version WHERE id = 1"
                )
            )
            current = int(rows[0][0]) if rows else 0
            if current > SCHEMA_VERSION:
                raise SqliteSchemaError(
                    f"{self.path} has schema version {current}, written by a "
                    f"newer castghl; this one knows up to {SCHEMA_VERSION}"
                )

            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    await connection.execute(statement)
            if current < SCHEMA_VERSION:
                await connection.execute(
                    "INSERT INTO schema_version (id, version) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (SCHEMA_VERSION,),
                )
                logger.info(
                    "sqlite.migrated",
                    extra={
                        "path": str(self.path),
                        "from": current,
                        "to": SCHEMA_VERSION,
                    },
                )
        return SCHEMA_VERSION


async def _configure(connection: aiosqlite.Connection, busy_timeout: timedelta) -> str:
    """Set the per-connection options; return the journal mode in force."""
    milliseconds = int(busy_timeout.total_seconds() * 1000)
    await connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
    journal_mode = await _enable_wal(connection, busy_timeout)
    if journal_mode != "wal":
        logger.warning(
            "sqlite.no_wal",
            extra={"journal_mode": journal_mode, "reason": "file system or path"},
        )
    # FULL: a committed job survives a power cut, not only a process crash;
    # a 2xx to GHL promises that.
    await connection.execute("PRAGMA synchronous = FULL")
    return journal_mode


async def _enable_wal(connection: aiosqlite.Connection, busy_timeout: timedelta) -> str:
    """Switch the file to WAL (a lasting property of the file); return the mode.

    Processes opening a new file together race to switch it, and SQLite
    answers the loser "database is locked" at once, without waiting for the
    busy timeout; so the switch is retried for as long as that timeout.
    """
    deadline = asyncio.get_running_loop().time() + busy_timeout.total_seconds()
    pause = 0.005
    while True:
        try:
            rows = list(await connection.execute_fetchall("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as error:
            busy = error.sqlite_errorcode & 0xFF in _BUSY_CODES
            if not busy or asyncio.get_running_loop().time() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        else:
            return str(rows[0][0])


async def _roll_back(connection: aiosqlite.Connection) -> None:
    """End whatever transaction this connection has open, if any.

    The connection's thread runs statements in order even when the task that
    queued them was cancelled; a ROLLBACK queued now runs after them, so a
    BEGIN or COMMIT still in flight cannot leave a transaction open for the
    next task. Asking `in_transaction` instead would race with that thread.
    """
    with contextlib.suppress(sqlite3.OperationalError):
        await connection.execute("ROLLBACK")
