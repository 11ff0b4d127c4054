"""Builds the aiohttp application: routes, middlewares and the background work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from castghl_app.containers import Container
from castghl_app.settings import Settings
from castghl_app.web.admin import admin_auth_middleware
from castghl_app.web.errors import error_middleware
from castghl_app.web.keys import SERVICES
from castghl_app.web.routes import setup_routes

logger = logging.getLogger(__name__)

CONTAINER = web.AppKey("container", Container)


def create_app(
    settings: Settings, container: Container | None = None
) -> web.Application:
    """The whole service; `container` lets tests override providers."""
    container = container or Container(settings=settings)
    app = web.Application(
        middlewares=[error_middleware, admin_auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[CONTAINER] = container
    app.cleanup_ctx.append(_lifecycle)
    setup_routes(app)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open resources and start the workers; on shutdown, the reverse."""
    container = app[CONTAINER]
    try:
        services = await container.services()  # type: ignore[misc]
    except BaseException:
        # aiohttp runs no cleanup for a failed start: close what did open.
        await _shutdown(container)
        raise
    app[SERVICES] = services
    services.dispatcher.start()
    services.keeper.start()
    logger.info(
        "service.started",
        extra={
            "state_store": services.settings.state_store.value,
            "secret_store": services.settings.secret_store.value,
            "installs": services.oauth is not None,
        },
    )
    try:
        yield
    finally:
        await services.keeper.stop()
        await services.dispatcher.stop(grace=services.settings.shutdown_grace_seconds)
        await services.tokens.close(grace=2 * services.settings.http_timeout_seconds)
        await _shutdown(container)
        logger.info("service.stopped")


async def _shutdown(container: Container) -> None:
    shutdown = container.shutdown_resources()
    if shutdown is not None:
        await shutdown
