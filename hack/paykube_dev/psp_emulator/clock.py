"""Time the tests can move, and random ids in a PSP's alphabet."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

JsonObject = dict[str, Any]
ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(length))


class Clock:
    """Wall time plus an offset that tests move forward (`POST /_emulator/clock`)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def now_int(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> None:
        self.offset += seconds
