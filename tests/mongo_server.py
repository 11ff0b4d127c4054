"""A MongoDB server for the tests: SecantusDB started by the tests, or yours.

By default one SecantusDB (a MongoDB wire-protocol server, test-only, GPL)
runs in memory on 127.0.0.1 for the whole session. Set
CASTGHL_TEST_MONGODB_URI to a MongoDB URI to run the same suites against
that server instead; each test then uses, and empties, a database of its
own named ``castghl_test_<random>``, so the URI's user needs the readWrite
role on those (readWriteAnyDatabase, say).

Loaded as a pytest plugin by tests/conftest.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from castghl_adapters.mongo.uri import uri_secrets

TEST_URI_VARIABLE = "CASTGHL_TEST_MONGODB_URI"

_LISTENING = re.compile(r"secantus listening on 127\.0\.0\.1:(\d+)")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


def secantus_command() -> str | None:
    """The SecantusDB launcher of this interpreter's environment, if installed."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    return shutil.which("secantusd-py")


@attrs.define
class SecantusProcess:
    """One SecantusDB server process listening on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        storage: str | Path = ":memory:",
        options: Sequence[str] = (),
        client_options: dict[str, Any] | None = None,
    ) -> SecantusProcess:
        """Start a server with `options`; return once it answers ping.

        `workdir` holds its log and an empty config file (so no
        secantusd.toml of the machine is picked up). `client_options` are
        what a client needs to ping it (TLS files, for a TLS server).
        """
        command = secantus_command()
        if command is None:
            pytest.skip("secantusd-py is not installed (pip install '.[dev]')")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "secantusd.toml"
        config.touch()
        log_path = workdir / f"secantus-{uuid.uuid4().hex[:8]}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603  (our own test tool)
                [
                    command,
                    "--config",
                    str(config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--storage-path",
                    str(storage),
                    "--log-level",
                    "INFO",
                    *options,
                ],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, _wait_for_port(process, log_path), log_path)
        try:
            server.wait_for_ping(client_options or {})
        except BaseException:
            server.kill()
            raise
        return server

    def wait_for_ping(self, client_options: dict[str, Any]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        with MongoClient(
            f"mongodb://{self.address}/",
            serverSelectionTimeoutMS=500,
            **client_options,
        ) as client:
            while True:
                try:
                    client.admin.command("ping")
                except PyMongoError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                else:
                    return

    def terminate(self) -> None:
        """Ask the server to stop (it takes about 2 s); see `wait`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        """Wait for a terminated server to exit; kill it if it takes too long."""
        try:
            self.process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self) -> None:
        """Stop the server and wait for it."""
        self.terminate()
        self.wait()

    def kill(self) -> None:
        """Stop the server at once (its storage is left as it was)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    """The port from the server's log line ``secantus listening on ...``."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = _LISTENING.search(text)
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            pytest.fail(f"SecantusDB exited at start-up:\n{text[-2000:]}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    pytest.fail(f"SecantusDB did not start within {_START_TIMEOUT} s")


class SecantusLauncher:
    """Starts SecantusDB servers for the session and stops them all at its end.

    A server takes about 2 s to stop; stopping them together at the end
    costs those seconds once rather than once per server.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[SecantusProcess] = []

    def start(
        self,
        *,
        storage: str | Path = ":memory:",
        options: Sequence[str] = (),
        client_options: dict[str, Any] | None = None,
    ) -> SecantusProcess:
        """A new server (see SecantusProcess.start), stopped with the session."""
        server = SecantusProcess.start(
            self.workdir,
            storage=storage,
            options=options,
            client_options=client_options,
        )
        self._started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self._started:
            server.terminate()
        for server in self._started:
            server.wait()


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
    launcher = SecantusLauncher(tmp_path_factory.mktemp("secantus"))
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
    uri = f"mongodb://{process.address}/"
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
