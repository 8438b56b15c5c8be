"""Refunds of a payment: `POST /v1/payments/{id}/refund` bodies, the checks against the
payment, and the status changes the control plane drives (each with its event).

Two guards make a repeated create safe: Razorpay's `X-Refund-Idempotency` header (the same
key and body give the first refund back), and, in this emulator, a `receipt` unique per
payment (a second create with it is refused; the first is then found in the payment's
refund list), for a key Razorpay no longer remembers.
"""

from __future__ import annotations

import re
from typing import Any, Literal, cast, get_args

from paykube_dev.psp_emulator.clock import new_id

from . import errors
from .links import MIN_AMOUNT, _notes
from .model import Payment, Refund, RefundStatus

KNOWN = frozenset({"amount", "speed", "notes", "receipt"})
SPEEDS = ("normal", "optimum")
MAX_RECEIPT = 40
START_STATUSES: tuple[str, ...] = ("processed", "pending")
RefundAction = Literal["processed", "failed"]
REFUND_ACTIONS: tuple[str, ...] = get_args(RefundAction)
# What counts against the payment: a failed refund gives its amount back.
HOLDS_MONEY = frozenset({"pending", "processed"})


# Razorpay: at least 10 characters of letters, digits, hyphens and underscores.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,255}")


class RefundTransitionError(Exception):
    """The refund is not in a status the requested change can leave."""


def check_idempotency_key(key: str) -> None:
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise errors.RazorpayError(
            400, "The idempotency key must be at least 10 characters long and contain only "
                 "letters, numbers, hyphens and underscores.", source="NA", step="NA",
            reason="NA")


def refund_body(body: dict[str, Any]) -> tuple[int | None, str, dict[str, str], str | None]:
    """(amount or None for the rest, speed, notes, receipt), or Razorpay's refusal."""
    for name in body:
        if name not in KNOWN:
            raise errors.extra_field(name)
    amount = body.get("amount")
    if amount is not None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise errors.invalid("amount", "The amount must be an integer.")
        if amount < MIN_AMOUNT:
            raise errors.invalid("amount", "The amount must be atleast INR 1.00")
    speed = body.get("speed", "normal")
    if speed not in SPEEDS:
        raise errors.invalid("speed", "The selected speed is invalid.")
    receipt = body.get("receipt")
    if receipt is not None and (not isinstance(receipt, str) or len(receipt) > MAX_RECEIPT):
        raise errors.invalid("receipt", f"The receipt may not be greater than {MAX_RECEIPT} "
                                        "characters.")
    return amount, str(speed), _notes(body.get("notes")), receipt


def open_refund(payment: Payment, *, account_id: str, livemode: bool, link_id: str,
                amount: int | None, speed: str, notes: dict[str, str], receipt: str | None,
                status: str, existing: list[Refund], now: int) -> Refund:
    """A new refund of the payment; the payment counts it at once."""
    if receipt is not None and any(r.receipt == receipt for r in existing):
        raise errors.invalid("receipt", f"A refund with receipt {receipt} already exists for "
                                        "this payment")
    if payment.remaining <= 0:
        raise errors.invalid("amount", "The payment has been fully refunded already")
    amount = payment.remaining if amount is None else amount
    if amount > payment.remaining:
        raise errors.invalid("amount", "The total refund amount is greater than the refund "
                                       "payment amount")
    refund = Refund(
        id=new_id("rfnd_", 14), account_id=account_id, livemode=livemode, link_id=link_id,
        payment_id=payment.id, amount=amount, currency=payment.currency, created_at=now,
        status=_status(status), notes=notes, receipt=receipt, speed_requested=speed,
    )
    payment.amount_refunded += amount
    return refund


def change_refund(refund: Refund, payment: Payment, action: str) -> str:
    """pending -> processed | failed; the event name it sends."""
    if action not in REFUND_ACTIONS:
        raise RefundTransitionError(
            f"unknown refund action {action!r}; one of {', '.join(REFUND_ACTIONS)}")
    if refund.status != "pending":
        raise RefundTransitionError(f"{refund.id} is {refund.status}; {action} needs pending")
    refund.status = _status(action)
    if refund.status not in HOLDS_MONEY:
        payment.amount_refunded -= refund.amount
    return f"refund.{refund.status}"


def _status(value: str) -> RefundStatus:
    if value not in get_args(RefundStatus):
        raise ValueError(f"not a refund status: {value}")
    return cast(RefundStatus, value)
