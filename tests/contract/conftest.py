"""Every store backend behind one fixture, so each contract runs on all of them.

To add a backend, write a class built from the test's fixture request (for
tmp_path or a server fixture) with `connect()` and `close()` (see
MemoryBackend) and add it to BACKENDS: every contract test then runs on it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
import attrs
import pytest

from castghl_adapters.crypto import AesGcmCipher
from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemoryOutbox,
    MemorySecretStore,
)
from castghl_adapters.mongo import (
    MongoDatabase,
    MongoInstallationStore,
    MongoLeases,
    MongoLocationSettingsStore,
    MongoOutbox,
    MongoSecretStore,
)
from castghl_adapters.sqlite import (
    SqliteDatabase,
    SqliteInstallationStore,
    SqliteLeases,
    SqliteLocationSettingsStore,
    SqliteOutbox,
    SqliteSecretStore,
)
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_core.ports import (
    InstallationStore,
    Leases,
    LocationSettingsStore,
    Outbox,
    SecretStore,
)


@attrs.frozen
class Stores:
    """One handle on every store port of a backend."""

    outbox: Outbox
    leases: Leases
    installations: InstallationStore
    settings: LocationSettingsStore
    secrets: SecretStore


class Backend(Protocol):
    """A backend's data, and a way to open more handles on the same data."""

    async def connect(self) -> Stores:
        """A new handle, as a second service process sharing the data would hold."""
        ...

    async def close(self) -> None:
        """Close every handle opened by `connect`."""
        ...


class MemoryBackend:
    """Memory: one process is all there is, so every handle is the same stores."""

    def __init__(self, _request: pytest.FixtureRequest) -> None:
        self._stores = Stores(
            outbox=MemoryOutbox(),
            leases=MemoryLeases(),
            installations=MemoryInstallationStore(),
            settings=MemoryLocationSettingsStore(),
            secrets=MemorySecretStore(),
        )

    async def connect(self) -> Stores:
        return self._stores

    async def close(self) -> None:
        pass


class SqliteBackend:
    """SQLite: each handle is its own SqliteDatabase (connection) on one file."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        self.path = tmp_path / "castghl.sqlite3"
        self._cipher = AesGcmCipher(os.urandom(32))
        self._databases: list[SqliteDatabase] = []

    async def connect(self) -> Stores:
        db = SqliteDatabase(self.path)
        await db.open()
        self._databases.append(db)
        return Stores(
            outbox=SqliteOutbox(db),
            leases=SqliteLeases(db),
            installations=SqliteInstallationStore(db, self._cipher),
            settings=SqliteLocationSettingsStore(db),
            secrets=SqliteSecretStore(db, self._cipher),
        )

    async def close(self) -> None:
        for db in self._databases:
            await db.close()


class MongoBackend:
    """MongoDB: each handle is its own MongoDatabase (client) on one database.

    The server is the session's (tests/mongo_server.py); the database is the
    test's own, dropped afterwards.
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.uri = request.getfixturevalue("mongo_server").uri
        self.name = request.getfixturevalue("mongo_database_name")
        self._cipher = AesGcmCipher(os.urandom(32))
        self._databases: list[MongoDatabase] = []

    async def connect(self) -> Stores:
        db = MongoDatabase(self.uri, database=self.name, pool_size=20)
        await db.open()
        self._databases.append(db)
        return Stores(
            outbox=MongoOutbox(db),
            leases=MongoLeases(db),
            installations=MongoInstallationStore(db, self._cipher),
            settings=MongoLocationSettingsStore(db),
            secrets=MongoSecretStore(db, self._cipher),
        )

    async def close(self) -> None:
        for db in self._databases:
            await db.close()


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "memory": MemoryBackend,
    "sqlite": SqliteBackend,
    "mongodb": MongoBackend,
}


@pytest.fixture(params=list(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend in turn, closed after the test."""
    built = BACKENDS[request.param](request)
    yield built
    await built.close()


@pytest.fixture
async def stores(backend: Backend) -> Stores:
    """A handle on every store of the backend under test."""
    return await backend.connect()


@pytest.fixture
def outbox(stores: Stores) -> Outbox:
    return stores.outbox


@pytest.fixture
def leases(stores: Stores) -> Leases:
    return stores.leases


@pytest.fixture
def installations(stores: Stores) -> InstallationStore:
    return stores.installations


@pytest.fixture
def location_settings(stores: Stores) -> LocationSettingsStore:
    return stores.settings


@pytest.fixture
def secrets(stores: Stores) -> SecretStore:
    return stores.secrets


@pytest.fixture
async def ghl_sandbox() -> AsyncIterator[GhlSandbox]:
    """The GHL stand-in on 127.0.0.1, with no 403 window."""
    sandbox = GhlSandbox(not_ready_for=0.0)
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session for a test's calls."""
    async with aiohttp.ClientSession() as session:
        yield session
