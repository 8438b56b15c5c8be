"""The PaymentSession lifecycle: one pure function from (status, observation, now) to status.

Both writers use it: the operator (create, poll, expiry, cancel) and the webhook (provider
events). Phases form a partial order (`Phase.precedes`) and terminal phases absorb, so a stale,
duplicate or out-of-order observation never moves a session backwards and Paid is never
lost. Concurrent writers converge because each re-reads, re-applies and writes with the
resourceVersion as precondition.

Trust: the provider's API is the truth, a webhook event only a report of it.

- An *authoritative* observation is the answer to the operator's own call to the provider
  (create, retrieve, expire). Only it may set `sessionId`, `url`, `livemode` and `account`.
- A webhook observation applies only to the session the object already has (its id equals
  `status.sessionId`); an object without one ignores every event.
- A webhook may move a session forward to Processing or Paid (the caller has checked amount
  and currency against the spec). An ending other than Paid (Failed, Expired, Canceled) from
  a webhook is only recorded in `status.unconfirmed`; the operator confirms it with one
  retrieve, and the retrieve decides. So a signed `expired` event that contradicts a paid
  session can never end it: the retrieve says paid and the session ends Paid.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from paykube.api.types import (
    Condition,
    ErrorInfo,
    HistoryEntry,
    Phase,
    Source,
    Status,
    Unconfirmed,
)

READY = "Ready"
SYNCED = "Synced"

# Ready: the object is in a good state for its stage (a usable checkout URL, or paid).
_READY: dict[Phase, tuple[bool, str, str]] = {
    Phase.PENDING: (False, "Creating", "Creating the checkout session with the provider"),
    Phase.OPEN: (True, "SessionOpen", "Checkout session is open and its URL can be used"),
    Phase.PROCESSING: (True, "PaymentProcessing", "Customer paid; the payment is settling"),
    Phase.PAID: (True, "Paid", "Payment succeeded"),
    Phase.FAILED: (False, "PaymentFailed", "Payment failed"),
    Phase.EXPIRED: (False, "SessionExpired", "The provider expired the checkout session"),
    Phase.CANCELED: (False, "Canceled", "The checkout session was expired on request"),
}


@dataclass(frozen=True)
class SessionSnapshot:
    """Provider-neutral facts about a checkout session, as the provider reported them."""

    session_id: str
    url: str | None = None
    payment_intent_id: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    expires_at: str | None = None
    livemode: bool | None = None
    account: str | None = None  # the Connect account the session lives in
    provider: str | None = None  # the PSP type (stripe)


@dataclass(frozen=True)
class ProviderObserved:
    """The provider reports the session in `phase` (one of Open..Expired).

    `cancel_requested` is true when we asked the provider to expire it (spec.cancel or
    deletion): an Expired report then means Canceled. `authoritative` is true only for the
    answer to the operator's own call to the provider (see the module's trust rules).
    """

    phase: Phase
    session: SessionSnapshot
    source: Source
    event_id: str | None = None
    cancel_requested: bool = False
    generation: int | None = None
    authoritative: bool = False


@dataclass(frozen=True)
class ProviderRejected:
    """A permanent provider error: a Pending session fails, a later one keeps its phase."""

    error: ErrorInfo
    source: Source = Source.OPERATOR
    generation: int | None = None


@dataclass(frozen=True)
class SyncFailed:
    """A retryable error (provider down, rate limited): nothing moves, Synced turns False."""

    error: ErrorInfo
    generation: int | None = None


@dataclass(frozen=True)
class Reconciled:
    """The operator looked at the object and had nothing to change (records the generation)."""

    generation: int


Observation = ProviderObserved | ProviderRejected | SyncFailed | Reconciled


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> dt.datetime:
    """The inverse of `timestamp` (Kubernetes' RFC 3339 with a Z)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# Stripe accepts an expires_at from 30 minutes to 24 hours after it receives the create,
# by its own clock: plan a little inside both bounds for the request's way and clock skew.
MIN_EXPIRY_WINDOW = dt.timedelta(minutes=32)
MAX_EXPIRY_WINDOW = dt.timedelta(hours=24) - dt.timedelta(minutes=5)
EXPIRY_PARAM = "expires_at"


def planned_expiry(expires_after: dt.timedelta, now: dt.datetime) -> str:
    """The session's expiry for a create sent now (spec.expiresAfter, within the bounds)."""
    return timestamp(now + min(max(expires_after, MIN_EXPIRY_WINDOW), MAX_EXPIRY_WINDOW))


def replanned_expiry(current: Status, error: ErrorInfo, expires_after: dt.timedelta,
                     now: dt.datetime) -> str | None:
    """A new expiry when the provider refused the planned one, else None.

    The plan is fixed at Pending; when the create was delayed (429/5xx retries, a long
    queue) it may have fallen under the provider's minimum lifetime. The provider does not
    store a validation error under the idempotency key, so the create may be retried with
    a new plan under the same key, as long as no session exists yet."""
    if current.phase is not Phase.PENDING or current.session_id:
        return None
    if error.retryable or error.param != EXPIRY_PARAM or error.code != "ProviderRejected":
        return None
    # Re-planned once per create attempt (the caller retries once): a second refusal fails.
    return planned_expiry(expires_after, now)


def initial(now: dt.datetime, generation: int, expires_at: str) -> Status:
    """The first status of a new object: Pending, with its planned expiry recorded.

    The expiry is fixed here, before the provider is called, so that a retried create sends
    the same parameters under the same idempotency key.
    """
    status = Status(
        phase=Phase.PENDING, expires_at=expires_at, observed_generation=generation,
        history=(HistoryEntry(Phase.PENDING, timestamp(now), Source.OPERATOR),),
    )
    return _set_ready(status, now)


def advance(current: Status, observation: Observation, now: dt.datetime) -> Status:
    """The next status after `observation`; returns `current` unchanged when nothing changes."""
    # The generation first: the conditions written below carry it as their observedGeneration.
    base = current
    generation = observation.generation
    if generation is not None and (current.observed_generation or 0) < generation:
        base = current.with_changes(observed_generation=generation)
    match observation:
        case ProviderObserved():
            proposed = _observed(base, observation, now)
        case ProviderRejected(error=error):
            target = Phase.FAILED if base.phase is Phase.PENDING else base.phase
            proposed = base.with_changes(phase=target, error=error)
            proposed = _set_synced(proposed, False, error.code, error.message, now)
        case SyncFailed(error=error):
            proposed = base.with_changes(error=error)
            proposed = _set_synced(proposed, False, error.code, error.message, now)
        case Reconciled():
            # Looking at a new generation restates Synced for it (as a controller-runtime
            # reconcile sets its conditions); its status and lastTransitionTime stay.
            synced = base.condition(SYNCED)
            proposed = base if synced is None else _set_synced(
                base, synced.status == "True", synced.reason, synced.message, now)
    if proposed.phase is not current.phase:
        entry = HistoryEntry(proposed.phase, timestamp(now), *_provenance(observation))
        proposed = proposed.with_changes(history=(*proposed.history, entry))
    proposed = _set_ready(proposed, now)
    return current if proposed == current else proposed


def _provenance(observation: Observation) -> tuple[Source, str | None]:
    match observation:
        case ProviderObserved(source=source, event_id=event_id):
            return source, event_id
        case ProviderRejected(source=source):
            return source, None
    return Source.OPERATOR, None


def _reported_phase(observation: ProviderObserved) -> Phase:
    """Expired means Canceled when we asked for the expiry."""
    if observation.phase is Phase.EXPIRED and observation.cancel_requested:
        return Phase.CANCELED
    return observation.phase


def _observed(current: Status, observation: ProviderObserved, now: dt.datetime) -> Status:
    if not observation.authoritative:
        return _reported(current, observation, now)
    # Our own call answered: whatever a webhook reported before is settled by this.
    base = current.with_changes(unconfirmed=None)
    reported = _reported_phase(observation)
    # Stale (an earlier phase), another ending than the one reached, or a move the diagram
    # does not have (Processing -> Expired): nothing to learn. The same phase refreshes.
    stale = reported is not base.phase and not base.phase.precedes(reported)
    snap = observation.session
    foreign = base.session_id is not None and snap.session_id != base.session_id
    if stale or foreign:
        return base
    error = base.error if reported is Phase.FAILED and base.error else None
    refreshed = base.with_changes(
        phase=reported,
        session_id=snap.session_id,
        url=snap.url or base.url,
        livemode=snap.livemode if snap.livemode is not None else base.livemode,
        account=snap.account or base.account,
        provider=snap.provider or base.provider,
        error=error,
        **_facts(base, snap),
    )
    return _set_synced(refreshed, True, "ReconcileSuccess", "In sync with the provider", now)


def _facts(current: Status, snap: SessionSnapshot) -> dict[str, object]:
    """The payment facts any observation of the object's own session may refresh."""
    return {
        "payment_intent_id": snap.payment_intent_id or current.payment_intent_id,
        "payment_status": snap.payment_status or current.payment_status,
        "amount_total": (snap.amount_total if snap.amount_total is not None
                         else current.amount_total),
        "currency": snap.currency or current.currency,
        "expires_at": snap.expires_at or current.expires_at,
    }


def _reported(current: Status, observation: ProviderObserved, now: dt.datetime) -> Status:
    """A webhook's report: never adopts a session, never changes the URL or the ids, and
    ends a session otherwise than Paid only after the operator's confirming retrieve."""
    snap = observation.session
    if current.session_id is None or snap.session_id != current.session_id:
        return current
    reported = _reported_phase(observation)
    if reported is not current.phase and not current.phase.precedes(reported):
        return current
    if reported.terminal and reported is not Phase.PAID:
        if current.unconfirmed is not None and current.unconfirmed.phase is reported:
            return current
        return current.with_changes(
            unconfirmed=Unconfirmed(reported, observation.event_id, timestamp(now)))
    unconfirmed = None if reported.terminal else current.unconfirmed
    refreshed = current.with_changes(phase=reported, unconfirmed=unconfirmed,
                                     **_facts(current, snap))
    return _set_synced(refreshed, True, "ReconcileSuccess", "In sync with the provider", now)


def confirmation(current: Status, reported: Phase) -> tuple[Source, str | None] | None:
    """When the operator's retrieve agrees with what a webhook reported (`unconfirmed`),
    the phase is credited to that webhook event: (source, event id); else None."""
    unconfirmed = current.unconfirmed
    if unconfirmed is None or unconfirmed.phase is not reported:
        return None
    return Source.WEBHOOK, unconfirmed.event_id


def set_condition(
    conditions: tuple[Condition, ...], type_: str, status: bool, reason: str, message: str,
    now: dt.datetime, generation: int | None,
) -> tuple[Condition, ...]:
    """Upsert a condition; lastTransitionTime changes only when its status flips."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else timestamp(now)
    new = Condition(type_, value, reason, message, since, generation)
    if old == new:
        return conditions
    rest = tuple(c for c in conditions if c.type != type_)
    return tuple(sorted((*rest, new), key=lambda c: c.type))


def _set_synced(status: Status, ok: bool, reason: str, message: str, now: dt.datetime) -> Status:
    conditions = set_condition(status.conditions, SYNCED, ok, reason, message, now,
                               status.observed_generation)
    return status.with_changes(conditions=conditions)


def _set_ready(status: Status, now: dt.datetime) -> Status:
    ok, reason, message = _READY[status.phase]
    if status.phase is Phase.FAILED and status.error is not None:
        reason, message = status.error.code, status.error.message
    conditions = set_condition(status.conditions, READY, ok, reason, message, now,
                               status.observed_generation)
    return status.with_changes(conditions=conditions)


def mark_published(status: Status, phase: Phase) -> Status:
    """Record in the outbox (`history[].published`) that `phase`'s event reached the broker."""
    history = tuple(
        HistoryEntry(h.phase, h.at, h.source, h.event_id, True) if h.phase is phase else h
        for h in status.history
    )
    return status.with_changes(history=history)


def unpublished(status: Status) -> tuple[HistoryEntry, ...]:
    return tuple(h for h in status.history if not h.published)
