"""Several `castghl serve` processes on one store, for multi-replica tests.

`ReplicaSet` starts each replica as its own OS process on a free port of
127.0.0.1, all sharing one store (a SQLite file, or a MongoDB database),
pointed at sandboxes the caller runs. Each process's stderr (its JSON logs)
goes to a file. `SharedStore` is the caller's own handle on that store,
built by the service's container, so it works for any backend the container
knows. Nothing here imports pytest: `bench/run.py` uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
import attrs

import castghl_app
from castghl_app.containers import Container
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_app.settings import Settings
from castghl_app.web.routes import DELIVERY_PATH
from castghl_core.installations import Installation, UserType
from castghl_core.ports import InstallationStore, Outbox

SRC = Path(castghl_app.__file__).resolve().parents[1]
"""The source tree under test: replicas run this code, not an installed copy."""

MONGODB_URI_ENV = "CASTGHL_TEST_MONGODB_URI"
_PR_SET_PDEATHSIG = 1

FAST_TIMINGS: Mapping[str, str] = {
    "CASTGHL_LEASE_SECONDS": "2",
    "CASTGHL_DISPATCH_POLL_SECONDS": "0.05",
    "CASTGHL_FIRST_POLL_SECONDS": "0.1",
    "CASTGHL_SHUTDOWN_GRACE_SECONDS": "1",
    "CASTGHL_HTTP_TIMEOUT_SECONDS": "0.5",
    "CASTGHL_LOG_JSON": "true",
}
"""Short leases and polls, so take-overs and deliveries happen in seconds."""


class BackendUnavailable(Exception):
    """A store backend cannot be used here; the message says why."""


# --- store backends -----------------------------------------------------------


class ReplicaBackend(Protocol):
    """Where the replicas keep their shared state."""

    name: str

    def env(self) -> dict[str, str]:
        """The CASTGHL_* settings that point a process at the shared store."""
        ...

    async def discard(self) -> None:
        """Remove the shared data once every process is gone."""
        ...


@attrs.define
class SqliteReplicas:
    """Every replica opens the same SQLite file: one machine only."""

    path: Path
    name: str = "sqlite"

    def env(self) -> dict[str, str]:
        return {"CASTGHL_STATE_STORE": "sqlite", "CASTGHL_SQLITE_PATH": str(self.path)}

    async def discard(self) -> None:
        await asyncio.to_thread(_remove_sqlite_files, self.path)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@attrs.define
class MongoReplicas:
    """Every replica uses one database of one MongoDB deployment."""

    uri: str
    database: str
    name: str = "mongodb"

    def env(self) -> dict[str, str]:
        return {
            "CASTGHL_STATE_STORE": "mongodb",
            "CASTGHL_MONGODB_URI": self.uri,
            "CASTGHL_MONGODB_DATABASE": self.database,
        }

    async def discard(self) -> None:
        from pymongo import AsyncMongoClient  # noqa: PLC0415  (mongodb runs only)

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=5000
        )
        try:
            # Collection by collection: dropDatabase needs more than the
            # readWrite role a test or bench user is given.
            database = client[self.database]
            for collection in await database.list_collection_names():
                await database.drop_collection(collection)
        finally:
            await client.close()


def sqlite_backend(workdir: Path) -> SqliteReplicas:
    """A fresh SQLite file in `workdir`."""
    return SqliteReplicas(workdir / "shared.sqlite3")


def require_mongodb_adapter() -> None:
    """Return if the MongoDB adapter imports; BackendUnavailable if not."""
    try:
        importlib.import_module("castghl_adapters.mongo")
    except ImportError as error:
        raise BackendUnavailable(
            f"castghl_adapters.mongo cannot be imported ({error}); the MongoDB "
            "adapter is not merged into this branch"
        ) from error


def mongodb_backend(uri: str | None) -> MongoReplicas:
    """A fresh database on the server at `uri`; BackendUnavailable if none.

    `uri` comes from the caller (a pytest fixture, a command-line option);
    without one, CASTGHL_TEST_MONGODB_URI is used.
    """
    require_mongodb_adapter()
    uri = uri or os.environ.get(MONGODB_URI_ENV)
    if not uri:
        raise BackendUnavailable(
            f"no MongoDB server: set {MONGODB_URI_ENV} or provide a "
            "`mongodb_uri` pytest fixture"
        )
    return MongoReplicas(uri, f"castghl_replicas_{secrets.token_hex(4)}")


BACKEND_NAMES = ("sqlite", "mongodb")
"""Every backend the replica tests and the benchmark run on, in order."""


def make_backend(
    name: str, workdir: Path, mongodb_uri: str | None = None
) -> ReplicaBackend:
    """The backend called `name`; BackendUnavailable if it cannot run here."""
    if name == "sqlite":
        return sqlite_backend(workdir)
    if name == "mongodb":
        return mongodb_backend(mongodb_uri)
    raise ValueError(f"unknown backend {name!r}")


# --- the test's own handle on the shared store ---------------------------------


class SharedStore:
    """The stores of a backend, opened in this process by the service's container.

    Use it to seed what has no HTTP route yet, and to look at jobs directly.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._container = Container(settings=Settings.from_env(env))
        self.installations: InstallationStore
        self.outbox: Outbox

    async def open(self) -> Self:
        """Open the store (creating its schema if it is new)."""
        self.installations = await self._container.installations()  # type: ignore[misc]
        self.outbox = await self._container.outbox()  # type: ignore[misc]
        return self

    async def close(self) -> None:
        """Close every resource the container opened."""
        shutdown = self._container.shutdown_resources()
        if shutdown is not None:
            await shutdown

    async def jobs_leased_by(self, owner: str, message_ids: Sequence[str]) -> set[str]:
        """Which of `message_ids` `owner` holds an unexpired lease on, unfinished.

        A dispatcher leases each pick-up as `<owner>#<n>`.
        """
        now = datetime.now(UTC)
        jobs = await asyncio.gather(*(self.outbox.get(m) for m in message_ids))
        return {
            job.message_id
            for job in jobs
            if job is not None
            and not job.state.is_final
            and (job.lease_owner or "").partition("#")[0] == owner
            and job.lease_expires_at is not None
            and job.lease_expires_at > now
        }


async def seed_installation(
    store: SharedStore, ghl: GhlSandbox, location_id: str
) -> list[str]:
    """Install the app for `location_id` as OAuth would; return the tokens.

    Written straight into the store: these tests are about sharing the
    outbox, and the replicas run without GHL client credentials; the install
    flow itself is tested in test_installs.py. Callers only rely on the
    tokens returned (secrets that must never show up in a log).
    """
    token = ghl.issue_location_token(location_id)
    await store.installations.put(
        Installation(
            owner_id=location_id,
            user_type=UserType.LOCATION,
            access_token=token["access_token"],
            refresh_token=token["refresh_token"],
            expires_at=datetime.now(UTC) + timedelta(seconds=token["expires_in"]),
        )
    )
    return [token["access_token"], token["refresh_token"]]


# --- the processes --------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: be SIGKILLed if the test process dies first.

    Fixtures stop replicas on any failure; this covers the test process
    itself being killed, which runs no clean-up at all (Linux only).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class Replica:
    """One `castghl serve` process."""

    index: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivery_url(self) -> str:
        return self.url + DELIVERY_PATH

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """Its JSON log lines, parsed (other lines, such as tracebacks, skipped)."""
        events = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    events.append(entry)
        return events

    @property
    def dispatcher_owner(self) -> str:
        """The lease owner name its dispatcher writes on the jobs it holds."""
        for event in self.log_events():
            if event.get("event") == "dispatcher.started":
                return str(event["owner"])
        raise LookupError(f"replica {self.index} logged no dispatcher.started")

    def peak_rss_kib(self) -> int | None:
        """Its peak resident memory (VmHWM) in KiB, while it runs."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None


class ReplicaSet:
    """Start, kill and stop `castghl serve` processes sharing one store.

    Use as `async with ReplicaSet(...) as replicas:`; every process started
    is stopped on the way out, whatever happened (SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        backend: ReplicaBackend,
        workdir: Path,
        *,
        cast_url: str,
        ghl_url: str,
        ghl_public_key_pem: str,
        admin_token: str,
        encryption_key: str,
        extra_env: Mapping[str, str] | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.backend = backend
        self.workdir = workdir
        self.admin_token = admin_token
        self.ready_timeout = ready_timeout
        self.replicas: list[Replica] = []
        self.env: dict[str, str] = {
            "CASTGHL_HOST": "127.0.0.1",
            "CASTGHL_ADMIN_TOKEN": admin_token,
            "CASTGHL_ENCRYPTION_KEY": encryption_key,
            "CASTGHL_CAST_BASE_URL": cast_url,
            "CASTGHL_GHL_BASE_URL": ghl_url,
            "CASTGHL_GHL_WEBHOOK_PUBLIC_KEYS": ghl_public_key_pem,
            **FAST_TIMINGS,
            **backend.env(),
            **(extra_env or {}),
        }
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop_all()

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    @property
    def http(self) -> aiohttp.ClientSession:
        """One client session for the harness's own calls (health, admin)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    def shared_store(self) -> SharedStore:
        """An unopened handle on the replicas' store, for this process."""
        return SharedStore({**self.env, "CASTGHL_PORT": "0"})

    async def start(self, count: int) -> list[Replica]:
        """Start `count` more replicas at once; return when all are ready."""
        started = [self._spawn() for _ in range(count)]
        await asyncio.gather(*(self._wait_ready(replica) for replica in started))
        return started

    def _spawn(self) -> Replica:
        index = len(self.replicas)
        port = free_port()
        log_path = self.workdir / f"replica-{index}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASTGHL_")}
        env |= self.env | {"CASTGHL_PORT": str(port)}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "castghl_app.cli", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.workdir,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        replica = Replica(index, port, process, log_path)
        self.replicas.append(replica)
        return replica

    async def _wait_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not replica.alive:
                raise RuntimeError(
                    f"replica {replica.index} exited with "
                    f"{replica.process.returncode}:\n{replica.log_text()[-3000:]}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(replica.url + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise TimeoutError(
            f"replica {replica.index} was not ready within {self.ready_timeout} s:"
            f"\n{replica.log_text()[-3000:]}"
        )

    def kill(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to replica `index` (SIGKILL: it dies mid-work)."""
        replica = self.replicas[index]
        if replica.alive:
            replica.process.send_signal(sig)

    async def wait_exited(self, index: int, timeout: float = 10.0) -> int:
        """Wait for replica `index` to end; its exit code."""
        process = self.replicas[index].process
        return await asyncio.to_thread(process.wait, timeout)

    async def stop_all(self, timeout: float = 5.0) -> None:
        """SIGTERM every live replica, SIGKILL those still up after `timeout`."""
        for replica in self.replicas:
            if replica.alive:
                replica.process.terminate()
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.to_thread(replica.process.wait, remaining)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                await asyncio.to_thread(replica.process.wait)
        if self._http is not None:
            await self._http.close()

    async def admin(
        self, index: int, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """Call the admin API of replica `index`; its status and JSON body."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        url = self.replicas[index].url + "/api/admin" + path
        async with self.http.request(method, url, headers=headers, **kwargs) as answer:
            return answer.status, await answer.json()

    async def configure_location(
        self, location_id: str, *, sender_id: str, api_key: str, via: int = 0
    ) -> None:
        """Set a location's sender ID and Cast key through one replica's admin API."""
        status, body = await self.admin(
            via,
            "PUT",
            f"/locations/{location_id}",
            json={"sender_id": sender_id, "cast_api_key": api_key},
        )
        if status != 200:
            raise RuntimeError(f"configuring {location_id} failed: {status} {body}")
