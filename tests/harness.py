"""Helpers for tests that run the whole service: a handle on a running
castghl, its test secrets, and polling."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from castghl_app.oauth_setup import APP_WEBHOOK_PATH, INSTALL_PATH
from castghl_app.sandbox.ghl import GhlSandbox
from castghl_app.services import Services
from castghl_app.web.keys import SERVICES
from castghl_app.web.routes import DELIVERY_PATH
from castghl_core.jobs import JobState

LOCATION = "GKAWb4yu7A4LSc0skQ6g"
API_KEY = "cast_test_" + secrets.token_hex(16)
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(24)
ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()


@attrs.define
class Service:
    """A running castghl and the means to talk to it."""

    runner: web.AppRunner
    url: str
    http: aiohttp.ClientSession
    responses: list[str]

    @property
    def services(self) -> Services:
        return self.runner.app[SERVICES]

    @property
    def delivery_url(self) -> str:
        return self.url + DELIVERY_PATH

    @property
    def app_webhook_url(self) -> str:
        return self.url + APP_WEBHOOK_PATH

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Call the service; remember the body for the secrets check."""
        async with self.http.request(method, self.url + path, **kwargs) as response:
            text = await response.text()
            self.responses.append(text)
            body = (
                await response.json()
                if response.content_type == "application/json"
                else text
            )
            return response.status, body

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return await self.request(
            method, "/api/admin" + path, headers=headers, **kwargs
        )

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def jobs(self) -> dict[JobState, int]:
        return dict(await self.services.outbox.count_by_state())

    async def jobs_settle_at(
        self, expected: dict[JobState, int], timeout: float = 10.0
    ) -> None:
        """Wait until the job counts are `expected`.

        GHL may record a status a moment before castghl writes `reported`.
        """

        async def settled() -> bool:
            return await self.jobs() == expected

        try:
            await eventually(settled, timeout=timeout)
        except pytest.fail.Exception:
            assert await self.jobs() == expected  # show the difference

    async def finished_job(self, message_id: str, timeout: float = 10.0) -> Any:
        """The job once it has reached a final state."""

        async def final() -> Any:
            job = await self.services.outbox.get(message_id)
            return job if job is not None and job.state.is_final else None

        return await eventually(final, timeout=timeout)


async def install_location(
    service: Service, ghl: GhlSandbox, location_id: str
) -> list[str]:
    """Install the app on one location through the OAuth flow, as a browser
    would: castghl's install link, GHL's consent, castghl's callback.

    Returns the tokens stored (every token GHL issues is checked for leaks
    anyway).
    """
    ghl.oauth.choose([location_id])
    status, page = await service.request("GET", INSTALL_PATH)
    assert status == 200, page
    assert location_id in page
    installation = await service.services.installations.get(location_id)
    assert installation is not None
    assert installation.is_active
    return [installation.access_token, *filter(None, [installation.refresh_token])]


async def install_agency(
    service: Service, ghl: GhlSandbox, location_ids: list[str]
) -> str:
    """An agency (bulk) install covering `location_ids`; returns the page."""
    ghl.oauth.choose(location_ids, company=True)
    status, page = await service.request("GET", INSTALL_PATH)
    assert status == 200, page
    return page


async def expire_token(service: Service, ghl: GhlSandbox, owner_id: str) -> None:
    """Make the owner's access token expired, in castghl's store and at GHL."""
    installations = service.services.installations
    installation = await installations.get(owner_id)
    assert installation is not None
    await installations.put(
        attrs.evolve(installation, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    ghl.oauth.expire_access_tokens(owner_id)


async def eventually(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `probe` (sync or async) until truthy; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = probe()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
