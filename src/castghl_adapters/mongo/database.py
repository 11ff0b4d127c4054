"""One MongoDB database shared by every store: the client, the layout, the errors.

Layout (schema version 1), one collection per store, each document keyed by
its natural id in ``_id`` (so the primary key is also the claim-once key):

    outbox_jobs        _id = GHL messageId; state, due_at, lease_owner,
                       lease_expires_at and the rest of the job;
                       index state_due_at (state, due_at, _id) for pick-up
    leases             _id = lease name; owner, expires_at
    installations      _id = location or company id; tokens sealed by the
                       cipher, refresh_token_sha256 for compare-and-set
    location_settings  _id = location id; sender_id, inbound_dids, updated_at
    secrets            _id = location id; ciphertext
    meta               _id = "schema"; version

Times are BSON dates (UTC, whole milliseconds); expiry is always a stored time
compared in queries, never a TTL index. ADR 0010 gives the reasons.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReadPreference
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)
from pymongo.write_concern import WriteConcern

from castghl_adapters.mongo.uri import redact_uri, scrub
from castghl_core.errors import CastGhlError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

OUTBOX_JOBS = "outbox_jobs"
LEASES = "leases"
INSTALLATIONS = "installations"
LOCATION_SETTINGS = "location_settings"
SECRETS = "secrets"
META = "meta"

COLLECTIONS = (OUTBOX_JOBS, LEASES, INSTALLATIONS, LOCATION_SETTINGS, SECRETS, META)

INDEXES: dict[str, tuple[IndexModel, ...]] = {
    OUTBOX_JOBS: (
        # lease_due: unfinished states, due_at up to now, earliest first
        # (ties by _id), without a sort in memory.
        IndexModel(
            [("state", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)],
            name="state_due_at",
        ),
    ),
}
"""The secondary indexes; every collection also has its unique ``_id``."""

_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13
_NAMESPACE_EXISTS = 48
_INDEX_CONFLICTS = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict


class MongoStoreError(CastGhlError):
    """Base of the errors the MongoDB adapters raise on purpose."""


class MongoUnavailable(MongoStoreError):
    """MongoDB cannot be reached or did not answer in time; retry later."""


class MongoAuthFailed(MongoStoreError):
    """MongoDB refused castghl's credentials, or the user lacks a needed role."""


class MongoConfigurationError(MongoStoreError):
    """The MongoDB URI or its options cannot be used as given."""


class MongoSchemaError(MongoStoreError):
    """The database was laid out by a newer castghl, or conflicts with the layout."""


class MongoDatabase:
    """One MongoDB database and this process's one client for it.

    Open it before use and close it after (or use ``async with``). Pool size
    and timeouts given here override the same options in the URI; everything
    else (credentials, authSource, TLS, replicaSet, w) comes from the URI.
    The URI is kept private: `redacted_uri` is the form for logs.
    """

    def __init__(
        self,
        uri: str,
        *,
        database: str = "castghl",
        pool_size: int = 50,
        server_selection_timeout: timedelta = timedelta(seconds=10),
        connect_timeout: timedelta = timedelta(seconds=10),
        socket_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        """Use database `database` of the deployment at `uri` (opened by `open`).

        `server_selection_timeout` bounds the wait for a usable server (and
        for a pooled connection), `connect_timeout` each new connection, and
        `socket_timeout` each network read, so no call hangs for ever.
        """
        self._uri = uri
        self.name = database
        self.pool_size = pool_size
        self.server_selection_timeout = server_selection_timeout
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._database: AsyncDatabase[dict[str, Any]] | None = None

    @property
    def redacted_uri(self) -> str:
        """The URI with its password and other secrets masked."""
        return redact_uri(self._uri)

    def __repr__(self) -> str:
        return f"MongoDatabase({self.redacted_uri!r}, database={self.name!r})"

    async def open(self) -> None:
        """Connect, check the credentials, and create collections and indexes.

        Safe to run from many processes at once and on every start: what
        exists is left as it is. Raises MongoAuthFailed, MongoUnavailable,
        MongoConfigurationError or MongoSchemaError, each naming the server
        by its redacted URI.
        """
        if self._client is not None:
            raise RuntimeError(f"{self!r} is already open")

        client = self._make_client()
        try:
            with self.translate_errors():
                # ping needs no credentials; creating collections does, so a
                # wrong password fails here and not at the first webhook.
                await client.admin.command("ping")
                database = _database_of(client, self.name)
                await _lay_out(database)
        except BaseException:
            await client.close()
            raise
        self._client, self._database = client, database

        logger.info(
            "mongodb.opened",
            extra={
                "uri": self.redacted_uri,
                "database": self.name,
                "pool_size": self.pool_size,
                "schema_version": SCHEMA_VERSION,
            },
        )

    async def close(self) -> None:
        """Close the client; no error if it is not open."""
        client, self._client, self._database = self._client, None, None
        if client is None:
            return
        await client.close()
        logger.info("mongodb.closed", extra={"uri": self.redacted_uri})

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

    async def ping(self) -> None:
        """Return if MongoDB answers; raise MongoUnavailable if not."""
        with self.translate_errors():
            await self._open_database().command("ping")

    def collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        """One of the layout's collections (see the module docstring)."""
        return self._open_database()[name]

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn the driver's outage, credential and configuration errors into
        this module's errors, whose messages name the server by its redacted
        URI. Other driver errors (duplicate keys, bugs) pass unchanged."""
        try:
            yield
        except PyMongoError as error:
            translated = self._translate(error)
            if translated is None:
                raise
            raise translated from error

    def _make_client(self) -> AsyncMongoClient[dict[str, Any]]:
        """The client, or MongoConfigurationError if the URI cannot be used.

        PyMongo only warns about an option value it does not understand (say
        ``tls=yes``) and then ignores the option, which could mean a plain
        connection where TLS was meant: such warnings fail start-up here.
        """
        selection_ms = _milliseconds(self.server_selection_timeout)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                    self._uri,
                    maxPoolSize=self.pool_size,
                    serverSelectionTimeoutMS=selection_ms,
                    waitQueueTimeoutMS=selection_ms,
                    connectTimeoutMS=_milliseconds(self.connect_timeout),
                    socketTimeoutMS=_milliseconds(self.socket_timeout),
                    # BSON dates come back as aware UTC datetimes, as stored.
                    tz_aware=True,
                )
            # ValueError: a bad port; OSError: an unreadable TLS file or key.
            except (PyMongoError, ValueError, OSError) as error:
                raise _configuration_error(self._uri, str(error)) from error

        problems = [str(w.message) for w in caught if w.category is UserWarning]
        if problems:
            # Nothing has connected yet: the client starts on first use.
            raise _configuration_error(self._uri, "; ".join(problems))
        return client

    def _open_database(self) -> AsyncDatabase[dict[str, Any]]:
        if self._database is None:
            raise RuntimeError(f"{self!r} is not open; call open() first")
        return self._database

    def _translate(self, error: PyMongoError) -> MongoStoreError | None:
        where = f"MongoDB at {self.redacted_uri} (database {self.name!r})"
        if isinstance(error, OperationFailure) and error.code == _AUTHENTICATION_FAILED:
            return MongoAuthFailed(
                f"{where} refused the credentials (authentication failed); check "
                "the user name, the password and authSource in CASTGHL_MONGODB_URI"
            )
        if isinstance(error, OperationFailure) and error.code == _UNAUTHORIZED:
            reason = _one_line(scrub(_server_message(error), self._uri))
            return MongoAuthFailed(
                f"{where} did not allow the operation ({reason}); connect as a "
                f"user with the readWrite role on database {self.name!r}"
            )
        if isinstance(error, ConfigurationError):
            return _configuration_error(self._uri, str(error))
        if isinstance(error, ConnectionFailure | ExecutionTimeout | WTimeoutError):
            reason = _one_line(scrub(_first_problem(error), self._uri))
            return MongoUnavailable(
                f"{where} cannot be reached: {reason}{_hint(reason)}"
            )
        return None


def _database_of(
    client: AsyncMongoClient[dict[str, Any]], name: str
) -> AsyncDatabase[dict[str, Any]]:
    """The database handle every store uses.

    Reads go to the primary: they feed read-modify-write steps (a stale
    installation would refresh with a rotated token). Writes are acknowledged
    by a majority unless the URI asks otherwise (``w=``): a 2xx to GHL
    promises the job survives a failover.
    """
    write_concern = client.write_concern
    if write_concern.is_server_default:
        write_concern = WriteConcern(w="majority")
    return client.get_database(
        name, read_preference=ReadPreference.PRIMARY, write_concern=write_concern
    )


async def _lay_out(database: AsyncDatabase[dict[str, Any]]) -> None:
    """Create what the layout lacks; check the stored schema version."""
    existing = set(await database.list_collection_names())
    for name in COLLECTIONS:
        if name in existing:
            continue
        try:
            await database.create_collection(name, check_exists=False)
        except OperationFailure as error:
            # Another replica created it between the listing and now.
            if error.code != _NAMESPACE_EXISTS:
                raise

    for name, indexes in INDEXES.items():
        try:
            await database[name].create_indexes(list(indexes))
        except OperationFailure as error:
            if error.code not in _INDEX_CONFLICTS:
                raise
            raise MongoSchemaError(
                f"collection {name!r} of database {database.name!r} has an index "
                f"that conflicts with castghl's ({_one_line(_server_message(error))})"
            ) from error

    await _check_schema_version(database)


async def _check_schema_version(database: AsyncDatabase[dict[str, Any]]) -> None:
    meta = database[META]
    with contextlib.suppress(DuplicateKeyError):
        await meta.update_one(
            {"_id": "schema"},
            {"$setOnInsert": {"version": SCHEMA_VERSION}},
            upsert=True,
        )
    document = await meta.find_one({"_id": "schema"})
    version = int(document["version"]) if document else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise MongoSchemaError(
            f"database {database.name!r} has schema version {version}, written "
            f"by a newer castghl; this one knows up to {SCHEMA_VERSION}"
        )


def _configuration_error(uri: str, problem: str) -> MongoConfigurationError:
    reason = _one_line(scrub(problem, uri))
    return MongoConfigurationError(
        f"the MongoDB URI {redact_uri(uri)} cannot be used: {reason}"
    )


def _server_message(error: OperationFailure) -> str:
    """The server's own error message, without the driver's dump of the reply."""
    details = error.details or {}
    return str(details.get("errmsg") or error)


def _first_problem(error: PyMongoError) -> str:
    """The useful head of a driver error: the first server's own complaint.

    Server selection errors end with a long topology description and the
    configured timeouts; neither helps an operator more than the head.
    """
    text = str(error)
    text = text.split(", Timeout:", 1)[0]
    return re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text)


def _hint(reason: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return (
            " (the server's TLS certificate is not trusted: set tlsCAFile to the "
            "CA that signed it)"
        )
    if "CERTIFICATE_REQUIRED" in reason:
        return " (the server wants a client certificate: set tlsCertificateKeyFile)"
    if "No servers found yet" in reason:
        return (
            " (is the address right, the server running, and tls=true set if it "
            "requires TLS?)"
        )
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _milliseconds(duration: timedelta) -> int:
    return max(1, int(duration.total_seconds() * 1000))
