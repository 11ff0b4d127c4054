"""Capped exponential backoff."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from castghl_core.backoff import Backoff


def test_delays_double_until_the_cap():
    """With no jitter the delays are base x 2^attempt, capped."""
    backoff = Backoff(base=1, cap=10, jitter=lambda: 1.0)
    assert [backoff.delay(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]


def test_jitter_takes_at_most_half():
    """The smallest jitter gives half the un-jittered delay."""
    assert Backoff(base=2, cap=100, jitter=lambda: 0.0).delay(3) == 8


def test_retry_after_is_a_floor_but_capped():
    """Retry-After is honoured over a shorter backoff but never above the cap."""
    backoff = Backoff(base=1, cap=60, jitter=lambda: 0.0)
    assert backoff.delay(0, retry_after=7) == 7
    assert backoff.delay(0, retry_after=3600) == 60


@given(st.integers(min_value=0, max_value=10_000), st.floats(0, 1))
def test_delay_is_always_within_bounds(attempt, jitter):
    """Any attempt gives a delay between zero and the cap."""
    delay = Backoff(base=0.5, cap=300, jitter=lambda: jitter).delay(attempt)
    assert 0 < delay <= 300
