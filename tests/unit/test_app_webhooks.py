"""App webhooks: only signed, recent, new events for castghl's app count."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemorySecretStore,
)
from castghl_core.app_webhooks import AppWebhookOutcome, ReceiveAppWebhook
from castghl_core.errors import (
    ForeignApp,
    GhlUnavailable,
    InvalidPayload,
    SignatureRejected,
    StaleWebhook,
)
from castghl_core.install import InstallApp, UninstallApp
from castghl_core.installations import InstallationState, UserType
from castghl_core.tokens import RefreshingAccessTokens

from fakes import FakeClock, FakeOAuth, FakeVerifier

APP_ID = "6578278e879ad2646715ba9c"
COMPANY = "COMPANY1"
SIGNED = {"X-Test-Signature": "good"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def oauth():
    return FakeOAuth()


@pytest.fixture
def store():
    return MemoryInstallationStore()


@pytest.fixture
async def receive(store, oauth, clock):
    leases = MemoryLeases()
    tokens = RefreshingAccessTokens(store, leases, oauth, clock)
    install = InstallApp(oauth, store, tokens, clock)
    uninstall = UninstallApp(
        store, MemoryLocationSettingsStore(), MemorySecretStore(), clock
    )
    company = oauth.grant(UserType.COMPANY, None, COMPANY)
    await store.put(company.installation(clock.now()))
    return ReceiveAppWebhook(FakeVerifier(), leases, install, uninstall, clock, APP_ID)


def event(clock, event_type="INSTALL", **changes):
    body = {
        "type": event_type,
        "appId": APP_ID,
        "locationId": "LocD",
        "companyId": COMPANY,
        "timestamp": clock.now().isoformat().replace("+00:00", "Z"),
        "webhookId": "wh-1",
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


async def test_an_install_under_a_stored_company_is_minted(receive, store, clock):
    """INSTALL for a new location of the company stores its token."""
    result = await receive(event(clock), SIGNED)

    assert result.outcome is AppWebhookOutcome.HANDLED
    assert (await store.get("LocD")).company_id == COMPANY


async def test_a_replayed_webhook_changes_nothing(receive, store, oauth, clock):
    """The same webhookId again is a duplicate: nothing is minted twice."""
    await receive(event(clock), SIGNED)
    await store.delete("LocD")

    result = await receive(event(clock), SIGNED)

    assert result.outcome is AppWebhookOutcome.DUPLICATE
    assert len(oauth.mints) == 1
    assert await store.get("LocD") is None


async def test_a_forged_webhook_changes_nothing(receive, store, oauth, clock):
    """A bad signature is refused before the body is read."""
    with pytest.raises(SignatureRejected):
        await receive(event(clock), {"X-Test-Signature": "forged"})

    assert oauth.mints == []


async def test_a_webhook_for_another_app_is_refused(receive, oauth, clock):
    """appId must be castghl's own."""
    with pytest.raises(ForeignApp):
        await receive(event(clock, appId="someone-else"), SIGNED)

    assert oauth.mints == []


@pytest.mark.parametrize("offset", [-301, 301])
async def test_a_webhook_outside_the_window_is_stale(receive, oauth, clock, offset):
    """Stamped more than five minutes before or after now: refused."""
    stamp = (clock.now() + timedelta(seconds=offset)).isoformat()

    with pytest.raises(StaleWebhook):
        await receive(event(clock, timestamp=stamp), SIGNED)

    assert oauth.mints == []


@pytest.mark.parametrize("stamp", [None, "yesterday", True])
async def test_a_webhook_without_a_usable_timestamp_is_refused(receive, clock, stamp):
    """No timestamp, or an unreadable one, cannot prove the event is recent."""
    with pytest.raises(StaleWebhook):
        await receive(event(clock, timestamp=stamp), SIGNED)


async def test_an_epoch_milliseconds_timestamp_is_understood(receive, clock):
    """A numeric timestamp in milliseconds is read as such."""
    stamp = int(clock.now().timestamp() * 1000)

    result = await receive(event(clock, timestamp=stamp), SIGNED)

    assert result.outcome is AppWebhookOutcome.HANDLED


async def test_a_webhook_without_an_id_is_refused(receive, clock):
    """Without webhookId a replay could not be told apart."""
    with pytest.raises(InvalidPayload):
        await receive(event(clock, webhookId=None), SIGNED)


async def test_other_event_types_are_ignored(receive, oauth, clock):
    """Events castghl does not act on are acknowledged and ignored."""
    result = await receive(event(clock, "LocationUpdate"), SIGNED)

    assert result.outcome is AppWebhookOutcome.IGNORED
    assert oauth.mints == []


async def test_an_uninstall_uninstalls_the_location(receive, store, clock):
    """UNINSTALL for a connected location marks it uninstalled."""
    await receive(event(clock), SIGNED)

    await receive(event(clock, "UNINSTALL", webhookId="wh-2"), SIGNED)

    assert (await store.get("LocD")).state is InstallationState.UNINSTALLED


async def test_a_failed_action_can_be_retried_with_the_same_id(
    receive, store, oauth, clock
):
    """GHL retries a webhook we could not act on: the retry is not a duplicate."""
    oauth.mint_errors["LocD"] = GhlUnavailable("GHL answered 503")
    with pytest.raises(GhlUnavailable):
        await receive(event(clock), SIGNED)
    del oauth.mint_errors["LocD"]

    result = await receive(event(clock), SIGNED)

    assert result.outcome is AppWebhookOutcome.HANDLED
    assert (await store.get("LocD")).is_active


async def test_a_late_uninstall_retry_keeps_a_reinstall(receive, store, oauth, clock):
    """An UNINSTALL stamped before the reinstall it arrives after is ignored."""
    stamped = clock.now()
    clock.advance(30)
    reinstall = oauth.grant(UserType.LOCATION, "LocD", COMPANY)
    await store.put(reinstall.installation(clock.now()))
    clock.advance(30)

    result = await receive(
        event(clock, "UNINSTALL", timestamp=stamped.isoformat()), SIGNED
    )

    assert result.outcome is AppWebhookOutcome.HANDLED
    stored = await store.get("LocD")
    assert stored.state is InstallationState.ACTIVE
    assert stored.access_token == reinstall.access_token
    assert stored.uninstalled_at is None


async def test_an_uninstall_stamped_after_the_install_uninstalls(
    receive, store, oauth, clock
):
    """The timestamp check keeps a timely UNINSTALL working."""
    await store.put(
        oauth.grant(UserType.LOCATION, "LocD", COMPANY).installation(clock.now())
    )
    clock.advance(30)

    await receive(event(clock, "UNINSTALL"), SIGNED)

    assert (await store.get("LocD")).state is InstallationState.UNINSTALLED


async def test_a_late_install_retry_does_not_undo_an_uninstall(
    receive, store, oauth, clock
):
    """An INSTALL stamped before a later UNINSTALL mints nothing."""
    stamped = clock.now()
    await receive(event(clock), SIGNED)
    clock.advance(30)
    await receive(event(clock, "UNINSTALL", webhookId="wh-2"), SIGNED)
    clock.advance(30)

    await receive(event(clock, timestamp=stamped.isoformat(), webhookId="wh-3"), SIGNED)

    assert len(oauth.mints) == 1
    assert (await store.get("LocD")).state is InstallationState.UNINSTALLED
