"""The composition root: every adapter chosen by setting and wired here.

Switching a backend is a settings change only. Tests swap pieces with
`container.<provider>.override(...)` instead of patching.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from dependency_injector import containers, providers

from castghl_adapters.cast import CastHttpGateway
from castghl_adapters.crypto import AesGcmCipher, PlaintextCipher, load_key
from castghl_adapters.ghl import GhlCredentials, GhlHttpClient, GhlSignatureVerifier
from castghl_adapters.ghl.signatures import (
    GHL_RSA_SHA256,
    default_ghl_ed25519_key,
    load_ed25519_public_key,
    load_pinned_rsa_key,
    load_rsa_public_key,
    split_pems,
)
from castghl_adapters.memory import (
    MemoryInstallationStore,
    MemoryLeases,
    MemoryLocationSettingsStore,
    MemoryOutbox,
    MemorySecretStore,
)
from castghl_adapters.sqlite import (
    SqliteDatabase,
    SqliteInstallationStore,
    SqliteLeases,
    SqliteLocationSettingsStore,
    SqliteOutbox,
    SqliteSecretStore,
)
from castghl_adapters.system import SystemClock
from castghl_app.backlog import BacklogGuard
from castghl_app.oauth_setup import make_oauth_setup
from castghl_app.services import Services
from castghl_app.settings import Settings, SettingsError
from castghl_app.workers.dispatcher import Dispatcher
from castghl_app.workers.keeper import InstallationKeeper
from castghl_core.accept_outbound import AcceptOutbound
from castghl_core.app_webhooks import ReceiveAppWebhook
from castghl_core.backoff import Backoff
from castghl_core.dispatch_outbound import DispatchOutbound, DispatchPolicy
from castghl_core.install import InstallApp, UninstallApp
from castghl_core.oauth import app_id_of
from castghl_core.tokens import RefreshingAccessTokens, TokenPolicy

if TYPE_CHECKING:
    from castghl_adapters.mongo import MongoDatabase

logger = logging.getLogger(__name__)


async def open_http_session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """One pooled client session for every call to Cast and GHL."""
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.http_timeout_seconds),
        connector=aiohttp.TCPConnector(limit=100, limit_per_host=50),
    )
    try:
        yield session
    finally:
        await session.close()


async def open_sqlite(settings: Settings) -> AsyncIterator[SqliteDatabase]:
    """The embedded store's single file, opened for the process's lifetime."""
    database = SqliteDatabase(settings.sqlite_path)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def _mongo_adapters() -> Any:
    """castghl_adapters.mongo, imported only when chosen: pymongo is an extra."""
    try:
        return importlib.import_module("castghl_adapters.mongo")
    except ImportError as error:
        problem = (
            "CASTGHL_STATE_STORE=mongodb needs PyMongo: install castghl with "
            f"the mongodb extra, 'castghl[mongodb]' ({error})"
        )
        raise SettingsError([problem]) from error


def _mongo(name: str) -> Callable[..., Any]:
    """A builder of the MongoDB adapter class `name`, imported when first built."""

    def build(*args: Any) -> Any:
        return getattr(_mongo_adapters(), name)(*args)

    return build


async def open_mongo(settings: Settings) -> AsyncIterator[MongoDatabase]:
    """The process's one MongoDB client, opened (and checked) at start-up."""
    timeout = timedelta(seconds=settings.mongodb_timeout_seconds)
    database: MongoDatabase = _mongo_adapters().MongoDatabase(
        settings.mongodb_uri,
        database=settings.mongodb_database,
        pool_size=settings.mongodb_pool_size,
        server_selection_timeout=timeout,
        connect_timeout=timeout,
        socket_timeout=timeout,
    )
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def make_cipher(settings: Settings) -> AesGcmCipher | PlaintextCipher:
    """AES-GCM at rest when a key is configured; plain text with a warning."""
    if settings.encryption_key:
        return AesGcmCipher(load_key(settings.encryption_key))
    logger.warning(
        "secrets.unencrypted",
        extra={"hint": "set CASTGHL_ENCRYPTION_KEY to encrypt keys and tokens"},
    )
    return PlaintextCipher()


def make_verifier(settings: Settings) -> GhlSignatureVerifier:
    """GHL's published Ed25519 key unless others are configured."""
    pems = split_pems(settings.ghl_webhook_public_keys)
    ed25519 = [load_ed25519_public_key(pem) for pem in pems] or [
        default_ghl_ed25519_key()
    ]
    rsa = []
    if settings.ghl_legacy_rsa_public_key.strip():
        pem = settings.ghl_legacy_rsa_public_key
        rsa = [
            load_rsa_public_key(pem)
            if settings.ghl_legacy_rsa_unpinned
            else load_pinned_rsa_key(pem, GHL_RSA_SHA256)
        ]
    return GhlSignatureVerifier(ed25519, rsa, accept_legacy_rsa=bool(rsa))


def make_policy(settings: Settings) -> DispatchPolicy:
    """The outbound flow's bounds, from settings."""
    return DispatchPolicy(
        max_parts=settings.max_sms_parts,
        lease_for=timedelta(seconds=settings.lease_seconds),
        first_poll_after=timedelta(seconds=settings.first_poll_seconds),
        poll_backoff=Backoff(base=settings.first_poll_seconds, cap=300),
        delivery_timeout=timedelta(seconds=settings.delivery_timeout_seconds),
        not_ready_window=timedelta(seconds=settings.report_not_ready_seconds),
    )


def make_credentials(settings: Settings) -> GhlCredentials | None:
    """The app's OAuth client, when installs are configured."""
    if not settings.oauth_enabled:
        return None
    return GhlCredentials(settings.ghl_client_id, settings.ghl_client_secret)


def make_token_policy(settings: Settings) -> TokenPolicy:
    """When tokens are refreshed, from settings."""
    return TokenPolicy(
        margin=timedelta(seconds=settings.token_refresh_margin_seconds),
        # Longer than any refresh can take: a refresh, a company refresh and
        # a mint, each bounded by the HTTP timeout.
        lease_for=timedelta(seconds=max(60.0, 4 * settings.http_timeout_seconds)),
        peer_wait=timedelta(seconds=2 * settings.http_timeout_seconds),
        inactive_backoff=Backoff(
            base=settings.token_inactive_retry_seconds,
            cap=max(3600.0, settings.token_inactive_retry_seconds),
        ),
    )


def _installs(settings: Settings) -> str:
    return "on" if settings.oauth_enabled else "off"


def _state_store(settings: Settings) -> str:
    return settings.state_store.value


def _secret_store(settings: Settings) -> str:
    return settings.secret_store.value


class Container(containers.DeclarativeContainer):
    """Every provider of the service; `services` is what entry points use."""

    settings = providers.Dependency(instance_of=Settings)
    clock = providers.Singleton(SystemClock)
    http_session = providers.Resource(open_http_session, settings)
    sqlite = providers.Resource(open_sqlite, settings)
    mongo = providers.Resource(open_mongo, settings)
    cipher = providers.Singleton(make_cipher, settings)

    state_store = providers.Callable(_state_store, settings)
    outbox = providers.Selector(
        state_store,
        memory=providers.Singleton(MemoryOutbox),
        sqlite=providers.Singleton(SqliteOutbox, sqlite),
        mongodb=providers.Singleton(_mongo("MongoOutbox"), mongo),
    )
    leases = providers.Selector(
        state_store,
        memory=providers.Singleton(MemoryLeases),
        sqlite=providers.Singleton(SqliteLeases, sqlite),
        mongodb=providers.Singleton(_mongo("MongoLeases"), mongo),
    )
    installations = providers.Selector(
        state_store,
        memory=providers.Singleton(MemoryInstallationStore),
        sqlite=providers.Singleton(SqliteInstallationStore, sqlite, cipher),
        mongodb=providers.Singleton(_mongo("MongoInstallationStore"), mongo, cipher),
    )
    location_settings = providers.Selector(
        state_store,
        memory=providers.Singleton(MemoryLocationSettingsStore),
        sqlite=providers.Singleton(SqliteLocationSettingsStore, sqlite),
        mongodb=providers.Singleton(_mongo("MongoLocationSettingsStore"), mongo),
    )
    state_secrets = providers.Selector(
        state_store,
        memory=providers.Singleton(MemorySecretStore),
        sqlite=providers.Singleton(SqliteSecretStore, sqlite, cipher),
        mongodb=providers.Singleton(_mongo("MongoSecretStore"), mongo, cipher),
    )
    secrets = providers.Selector(
        providers.Callable(_secret_store, settings),
        state=state_secrets,
    )

    gateway = providers.Singleton(
        CastHttpGateway,
        http_session,
        settings.provided.cast_base_url,
        timeout=settings.provided.http_timeout_seconds,
    )
    ghl = providers.Singleton(
        GhlHttpClient,
        http_session,
        settings.provided.ghl_base_url,
        timeout=settings.provided.http_timeout_seconds,
        credentials=providers.Callable(make_credentials, settings),
    )
    verifier = providers.Singleton(make_verifier, settings)
    tokens = providers.Singleton(
        RefreshingAccessTokens,
        installations,
        leases,
        ghl,
        clock,
        providers.Callable(make_token_policy, settings),
    )
    policy = providers.Singleton(make_policy, settings)

    backlog = providers.Singleton(BacklogGuard, outbox, settings.provided.max_backlog)
    accept_outbound = providers.Singleton(
        AcceptOutbound, verifier, installations, outbox, clock, admission=backlog
    )
    dispatch_outbound = providers.Singleton(
        DispatchOutbound,
        outbox,
        location_settings,
        secrets,
        gateway,
        ghl,
        tokens,
        clock,
        policy,
    )
    dispatcher = providers.Singleton(
        Dispatcher,
        outbox,
        dispatch_outbound,
        clock,
        concurrency=settings.provided.dispatch_concurrency,
        lease_for=policy.provided.lease_for,  # one lease length, from the policy
        idle_poll=settings.provided.dispatch_poll_seconds,
    )

    install_app = providers.Singleton(InstallApp, ghl, installations, tokens, clock)
    uninstall_app = providers.Singleton(
        UninstallApp,
        installations,
        location_settings,
        secrets,
        clock,
        grace=providers.Callable(
            lambda s: timedelta(seconds=s.uninstall_grace_seconds), settings
        ),
    )
    # Without a client id there is no app id to check webhooks against.
    app_webhooks = providers.Selector(
        providers.Callable(_installs, settings),
        on=providers.Singleton(
            ReceiveAppWebhook,
            verifier,
            leases,
            install_app,
            uninstall_app,
            clock,
            app_id=providers.Callable(lambda s: app_id_of(s.ghl_client_id), settings),
            window=providers.Callable(
                lambda s: timedelta(seconds=s.app_webhook_window_seconds), settings
            ),
        ),
        off=providers.Object(None),
    )
    keeper = providers.Singleton(
        InstallationKeeper,
        installations,
        tokens,
        uninstall_app,
        clock,
        lead=providers.Callable(
            lambda s: timedelta(seconds=s.token_refresh_lead_seconds), settings
        ),
        concurrency=settings.provided.token_refresh_concurrency,
        scan_every=settings.provided.token_refresh_scan_seconds,
    )
    oauth = providers.Singleton(make_oauth_setup, settings, clock)

    services = providers.Singleton(
        Services,
        settings=settings,
        clock=clock,
        outbox=outbox,
        installations=installations,
        location_settings=location_settings,
        secrets=secrets,
        accept_outbound=accept_outbound,
        dispatcher=dispatcher,
        tokens=tokens,
        install_app=install_app,
        keeper=keeper,
        oauth=oauth,
        app_webhooks=app_webhooks,
        backlog=backlog,
    )
