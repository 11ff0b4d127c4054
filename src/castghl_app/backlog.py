"""A bound on unfinished outbound jobs, so a stalled Cast cannot grow the
outbox without limit: past the bound, GHL is asked to retry later (503)."""

from __future__ import annotations

import time

from castghl_core.jobs import JobState
from castghl_core.ports import Outbox


class BacklogFull(Exception):
    """Too many messages are waiting; GHL should deliver this one later."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(
            f"{waiting} messages are waiting to be sent (limit {limit}); retry later"
        )


class BacklogGuard:
    """Refuses new jobs while the outbox holds `limit` unfinished ones.

    The count is cached for `refresh_seconds`, so a burst of deliveries
    costs one count query, not one each.
    """

    def __init__(
        self, outbox: Outbox, limit: int, refresh_seconds: float = 1.0
    ) -> None:
        self.outbox = outbox
        self.limit = limit
        self.refresh_seconds = refresh_seconds
        self._waiting = 0
        self._counted_at = float("-inf")

    async def check(self) -> None:
        """Return if there is room; raise BacklogFull if not."""
        if time.monotonic() - self._counted_at >= self.refresh_seconds:
            counts = await self.outbox.count_by_state()
            self._waiting = sum(
                count for state, count in counts.items() if not JobState(state).is_final
            )
            self._counted_at = time.monotonic()
        if self._waiting >= self.limit:
            raise BacklogFull(self._waiting, self.limit)
