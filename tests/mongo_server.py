"""A MongoDB server for the tests: SecantusDB started by the tests, or yours.

By default one SecantusDB (a MongoDB wire-protocol server, test-only, GPL)
runs in memory on 127.0.0.1 for the whole session. Set
CASTGHL_TEST_MONGODB_URI to a MongoDB URI to run the same suites against
that server instead; each test then uses, and empties, a database of its
own named ``castghl_test_<random>``, so the URI's user needs the readWrite
role on those (readWriteAnyDatabase, say).

Loaded as a pytest plugin by tests/conftest.py; the servers themselves are
started by tests/secantus_process.py, which bench/run.py uses too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from pymongo import MongoClient

from castghl_adapters.mongo.uri import uri_secrets
from secantus_process import (
    SecantusLauncher,
    SecantusProcess,
    SecantusStartError,
    SecantusUnavailable,
)

TEST_URI_VARIABLE = "CASTGHL_TEST_MONGODB_URI"


class PytestSecantusLauncher(SecantusLauncher):
    """SecantusLauncher for the tests: skip if SecantusDB is not installed,
    fail the test if a server does not come up."""

    def start(
        self,
        *,
        storage: str | Path = ":memory:",
        options: Sequence[str] = (),
        client_options: dict[str, Any] | None = None,
    ) -> SecantusProcess:
        try:
            return super().start(
                storage=storage, options=options, client_options=client_options
            )
        except SecantusUnavailable as reason:
            pytest.skip(str(reason))
        except SecantusStartError as reason:
            pytest.fail(str(reason))


@attrs.define
class MongoServer:
    """The server the MongoDB tests use, and a client to clean up after them."""

    uri: str
    client: MongoClient[dict[str, Any]]
    process: SecantusProcess | None = None

    @property
    def secrets(self) -> list[str]:
        """The password in the URI, if any: it must appear in no log line."""
        return uri_secrets(self.uri)

    def new_database_name(self) -> str:
        return f"castghl_test_{uuid.uuid4().hex[:16]}"

    def drop_database(self, name: str) -> None:
        """Drop a test's database, collection by collection.

        dropDatabase needs more than the readWrite role; dropping every
        collection needs no more, and leaves no database behind.
        """
        database = self.client[name]
        for collection in database.list_collection_names():
            database.drop_collection(collection)


@pytest.fixture(scope="session")
def secantus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusLauncher]:
    """Starts SecantusDB servers; every one is stopped when the session ends."""
    launcher = PytestSecantusLauncher(tmp_path_factory.mktemp("secantus"))
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="session")
def mongo_server(request: pytest.FixtureRequest) -> Iterator[MongoServer]:
    """SecantusDB in memory for the session, or CASTGHL_TEST_MONGODB_URI's server."""
    external = os.environ.get(TEST_URI_VARIABLE, "").strip()
    if external:
        with MongoClient(external, serverSelectionTimeoutMS=10_000) as client:
            yield MongoServer(external, client)
        return

    launcher: SecantusLauncher = request.getfixturevalue("secantus")
    process = launcher.start()
    uri = process.uri
    with MongoClient(uri, serverSelectionTimeoutMS=5_000) as client:
        yield MongoServer(uri, client, process)


@pytest.fixture(scope="session")
def mongodb_uri(mongo_server: MongoServer) -> str:
    """The URI of the session's MongoDB server (what tests/replicas.py asks for)."""
    return mongo_server.uri


@pytest.fixture
def mongo_database_name(mongo_server: MongoServer) -> Iterator[str]:
    """A database of the test's own on the shared server, dropped afterwards."""
    name = mongo_server.new_database_name()
    yield name
    mongo_server.drop_database(name)
