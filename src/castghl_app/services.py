"""The objects the entry points use, resolved once from the container."""

from __future__ import annotations

import attrs

from castghl_app.backlog import BacklogGuard
from castghl_app.oauth_setup import OAuthSetup
from castghl_app.settings import Settings
from castghl_app.workers.dispatcher import Dispatcher
from castghl_app.workers.keeper import InstallationKeeper
from castghl_core.accept_outbound import AcceptOutbound
from castghl_core.app_webhooks import ReceiveAppWebhook
from castghl_core.install import InstallApp
from castghl_core.ports import (
    Clock,
    InstallationStore,
    LocationSettingsStore,
    Outbox,
    SecretStore,
)
from castghl_core.tokens import RefreshingAccessTokens


@attrs.frozen
class Services:
    """What the web routes, workers and CLI need, already wired."""

    settings: Settings
    clock: Clock
    outbox: Outbox
    installations: InstallationStore
    location_settings: LocationSettingsStore
    secrets: SecretStore
    accept_outbound: AcceptOutbound
    dispatcher: Dispatcher
    tokens: RefreshingAccessTokens
    install_app: InstallApp
    keeper: InstallationKeeper
    oauth: OAuthSetup | None
    """None when installs are not configured (no client id and secret)."""
    app_webhooks: ReceiveAppWebhook | None
    backlog: BacklogGuard
