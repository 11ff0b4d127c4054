"""Fixtures for use-case tests: the core wired to in-memory adapters and fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemoryOutbox,
    MemorySecretStore,
)
from castghl_core.accept_outbound import AcceptOutbound
from castghl_core.backoff import Backoff
from castghl_core.dispatch_outbound import DispatchOutbound, DispatchPolicy
from castghl_core.installations import Installation, UserType
from castghl_core.locations import LocationSettings
from castghl_core.tokens import RefreshingAccessTokens

from fakes import (
    API_KEY,
    LOCATION,
    TOKEN,
    FakeClock,
    FakeGateway,
    FakeGhl,
    FakeOAuth,
    FakeVerifier,
)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def outbox():
    return MemoryOutbox()


@pytest.fixture
def gateway():
    return FakeGateway()


@pytest.fixture
def ghl():
    return FakeGhl()


@pytest.fixture
async def installations(clock, oauth):
    oauth.know(TOKEN, "refresh-1")
    store = MemoryInstallationStore()
    await store.put(
        Installation(
            owner_id=LOCATION,
            user_type=UserType.LOCATION,
            access_token=TOKEN,
            refresh_token="refresh-1",
            expires_at=clock.now() + timedelta(hours=20),
        )
    )
    return store


@pytest.fixture
async def location_settings():
    store = MemoryLocationSettingsStore()
    await store.put(LocationSettings(location_id=LOCATION, sender_id="CASTDEMO"))
    return store


@pytest.fixture
async def secrets():
    store = MemorySecretStore()
    await store.put(LOCATION, API_KEY)
    return store


@pytest.fixture
def policy():
    no_jitter = Backoff(base=1, cap=60, jitter=lambda: 1.0)
    return DispatchPolicy(
        max_parts=3,
        send_backoff=no_jitter,
        poll_backoff=no_jitter,
        report_backoff=no_jitter,
        first_poll_after=timedelta(seconds=2),
        delivery_timeout=timedelta(minutes=30),
        send_window=timedelta(hours=1),
        not_ready_window=timedelta(seconds=60),
        max_report_attempts=5,
    )


@pytest.fixture
def oauth():
    return FakeOAuth()


@pytest.fixture
def tokens(installations, oauth, clock):
    return RefreshingAccessTokens(installations, MemoryLeases(), oauth, clock)


@pytest.fixture
def accept(installations, outbox, clock):
    return AcceptOutbound(FakeVerifier(), installations, outbox, clock)


@pytest.fixture
def dispatch(outbox, location_settings, secrets, gateway, ghl, tokens, clock, policy):
    return DispatchOutbound(
        outbox=outbox,
        location_settings=location_settings,
        secrets=secrets,
        gateway=gateway,
        ghl=ghl,
        tokens=tokens,
        clock=clock,
        policy=policy,
    )
