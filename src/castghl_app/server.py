"""`castghl serve`: run the service until SIGTERM or SIGINT.

Start-up failures (a store that cannot be opened, a port in use) end the
process with one clear line and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from castghl_app.settings import Settings
from castghl_app.web.app import create_app

logger = logging.getLogger(__name__)

START_FAILED = 2


class StartFailed(Exception):
    """The service could not start; the message says why."""


async def serve(settings: Settings) -> None:
    """Serve until told to stop; raise StartFailed if it cannot start."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    try:
        await runner.setup()
    except Exception as error:
        raise StartFailed(f"{type(error).__name__}: {error}") from error
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as error:
        await runner.cleanup()
        raise StartFailed(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}"
        ) from error

    host, port = runner.addresses[0][:2]
    logger.info("service.listening", extra={"url": f"http://{host}:{port}"})
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        logger.info("service.stopping")
        await runner.cleanup()
