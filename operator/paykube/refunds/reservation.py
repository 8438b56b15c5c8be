"""Refunds on the PaymentSession's side: the refundable rest, the reservation that
serializes refunds of one payment, and what the session shows (pure, no I/O).

The session's status is the lock (docs/refunds.md): a refund is recorded in
`status.refunds[]` by a conditional write before the PSP is called, so two refunds racing
for the same rest cannot both reserve it; the loser re-reads and sees the rest taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from paykube.api.refunds import MAX_REFUNDS_PER_SESSION, RefundSnapshot, RefundSpec
from paykube.api.types import ErrorInfo, RefundPhase, RefundRecord, Status
from paykube.errors import ErrorCode
from paykube.lifecycle import set_condition

REFUNDED = "Refunded"


def refundable_rest(session: Status, at_psp: Sequence[RefundSnapshot], own_uid: str) -> int:
    """What may still be refunded: the amount paid, less every refund the PSP holds
    (pending or succeeded, ours or the Dashboard's), less our own reservations the PSP does
    not know yet (another refund between its reservation and its create)."""
    known_ids = {r.refund_id for r in at_psp}
    known_uids = {r.refund_uid for r in at_psp if r.refund_uid}
    committed = sum(r.amount for r in at_psp if r.phase.holds_money)
    in_flight = sum(
        record.amount for record in session.refunds
        if record.uid != own_uid and record.phase.holds_money
        and record.uid not in known_uids
        and (record.refund_id is None or record.refund_id not in known_ids))
    return max((session.amount_total or 0) - committed - in_flight, 0)


def refusal(session: Status, spec: RefundSpec, rest: int) -> ErrorInfo | None:
    """Why this refund may not be reserved, or None. Called only for a Paid session."""
    if len(session.refunds) >= MAX_REFUNDS_PER_SESSION:
        return ErrorInfo(code=ErrorCode.TOO_MANY_REFUNDS.value, message=(
            f"the session already records {MAX_REFUNDS_PER_SESSION} refunds"))
    if rest <= 0:
        return ErrorInfo(code=ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE.value,
                         message="nothing is left to refund on this session", param="amount")
    if spec.amount is not None and spec.amount > rest:
        return ErrorInfo(code=ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE.value, message=(
            f"spec.amount {spec.amount} is more than the refundable rest {rest}"),
            param="amount")
    return None


def not_paid(session: Status) -> ErrorInfo:
    return ErrorInfo(code=ErrorCode.SESSION_NOT_PAID.value, message=(
        f"the session is {session.phase.value}, and only a Paid session can be refunded"))


def record_of(session: Status, uid: str) -> RefundRecord | None:
    return next((r for r in session.refunds if r.uid == uid), None)


def reserve(session: Status, record: RefundRecord) -> Status:
    if record_of(session, record.uid) is not None:
        return session
    return session.with_changes(refunds=(*session.refunds, record))


def update_record(session: Status, uid: str, phase: RefundPhase,
                  refund_id: str | None) -> Status:
    """The record follows its refund forward (never backwards; an unknown uid: no change)."""
    records = tuple(
        RefundRecord(r.name, r.uid, r.amount,
                     phase if (phase is r.phase or r.phase.precedes(phase)) else r.phase,
                     r.refund_id or refund_id)
        if r.uid == uid else r
        for r in session.refunds)
    return session.with_changes(refunds=records)


def with_refunded(session: Status, amount_refunded: int, now: dt.datetime, *,
                  raise_only: bool = False) -> Status:
    """Show what the PSP reports refunded. `raise_only` (a webhook's report) never lowers
    it: only the operator's own list of the PSP's refunds may (a returned refund)."""
    if raise_only and amount_refunded <= (session.amount_refunded or 0):
        return session
    if amount_refunded == (session.amount_refunded or 0) and (
            session.condition(REFUNDED) is not None or amount_refunded <= 0):
        return session
    status = session.with_changes(amount_refunded=amount_refunded)
    if amount_refunded <= 0:
        return status.with_changes(conditions=tuple(
            c for c in status.conditions if c.type != REFUNDED))
    total = session.amount_total or 0
    full = amount_refunded >= total > 0
    reason = "FullyRefunded" if full else "PartiallyRefunded"
    message = (f"{amount_refunded} of {total} {session.currency or ''} refunded".replace(
        "  ", " ").strip())
    return status.with_changes(conditions=set_condition(
        status.conditions, REFUNDED, full, reason, message, now,
        session.observed_generation))


def psp_refunded(at_psp: Sequence[RefundSnapshot]) -> int:
    return sum(r.amount for r in at_psp if r.phase.holds_money)
