"""A bound on unfinished outbound jobs, so a stalled Cast cannot grow the
outbox without limit: past the bound, GHL is asked to retry later (503)."""

from __future__ import annotations

import asyncio
import time

from castghl_core.errors import BacklogFull
from castghl_core.ports import Outbox


class BacklogGuard:
    """Refuses new jobs while the outbox holds `limit` unfinished ones.

    The count is cached for `refresh_seconds` and refreshed by one caller at
    a time, so a burst of deliveries costs one indexed count, not one each.
    """

    def __init__(
        self, outbox: Outbox, limit: int, refresh_seconds: float = 1.0
    ) -> None:
        self.outbox = outbox
        self.limit = limit
        self.refresh_seconds = refresh_seconds
        self._waiting = 0
        self._counted_at = float("-inf")
        self._counting = asyncio.Lock()

    async def check(self) -> None:
        """Return if there is room; raise BacklogFull if not."""
        if self._stale():
            async with self._counting:
                if self._stale():
                    self._waiting = await self.outbox.count_unfinished()
                    self._counted_at = time.monotonic()
        if self._waiting >= self.limit:
            raise BacklogFull(self._waiting, self.limit)

    def expire(self) -> None:
        """Count again at the next check."""
        self._counted_at = float("-inf")

    def _stale(self) -> bool:
        return time.monotonic() - self._counted_at >= self.refresh_seconds
