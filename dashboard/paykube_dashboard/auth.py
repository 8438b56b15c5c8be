"""HTTP Basic Auth for every page: credentials from mounted Secret files (re-read after the
TTL, so a rotated password is taken without restart) or the environment, compared in
constant time; without configured credentials nothing passes.

Wrong credentials are counted and slowed: each client address that keeps failing waits
longer before its 401 (doubling up to a cap), which makes guessing slow without holding
a worker (the wait is an asyncio sleep). A success clears the client's record.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from paykube.basic_auth import credentials_match
from paykube.errors import PaykubeError
from paykube.secrets.files import SecretSetting

log = logging.getLogger("paykube.dashboard")


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no Authorization header: a browser's first request
    WRONG = "wrong"  # credentials given and refused: a failed login
    UNCONFIGURED = "unconfigured"  # no credentials configured (or unreadable)


@dataclass
class _Failures:
    count: int
    last: float


class FailureThrottle:
    """How long to hold the answer to a client's failed login; bounded memory (LRU)."""

    def __init__(self, base: float, cap: float, *, forget_after: float = 900.0,
                 max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base, self._cap, self._forget = base, cap, forget_after
        self._max, self._clock = max_clients, clock
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def failed(self, client: str) -> float:
        """Record a failure; the delay (seconds) before answering it."""
        now = self._clock()
        record = self._clients.pop(client, None)
        if record is None or now - record.last > self._forget:
            record = _Failures(0, now)
        record.count += 1
        record.last = now
        self._clients[client] = record
        while len(self._clients) > self._max:
            self._clients.popitem(last=False)
        return min(self._cap, self._base * 2.0 ** min(record.count - 1, 30))

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


class BasicAuth:
    def __init__(self, username: SecretSetting, password: SecretSetting) -> None:
        self._username, self._password = username, password

    def check(self, header: str | None) -> Verdict:
        try:
            username, password = self._username().get(), self._password()
        except PaykubeError as exc:  # nothing passes without readable credentials
            log.error("dashboard credentials unavailable",
                      extra={"code": exc.code.value, "reason": exc.message})
            return Verdict.UNCONFIGURED
        if not username or not password:
            return Verdict.UNCONFIGURED
        if not header:
            return Verdict.MISSING
        return Verdict.OK if credentials_match(header, username, password) else Verdict.WRONG
