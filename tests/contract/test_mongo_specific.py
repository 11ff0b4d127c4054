"""What the MongoDB backend promises beyond the port contracts.

The layout set up idempotently at open, tokens and keys unreadable in the
stored documents, times stored as dates, a checked schema version, clear
errors, and pick-up that keeps what it leased when the server fails midway.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import AutoReconnect

from castghl_adapters.crypto import AesGcmCipher
from castghl_adapters.mongo import (
    COLLECTIONS,
    MongoConfigurationError,
    MongoDatabase,
    MongoInstallationStore,
    MongoOutbox,
    MongoSchemaError,
    MongoSecretStore,
    MongoUnavailable,
)
from castghl_core.installations import Installation, UserType
from castghl_core.jobs import OutboundJob

T0 = datetime(2026, 3, 1, 8, 30, 0, 123000, tzinfo=UTC)
API_KEY = "cast_live_SECRETapikeyNEVERinMONGO_7731"
ACCESS = "access-TOKEN-never-in-mongo-5521"
REFRESH = "refresh-TOKEN-never-in-mongo-9043"


@pytest.fixture
def uri(mongo_server):
    return mongo_server.uri


@pytest.fixture
def raw(mongo_server, mongo_database_name):
    """The test's database as an operator sees it (a plain PyMongo handle)."""
    return mongo_server.client[mongo_database_name]


@pytest.fixture
async def db(uri, mongo_database_name):
    async with MongoDatabase(uri, database=mongo_database_name) as database:
        yield database


@pytest.fixture
def cipher():
    return AesGcmCipher(os.urandom(32))


def make_job(message_id: str = "msg-1") -> OutboundJob:
    return OutboundJob(
        message_id=message_id,
        location_id="loc-1",
        phone="+639171234567",
        text="hello",
        created_at=T0,
        due_at=T0,
    )


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- layout -------------------------------------------------------------------


async def test_open_creates_every_collection_and_the_pickup_index(db, raw):
    """After open the database has the six collections and the pick-up index."""
    assert set(COLLECTIONS) <= set(raw.list_collection_names())

    index = raw.outbox_jobs.index_information()["state_due_at"]
    assert index["key"] == [("state", 1), ("due_at", 1), ("_id", 1)]
    assert raw.meta.find_one({"_id": "schema"}) == {"_id": "schema", "version": 1}


async def test_opening_again_changes_nothing_and_keeps_the_data(
    db, raw, uri, mongo_database_name
):
    """A second process opening the same database finds it as it was."""
    await MongoOutbox(db).claim(make_job())
    indexes_before = raw.outbox_jobs.index_information()

    async with MongoDatabase(uri, database=mongo_database_name) as second:
        assert await MongoOutbox(second).get("msg-1") == make_job()

    assert raw.outbox_jobs.index_information() == indexes_before
    assert raw.outbox_jobs.count_documents({}) == 1
    assert raw.meta.count_documents({}) == 1


async def test_documents_are_keyed_by_the_natural_id(db, raw):
    """A job's document has the messageId as _id and no second copy of it."""
    await MongoOutbox(db).claim(make_job("msg-42"))

    document = raw.outbox_jobs.find_one()

    assert document["_id"] == "msg-42"
    assert "message_id" not in document
    assert document["state"] == "accepted"


async def test_times_are_stored_as_dates(db, raw):
    """due_at is a BSON date in UTC, so operators can query it as a time."""
    await MongoOutbox(db).claim(make_job())

    document = raw.outbox_jobs.find_one({"_id": "msg-1"})

    assert isinstance(document["due_at"], datetime)
    assert document["due_at"].replace(tzinfo=UTC) == T0


# --- secrets at rest ------------------------------------------------------------


async def test_tokens_are_sealed_and_only_a_digest_of_the_refresh_token_is_plain(
    db, raw, cipher
):
    """The stored installation holds ciphertexts and the refresh token's SHA-256."""
    await MongoInstallationStore(db, cipher).put(
        Installation(
            owner_id="loc-1",
            user_type=UserType.LOCATION,
            access_token=ACCESS,
            refresh_token=REFRESH,
            expires_at=T0,
        )
    )

    document = raw.installations.find_one({"_id": "loc-1"})

    assert ACCESS not in str(document)
    assert REFRESH not in str(document)
    assert document["access_token"].startswith("v1:")
    assert document["refresh_token"].startswith("v1:")
    assert (
        document["refresh_token_sha256"] == hashlib.sha256(REFRESH.encode()).hexdigest()
    )


async def test_api_keys_are_sealed(db, raw, cipher):
    """A Cast API key is stored as ciphertext bound to its location."""
    await MongoSecretStore(db, cipher).put("loc-1", API_KEY)

    document = raw.secrets.find_one({"_id": "loc-1"})

    assert API_KEY not in str(document)
    assert cipher.decrypt(document["ciphertext"], associated_data="loc-1") == API_KEY


# --- schema and errors ------------------------------------------------------------


async def test_a_database_from_a_newer_castghl_is_refused(
    raw, uri, mongo_database_name
):
    """A schema version above this release's stops open with a clear error."""
    raw.meta.insert_one({"_id": "schema", "version": 99})

    with pytest.raises(MongoSchemaError, match="schema version 99"):
        await MongoDatabase(uri, database=mongo_database_name).open()


async def test_an_index_in_the_way_is_reported(raw, uri, mongo_database_name):
    """An index named like castghl's but on other keys stops open clearly."""
    raw.outbox_jobs.create_index([("state", 1)], name="state_due_at")

    with pytest.raises(MongoSchemaError, match="outbox_jobs"):
        await MongoDatabase(uri, database=mongo_database_name).open()


async def test_an_unreachable_server_fails_open_within_the_timeout():
    """Nobody listening: open fails after the selection timeout, naming the
    server by its redacted URI."""
    uri = f"mongodb://castghl:pw-NEVER-shown@127.0.0.1:{closed_port()}/"
    database = MongoDatabase(
        uri,
        server_selection_timeout=timedelta(seconds=0.3),
        connect_timeout=timedelta(seconds=0.3),
    )
    started = time.monotonic()

    with pytest.raises(MongoUnavailable) as caught:
        await database.open()

    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "cannot be reached" in message
    assert "mongodb://castghl:***@127.0.0.1:" in message
    assert "pw-NEVER-shown" not in message
    assert "Topology Description" not in message


async def test_an_option_value_the_driver_would_ignore_stops_open():
    """`tls=perhaps` is refused rather than ignored (which would mean no TLS)."""
    uri = "mongodb://castghl:pw-NEVER-shown@127.0.0.1:1/?tls=perhaps"

    with pytest.raises(MongoConfigurationError) as caught:
        await MongoDatabase(uri).open()

    assert "The value of tls must be 'true' or 'false'" in str(caught.value)
    assert "pw-NEVER-shown" not in str(caught.value)


async def test_a_missing_tls_file_is_a_configuration_error(tmp_path):
    """A tlsCAFile that cannot be read is named as the URI's problem."""
    missing = tmp_path / "no-such-ca.pem"
    uri = f"mongodb://castghl:pw-NEVER-shown@127.0.0.1:1/?tls=true&tlsCAFile={missing}"

    with pytest.raises(MongoConfigurationError, match="tlscafile file is not readable"):
        await MongoDatabase(uri).open()


async def test_a_store_used_before_open_says_so(uri):
    """Using a store on an unopened database is a programming error, named."""
    with pytest.raises(RuntimeError, match="not open"):
        await MongoOutbox(MongoDatabase(uri)).get("msg-1")


def test_repr_shows_the_redacted_uri_only():
    """The database's repr names the server without the password."""
    database = MongoDatabase("mongodb://castghl:pw-NEVER-shown@db1/", database="x")

    assert repr(database) == "MongoDatabase('mongodb://castghl:***@db1/', database='x')"


# --- pick-up under failure ----------------------------------------------------------


class FlakyJobs:
    """The outbox collection, failing find_one_and_update after `fail_after`."""

    def __init__(self, collection, fail_after: int) -> None:
        self._collection = collection
        self._left = fail_after

    def __getattr__(self, name):
        return getattr(self._collection, name)

    async def find_one_and_update(self, *args, **kwargs):
        if self._left == 0:
            raise AutoReconnect("connection closed by the test")
        self._left -= 1
        return await self._collection.find_one_and_update(*args, **kwargs)


async def test_lease_due_returns_what_it_leased_when_the_server_fails_midway(
    db, monkeypatch
):
    """Jobs leased before an outage are handed out, not left idle until expiry."""
    outbox = MongoOutbox(db)
    for n in range(4):
        await outbox.claim(make_job(f"msg-{n}"))
    jobs = db.collection("outbox_jobs")
    monkeypatch.setattr(db, "collection", lambda _: FlakyJobs(jobs, fail_after=2))

    leased = await outbox.lease_due("worker-a", T0, timedelta(seconds=60), 4)

    assert [job.message_id for job in leased] == ["msg-0", "msg-1"]


async def test_lease_due_raises_when_the_server_fails_before_any_lease(db, monkeypatch):
    """An outage before the first lease is an error, named MongoUnavailable."""
    outbox = MongoOutbox(db)
    await outbox.claim(make_job())
    jobs = db.collection("outbox_jobs")
    monkeypatch.setattr(db, "collection", lambda _: FlakyJobs(jobs, fail_after=0))

    with pytest.raises(MongoUnavailable, match="connection closed by the test"):
        await outbox.lease_due("worker-a", T0, timedelta(seconds=60), 4)
