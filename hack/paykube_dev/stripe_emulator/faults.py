"""Stripe's fault kinds over the shared fault book (`paykube_dev.psp_emulator.faults`)."""

from __future__ import annotations

from typing import Literal, get_args

from paykube_dev.psp_emulator.faults import (
    COMMON_KINDS,
    Fault,
    FaultBook,
    FaultSpecError,
    Held,
    after_handling,
)

FaultKind = Literal[
    "rate_limit", "api_error", "latency", "hold", "drop", "stripe_error", "garbage",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
RATE_LIMIT_REASONS = ("global-rate", "endpoint-rate", "global-concurrency", "resource-specific")
assert set(COMMON_KINDS) <= set(FAULT_KINDS)

__all__ = [
    "FAULT_KINDS", "RATE_LIMIT_REASONS", "Fault", "FaultBook", "FaultKind", "FaultSpecError",
    "Held", "after_handling",
]
