"""Start and stop SecantusDB (a MongoDB wire-protocol server) on 127.0.0.1.

SecantusDB is GPL and for tests only, so this lives beside the tests, not in
src/. Nothing here imports pytest: tests/mongo_server.py wraps it in
fixtures, and bench/run.py starts its own server with it.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from pymongo import MongoClient
from pymongo.errors import PyMongoError

_LISTENING = re.compile(r"secantus listening on 127\.0\.0\.1:(\d+)")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class SecantusUnavailable(Exception):
    """SecantusDB is not installed in this environment."""


class SecantusStartError(Exception):
    """A SecantusDB server exited, or did not listen, at start-up."""


def secantus_command() -> str | None:
    """The SecantusDB launcher of this interpreter's environment, if installed."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    return shutil.which("secantusd-py")


def secantus_version() -> str | None:
    """The installed SecantusDB's version, if it is installed."""
    try:
        return importlib.metadata.version("SecantusDB")
    except importlib.metadata.PackageNotFoundError:
        return None


@attrs.define
class SecantusProcess:
    """One SecantusDB server process listening on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """A URI for this server, without credentials."""
        return f"mongodb://{self.address}/"

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
        Raises SecantusUnavailable if it is not installed, SecantusStartError
        if it does not come up.
        """
        command = secantus_command()
        if command is None:
            raise SecantusUnavailable(
                "secantusd-py is not installed (pip install '.[dev]')"
            )
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
            self.uri, serverSelectionTimeoutMS=500, **client_options
        ) as client:
            while True:
                try:
                    client.admin.command("ping")
                except PyMongoError as error:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise SecantusStartError(
                            f"SecantusDB did not answer ping: {error}"
                        ) from error
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
            raise SecantusStartError(f"SecantusDB exited at start-up:\n{text[-2000:]}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise SecantusStartError(f"SecantusDB did not start within {_START_TIMEOUT} s")


class SecantusLauncher:
    """Starts SecantusDB servers and stops them all together at the end.

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
        """A new server (see SecantusProcess.start), stopped by `stop_all`."""
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
