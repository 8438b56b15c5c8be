"""paykube's stateful Stripe emulator: Checkout Sessions, events, signed webhooks, faults.

- `StripeEmulator` (async, in the caller's loop), `EmulatorThread` (sync tests),
  `EmulatorProcess` / `python -m paykube_dev.stripe_emulator` (other processes);
- `EmulatorControl` / `AsyncEmulatorControl` for the `/_emulator/...` control endpoints;
- `sign_payload` for Stripe's `Stripe-Signature` scheme.
"""

from .accounts import account_id_for_key
from .app import build_app
from .client import AsyncEmulatorControl, EmulatorControl, EmulatorControlError
from .server import EmulatorConfig, EmulatorProcess, EmulatorThread, StripeEmulator
from .signing import compute_signature, sign_payload, sign_payload_multi
from .state import ACTIONS, DEFAULT_API_VERSION, Action, EmulatorState

__all__ = [
    "ACTIONS",
    "DEFAULT_API_VERSION",
    "Action",
    "AsyncEmulatorControl",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorControlError",
    "EmulatorProcess",
    "EmulatorState",
    "EmulatorThread",
    "StripeEmulator",
    "account_id_for_key",
    "build_app",
    "compute_signature",
    "sign_payload",
    "sign_payload_multi",
]
