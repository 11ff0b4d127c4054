"""Capped exponential backoff with jitter, as a pure function of the attempt."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs


@attrs.frozen
class Backoff:
    """Delays of base * 2**attempt, capped, with up to half of each jittered."""

    base: float = attrs.field(validator=attrs.validators.gt(0))
    cap: float = attrs.field(validator=attrs.validators.gt(0))
    jitter: Callable[[], float] = attrs.field(default=random.random, eq=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try `attempt + 1`, honouring `retry_after`.

        A server's Retry-After is a floor, never shortened by jitter; it is
        itself capped so a hostile or broken server cannot park a job forever.
        """
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 32))
        delay = ceiling / 2 + self.jitter() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return float(delay)
