"""Tokens over time: refreshed once under load and across processes, ahead of
expiry without traffic, marked needs_reauth when revoked, and waiting out a
paused location."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest
from dependency_injector import providers

from castghl_adapters.cast import CastHttpGateway
from castghl_adapters.ghl import GhlCredentials, GhlHttpClient
from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemorySecretStore,
)
from castghl_app.workers.keeper import InstallationKeeper
from castghl_core.install import UninstallApp
from castghl_core.installations import InstallationState, UserType
from castghl_core.jobs import JobState
from castghl_core.oauth import TokenGrant
from castghl_core.tokens import RefreshingAccessTokens, TokenPolicy

from fakes import FakeClock
from harness import API_KEY, LOCATION, eventually, expire_token, install_location


def unpaced_cast(container):
    """Cast's client without its 10-a-second pacing, so 100 sends are quick."""
    container.gateway.override(
        providers.Singleton(
            CastHttpGateway,
            container.http_session,
            container.settings.provided.cast_base_url,
            timeout=container.settings.provided.http_timeout_seconds,
            per_key_rate=1000.0,
        )
    )


async def configure(service, location_id=LOCATION):
    status, _ = await service.admin(
        "PUT",
        f"/locations/{location_id}",
        json={"sender_id": "CASTGHL", "cast_api_key": API_KEY},
    )
    assert status == 200


async def test_a_hundred_deliveries_on_an_expired_token_refresh_once(
    make_service, ghl, cast
):
    """100 messages at once for a location whose token expired: one refresh at
    GHL, and every message sent and reported."""
    service = await make_service(unpaced_cast, CASTGHL_DISPATCH_CONCURRENCY="32")
    await install_location(service, ghl, LOCATION)
    await configure(service)
    await expire_token(service, ghl, LOCATION)

    samples = [ghl.sample_delivery() for _ in range(100)]
    answers = await asyncio.gather(
        *(ghl.deliver(service.delivery_url, sample) for sample in samples)
    )
    assert {status for status, _ in answers} == {200}

    await eventually(
        lambda: all(ghl.statuses_for(s["messageId"]) for s in samples), timeout=30
    )
    assert ghl.oauth.refresh_count[LOCATION] == 1
    assert ghl.oauth.reused_refresh_tokens == 0
    assert len(cast.sent) == 100
    assert {ghl.statuses_for(s["messageId"])[0].status for s in samples} == {
        "delivered"
    }
    await service.jobs_settle_at({JobState.REPORTED: 100})


async def test_two_services_on_one_file_refresh_an_expired_token_once(
    make_service, ghl
):
    """Two processes' worth of castghl race on one token: one refresh, and the
    stored refresh token is still good afterwards."""
    first = await make_service()
    second = await make_service()  # the same SQLite file, its own connection
    await install_location(first, ghl, LOCATION)
    await expire_token(first, ghl, LOCATION)

    answers = await asyncio.gather(
        *(
            (first if n % 2 else second).services.tokens.for_location(LOCATION)
            for n in range(40)
        )
    )

    stored = await second.services.installations.get(LOCATION)
    assert ghl.oauth.refresh_count[LOCATION] == 1
    assert ghl.oauth.reused_refresh_tokens == 0
    assert set(answers) == {stored.access_token}
    assert ghl.oauth.live(stored.access_token) is not None
    assert ghl.oauth.refresh_token_is_live(stored.refresh_token)

    # Neither is left holding a dead refresh token: each refreshes again.
    for service in (second, first):
        await expire_token(service, ghl, LOCATION)
        await service.services.tokens.for_location(LOCATION)
    assert ghl.oauth.refresh_count[LOCATION] == 3
    assert ghl.oauth.reused_refresh_tokens == 0


async def test_a_401_from_ghl_refreshes_once_and_the_report_goes_through(
    service, ghl, cast
):
    """GHL refuses a token castghl thought good: one refresh, one retry."""
    ghl.oauth.expire_access_tokens(LOCATION)
    sample = ghl.sample_delivery()

    await ghl.deliver(service.delivery_url, sample)

    [update] = await eventually(lambda: ghl.statuses_for(sample["messageId"]))
    assert update.status == "delivered"
    assert ghl.oauth.refresh_count[LOCATION] == 1


async def test_the_keeper_refreshes_ahead_of_expiry_without_traffic(
    make_service, ghl, cast
):
    """With no message at all, a token is replaced before it expires."""
    ghl.oauth.token_lifetime = 4
    service = await make_service(
        CASTGHL_TOKEN_REFRESH_LEAD_SECONDS="3",
        CASTGHL_TOKEN_REFRESH_MARGIN_SECONDS="0",
        CASTGHL_TOKEN_REFRESH_SCAN_SECONDS="0.05",
    )
    await install_location(service, ghl, LOCATION)
    first = await service.services.installations.get(LOCATION)

    await eventually(lambda: ghl.oauth.refresh_count[LOCATION] >= 1, timeout=5)

    [refresh] = [c for c in ghl.oauth.calls if c.outcome == "refreshed"][:1]
    assert refresh.at < first.expires_at
    assert not ghl.oauth.refresh_token_is_live(first.refresh_token)
    assert ghl.oauth.reused_refresh_tokens == 0
    assert cast.requests == []
    assert ghl.status_updates == []


async def test_a_thousand_proactive_refresh_cycles_never_reuse_a_refresh_token(
    ghl,
):
    """The keeper, the provider and the real HTTP client against the sandbox,
    on a simulated clock: 1,000 refreshes, each with a new refresh token."""
    clock = FakeClock()
    store, leases = MemoryInstallationStore(), MemoryLeases()
    lead = timedelta(hours=1)
    async with aiohttp.ClientSession() as session:
        client = GhlHttpClient(
            session,
            ghl.base_url,
            credentials=GhlCredentials(ghl.client_id, ghl.client_secret),
        )
        tokens = RefreshingAccessTokens(store, leases, client, clock, TokenPolicy())
        keeper = InstallationKeeper(
            store,
            tokens,
            UninstallApp(
                store, MemoryLocationSettingsStore(), MemorySecretStore(), clock
            ),
            clock,
            lead=lead,
        )
        issued = ghl.issue_location_token(LOCATION)
        grant = TokenGrant(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_in=86399,
            user_type=UserType.LOCATION,
            location_id=LOCATION,
        )
        await store.put(grant.installation(clock.now()))

        for cycle in range(1000):
            before = await store.get(LOCATION)
            clock.advance(86399 - lead.total_seconds() * 0.75 + 1)
            assert await keeper.scan_once() == 1, f"cycle {cycle}"
            after = await store.get(LOCATION)
            assert after.refresh_token != before.refresh_token
            assert after.expires_at > before.expires_at

    used = [c for c in ghl.oauth.calls if c.grant_type == "refresh_token"]
    assert len(used) == ghl.oauth.refresh_count[LOCATION] == 1000
    assert {c.outcome for c in used} == {"refreshed"}
    assert ghl.oauth.reused_refresh_tokens == 0
    assert ghl.oauth.refresh_token_is_live((await store.get(LOCATION)).refresh_token)


async def test_a_revoked_location_needs_reauth_and_its_jobs_end_with_that_reason(
    service, ghl, cast
):
    """Invalid grant with nobody else refreshing: needs_reauth everywhere."""
    await expire_token(service, ghl, LOCATION)
    ghl.oauth.revoke(LOCATION)
    sample = ghl.sample_delivery()

    await ghl.deliver(service.delivery_url, sample)

    job = await eventually(lambda: _final_job(service, sample["messageId"]), timeout=10)
    assert job.state is JobState.DEAD
    assert "re-authorisation" in job.last_error
    _, view = await service.admin("GET", f"/locations/{LOCATION}")
    assert view["needs_reauth"] is True
    assert view["installation"]["state"] == "needs_reauth"
    assert "Invalid grant" in view["installation"]["reason"]
    assert view["ready_to_send"] is False
    _, ready = await service.request("GET", "/readyz")
    assert ready["needs_reauth"] == 1  # a count: readiness is public
    assert ghl.oauth.reused_refresh_tokens == 0

    status, answer = await ghl.deliver(service.delivery_url, ghl.sample_delivery())
    assert status == 404
    assert "needs_reauth" in answer["message"]


async def _final_job(service, message_id):
    job = await service.services.outbox.get(message_id)
    return job if job is not None and job.state.is_final else None


@pytest.fixture
async def paused_service(make_service, ghl, cast):
    service = await make_service(CASTGHL_TOKEN_INACTIVE_RETRY_SECONDS="0.2")
    await install_location(service, ghl, LOCATION)
    await configure(service)
    return service


async def test_an_inactive_location_recovers_by_itself(paused_service, ghl, cast):
    """ "Location is not active": the token is kept, the report waits, and
    once GHL reactivates the location the message is reported."""
    service = paused_service
    kept = (await service.services.installations.get(LOCATION)).refresh_token
    await expire_token(service, ghl, LOCATION)
    ghl.oauth.set_active(LOCATION, active=False)
    sample = ghl.sample_delivery()
    await ghl.deliver(service.delivery_url, sample)

    await eventually(
        lambda: any(c.outcome == "inactive" for c in ghl.oauth.calls), timeout=10
    )
    paused = await service.services.installations.get(LOCATION)
    assert paused.state is InstallationState.ACTIVE
    assert paused.refresh_token == kept
    assert "not active" in paused.state_reason
    assert ghl.statuses_for(sample["messageId"]) == []

    ghl.oauth.set_active(LOCATION, active=True)

    [update] = await eventually(
        lambda: ghl.statuses_for(sample["messageId"]), timeout=15
    )
    assert update.status == "delivered"
    recovered = await service.services.installations.get(LOCATION)
    assert recovered.state_reason is None
    assert recovered.refresh_failures == 0
    assert ghl.oauth.refresh_count[LOCATION] == 1
