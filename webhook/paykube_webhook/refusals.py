"""Refusal logging that costs nothing under a flood: one line per outcome and window.

Anyone on the internet can send the webhook bad signatures; a WARNING line per request
made each refusal cost about as much again as the refusal itself, and floods the logs at
the moment they are most needed. The Prometheus counters stay exact (one increment per
request); the log says the first refusal of each kind at once, and then how many more of
that kind a window held, with the next line of that kind or from the periodic flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RefusalLog:
    log: logging.Logger
    window: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _opened: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def refused(self, outcome: str, **fields: Any) -> None:
        """Log this refusal, unless one of its kind was logged within the window."""
        now = self.clock()
        opened = self._opened.get(outcome)
        if opened is not None and now - opened < self.window:
            self._held[outcome] = self._held.get(outcome, 0) + 1
            return
        self._opened[outcome] = now
        held = self._held.pop(outcome, 0)
        self.log.warning("webhook refused", extra={
            "outcome": outcome, **fields, "also_refused": held,
            "also_refused_seconds": self.window if held else 0})

    def flush(self, *, final: bool = False) -> None:
        """Say how many refusals of each kind were held back since their last line (a
        timer calls this, so that the count of a flood that stopped is not left unsaid;
        `final`, at shutdown, says all of them)."""
        now = self.clock()
        for outcome in list(self._held):
            if final or now - self._opened.get(outcome, now) >= self.window:
                held = self._held.pop(outcome)
                self._opened.pop(outcome, None)
                self.log.warning("webhook refusals held back", extra={
                    "outcome": outcome, "also_refused": held,
                    "also_refused_seconds": self.window})
