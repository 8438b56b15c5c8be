"""The webhook's budget of Kubernetes Events (pure logic, a fake clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paykube_webhook.event_budget import EventBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    budget = EventBudget(rate=10, burst_seconds=5, clock=clock)
    assert sum(budget.take() for _ in range(80)) == 50  # the burst
    clock.now += 1.0
    assert sum(budget.take() for _ in range(80)) == 10  # one second's worth
    clock.now += 60.0
    assert sum(budget.take() for _ in range(80)) == 50, "refills to the burst, no more"


def test_zero_writes_none() -> None:
    clock = Clock()
    budget = EventBudget(rate=0, clock=clock)
    clock.now += 1000
    assert not any(budget.take() for _ in range(10))


@given(rate=st.floats(0.1, 1000), steps=st.lists(st.floats(0, 10), min_size=1, max_size=50))
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, steps: list[float]) -> None:
    clock = Clock()
    budget = EventBudget(rate=rate, burst_seconds=5, clock=clock)
    taken = 0
    for step in steps:
        clock.now += step
        taken += sum(budget.take() for _ in range(200))
    assert taken <= max(1.0, rate * 5) + rate * sum(steps) + 1e-6
