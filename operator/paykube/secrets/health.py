"""Readiness results that the health probes (`/readyz`) can combine and render.

A check never carries a secret value: `reason` is a paykube error code (CamelCase, fit for
a condition reason or a metric label) and `message` the error's message, which paykube
writes without values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from paykube.errors import PaykubeError

READY = "Ready"


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str = READY
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def ready(cls, message: str = "") -> Readiness:
        return cls(True, READY, message)

    @classmethod
    def not_ready(cls, reason: str, message: str) -> Readiness:
        return cls(False, reason, message)

    @classmethod
    def from_error(cls, exc: PaykubeError) -> Readiness:
        return cls(False, exc.code.value, exc.message)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "message": self.message}


def combine(results: Iterable[Readiness]) -> Readiness:
    """Ready when every check is; otherwise the first failure's reason and all messages."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return Readiness.ready()
    return Readiness(False, failed[0].reason, "; ".join(r.message for r in failed if r.message))


async def check(probe: Callable[[], Awaitable[object]]) -> Readiness:
    """Run `probe` (for example `lambda: source.astripe_credentials(secret_id)`).

    A `PaykubeError` makes the result not ready with the error's code and message; any
    other exception is reported by type only (its text could quote a value).
    """
    try:
        await probe()
    except PaykubeError as exc:
        return Readiness.from_error(exc)
    except Exception as exc:  # a probe reports, it does not raise
        return Readiness.not_ready("CheckFailed", f"readiness check failed: {type(exc).__name__}")
    return Readiness.ready()
