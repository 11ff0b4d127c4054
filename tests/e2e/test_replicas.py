"""Several castghl processes on one store share the outbound work safely.

Each replica is a real `castghl serve` process (tests/replicas.py); GHL and
Cast are sandboxes in this process. GHL's deliveries are spread over the
replicas, some reach two replicas at once, and in the long test one replica
is killed mid-work: every message must still be sent once and reported.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs
import pytest

from castghl_app.sandbox.cast import CastSandbox, Fault
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_core.jobs import JobState

from harness import ADMIN_TOKEN, ENCRYPTION_KEY
from replicas import (
    BACKEND_NAMES,
    MONGODB_URI_ENV,
    BackendUnavailable,
    ReplicaBackend,
    ReplicaSet,
    SharedStore,
    make_backend,
    require_mongodb_adapter,
    seed_installation,
)

SENDER_ID = "CASTGHL"
LOCATIONS = {
    f"replicaLocation{i:02d}": f"cast_test_{secrets.token_hex(16)}" for i in range(10)
}
"""Locations and their Cast keys. Sends are paced per key and per process
(10 a second, ADR 0008), so traffic is spread over ten, as over any tenants."""


@pytest.fixture
async def cast() -> AsyncIterator[CastSandbox]:
    """Cast with quick delivery receipts, so a message's life is short."""
    sandbox = CastSandbox(status_delay=0.05)
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


def _mongodb_uri(request: pytest.FixtureRequest) -> str | None:
    """The server from CASTGHL_TEST_MONGODB_URI, else a `mongodb_uri` fixture."""
    if os.environ.get(MONGODB_URI_ENV):
        return os.environ[MONGODB_URI_ENV]
    try:
        return str(request.getfixturevalue("mongodb_uri"))
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(params=BACKEND_NAMES)
async def replica_backend(request, tmp_path) -> AsyncIterator[ReplicaBackend]:
    """Each store backend the replicas can share; skipped where unavailable."""
    try:
        uri = None
        if request.param == "mongodb":
            require_mongodb_adapter()
            uri = _mongodb_uri(request)
        backend = make_backend(request.param, tmp_path, uri)
    except BackendUnavailable as reason:
        pytest.skip(str(reason))
    yield backend
    await backend.discard()


@attrs.define
class Cluster:
    """Running replicas, the test's handle on their store, and every secret."""

    replicas: ReplicaSet
    store: SharedStore
    secrets: list[str]


@pytest.fixture
async def start_cluster(
    replica_backend, tmp_path, cast, ghl
) -> AsyncIterator[Callable[[int], Awaitable[Cluster]]]:
    """Start N replicas on the backend, with LOCATIONS installed and configured.

    At teardown every process is stopped and no secret may appear in any
    process's log.
    """
    clusters: list[Cluster] = []

    async def start(count: int) -> Cluster:
        replicas = ReplicaSet(
            replica_backend,
            tmp_path,
            cast_url=cast.base_url,
            ghl_url=ghl.base_url,
            ghl_public_key_pem=ghl.public_key_pem,
            admin_token=ADMIN_TOKEN,
            encryption_key=ENCRYPTION_KEY,
        )
        store = await replicas.shared_store().open()
        cluster = Cluster(
            replicas, store, [ADMIN_TOKEN, ENCRYPTION_KEY, *LOCATIONS.values()]
        )
        clusters.append(cluster)
        for location_id in LOCATIONS:
            cluster.secrets += await seed_installation(store, ghl, location_id)
        await replicas.start(count)
        for location_id, api_key in LOCATIONS.items():
            await replicas.configure_location(
                location_id, sender_id=SENDER_ID, api_key=api_key
            )
        return cluster

    try:
        yield start
    finally:
        for cluster in clusters:
            await cluster.replicas.stop_all()
            await cluster.store.close()
    for cluster in clusters:
        for replica in cluster.replicas.replicas:
            log = replica.log_text()
            leaks = [secret for secret in cluster.secrets if secret in log]
            assert leaks == [], f"a secret appeared in replica {replica.index}'s log"


# --- GHL's side of the load -------------------------------------------------------


@attrs.frozen
class Answer:
    """One delivery attempt: which replica, and what it answered (None: no answer)."""

    message_id: str
    replica: int
    status: int | None
    outcome: str | None


class Deliveries:
    """Delivers like GHL: signed, bounded in flight, retried elsewhere on failure."""

    def __init__(
        self, ghl: GhlSandbox, replicas: ReplicaSet, *, in_flight: int = 50
    ) -> None:
        self.ghl = ghl
        self.replicas = replicas
        self.answers: list[Answer] = []
        self.attempted: list[str] = []
        self._slots = asyncio.Semaphore(in_flight)
        self._answered_ok = 0
        self._milestones: list[tuple[int, asyncio.Event]] = []

    def answered(self, count: int) -> asyncio.Event:
        """An event set once `count` deliveries have been answered 200."""
        event = asyncio.Event()
        self._milestones.append((count, event))
        return event

    async def _try(self, payload: dict[str, Any], index: int) -> bool:
        message_id = payload["messageId"]
        try:
            status, body = await self.ghl.deliver(
                self.replicas[index].delivery_url, payload
            )
        except (aiohttp.ClientError, TimeoutError):
            self.answers.append(Answer(message_id, index, None, None))
            return False
        outcome = body.get("status") if isinstance(body, dict) else None
        self.answers.append(Answer(message_id, index, status, outcome))
        if status == 200:
            self._answered_ok += 1
            for count, event in self._milestones:
                if self._answered_ok >= count:
                    event.set()
        return status == 200

    async def _until_accepted(self, payload: dict[str, Any], first: int) -> None:
        """Deliver to `first`; after a failure, to the next live replica."""
        count = len(self.replicas.replicas)
        target = first
        for _ in range(2 * count):
            if await self._try(payload, target):
                return
            live = [
                (target + step) % count
                for step in range(1, count + 1)
                if self.replicas[(target + step) % count].alive
            ]
            target = live[0]
        pytest.fail(f"no replica accepted {payload['messageId']}")

    async def once(self, payload: dict[str, Any], index: int) -> None:
        """One delivery to replica `index` (retried on a survivor if it fails)."""
        async with self._slots:
            self.attempted.append(payload["messageId"])
            await self._until_accepted(payload, index)

    async def twice_at_once(self, payload: dict[str, Any], a: int, b: int) -> None:
        """The same delivery to replicas `a` and `b` at the same moment."""
        async with self._slots:
            self.attempted.append(payload["messageId"])
            results = await asyncio.gather(self._try(payload, a), self._try(payload, b))
            if not any(results):
                await self._until_accepted(payload, a)


async def _all_reported(
    ghl: GhlSandbox, store: SharedStore, message_ids: Sequence[str], timeout: float
) -> None:
    """Wait until GHL has a status for every message and no job is unfinished."""
    wanted = set(message_ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted <= {update.message_id for update in ghl.status_updates}:
            counts = await store.outbox.count_by_state()
            if counts == {JobState.REPORTED: len(wanted)}:
                return
        await asyncio.sleep(0.1)
    missing = wanted - {update.message_id for update in ghl.status_updates}
    counts = await store.outbox.count_by_state()
    pytest.fail(
        f"not all reported within {timeout} s: {len(missing)} without a status, "
        f"jobs {dict(counts)}"
    )


def _deliveries(ghl: GhlSandbox, count: int) -> list[dict[str, Any]]:
    """`count` new messages, spread over the locations in turn."""
    locations = list(LOCATIONS)
    return [
        ghl.sample_delivery(locationId=locations[i % len(locations)])
        for i in range(count)
    ]


def _sends_by_key(cast: CastSandbox) -> collections.Counter[str | None]:
    return collections.Counter(sms.idempotency_key for sms in cast.sent)


def _updates_by_message(ghl: GhlSandbox) -> dict[str, list[str]]:
    updates: dict[str, list[str]] = collections.defaultdict(list)
    for update in ghl.status_updates:
        updates[update.message_id].append(update.status)
    return updates


# --- the tests --------------------------------------------------------------------


async def test_two_replicas_share_deliveries_and_send_each_message_once(
    start_cluster, ghl, cast
):
    """100 deliveries spread over two processes: 100 SMS, 100 `delivered`."""
    cluster = await start_cluster(2)
    deliveries = Deliveries(ghl, cluster.replicas)
    payloads = _deliveries(ghl, 100)
    ids = [payload["messageId"] for payload in payloads]

    await asyncio.gather(
        *(deliveries.once(payload, i % 2) for i, payload in enumerate(payloads))
    )
    await _all_reported(ghl, cluster.store, ids, timeout=30)

    assert [a.status for a in deliveries.answers] == [200] * 100
    assert _sends_by_key(cast) == dict.fromkeys(ids, 1)
    assert _updates_by_message(ghl) == {m: ["delivered"] for m in ids}
    workers = [
        sum(e.get("event") == "outbound.sent" for e in replica.log_events())
        for replica in cluster.replicas.replicas
    ]
    assert all(sent > 0 for sent in workers), f"sends per replica: {workers}"


async def test_one_message_delivered_to_two_replicas_at_once_is_sent_once(
    start_cluster, ghl, cast
):
    """50 messages, each delivered to both processes at the same moment: 50 SMS.

    Two service instances race on one outbox: one claim wins, the other is
    answered `duplicate`, and Cast sees one send per message.
    """
    cluster = await start_cluster(2)
    deliveries = Deliveries(ghl, cluster.replicas)
    payloads = _deliveries(ghl, 50)
    ids = [payload["messageId"] for payload in payloads]

    await asyncio.gather(*(deliveries.twice_at_once(p, 0, 1) for p in payloads))
    await _all_reported(ghl, cluster.store, ids, timeout=30)

    outcomes = collections.defaultdict(list)
    for answer in deliveries.answers:
        outcomes[answer.message_id].append((answer.status, answer.outcome))
    assert all(
        sorted(answers) == [(200, "accepted"), (200, "duplicate")]
        for answers in outcomes.values()
    )
    assert len(cast.sent) == 50
    assert _sends_by_key(cast) == dict.fromkeys(ids, 1)
    assert _updates_by_message(ghl) == {m: ["delivered"] for m in ids}


async def _kill_while_busy(
    cluster: Cluster,
    cast: CastSandbox,
    deliveries: Deliveries,
    victim: int,
    within: float = 5.0,
) -> set[str]:
    """SIGKILL replica `victim` while it holds leased jobs; return those jobs.

    A few slow Cast answers are queued first, so jobs sit leased in their
    send step for a while; the kill waits (up to `within`) until the victim
    holds one, and comes right after the look that found them. Each look
    reads only the oldest messages GHL has no status for yet: jobs are
    picked up in due order, so those are the ones being worked on, and the
    look stays short even on a slow store with a long backlog.
    After the kill its leases stay in the store until they expire.
    """
    replicas, store = cluster.replicas, cluster.store
    owner = replicas[victim].dispatcher_owner
    cast.inject(Fault.timeout(0.5), times=30)
    held: set[str] = set()
    deadline = time.monotonic() + within
    while not held and time.monotonic() < deadline:
        reported = {update.message_id for update in deliveries.ghl.status_updates}
        in_work = [m for m in deliveries.attempted if m not in reported][:90]
        held = await store.jobs_leased_by(owner, in_work)
        if not held:
            await asyncio.sleep(0.01)
    replicas.kill(victim)
    await replicas.wait_exited(victim)
    # Also what it took in the instant between that look and the kill (on a
    # slow store some of these leases may already have expired: hence both).
    return held | await store.jobs_leased_by(owner, deliveries.attempted)


@pytest.mark.slow
@pytest.mark.timeout(1500)
async def test_three_replicas_lose_one_mid_run_and_still_send_everything_once(
    replica_backend, start_cluster, ghl, cast
):
    """1,000 deliveries over three processes, one SIGKILLed part-way through.

    Deliveries to the dead process fail and are retried on a survivor, as
    GHL retries; the jobs it held leased are taken over once their leases
    expire. Every message is sent once (by idempotency key) and reported
    `delivered`; a status the dead process had already given GHL just before
    dying may be given again by its successor, and only for those jobs.
    """
    # XXX: SecantusDB, the test server, scans the whole collection for each
    # sorted query and findAndModify (about 40 ms at 1,000 jobs, one at a
    # time) where MongoDB uses the state_due_at index: on it this test takes
    # about 6 minutes instead of 10 seconds. A real MongoDB
    # (CASTGHL_TEST_MONGODB_URI) runs it at full speed.
    slow_server = replica_backend.name == "mongodb" and not os.environ.get(
        MONGODB_URI_ENV
    )
    report_within = 1200 if slow_server else 120
    cluster = await start_cluster(3)
    replicas, victim = cluster.replicas, 2
    deliveries = Deliveries(ghl, replicas, in_flight=50)
    payloads = _deliveries(ghl, 1000)
    ids = [payload["messageId"] for payload in payloads]
    twice = set(range(0, 1000, 20))

    async def deliver_all() -> None:
        # The next delivery goes out only when one of 50 slots is free, so
        # the replicas are spread over in order and the kill lands mid-run.
        window = asyncio.Semaphore(50)

        async def in_window(delivery: Awaitable[None]) -> None:
            try:
                await delivery
            finally:
                window.release()

        tasks = []
        for i, payload in enumerate(payloads):
            if i in twice:
                delivery = deliveries.twice_at_once(payload, i % 3, (i + 1) % 3)
            else:
                delivery = deliveries.once(payload, i % 3)
            await window.acquire()
            tasks.append(asyncio.create_task(in_window(delivery)))
        await asyncio.gather(*tasks)

    async def kill_part_way() -> set[str]:
        await deliveries.answered(300).wait()
        return await _kill_while_busy(
            cluster, cast, deliveries, victim, within=60 if slow_server else 5
        )

    started = time.monotonic()
    _, orphaned = await asyncio.gather(deliver_all(), kill_part_way())
    await _all_reported(ghl, cluster.store, ids, timeout=report_within)
    elapsed = time.monotonic() - started

    survivors = [a for a in deliveries.answers if a.replica != victim]
    assert [a for a in survivors if a.status is None or a.status >= 500] == []
    # Deliveries that reached the victim after it died failed and were
    # delivered again to a survivor (as GHL retries); on a slow store all of
    # them may have been answered before the kill, so none need have failed.
    assert all(
        a.status in {None, 200} for a in deliveries.answers if a.replica == victim
    )
    assert orphaned, "the killed replica held no leased job when it died"
    assert _sends_by_key(cast) == dict.fromkeys(ids, 1)
    updates = _updates_by_message(ghl)
    assert set(updates) == set(ids)
    assert all(set(statuses) == {"delivered"} for statuses in updates.values())
    repeated = {m for m, statuses in updates.items() if len(statuses) > 1}
    assert repeated <= orphaned
    assert all(len(updates[m]) == 2 for m in repeated)
    assert await cluster.store.outbox.count_by_state() == {JobState.REPORTED: 1000}
    print(  # noqa: T201  (shown with -s: the run's figures)
        f"\n1000 deliveries, 3 replicas, 1 killed: {elapsed:.1f} s; "
        f"{len(orphaned)} jobs taken over, {len(repeated)} reported twice"
    )
