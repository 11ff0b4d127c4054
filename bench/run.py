"""`make bench`: castghl's throughput, as ratios to a bare signed-webhook baseline.

Measures, on this machine and in one run:
  baseline  a bare aiohttp handler that verifies the Ed25519 signature and
            answers 200 (bench/baseline_server.py)
  accept    castghl's Delivery URL: verify, parse, durable claim, 200
  e2e       delivery -> Cast send -> Cast delivery status -> GHL `delivered`
for each store backend: sqlite, and mongodb (on the server given by
--mongodb-uri or $CASTGHL_TEST_MONGODB_URI, else on a SecantusDB test server
the bench starts in memory and stops at the end). Every server under test is
its own process, so its peak memory (VmHWM) is its own; the load generator
and the GHL and Cast sandboxes run in this process, on 127.0.0.1 only, with
bounded request counts and times. Prints a table and writes
bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The code under test is this checkout's, and the process harness and the
# SecantusDB launcher are the ones the tests use.
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import aiohttp  # noqa: E402

from castghl_app.sandbox.cast import CastSandbox  # noqa: E402
from castghl_app.sandbox.ghl import GhlSandbox  # noqa: E402
from secantus_process import (  # noqa: E402
    SecantusProcess,
    SecantusStartError,
    SecantusUnavailable,
    secantus_version,
)

from replicas import (  # noqa: E402
    BACKEND_NAMES,
    MONGODB_URI_ENV,
    BackendUnavailable,
    ReplicaSet,
    free_port,
    make_backend,
    require_mongodb_adapter,
    seed_installation,
)

DELIVERY_PATH = "/webhooks/ghl/outbound"
RESULTS = BENCH / "results.json"

BENCH_ENV = {
    # Production defaults, except the waits that would make every message
    # idle for seconds: the first status poll, and the idle poll.
    "CASTGHL_LEASE_SECONDS": "60",
    "CASTGHL_DISPATCH_POLL_SECONDS": "0.05",
    "CASTGHL_FIRST_POLL_SECONDS": "0.1",
    "CASTGHL_LOG_LEVEL": "info",
}


# --- the load generator ---------------------------------------------------------


@dataclass
class Load:
    """What a run of requests saw."""

    requests: int
    ok: int
    failed: int
    seconds: float
    latencies: list[float] = field(repr=False)
    started_at: list[float] = field(repr=False)
    """Wall-clock start of each request, in the order of the bodies given."""

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


async def drive(
    urls: Sequence[str],
    requests: Sequence[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int,
    max_seconds: float,
) -> Load:
    """POST each (body, headers) to the `urls` in turn, `concurrency` at a time.

    Stops handing out new requests after `max_seconds`; 200 answers count as
    ok, anything else (or no answer) as failed.
    """
    latencies: list[float] = []
    started_at = [0.0] * len(requests)
    counts = {"ok": 0, "failed": 0, "sent": 0}
    queue = iter(enumerate(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        for index, (body, headers) in queue:
            if loop.time() > deadline:
                return
            counts["sent"] += 1
            started_at[index] = time.time()
            begin = loop.time()
            try:
                url = urls[index % len(urls)]
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    ok = answer.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies.append(loop.time() - begin)
            counts["ok" if ok else "failed"] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = loop.time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = loop.time() - begin
    return Load(
        counts["sent"], counts["ok"], counts["failed"], seconds, latencies, started_at
    )


def signed_deliveries(
    ghl: GhlSandbox, locations: Sequence[str], count: int
) -> tuple[list[str], list[tuple[bytes, dict[str, str]]]]:
    """`count` signed deliveries over `locations`, made before any timing.

    Each message is registered with the GHL sandbox, as its own delivery
    would, so the status update that follows is accepted.
    """
    ids, requests = [], []
    for i in range(count):
        location_id = locations[i % len(locations)]
        payload = ghl.sample_delivery(locationId=location_id)
        body = json.dumps(payload).encode()
        ghl.register_message(payload["messageId"], location_id)
        ids.append(payload["messageId"])
        requests.append(
            (
                body,
                {"Content-Type": "application/json", "X-GHL-Signature": ghl.sign(body)},
            )
        )
    return ids, requests


# --- what is measured -------------------------------------------------------------


@dataclass
class Figure:
    """One measured line of the table."""

    name: str
    backend: str
    per_second: float
    p50_ms: float
    p95_ms: float
    count: int
    failed: int
    seconds: float
    peak_rss_mib: float | None
    cpu_ms_each: float | None = None
    """CPU time of the process(es) under test per request (or message)."""
    ratio: float | None = None
    note: str = ""


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _peak_rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time used so far by the processes `pids`."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # The fields after the command name (which may hold spaces).
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _figure(
    name: str, backend: str, load: Load, rss_kib: int | None, cpu_seconds: float
) -> Figure:
    return Figure(
        name=name,
        backend=backend,
        per_second=round(load.per_second, 1),
        p50_ms=round(percentile(load.latencies, 0.50) * 1000, 2),
        p95_ms=round(percentile(load.latencies, 0.95) * 1000, 2),
        count=load.ok,
        failed=load.failed,
        seconds=round(load.seconds, 2),
        peak_rss_mib=_mib(rss_kib),
        cpu_ms_each=round(cpu_seconds * 1000 / load.ok, 3) if load.ok else None,
    )


async def _wait_http_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} was not ready within 20 s")


def _spawn_baseline(port: int, public_key_pem: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_GHL_PUBLIC_KEY_PEM": public_key_pem}
    return subprocess.Popen(
        [sys.executable, str(BENCH / "baseline_server.py"), str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


async def measure_baseline(ghl: GhlSandbox, args: argparse.Namespace) -> Figure:
    """The bare signed handler, in its own process."""
    port = free_port()
    process = _spawn_baseline(port, ghl.public_key_pem)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_http_ready(url, process)
        _, warm = signed_deliveries(ghl, ["baselineLocation"], args.warmup)
        await drive(
            [url + DELIVERY_PATH], warm, concurrency=args.concurrency, max_seconds=10
        )
        _, requests = signed_deliveries(ghl, ["baselineLocation"], args.requests)
        cpu_before = _cpu_seconds([process.pid])
        load = await drive(
            [url + DELIVERY_PATH],
            requests,
            concurrency=args.concurrency,
            max_seconds=args.max_seconds,
        )
        cpu = _cpu_seconds([process.pid]) - cpu_before
        return _figure("baseline", "-", load, _peak_rss_kib(process.pid), cpu)
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 5)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


class Service:
    """One castghl process on a fresh store, with locations set up."""

    def __init__(
        self,
        backend_name: str,
        workdir: Path,
        cast: CastSandbox,
        ghl: GhlSandbox,
        args: argparse.Namespace,
    ) -> None:
        self.backend = make_backend(backend_name, workdir, args.mongodb_uri)
        self.ghl = ghl
        self.replicas = ReplicaSet(
            self.backend,
            workdir,
            cast_url=cast.base_url or "",
            ghl_url=ghl.base_url,
            ghl_public_key_pem=ghl.public_key_pem,
            admin_token=secrets.token_urlsafe(32),
            encryption_key=base64.b64encode(os.urandom(32)).decode(),
            extra_env=BENCH_ENV,
        )

    async def start(self, locations: Sequence[str], count: int = 1) -> list[str]:
        """Install and configure `locations`, start `count` processes on the
        store; their Delivery URLs."""
        store = await self.replicas.shared_store().open()
        try:
            for location_id in locations:
                await seed_installation(store, self.ghl, location_id)
        finally:
            await store.close()
        started = await self.replicas.start(count)
        for location_id in locations:
            await self.replicas.configure_location(
                location_id,
                sender_id="BENCH",
                api_key=f"cast_test_{secrets.token_hex(16)}",
            )
        return [replica.delivery_url for replica in started]

    def cpu_seconds(self) -> float:
        """CPU time its processes have used so far."""
        return _cpu_seconds([r.pid for r in self.replicas.replicas])

    def peak_rss_kib(self) -> int | None:
        """The largest peak resident memory of its processes."""
        peaks = [r.peak_rss_kib() for r in self.replicas.replicas]
        return max((peak for peak in peaks if peak is not None), default=None)

    async def stop(self) -> None:
        await self.replicas.stop_all()
        await self.backend.discard()


async def measure_accept(
    backend: str, cast: CastSandbox, ghl: GhlSandbox, args: argparse.Namespace
) -> Figure:
    """castghl's Delivery URL, one location (its sends paced at 10/s, so the
    dispatcher working in the background takes little from the accept path)."""
    with tempfile.TemporaryDirectory(prefix="castghl-bench-") as workdir:
        service = Service(backend, Path(workdir), cast, ghl, args)
        try:
            urls = await service.start(["benchAccept"])
            _, warm = signed_deliveries(ghl, ["benchAccept"], args.warmup)
            await drive(urls, warm, concurrency=args.concurrency, max_seconds=10)
            _, requests = signed_deliveries(ghl, ["benchAccept"], args.requests)
            cpu_before = service.cpu_seconds()
            load = await drive(
                urls,
                requests,
                concurrency=args.concurrency,
                max_seconds=args.max_seconds,
            )
            cpu = service.cpu_seconds() - cpu_before
            return _figure("accept", backend, load, service.peak_rss_kib(), cpu)
        finally:
            await service.stop()


async def measure_e2e(
    backend: str,
    cast: CastSandbox,
    ghl: GhlSandbox,
    args: argparse.Namespace,
    *,
    messages: int,
    processes: int = 1,
) -> Figure:
    """`messages` deliveries through to GHL's `delivered`, over many locations.

    Cast sends are paced per API key (10 a second, ADR 0008), so the
    messages are spread over `--locations` keys, as over many tenants.
    Throughput is messages reported per second from the first delivery to
    the last report; latency is each message's delivery-to-report time.
    With several `processes` on the store, deliveries go to each in turn.
    """
    locations = [f"benchE2e{i:03d}" for i in range(args.locations)]
    with tempfile.TemporaryDirectory(prefix="castghl-bench-") as workdir:
        service = Service(backend, Path(workdir), cast, ghl, args)
        try:
            urls = await service.start(locations, processes)
            ids, requests = signed_deliveries(ghl, locations, messages)
            begin = time.time()
            cpu_before = service.cpu_seconds()
            load = await drive(
                urls,
                requests,
                concurrency=args.concurrency,
                max_seconds=args.max_seconds,
            )
            reported = await _wait_reported(ghl, ids, args.max_seconds)
            cpu = service.cpu_seconds() - cpu_before
            last = max(reported.values(), default=time.time())
            started = dict(zip(ids, load.started_at, strict=True))
            latencies = [reported[m] - started[m] for m in reported]
            e2e = Load(
                load.requests,
                len(reported),
                load.requests - len(reported),
                last - begin,
                latencies,
                load.started_at,
            )
            name = "e2e" if processes == 1 else f"e2e x{processes}"
            figure = _figure(name, backend, e2e, service.peak_rss_kib(), cpu)
            figure.note = (
                f"{messages} msgs, {args.locations} locations, {processes} process(es)"
            )
            return figure
        finally:
            await service.stop()


async def _wait_reported(
    ghl: GhlSandbox, ids: Sequence[str], within: float
) -> dict[str, float]:
    """When each message's first status reached GHL (wall clock), for `within` s."""
    wanted = set(ids)
    deadline = time.monotonic() + within
    reported: dict[str, float] = {}
    seen = 0
    while time.monotonic() < deadline:
        updates = ghl.status_updates
        for update in updates[seen:]:
            if update.message_id in wanted and update.message_id not in reported:
                reported[update.message_id] = update.at.timestamp()
        seen = len(updates)
        if len(reported) == len(wanted):
            break
        await asyncio.sleep(0.05)
    return reported


# --- the MongoDB server -------------------------------------------------------------


SECANTUS_MESSAGES = 300
"""Messages per e2e run on the bench's own SecantusDB (see --mongodb-messages)."""

SECANTUS_NO_REPLICAS = (
    "SecantusDB answers on one thread and scans the whole outbox for each "
    "pick-up poll, so more processes polling it only slow it down; give "
    "--mongodb-uri to measure this"
)


def start_secantus(workdir: Path) -> SecantusProcess:
    """A SecantusDB server in memory on 127.0.0.1, for the mongodb backend.

    BackendUnavailable if the adapter or SecantusDB is missing, or the server
    does not come up. Each measure still gets a database of its own on it
    (replicas.mongodb_backend), dropped when the measure ends.
    """
    require_mongodb_adapter()
    try:
        return SecantusProcess.start(workdir)
    except (SecantusUnavailable, SecantusStartError) as reason:
        raise BackendUnavailable(f"no SecantusDB server: {reason}") from reason


def mongodb_plan(
    args: argparse.Namespace, secantus: SecantusProcess | None
) -> tuple[str, int]:
    """What the mongodb lines run on, and how many messages each e2e run sends.

    SecantusDB serves one request at a time, far slower than a real
    MongoDB, so on it the e2e runs send fewer messages (to stay within
    --max-seconds) unless --mongodb-messages says otherwise.
    """
    if secantus is not None:
        version = secantus_version() or "?"
        server = f"SecantusDB {version} (started by the bench, in memory)"
        default = min(args.messages, SECANTUS_MESSAGES)
    else:
        server = f"the MongoDB server given (--mongodb-uri or ${MONGODB_URI_ENV})"
        default = args.messages
    messages = default if args.mongodb_messages is None else args.mongodb_messages
    return server, messages


# --- the run -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory = {"MemTotal:": "?", "MemAvailable:": "?"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(" ")
            if name in memory:
                memory[name] = f"{int(rest.split()[0]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "memory": memory["MemTotal:"],
        "memory_available": memory["MemAvailable:"],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "secantusdb": secantus_version(),
        "platform": platform.platform(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(figures: Sequence[Figure], skipped: dict[str, str]) -> None:
    """The figures as a table, ratios to the baseline's requests per second."""
    header = (
        f"{'measure':9} {'backend':8} {'per s':>8} {'ratio':>6} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'count':>6} {'fail':>5} {'peak RSS':>9} {'CPU ms':>7}"
        "  note"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        ratio = "1.00" if f.ratio is None else f"{f.ratio:.2f}"
        rss = "?" if f.peak_rss_mib is None else f"{f.peak_rss_mib:.0f} MiB"
        cpu = "?" if f.cpu_ms_each is None else f"{f.cpu_ms_each:.2f}"
        print(
            f"{f.name:9} {f.backend:8} {f.per_second:8.1f} {ratio:>6} "
            f"{f.p50_ms:8.1f} {f.p95_ms:8.1f} {f.count:6d} {f.failed:5d} "
            f"{rss:>9} {cpu:>7}  {f.note}"
        )
    for backend, reason in skipped.items():
        print(f"{backend}: skipped ({reason})")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measure; the results document."""
    # Other work on the machine skews every figure; say how busy it was.
    load = [round(value, 2) for value in os.getloadavg()]
    print(f"load average before the run: {load}", flush=True)
    with tempfile.TemporaryDirectory(prefix="castghl-bench-secantus-") as workdir:
        secantus: SecantusProcess | None = None
        skipped: dict[str, str] = {}
        if "mongodb" in args.backends and not args.mongodb_uri:
            print("starting SecantusDB for the mongodb lines ...", flush=True)
            try:
                secantus = await asyncio.to_thread(start_secantus, Path(workdir))
            except BackendUnavailable as reason:
                skipped["mongodb"] = str(reason)
            else:
                args.mongodb_uri = secantus.uri
        try:
            results = await _measure_all(args, secantus, skipped)
            results["machine"]["load_average_before"] = load
            return results
        finally:
            if secantus is not None:
                # SIGTERM, then SIGKILL if it has not gone within 10 s.
                await asyncio.to_thread(secantus.stop)


async def _measure_all(
    args: argparse.Namespace,
    secantus: SecantusProcess | None,
    skipped: dict[str, str],
) -> dict[str, Any]:
    cast = CastSandbox(status_delay=0.05)
    ghl = GhlSandbox(not_ready_for=0.0)
    await cast.start()
    await ghl.start()
    figures: list[Figure] = []
    mongodb_server, mongodb_messages = mongodb_plan(args, secantus)
    try:
        baseline = await measure_baseline(ghl, args)
        figures.append(baseline)
        for backend in args.backends:
            if backend in skipped:
                continue
            messages = mongodb_messages if backend == "mongodb" else args.messages
            print(f"measuring {backend} ...", flush=True)
            try:
                measured = [
                    await measure_accept(backend, cast, ghl, args),
                    await measure_e2e(backend, cast, ghl, args, messages=messages),
                ]
                if args.replicas > 1 and backend == "mongodb" and secantus:
                    skipped[f"mongodb e2e x{args.replicas}"] = SECANTUS_NO_REPLICAS
                elif args.replicas > 1:
                    measured.append(
                        await measure_e2e(
                            backend,
                            cast,
                            ghl,
                            args,
                            messages=messages,
                            processes=args.replicas,
                        )
                    )
            except BackendUnavailable as reason:
                skipped[backend] = str(reason)
                continue
            for figure in measured:
                figure.ratio = round(figure.per_second / baseline.per_second, 3)
                if backend == "mongodb" and secantus is not None:
                    figure.note = "; ".join(filter(None, [figure.note, "SecantusDB"]))
                figures.append(figure)
    finally:
        await ghl.stop()
        await cast.stop()

    print_table(figures, skipped)
    if "mongodb" in args.backends and "mongodb" not in skipped:
        print(f"\nmongodb: {mongodb_server}; {mongodb_messages} messages per e2e run")
        if secantus is not None:
            print(
                "SecantusDB is a single-threaded test server, far slower than a "
                "real MongoDB:\nthe mongodb figures are a lower bound, not a "
                "production estimate (--mongodb-uri to use a real one)."
            )
    return {
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "requests": args.requests,
            "messages": args.messages,
            "mongodb_messages": mongodb_messages,
            "mongodb_server": mongodb_server,
            "locations": args.locations,
            "replicas": args.replicas,
            "service_env": BENCH_ENV,
        },
        "figures": [asdict(f) for f in figures],
        "skipped": skipped,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKEND_NAMES),
        help="comma-separated store backends (default: %(default)s)",
    )
    parser.add_argument(
        "--mongodb-uri",
        default=os.environ.get(MONGODB_URI_ENV) or None,
        help="MongoDB server for the mongodb backend; each measure uses, then "
        f"drops, a database of its own (default: ${MONGODB_URI_ENV}, else a "
        "SecantusDB test server the bench starts)",
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000, help="per accept run")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--messages", type=int, default=1500, help="per e2e run")
    parser.add_argument(
        "--mongodb-messages",
        type=int,
        default=None,
        help="per e2e run on mongodb (default: --messages on a server given, "
        f"at most {SECANTUS_MESSAGES} on the bench's SecantusDB)",
    )
    parser.add_argument("--locations", type=int, default=20, help="e2e tenants")
    parser.add_argument(
        "--replicas",
        type=int,
        default=3,
        help="also run e2e on this many processes sharing the store (1: skip)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=30.0, help="bound on each measure"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.backends = [name for name in args.backends.split(",") if name]
    return args


def main() -> None:
    args = parse_args()
    results = asyncio.run(run(args))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
