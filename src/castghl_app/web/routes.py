"""Every route of the service, in one place."""

from __future__ import annotations

from aiohttp import web

from castghl_app.oauth_setup import APP_WEBHOOK_PATH, CALLBACK_PATH, INSTALL_PATH
from castghl_app.web import admin, delivery, health, oauth

DELIVERY_PATH = "/webhooks/ghl/outbound"


def setup_routes(app: web.Application) -> None:
    """Mount the webhooks, the install flow, health checks and the admin API."""
    app.router.add_post(DELIVERY_PATH, delivery.receive_outbound)
    app.router.add_get(INSTALL_PATH, oauth.install)
    app.router.add_get(CALLBACK_PATH, oauth.callback)
    app.router.add_post(APP_WEBHOOK_PATH, oauth.receive_app_webhook)
    health.setup_health(app)
    admin.setup_admin_routes(app)
