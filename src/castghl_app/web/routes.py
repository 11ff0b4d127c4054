"""Every route of the service, in one place."""

from __future__ import annotations

from aiohttp import web

from castghl_app.web import admin, delivery, health

DELIVERY_PATH = "/webhooks/ghl/outbound"


def setup_routes(app: web.Application) -> None:
    """Mount the Delivery URL, health checks and the admin API."""
    app.router.add_post(DELIVERY_PATH, delivery.receive_outbound)
    app.router.add_get("/healthz", health.live)
    app.router.add_get("/readyz", health.ready)
    admin.setup_admin_routes(app)
