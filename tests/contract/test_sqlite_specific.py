"""What the SQLite backend promises beyond the port contracts.

Secrets and tokens unreadable in the file, a clear error for a wrong key,
data that outlives the connection, a schema that is checked, and
transactions that a cancelled task cannot leave open.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from castghl_adapters.crypto import AesGcmCipher, PlaintextCipher, SecretDecryptionError
from castghl_adapters.sqlite import (
    SCHEMA_VERSION,
    SqliteDatabase,
    SqliteInstallationStore,
    SqliteLeases,
    SqliteLocationSettingsStore,
    SqliteOutbox,
    SqliteSchemaError,
    SqliteSecretStore,
)
from castghl_core.installations import Installation, UserType
from castghl_core.jobs import OutboundJob
from castghl_core.locations import LocationSettings

T0 = datetime(2026, 3, 1, 8, 30, 0, 123456, tzinfo=UTC)
API_KEY = "cast_live_SECRETapikeyNEVERonDISK_7731"
ACCESS = "access-TOKEN-never-on-disk-5521"
REFRESH = "refresh-TOKEN-never-on-disk-9043"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "castghl.sqlite3"


@pytest.fixture
def cipher():
    return AesGcmCipher(os.urandom(32))


@pytest.fixture
async def db(path):
    async with SqliteDatabase(path) as database:
        yield database


def file_bytes(path) -> bytes:
    """Everything SQLite keeps for the database: the file, its WAL and index."""
    return b"".join(
        candidate.read_bytes()
        for candidate in sorted(path.parent.iterdir())
        if candidate.name.startswith(path.name)
    )


def make_installation() -> Installation:
    return Installation(
        owner_id="loc-1",
        user_type=UserType.LOCATION,
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=T0,
    )


def make_job(message_id: str = "msg-1") -> OutboundJob:
    return OutboundJob(
        message_id=message_id,
        location_id="loc-1",
        phone="+639171234567",
        text="hello",
        created_at=T0,
        due_at=T0,
    )


# --- encryption at rest ---------------------------------------------------------


async def test_api_keys_are_not_readable_in_the_file(path, db, cipher):
    """The file holds the location id but not the Cast API key's text."""
    await SqliteSecretStore(db, cipher).put("loc-1", API_KEY)

    raw = file_bytes(path)

    assert b"loc-1" in raw
    assert API_KEY.encode() not in raw


async def test_tokens_are_not_readable_in_the_file(path, db, cipher):
    """The file holds the installation but neither of its tokens' text."""
    await SqliteInstallationStore(db, cipher).put(make_installation())

    raw = file_bytes(path)

    assert b"loc-1" in raw
    assert ACCESS.encode() not in raw
    assert REFRESH.encode() not in raw


async def test_without_a_key_the_api_key_is_stored_readable(path, db):
    """With the plaintext cipher the key is in the file (what the warning is for)."""
    await SqliteSecretStore(db, PlaintextCipher()).put("loc-1", API_KEY)

    assert API_KEY.encode() in file_bytes(path)


async def test_a_wrong_key_gives_a_clear_error_without_the_secret(db, cipher):
    """Reading with another key says the key does not match, and shows no secret."""
    await SqliteSecretStore(db, cipher).put("loc-1", API_KEY)
    wrong = SqliteSecretStore(db, AesGcmCipher(os.urandom(32)))

    with pytest.raises(SecretDecryptionError, match="key does not match") as caught:
        await wrong.get("loc-1")

    assert API_KEY not in str(caught.value)


async def test_a_wrong_key_cannot_read_tokens(db, cipher):
    """Installations written with one key cannot be read with another."""
    await SqliteInstallationStore(db, cipher).put(make_installation())
    wrong = SqliteInstallationStore(db, AesGcmCipher(os.urandom(32)))

    with pytest.raises(SecretDecryptionError, match="key does not match") as caught:
        await wrong.get("loc-1")

    assert ACCESS not in str(caught.value)
    assert REFRESH not in str(caught.value)


async def test_a_key_copied_onto_another_location_does_not_decrypt(path, db, cipher):
    """A ciphertext moved to another location's row is refused, not used."""
    secrets = SqliteSecretStore(db, cipher)
    await secrets.put("loc-1", API_KEY)
    await secrets.put("loc-2", "cast_live_the_other_locations_key")
    await db.close()
    with sqlite3.connect(path) as raw:
        raw.execute(
            "UPDATE secrets SET ciphertext ="
            " (SELECT ciphertext FROM secrets WHERE location_id = 'loc-1')"
            " WHERE location_id = 'loc-2'"
        )
    raw.close()

    async with SqliteDatabase(path) as reopened:
        with pytest.raises(SecretDecryptionError):
            await SqliteSecretStore(reopened, cipher).get("loc-2")


# --- durability -------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(path, cipher):
    """What one connection wrote, a later one reads after the first closed."""
    job = make_job()
    settings = LocationSettings(
        "loc-1", sender_id="CASTPH", inbound_dids=("+639170001111",)
    )
    async with SqliteDatabase(path) as db:
        await SqliteOutbox(db).claim(job)
        await SqliteLeases(db).acquire("sweep", "worker-a", T0, timedelta(minutes=5))
        await SqliteInstallationStore(db, cipher).put(make_installation())
        await SqliteLocationSettingsStore(db).put(settings)
        await SqliteSecretStore(db, cipher).put("loc-1", API_KEY)

    async with SqliteDatabase(path) as db:
        assert await SqliteOutbox(db).get("msg-1") == job
        assert not await SqliteLeases(db).acquire("sweep", "worker-b", T0, timedelta(1))
        assert (
            await SqliteInstallationStore(db, cipher).get("loc-1")
            == make_installation()
        )
        assert await SqliteLocationSettingsStore(db).get("loc-1") == settings
        assert await SqliteSecretStore(db, cipher).get("loc-1") == API_KEY


async def test_datetimes_keep_their_microseconds(db):
    """SQLite stores time to the microsecond, as Python has it."""
    job = make_job()
    await SqliteOutbox(db).claim(job)

    stored = await SqliteOutbox(db).get("msg-1")

    assert stored.created_at == T0
    assert stored.created_at.microsecond == 123456


async def test_the_file_is_in_wal_mode(path, db):
    """The database runs in WAL mode, so readers never wait for the writer."""
    with sqlite3.connect(path) as raw:
        [(mode,)] = raw.execute("PRAGMA journal_mode").fetchall()
    raw.close()

    assert mode == "wal"


# --- schema -----------------------------------------------------------------------


async def test_processes_opening_a_new_file_together_all_succeed(tmp_path):
    """Four processes creating one new file at once all open it, in WAL mode."""
    path = tmp_path / "new.sqlite3"
    databases = [SqliteDatabase(path) for _ in range(4)]

    await asyncio.gather(*(database.open() for database in databases))
    for database in databases:
        await database.close()

    with sqlite3.connect(path) as raw:
        [(mode,)] = raw.execute("PRAGMA journal_mode").fetchall()
        rows = raw.execute("SELECT version FROM schema_version").fetchall()
    raw.close()
    assert (mode, rows) == ("wal", [(SCHEMA_VERSION,)])


async def test_opening_again_keeps_the_schema_version(path, db):
    """Reopening a file creates nothing twice and keeps its version."""
    async with SqliteDatabase(path):
        pass

    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT version FROM schema_version").fetchall()
    raw.close()

    assert rows == [(SCHEMA_VERSION,)]


async def test_a_file_from_a_newer_release_is_refused(path, db):
    """A schema version above the one this code knows stops opening with a reason."""
    await db.close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()

    with pytest.raises(SqliteSchemaError, match="newer castghl"):
        await SqliteDatabase(path).open()


async def test_stores_refuse_work_before_open(path):
    """Using a store whose database is not open says to open it first."""
    with pytest.raises(RuntimeError, match="not open"):
        await SqliteOutbox(SqliteDatabase(path)).get("msg-1")


# --- transactions -----------------------------------------------------------------


async def test_a_write_cancelled_while_waiting_for_the_file_leaves_no_transaction(
    path, db
):
    """A task cancelled while another process holds the lock spoils no later write."""
    other = SqliteDatabase(path)
    await other.open()
    outbox = SqliteOutbox(db)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with other.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_write_lock())
    await holding.wait()
    waiting = asyncio.create_task(outbox.claim(make_job("cancelled")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    release.set()
    await holder
    await other.close()

    assert await outbox.claim(make_job("msg-after")) is True
    assert await outbox.get("msg-after") == make_job("msg-after")


class Abandoned(Exception):
    """Raised inside a write block to abandon it."""


async def test_a_failed_write_is_rolled_back(db):
    """When a write block raises, nothing it did is kept."""

    async def insert_then_fail() -> None:
        async with db.write() as connection:
            await connection.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES ('x', 'y', 'z')"
            )
            raise Abandoned

    with pytest.raises(Abandoned):
        await insert_then_fail()

    assert await SqliteLeases(db).acquire("x", "other", T0, timedelta(1)) is True
    assert await SqliteOutbox(db).claim(make_job()) is True


async def test_a_claim_is_committed_when_it_returns(path, db):
    """A claim is on disk once it returns: another connection sees the job."""
    assert await SqliteOutbox(db).claim(make_job("msg-durable")) is True

    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "SELECT message_id FROM outbox_jobs WHERE message_id = 'msg-durable'"
        ).fetchall()
    raw.close()

    assert rows == [("msg-durable",)]


async def test_a_claim_is_no_part_of_another_tasks_failed_write(db):
    """A claim made while another task's write is open survives its rollback."""
    outbox = SqliteOutbox(db)
    writing, go_on = asyncio.Event(), asyncio.Event()

    async def write_then_fail() -> None:
        async with db.write() as connection:
            await connection.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES ('x', 'y', 'z')"
            )
            writing.set()
            await go_on.wait()
            raise Abandoned

    failing = asyncio.create_task(write_then_fail())
    await writing.wait()
    claiming = asyncio.create_task(outbox.claim(make_job("msg-beside")))
    await asyncio.sleep(0.05)
    go_on.set()

    with pytest.raises(Abandoned):
        await failing
    assert await claiming is True
    assert await outbox.get("msg-beside") == make_job("msg-beside")
    assert await SqliteLeases(db).acquire("x", "other", T0, timedelta(1)) is True


async def test_a_claim_waits_for_another_process_holding_the_file(path, db):
    """A claim while another process writes waits for it, then succeeds."""
    other = SqliteDatabase(path)
    await other.open()
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with other.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_write_lock())
    await holding.wait()
    claiming = asyncio.create_task(SqliteOutbox(db).claim(make_job("msg-waited")))
    await asyncio.sleep(0.1)
    release.set()
    await holder
    await other.close()

    assert await claiming is True
    assert await SqliteOutbox(db).get("msg-waited") == make_job("msg-waited")
