"""Refunds: `POST /v1/refunds` parameters, the checks Stripe makes against the charge, and
the status changes the control plane drives (each with the events Stripe sends).

Pure bookkeeping over the model: the state finds the charge and records the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast, get_args

from . import errors
from .checkout import _integer, _metadata, money
from .errors import StripeError
from .forms import Params
from .model import HOLDS_MONEY, Charge, JsonObject, Refund, RefundStatus, new_id

KNOWN_PARAMS = frozenset({
    "amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata",
    "origin", "payment_intent", "reason", "refund_application_fee", "reverse_transfer",
})
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# What a refund can start as (the control plane's refund mode).
START_STATUSES: tuple[str, ...] = ("succeeded", "pending", "requires_action")
RefundAction = Literal["succeeded", "failed", "requires_action", "canceled"]
REFUND_ACTIONS: tuple[str, ...] = get_args(RefundAction)
# Stripe's documented failure reasons.
FAILURE_REASONS = frozenset({
    "charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
    "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown",
})
# Which status each action may leave: succeeded -> failed is a bank returning the money.
_FROM: dict[str, frozenset[str]] = {
    "succeeded": frozenset({"pending", "requires_action"}),
    "failed": frozenset({"pending", "requires_action", "succeeded"}),
    "requires_action": frozenset({"pending"}),
    "canceled": frozenset({"requires_action"}),
}


class RefundTransitionError(Exception):
    """The refund is not in a status the requested change can leave."""


@dataclass
class RefundChange:
    """What one create or status change produced: the events to record, in order, each as
    (type, the object's JSON at that moment)."""

    refund: Refund
    events: list[tuple[str, JsonObject]] = field(default_factory=list)


def refund_params(params: Params) -> tuple[int | None, str | None, dict[str, str]]:
    """(amount or None for the rest, reason, metadata) from a create, or Stripe's refusal."""
    for name in params:
        if name not in KNOWN_PARAMS:
            raise errors.unknown_param(name)
    amount = None
    if "amount" in params:
        amount = _integer(params["amount"], "amount", minimum=1)
    reason = params.get("reason")
    if reason is not None and reason not in REASONS:
        raise errors.invalid("reason", "Invalid reason: must be one of duplicate, fraudulent, "
                                       "or requested_by_customer")
    return amount, reason, _metadata(params.get("metadata"), "metadata")


def check_amount(charge: Charge, amount: int | None) -> int:
    """The amount to refund (the rest when None); Stripe's refusal when it does not fit."""
    if charge.remaining <= 0:
        raise StripeError(400, f"Charge {charge.id} has already been refunded.",
                          code="charge_already_refunded", saved=True)
    amount = charge.remaining if amount is None else amount
    if amount > charge.remaining:
        raise StripeError(
            400, f"Refund amount ({money(amount, charge.currency)}) is greater than unrefunded "
                 f"amount on charge ({money(charge.remaining, charge.currency)})",
            code="amount_too_large", param="amount", saved=True)
    return amount


def open_refund(charge: Charge, *, account: str, session_id: str, amount: int | None,
                reason: str | None, metadata: dict[str, str], status: str,
                now: int) -> RefundChange:
    """A new refund on the charge: `refund.created`, and `charge.refunded` as the charge's
    refunded amount rises."""
    refund = Refund(
        id=new_id("re_"), account=account, session_id=session_id,
        amount=check_amount(charge, amount), currency=charge.currency,
        payment_intent=charge.payment_intent, charge=charge.id, created=now,
        livemode=charge.livemode, status=_status(status), reason=reason, metadata=metadata,
    )
    charge.amount_refunded += refund.amount
    return RefundChange(refund, [("refund.created", refund.to_api()),
                                 ("charge.refunded", charge.to_api())])


def change_refund(refund: Refund, charge: Charge, action: str,
                failure_reason: str | None = None) -> RefundChange:
    """`refund.updated` for every change, `refund.failed` too when it fails; the charge
    gives the amount back when the refund stops holding it."""
    if action not in _FROM:
        raise RefundTransitionError(
            f"unknown refund action {action!r}; one of {', '.join(REFUND_ACTIONS)}")
    if refund.status not in _FROM[action]:
        raise RefundTransitionError(
            f"{refund.id} is {refund.status}; {action} needs one of "
            f"{', '.join(sorted(_FROM[action]))}")
    if failure_reason is not None and failure_reason not in FAILURE_REASONS:
        raise RefundTransitionError(
            f"unknown failure_reason {failure_reason!r}; one of "
            f"{', '.join(sorted(FAILURE_REASONS))}")
    held = refund.status in HOLDS_MONEY
    refund.status = _status(action)
    if action == "failed":
        refund.failure_reason = failure_reason or "unknown"
    if held and refund.status not in HOLDS_MONEY:
        charge.amount_refunded -= refund.amount
    change = RefundChange(refund, [("refund.updated", refund.to_api())])
    if action == "failed":
        change.events.append(("refund.failed", refund.to_api()))
    return change


def _status(value: str) -> RefundStatus:
    statuses: tuple[str, ...] = get_args(RefundStatus)
    if value not in statuses:
        raise ValueError(f"not a refund status: {value}")
    return cast(RefundStatus, value)
