"""The lifecycle is pure: exhaustive transition checks plus property tests over random
duplicated, reordered and stale observation sequences."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paykube.api.types import ErrorInfo, Phase, Source, Status
from paykube.lifecycle import (
    READY,
    SYNCED,
    ProviderObserved,
    ProviderRejected,
    Reconciled,
    SessionSnapshot,
    SyncFailed,
    advance,
    initial,
    mark_published,
    unpublished,
)

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
SNAP = SessionSnapshot("cs_test_1", url="https://checkout.example/cs_test_1",
                       amount_total=1000, currency="usd")
PROVIDER_PHASES = [Phase.OPEN, Phase.PROCESSING, Phase.PAID, Phase.FAILED, Phase.EXPIRED]


def observed(phase: Phase, *, cancel: bool = False, source: Source = Source.WEBHOOK,
             snap: SessionSnapshot = SNAP) -> ProviderObserved:
    return ProviderObserved(phase, snap, source, event_id=f"evt_{phase.value}",
                            cancel_requested=cancel)


def start() -> Status:
    return initial(T0, 1, "2026-11-27T10:00:00Z")


def at(phase: Phase) -> Status:
    status = start()
    if phase is Phase.PENDING:
        return status
    if phase is Phase.CANCELED:
        return advance(status, observed(Phase.EXPIRED, cancel=True), T0)
    return advance(status, observed(phase), T0)


@pytest.mark.parametrize(("current", "reported"),
                         list(itertools.product(list(Phase), PROVIDER_PHASES)))
def test_every_pair_moves_forward_or_stays(current: Phase, reported: Phase) -> None:
    before = at(current)
    after = advance(before, observed(reported), T0)
    if current.terminal:
        assert after.phase is current, "terminal phases absorb"
    elif reported.rank > current.rank:
        assert after.phase is reported
    else:
        assert after.phase is current
    assert after.phase.rank >= before.phase.rank


def test_initial_status_is_pending_with_history_and_planned_expiry() -> None:
    status = start()
    assert status.phase is Phase.PENDING
    assert [h.phase for h in status.history] == [Phase.PENDING]
    assert status.expires_at == "2026-11-27T10:00:00Z"
    ready = status.condition(READY)
    assert ready is not None and ready.status == "False" and ready.reason == "Creating"


def test_open_records_session_fields_history_and_conditions() -> None:
    status = advance(start(), observed(Phase.OPEN, source=Source.OPERATOR), T0)
    assert status.phase is Phase.OPEN
    assert status.session_id == "cs_test_1" and status.url == SNAP.url
    assert status.history[-1].phase is Phase.OPEN
    assert status.history[-1].source is Source.OPERATOR
    assert not status.history[-1].published
    ready, synced = status.condition(READY), status.condition(SYNCED)
    assert ready is not None and (ready.status, ready.reason) == ("True", "SessionOpen")
    assert synced is not None and synced.status == "True"


def test_expired_after_cancel_request_is_canceled_and_paid_is_never_canceled() -> None:
    open_ = at(Phase.OPEN)
    assert advance(open_, observed(Phase.EXPIRED, cancel=True), T0).phase is Phase.CANCELED
    assert advance(open_, observed(Phase.EXPIRED), T0).phase is Phase.EXPIRED
    # The customer paid just before our expire call: the provider reports complete+paid.
    assert advance(open_, observed(Phase.PAID, cancel=True), T0).phase is Phase.PAID
    paid = at(Phase.PAID)
    assert advance(paid, observed(Phase.EXPIRED, cancel=True), T0) == paid


def test_rejection_fails_pending_only() -> None:
    error = ErrorInfo("ProviderRejected", "bad currency", provider_code="parameter_invalid")
    failed = advance(start(), ProviderRejected(error), T0)
    assert failed.phase is Phase.FAILED and failed.error == error
    ready = failed.condition(READY)
    assert ready is not None and ready.reason == "ProviderRejected"
    open_ = at(Phase.OPEN)
    kept = advance(open_, ProviderRejected(error), T0)
    assert kept.phase is Phase.OPEN
    synced = kept.condition(SYNCED)
    assert synced is not None and (synced.status, synced.reason) == ("False", "ProviderRejected")


def test_sync_failure_keeps_phase_and_recovery_clears_error() -> None:
    error = ErrorInfo("ProviderUnavailable", "HTTP 500", retryable=True)
    pending = advance(start(), SyncFailed(error, 1), T0)
    assert pending.phase is Phase.PENDING and pending.error == error
    recovered = advance(pending, observed(Phase.OPEN), T0 + dt.timedelta(seconds=5))
    assert recovered.error is None
    synced = recovered.condition(SYNCED)
    assert synced is not None and synced.status == "True"


def test_last_transition_time_changes_only_when_status_flips() -> None:
    error = ErrorInfo("RateLimited", "slow down", retryable=True)
    t1, t2, t3 = (T0 + dt.timedelta(minutes=n) for n in (1, 2, 3))
    first = advance(at(Phase.OPEN), SyncFailed(error), t1)
    again = advance(first, SyncFailed(ErrorInfo("ProviderUnavailable", "500"), None), t2)
    c1, c2 = first.condition(SYNCED), again.condition(SYNCED)
    assert c1 is not None and c2 is not None
    assert c2.reason == "ProviderUnavailable"
    assert c1.last_transition_time == c2.last_transition_time
    back = advance(again, observed(Phase.OPEN), t3).condition(SYNCED)
    assert back is not None and back.status == "True"
    assert back.last_transition_time == "2026-11-26T10:03:00Z"


def test_observed_generation_only_grows() -> None:
    status = advance(start(), Reconciled(3), T0)
    assert status.observed_generation == 3
    assert advance(status, Reconciled(2), T0).observed_generation == 3


def test_another_ending_does_not_touch_a_terminal_status() -> None:
    paid = at(Phase.PAID)
    late = SessionSnapshot("cs_test_1", payment_status="unpaid", amount_total=1)
    assert advance(paid, observed(Phase.EXPIRED, snap=late), T0) is paid


def test_a_foreign_session_is_ignored() -> None:
    other = SessionSnapshot("cs_test_other")
    open_ = at(Phase.OPEN)
    assert advance(open_, observed(Phase.PAID, snap=other), T0) == open_


def test_outbox_marks_published_per_phase() -> None:
    status = at(Phase.PAID)
    assert [h.phase for h in unpublished(status)] == [Phase.PENDING, Phase.PAID]
    status = mark_published(status, Phase.PENDING)
    assert [h.phase for h in unpublished(status)] == [Phase.PAID]


def test_duplicate_observation_returns_the_same_object() -> None:
    paid = at(Phase.PAID)
    assert advance(paid, observed(Phase.PAID), T0 + dt.timedelta(hours=1)) is paid


# -- property tests ------------------------------------------------------------------------

# In-order event stories a Stripe session can tell, each ending in one terminal phase.
STORIES = [
    [Phase.OPEN, Phase.PAID],
    [Phase.OPEN, Phase.PROCESSING, Phase.PAID],
    [Phase.OPEN, Phase.PROCESSING, Phase.FAILED],
    [Phase.OPEN, Phase.EXPIRED],
]


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[Phase], list[Phase]]:
    """A story and a delivery of it: shuffled, with duplicates and stale replays."""
    story = draw(st.sampled_from(STORIES))
    copies = draw(st.lists(st.sampled_from(story), max_size=8))
    delivery = draw(st.permutations(story + copies))
    return story, delivery


@settings(max_examples=400, deadline=None)
@given(delivered())
def test_any_delivery_order_ends_where_in_order_delivery_ends(
    case: tuple[list[Phase], list[Phase]],
) -> None:
    story, delivery = case
    in_order = start()
    for phase in story:
        in_order = advance(in_order, observed(phase), T0)
    shuffled = start()
    for step, phase in enumerate(delivery):
        previous = shuffled
        shuffled = advance(shuffled, observed(phase), T0 + dt.timedelta(seconds=step))
        assert shuffled.phase.rank >= previous.phase.rank, "never backwards"
        if previous.phase is Phase.PAID:
            assert shuffled.phase is Phase.PAID, "Paid is never lost"
    assert shuffled.phase is in_order.phase is story[-1]
    phases = [h.phase for h in shuffled.history]
    assert len(phases) == len(set(phases)), "one history entry per phase reached"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PROVIDER_PHASES), st.booleans()), max_size=12))
def test_random_observations_never_move_backwards(steps: list[tuple[Phase, bool]]) -> None:
    status = start()
    for phase, cancel in steps:
        nxt = advance(status, observed(phase, cancel=cancel), T0)
        assert nxt.phase.rank >= status.phase.rank
        if status.phase.terminal:
            assert nxt.phase is status.phase
        status = nxt
