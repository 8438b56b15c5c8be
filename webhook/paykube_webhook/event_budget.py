"""How many Kubernetes Events the webhook writes per second.

An Event per applied PSP event costs the API server a write as dear as the status write
itself, which is the one write a payment needs. Events are best effort in Kubernetes, and
`status.history` records every transition with the PSP's event id, so under a burst the
webhook writes Events up to a budget (a token bucket) and counts the rest as skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class EventBudget:
    rate: float  # Events per second, sustained; 0 writes none
    burst_seconds: float = 5.0  # an idle webhook may write `rate * burst_seconds` at once
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self._capacity
        self._at = self.clock()

    @property
    def _capacity(self) -> float:
        return max(1.0, self.rate * self.burst_seconds) if self.rate > 0 else 0.0

    def take(self) -> bool:
        """True when an Event may be written now."""
        now = self.clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
