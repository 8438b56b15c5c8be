"""paykube's stateful Razorpay emulator: Payment Links, signed webhooks, faults.

Built on the machinery shared with the Stripe emulator (`paykube_dev.psp_emulator`):

- `RazorpayEmulator` (async, in the caller's loop), `RazorpayEmulatorThread` (sync tests),
  `RazorpayEmulatorProcess` / `python -m paykube_dev.razorpay_emulator` (other processes);
- `RazorpayControl` / `AsyncRazorpayControl` for the `/_emulator/...` control endpoints;
- `sign_body` for Razorpay's `X-Razorpay-Signature`.

The official SDK works against it unchanged: `razorpay.Client(auth=(key_id, key_secret),
base_url=emulator.base_url)`.
"""

from .accounts import account_id_for_key
from .app import build_app
from .client import AsyncRazorpayControl, EmulatorControlError, RazorpayControl
from .server import (
    RazorpayConfig,
    RazorpayEmulator,
    RazorpayEmulatorProcess,
    RazorpayEmulatorThread,
)
from .signing import sign_body
from .state import ACTIONS, EVENTS, Action, RazorpayState

__all__ = [
    "ACTIONS",
    "EVENTS",
    "Action",
    "AsyncRazorpayControl",
    "EmulatorControlError",
    "RazorpayConfig",
    "RazorpayControl",
    "RazorpayEmulator",
    "RazorpayEmulatorProcess",
    "RazorpayEmulatorThread",
    "RazorpayState",
    "account_id_for_key",
    "build_app",
    "sign_body",
]
