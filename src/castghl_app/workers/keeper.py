"""The installation keeper: every token stays fresh without any traffic.

It looks at the installations every `scan_every` seconds and refreshes each
token a while before it expires: `lead` ahead, less a per-token share of a
quarter of `lead`, so tokens issued together (an agency install) are not
refreshed together. A few at once; tokens another replica holds the lease
of are skipped. The same scan forgets what uninstalls left once their grace
period is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import datetime, timedelta

from castghl_core.errors import LocationNotInstalled, TokenUnavailable
from castghl_core.install import UninstallApp
from castghl_core.installations import Installation
from castghl_core.ports import Clock, InstallationStore
from castghl_core.tokens import RefreshingAccessTokens, owner_fields

logger = logging.getLogger(__name__)

_SPREAD = 0.25
"""Share of the lead time over which refreshes are spread."""


class InstallationKeeper:
    """Refreshes tokens ahead of expiry and forgets expired uninstalls."""

    def __init__(
        self,
        installations: InstallationStore,
        tokens: RefreshingAccessTokens,
        uninstall: UninstallApp,
        clock: Clock,
        *,
        lead: timedelta = timedelta(hours=1),
        concurrency: int = 4,
        scan_every: float = 60.0,
    ) -> None:
        self.installations = installations
        self.tokens = tokens
        self.uninstall = uninstall
        self.clock = clock
        self.lead = lead
        self.concurrency = concurrency
        self.scan_every = scan_every
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_alive(self) -> bool:
        """Whether the scan loop is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start scanning on the running event loop."""
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="installation-keeper")
        logger.info(
            "keeper.started",
            extra={"lead_seconds": self.lead.total_seconds()},
        )

    async def stop(self) -> None:
        """Stop scanning; a refresh under way is cancelled (its lease lapses)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        logger.info("keeper.stopped")

    async def scan_once(self) -> int:
        """Refresh every token now due; return how many were refreshed."""
        now = self.clock.now()
        due = [
            installation
            for installation in await self.installations.list()
            if installation.is_active and self._due(installation, now)
        ]
        limit = asyncio.Semaphore(self.concurrency)

        async def refresh(installation: Installation) -> bool:
            async with limit:
                return await self._refresh(installation)

        refreshed = sum(await asyncio.gather(*(refresh(i) for i in due)))
        await self.uninstall.forget_expired()
        return refreshed

    def _due(self, installation: Installation, now: datetime) -> bool:
        if installation.retry_refresh_at and now < installation.retry_refresh_at:
            return False
        spread = self.lead * (_SPREAD * _share(installation))
        return installation.expires_at - self.lead + spread <= now

    async def _refresh(self, installation: Installation) -> bool:
        owner = owner_fields(installation)
        try:
            refreshed = await self.tokens.refresh_ahead(
                installation.owner_id, self.lead
            )
        except (TokenUnavailable, LocationNotInstalled) as error:
            logger.warning(
                "token.proactive_refresh_failed", extra={**owner, "reason": str(error)}
            )
            return False
        if not refreshed:
            logger.debug("token.proactive_refresh_skipped", extra=owner)
        return refreshed

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.scan_once()
            except Exception:
                # A store outage must not end the loop; the next scan retries.
                logger.exception("keeper.scan_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.scan_every)


def _share(installation: Installation) -> float:
    """A stable number in [0, 1) for this token, so scans agree on its turn."""
    seed = f"{installation.owner_id}|{installation.expires_at.isoformat()}"
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
