"""Readiness results that the health probes (`/readyz`) can combine and render.

A check never carries a secret value: `reason` is a paykube error code (CamelCase, fit for
a condition reason or a metric label) and `message` the error's message, which paykube
writes without values.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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


Probe = Callable[[], Awaitable[object]]


@dataclass
class ReadinessChecks:
    """A program's `/readyz`: named checks; `required` ones decide readiness, `reported`
    states are only shown. A flip of readiness is logged once, with the failing reasons."""

    program: str  # "operator", "webhook": names the log lines and their logger
    required: dict[str, Probe] = field(default_factory=dict)
    reported: dict[str, Callable[[], str]] = field(default_factory=dict)
    _last: bool | None = None

    async def run(self) -> tuple[bool, dict[str, object]]:
        results = {name: await check(probe) for name, probe in self.required.items()}
        ready = all(results.values())
        body: dict[str, object] = {"ready": ready,
                                   **{n: r.to_dict() for n, r in results.items()},
                                   **{n: state() for n, state in self.reported.items()}}
        if ready != self._last:
            self._last = ready
            logger = logging.getLogger(f"paykube.{self.program}")
            if ready:
                logger.info("%s ready", self.program)
            for name, result in results.items():
                if not result:
                    logger.error("%s not ready: %s", self.program, name,
                                 extra={"code": result.reason, "reason": result.message})
        return ready, body

