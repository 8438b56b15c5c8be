"""The PaymentRefund lifecycle: one pure function from (status, observation, now) to status.

The same kind of function as the payment's (`paykube.lifecycle`): phases form a partial
order (`RefundPhase.precedes`), an observation never moves a refund backwards, and the same
trust rules hold (docs/refunds.md):

- only the operator's own calls to the PSP (*authoritative*: create, retrieve) set the
  refund id; an object that has one never takes another;
- a webhook report applies only to the refund id the object already has; it may move the
  refund forward to RequiresAction or Succeeded, while a reported Failed or Canceled (and a
  Succeeded refund returned by the bank) waits in `status.unconfirmed` for the operator's
  retrieve. A replayed `refund.failed` must never make refunded money look unrefunded:
  that would invite refunding it twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from paykube.api.refunds import RefundHistoryEntry, RefundSnapshot, RefundStatus, RefundUnconfirmed
from paykube.api.types import ErrorInfo, ProviderRef, RefundPhase, Source
from paykube.errors import ErrorCode
from paykube.lifecycle import READY, SYNCED, set_condition, timestamp

_READY: dict[RefundPhase, tuple[bool, str, str]] = {
    RefundPhase.PENDING: (False, "Refunding", "Reserving and creating the refund"),
    RefundPhase.REQUIRES_ACTION: (False, "RequiresAction",
                                  "The provider needs action before it can refund"),
    RefundPhase.SUCCEEDED: (True, "Refunded", "The provider refunded the money"),
    RefundPhase.FAILED: (False, "RefundFailed", "The refund failed"),
    RefundPhase.CANCELED: (False, "Canceled", "The refund was canceled at the provider"),
}


@dataclass(frozen=True)
class RefundReserved:
    """The amount is reserved on the session (`status.refunds[]`): the facts of the payment
    refunded are fixed here, before the PSP is called, so a retried create sends the same."""

    session_uid: str
    payment_id: str
    amount: int
    currency: str
    provider: str
    account: str | None = None
    livemode: bool | None = None
    provider_ref: ProviderRef | None = None
    generation: int | None = None


@dataclass(frozen=True)
class RefundObserved:
    """The PSP reports the refund (`authoritative`: the answer to our own call)."""

    refund: RefundSnapshot
    source: Source
    event_id: str | None = None
    authoritative: bool = False
    generation: int | None = None


@dataclass(frozen=True)
class RefundRefused:
    """A permanent refusal: before any PSP call (not paid, too much) or the PSP's answer to
    the create. A refund that exists at the PSP keeps its phase."""

    error: ErrorInfo
    generation: int | None = None


@dataclass(frozen=True)
class RefundSyncFailed:
    """A retryable error: nothing moves, Synced turns False."""

    error: ErrorInfo
    generation: int | None = None


@dataclass(frozen=True)
class RefundReconciled:
    generation: int


RefundObservation = (RefundReserved | RefundObserved | RefundRefused | RefundSyncFailed
                     | RefundReconciled)


def initial_refund(now: dt.datetime, generation: int) -> RefundStatus:
    status = RefundStatus(
        phase=RefundPhase.PENDING, observed_generation=generation,
        history=(RefundHistoryEntry(RefundPhase.PENDING, timestamp(now), Source.OPERATOR),))
    return _set_ready(status, now)


def advance_refund(current: RefundStatus, observation: RefundObservation,
                   now: dt.datetime) -> RefundStatus:
    """The next status after `observation`; `current` itself when nothing changes."""
    base = current
    generation = observation.generation
    if generation is not None and (current.observed_generation or 0) < generation:
        base = current.with_changes(observed_generation=generation)
    match observation:
        case RefundReserved():
            proposed = _reserved(base, observation)
        case RefundObserved():
            proposed = _observed(base, observation, now)
        case RefundRefused(error=error):
            ends = base.phase is RefundPhase.PENDING and base.refund_id is None
            proposed = base.with_changes(phase=RefundPhase.FAILED if ends else base.phase,
                                         error=error)
            proposed = _set_synced(proposed, False, error.code, error.message, now)
        case RefundSyncFailed(error=error):
            proposed = _set_synced(base.with_changes(error=error), False, error.code,
                                   error.message, now)
        case RefundReconciled():
            synced = base.condition(SYNCED)
            proposed = base if synced is None else _set_synced(
                base, synced.status == "True", synced.reason, synced.message, now)
    if proposed.phase is not current.phase:
        source, event_id = _provenance(observation)
        entry = RefundHistoryEntry(proposed.phase, timestamp(now), source, event_id)
        proposed = proposed.with_changes(history=(*proposed.history, entry))
    proposed = _set_ready(proposed, now)
    return current if proposed == current else proposed


def _provenance(observation: RefundObservation) -> tuple[Source, str | None]:
    if isinstance(observation, RefundObserved):
        return observation.source, observation.event_id
    return Source.OPERATOR, None


def _reserved(current: RefundStatus, reserved: RefundReserved) -> RefundStatus:
    """The first reservation fixes the facts; a later one (a retry) changes nothing."""
    if current.session_uid is not None or current.phase is not RefundPhase.PENDING:
        return current
    return current.with_changes(
        session_uid=reserved.session_uid, payment_id=reserved.payment_id,
        amount=reserved.amount, currency=reserved.currency, provider=reserved.provider,
        account=reserved.account, livemode=reserved.livemode,
        provider_ref=reserved.provider_ref)


def _moves(current: RefundPhase, reported: RefundPhase) -> bool:
    return reported is current or current.precedes(reported)


def _observed(current: RefundStatus, observation: RefundObserved,
              now: dt.datetime) -> RefundStatus:
    refund = observation.refund
    if current.refund_id is None and not observation.authoritative:
        return current  # only our own create or retrieve names the refund
    if current.refund_id is not None and refund.refund_id != current.refund_id:
        return current
    reported = refund.phase
    if not _moves(current.phase, reported):
        return current
    if not observation.authoritative and reported is not current.phase and reported in (
            RefundPhase.FAILED, RefundPhase.CANCELED):
        if current.unconfirmed is not None and current.unconfirmed.phase is reported:
            return current
        return current.with_changes(
            unconfirmed=RefundUnconfirmed(reported, observation.event_id, timestamp(now)))
    unconfirmed = None if observation.authoritative else current.unconfirmed
    error = None if reported is not RefundPhase.FAILED else ErrorInfo(
        code=ErrorCode.REFUND_FAILED.value,
        message=("The provider reports the refund failed"
                 + (f": {refund.failure_reason}" if refund.failure_reason else "")),
        provider_code=refund.failure_reason)
    refreshed = current.with_changes(
        phase=reported, refund_id=refund.refund_id, unconfirmed=unconfirmed, error=error,
        amount=refund.amount if current.amount is None else current.amount,
        currency=current.currency or refund.currency,
        payment_id=current.payment_id or refund.payment_id,
        provider_status=refund.provider_status or current.provider_status,
        failure_reason=refund.failure_reason or current.failure_reason,
        livemode=current.livemode if current.livemode is not None else refund.livemode,
    )
    return _set_synced(refreshed, True, "ReconcileSuccess", "In sync with the provider", now)


def refund_confirmation(current: RefundStatus,
                        reported: RefundPhase) -> tuple[Source, str | None] | None:
    """When the operator's retrieve agrees with a webhook's unconfirmed report, the phase
    is credited to that webhook event."""
    unconfirmed = current.unconfirmed
    if unconfirmed is None or unconfirmed.phase is not reported:
        return None
    return Source.WEBHOOK, unconfirmed.event_id


def _set_synced(status: RefundStatus, ok: bool, reason: str, message: str,
                now: dt.datetime) -> RefundStatus:
    return status.with_changes(conditions=set_condition(
        status.conditions, SYNCED, ok, reason, message, now, status.observed_generation))


def _set_ready(status: RefundStatus, now: dt.datetime) -> RefundStatus:
    ok, reason, message = _READY[status.phase]
    if status.phase is RefundPhase.FAILED and status.error is not None:
        reason, message = status.error.code, status.error.message
    return status.with_changes(conditions=set_condition(
        status.conditions, READY, ok, reason, message, now, status.observed_generation))
