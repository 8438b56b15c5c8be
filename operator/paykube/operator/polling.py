"""When to poll the provider next: soon after create, backing off while nothing changes,
and again right after an open session should have expired. Pure."""

from __future__ import annotations

import datetime as dt
import random

from paykube.api.types import Phase
from paykube.lifecycle import parse_timestamp


def next_poll_delay(
    *, age: float, unchanged_polls: int, until_expiry: float | None, min_interval: float,
    max_interval: float, rng: random.Random | None = None,
) -> float:
    """Seconds until the next poll (all arguments in seconds).

    `until_expiry` is given only while the session can still expire (Open): the next poll
    then lands just after the planned expiry. Once that moment has passed the normal
    backoff applies, so a session the provider has not reported expired yet (or one past
    its expiry for another reason) is not polled every `min_interval` forever."""
    delay = min(max_interval, min_interval * 2.0 ** min(unchanged_polls, 16))
    if age < 2 * min_interval:
        delay = min_interval
    if until_expiry is not None and until_expiry >= 0 and until_expiry + min_interval < delay:
        delay = max(min_interval, until_expiry + min_interval)
    jitter = (rng or random.Random()).uniform(0.8, 1.2)
    return max(1.0, min(max_interval, delay) * jitter)


def poll_delay_for(phase: Phase, expires_at: str | None, created: dt.datetime,
                   now: dt.datetime, unchanged: int, *,
                   min_interval: float, max_interval: float) -> float:
    """`next_poll_delay` for a session in `phase`: only an open session expires (a
    Processing one waits for its payment's outcome)."""
    until_expiry = None
    if phase is Phase.OPEN and expires_at:
        until_expiry = (parse_timestamp(expires_at) - now).total_seconds()
    return next_poll_delay(age=(now - created).total_seconds(), unchanged_polls=unchanged,
                           until_expiry=until_expiry, min_interval=min_interval,
                           max_interval=max_interval)
