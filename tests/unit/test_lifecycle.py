"""The lifecycle is pure: exhaustive transition checks plus property tests over random
duplicated, reordered and stale observation sequences."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paykube.api.types import ErrorInfo, Phase, Source, Status
from paykube.lifecycle import (
    READY,
    SYNCED,
    Observation,
    ProviderObserved,
    ProviderRejected,
    Reconciled,
    SessionSnapshot,
    SyncFailed,
    advance,
    confirmation,
    initial,
    mark_published,
    planned_expiry,
    replanned_expiry,
    unpublished,
)

T0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
SNAP = SessionSnapshot("cs_test_1", url="https://checkout.example/cs_test_1",
                       amount_total=1000, currency="usd")
PROVIDER_PHASES = [Phase.OPEN, Phase.PROCESSING, Phase.PAID, Phase.FAILED, Phase.EXPIRED]


def observed(phase: Phase, *, cancel: bool = False, source: Source = Source.POLL,
             snap: SessionSnapshot = SNAP) -> ProviderObserved:
    """What a source reports; only the operator's own calls (operator, poll) are
    authoritative, a webhook's event is a report."""
    return ProviderObserved(phase, snap, source, event_id=f"evt_{phase.value}",
                            cancel_requested=cancel, authoritative=source is not Source.WEBHOOK)


def start() -> Status:
    return initial(T0, 1, "2026-11-27T10:00:00Z")


def at(phase: Phase) -> Status:
    status = start()
    if phase is Phase.PENDING:
        return status
    if phase is Phase.CANCELED:
        return advance(status, observed(Phase.EXPIRED, cancel=True), T0)
    return advance(status, observed(phase), T0)


# DESIGN.md's diagram, edge by edge, written from the picture (not from the code):
#   Pending -> Open -> Processing -> Paid | Failed; Open -> Expired | Canceled;
#   Pending -> Failed.
DIAGRAM = {
    (Phase.PENDING, Phase.OPEN), (Phase.OPEN, Phase.PROCESSING),
    (Phase.PROCESSING, Phase.PAID), (Phase.PROCESSING, Phase.FAILED),
    (Phase.OPEN, Phase.EXPIRED), (Phase.OPEN, Phase.CANCELED), (Phase.PENDING, Phase.FAILED),
}
# Its transitive closure, spelled out: a report may skip phases (Open -> Paid) but never
# go against the arrows.
LATER = {
    Phase.PENDING: {Phase.OPEN, Phase.PROCESSING, Phase.PAID, Phase.FAILED, Phase.EXPIRED,
                    Phase.CANCELED},
    Phase.OPEN: {Phase.PROCESSING, Phase.PAID, Phase.FAILED, Phase.EXPIRED, Phase.CANCELED},
    Phase.PROCESSING: {Phase.PAID, Phase.FAILED},
    Phase.PAID: set(), Phase.FAILED: set(), Phase.EXPIRED: set(), Phase.CANCELED: set(),
}
# What the provider can report: each provider phase, and Expired after our own request
# (which means Canceled).
REPORTS = [(phase, False) for phase in PROVIDER_PHASES] + [(Phase.EXPIRED, True)]


def forward_or_same(before: Phase, after: Phase) -> bool:
    return after is before or after in LATER[before]


def test_the_later_table_is_the_closure_of_the_diagram() -> None:
    closure = set(DIAGRAM)
    while True:
        grown = closure | {(a, d) for a, b in closure for c, d in closure if b is c}
        if grown == closure:
            break
        closure = grown
    assert closure == {(a, b) for a, later in LATER.items() for b in later}


@pytest.mark.parametrize(("current", "report"), list(itertools.product(list(Phase), REPORTS)))
def test_every_pair_moves_along_the_diagram_or_stays(current: Phase,
                                                     report: tuple[Phase, bool]) -> None:
    reported, cancel = report
    meant = Phase.CANCELED if cancel and reported is Phase.EXPIRED else reported
    before = at(current)
    after = advance(before, observed(reported, cancel=cancel), T0)
    expected = meant if meant in LATER[current] else current
    assert after.phase is expected
    assert before.phase.precedes(after.phase) is (after.phase is not current)


@pytest.mark.parametrize("ending", [Phase.EXPIRED, Phase.CANCELED])
def test_a_processing_session_is_never_expired_or_canceled(ending: Phase) -> None:
    processing = at(Phase.PROCESSING)
    report = observed(Phase.EXPIRED, cancel=ending is Phase.CANCELED)
    assert advance(processing, report, T0) is processing
    # ... so the payment's outcome, arriving later, is still recorded: Paid is never lost.
    assert advance(processing, observed(Phase.PAID), T0).phase is Phase.PAID


def test_phase_order_matches_the_diagram() -> None:
    for a, b in itertools.product(list(Phase), repeat=2):
        assert a.precedes(b) is (b in LATER[a]), (a, b)
        if a.precedes(b):
            assert a.rank < b.rank, "the mirror's total order agrees with the diagram"
    assert {p for p in Phase if p.terminal} == {p for p in Phase if not LATER[p]}


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


def test_conditions_carry_the_generation_of_the_observation_that_set_them() -> None:
    open_ = at(Phase.OPEN)
    synced = open_.condition(SYNCED)
    assert synced is not None and synced.observed_generation == 1
    t1 = T0 + dt.timedelta(minutes=1)
    error = ErrorInfo("RateLimited", "slow down", retryable=True)
    for seen in (SyncFailed(error, 2), ProviderRejected(error, Source.OPERATOR, 2),
                 ProviderObserved(Phase.OPEN, SNAP, Source.POLL, generation=2), Reconciled(2)):
        after = advance(open_, seen, t1)
        assert after.observed_generation == 2
        for type_ in (SYNCED, READY):
            condition = after.condition(type_)
            assert condition is not None and condition.observed_generation == 2, (seen, type_)
    restated = advance(open_, Reconciled(2), t1).condition(SYNCED)
    assert restated is not None
    assert restated.last_transition_time == synced.last_transition_time


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

# In-order stories a session can tell, each ending in one terminal phase: the provider's
# phases, our cancel (an expiry we asked for) and a rejected create.
STORIES = [
    ["open", "paid"],
    ["open", "processing", "paid"],
    ["open", "processing", "failed"],
    ["open", "expired"],
    ["open", "canceled"],
    ["rejected"],
]
ENDING = {"paid": Phase.PAID, "failed": Phase.FAILED, "expired": Phase.EXPIRED,
          "canceled": Phase.CANCELED, "rejected": Phase.FAILED}
REJECTED = ErrorInfo("ProviderRejected", "invalid currency", provider_code="parameter_invalid")
SOURCES = [Source.WEBHOOK, Source.POLL, Source.OPERATOR]


def observation(step: str, source: Source) -> Observation:
    """One told step, as the webhook, a poll or the operator's own call reports it."""
    if step == "rejected":
        return ProviderRejected(REJECTED, source)
    if step == "retryable":
        return SyncFailed(ErrorInfo("RateLimited", "slow down", retryable=True))
    if step == "canceled":
        return observed(Phase.EXPIRED, cancel=True, source=source)
    return observed(Phase(step.capitalize()), source=source)


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, Source]]]:
    """A story and a delivery of it: shuffled, with duplicates, stale replays and retryable
    failures, each step reported by the webhook, a poll or the operator."""
    story = draw(st.sampled_from(STORIES))
    copies = draw(st.lists(st.sampled_from([*story, "retryable"]), max_size=8))
    steps = draw(st.permutations(story + copies))
    sources = draw(st.lists(st.sampled_from(SOURCES), min_size=len(steps),
                            max_size=len(steps)))
    return story, list(zip(steps, sources, strict=True))


@settings(max_examples=500, deadline=None)
@given(delivered())
def test_any_delivery_order_ends_where_in_order_delivery_ends(
    case: tuple[list[str], list[tuple[str, Source]]],
) -> None:
    """The operator's create answer names the session first (a webhook cannot); then the
    story's reports arrive in any order from any source, and the operator's confirming
    retrieve of the truth comes last. The ending is the truth, reached without a step back."""
    story, delivery = case
    in_order = start()
    for step in story:
        in_order = advance(in_order, observation(step, Source.OPERATOR), T0)
    assert in_order.phase is ENDING[story[-1]]
    shuffled = start()
    if story[0] == "open":
        shuffled = advance(shuffled, observation("open", Source.OPERATOR), T0)
    for n, (step, source) in enumerate(delivery):
        previous = shuffled
        shuffled = advance(shuffled, observation(step, source), T0 + dt.timedelta(seconds=n))
        assert forward_or_same(previous.phase, shuffled.phase), "never backwards"
        if previous.phase is Phase.PAID:
            assert shuffled.phase is Phase.PAID, "Paid is never lost"
    truth = observation(story[-1], Source.POLL)
    shuffled = advance(shuffled, truth, T0 + dt.timedelta(hours=1))
    assert shuffled.phase is in_order.phase
    assert shuffled.unconfirmed is None
    phases = [h.phase for h in shuffled.history]
    assert len(phases) == len(set(phases)), "one history entry per phase reached"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REPORTS), st.sampled_from(SOURCES)), max_size=12))
def test_random_observations_never_move_backwards(
    steps: list[tuple[tuple[Phase, bool], Source]],
) -> None:
    status = start()
    for (phase, cancel), source in steps:
        nxt = advance(status, observed(phase, cancel=cancel, source=source), T0)
        assert forward_or_same(status.phase, nxt.phase)
        if status.phase.terminal:
            assert nxt.phase is status.phase
        status = nxt


# -- the planned expiry ----------------------------------------------------------------------

EXPIRY_REFUSED = ErrorInfo("ProviderRejected", "expires_at must be at least 30 minutes out",
                           provider_code="parameter_invalid_integer", param="expires_at",
                           type="invalid_request_error")


def test_planned_expiry_stays_inside_stripes_window() -> None:
    assert planned_expiry(dt.timedelta(hours=2), T0) == "2026-11-26T12:00:00Z"
    assert planned_expiry(dt.timedelta(minutes=30), T0) == "2026-11-26T10:32:00Z"
    # 24 h is Stripe's maximum by its clock: keep a few minutes for skew and the request.
    assert planned_expiry(dt.timedelta(hours=24), T0) == "2026-11-27T09:55:00Z"


def test_a_refused_expiry_is_replanned_from_now_while_no_session_exists() -> None:
    pending = start()  # planned at T0 for 24 h
    later = T0 + dt.timedelta(minutes=7)  # the create waited in retries
    replanned = replanned_expiry(pending, EXPIRY_REFUSED, dt.timedelta(minutes=30), later)
    assert replanned == "2026-11-26T10:39:00Z"


@pytest.mark.parametrize("case", ["other param", "retryable", "not ProviderRejected",
                                  "has a session", "failed"])
def test_no_replan_for_other_errors_or_a_created_session(case: str) -> None:
    pending = start()
    later = T0 + dt.timedelta(minutes=7)
    error = EXPIRY_REFUSED
    after = dt.timedelta(minutes=30)
    if case == "other param":
        error = dataclasses.replace(error, param="line_items[0][price_data][currency]")
    elif case == "retryable":
        error = dataclasses.replace(error, retryable=True)
    elif case == "not ProviderRejected":
        error = dataclasses.replace(error, code="CredentialsInvalid")
    elif case == "has a session":
        pending = pending.with_changes(session_id="cs_test_1")
    elif case == "failed":
        pending = advance(pending, ProviderRejected(EXPIRY_REFUSED), T0)
    assert replanned_expiry(pending, error, after, later) is None


def test_error_param_and_type_round_trip_through_status() -> None:
    status = advance(start(), ProviderRejected(EXPIRY_REFUSED), T0)
    rendered = status.to_dict()["error"]
    assert (rendered["param"], rendered["type"]) == ("expires_at", "invalid_request_error")
    assert Status.from_dict(status.to_dict()).error == EXPIRY_REFUSED


# -- trust: the provider's answer is the truth, a webhook event only a report ---------------

def webhook(phase: Phase, *, cancel: bool = False, snap: SessionSnapshot = SNAP,
            event_id: str = "evt_hook") -> ProviderObserved:
    return ProviderObserved(phase, snap, Source.WEBHOOK, event_id=event_id,
                            cancel_requested=cancel)


@pytest.mark.parametrize("phase", PROVIDER_PHASES)
def test_a_webhook_never_adopts_a_session(phase: Phase) -> None:
    """An object without a session id (the create still retrying) ignores every event,
    even one carrying its metadata: only the operator's own create names the session."""
    assert advance(start(), webhook(phase), T0) == start()


def test_a_webhook_never_changes_the_url_or_the_session() -> None:
    opened = at(Phase.OPEN)
    swapped = dataclasses.replace(SNAP, url="https://evil.example/pay")
    after = advance(opened, webhook(Phase.OPEN, snap=swapped), T0)
    assert after.url == SNAP.url and after.session_id == SNAP.session_id
    other = dataclasses.replace(SNAP, session_id="cs_test_other")
    assert advance(opened, webhook(Phase.PAID, snap=other), T0) == opened


@pytest.mark.parametrize(("reported", "cancel", "ending"), [
    (Phase.EXPIRED, False, Phase.EXPIRED), (Phase.EXPIRED, True, Phase.CANCELED),
    (Phase.FAILED, False, Phase.FAILED)])
def test_a_webhook_ending_other_than_paid_waits_for_confirmation(
        reported: Phase, cancel: bool, ending: Phase) -> None:
    before = at(Phase.PROCESSING) if reported is Phase.FAILED else at(Phase.OPEN)
    after = advance(before, webhook(reported, cancel=cancel), T0)
    assert after.phase is before.phase
    assert after.unconfirmed is not None and after.unconfirmed.phase is ending
    assert after.unconfirmed.event_id == "evt_hook"
    # The same report again changes nothing (duplicates are cheap).
    assert advance(after, webhook(reported, cancel=cancel), T0) == after
    assert confirmation(after, ending) == (Source.WEBHOOK, "evt_hook")
    confirmed = advance(after, ProviderObserved(reported, SNAP, Source.WEBHOOK, "evt_hook",
                                                cancel_requested=cancel, authoritative=True),
                        T0)
    assert confirmed.phase is ending and confirmed.unconfirmed is None
    assert (confirmed.history[-1].source, confirmed.history[-1].event_id) == (
        Source.WEBHOOK, "evt_hook")


def test_expired_before_completed_for_a_paid_session_ends_paid() -> None:
    """The issue's contradiction: a signed `expired` arrives first for a session the
    provider holds as paid. The retrieve says paid: the object ends Paid, never Expired."""
    reported = advance(at(Phase.OPEN), webhook(Phase.EXPIRED), T0)
    assert confirmation(reported, Phase.PAID) is None  # a contradiction
    truth = advance(reported, observed(Phase.PAID, source=Source.POLL), T0)
    assert truth.phase is Phase.PAID and truth.unconfirmed is None
    assert Phase.EXPIRED not in [h.phase for h in truth.history]


def test_a_paid_event_settles_a_pending_report() -> None:
    reported = advance(at(Phase.OPEN), webhook(Phase.EXPIRED), T0)
    paid = advance(reported, webhook(Phase.PAID), T0)
    assert paid.phase is Phase.PAID and paid.unconfirmed is None


def test_a_report_the_provider_denies_is_dropped_and_the_session_stays_open() -> None:
    reported = advance(at(Phase.OPEN), webhook(Phase.EXPIRED), T0)
    still_open = advance(reported, observed(Phase.OPEN, source=Source.POLL), T0)
    assert still_open.phase is Phase.OPEN and still_open.unconfirmed is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(REPORTS), max_size=10), st.sampled_from(REPORTS))
def test_webhooks_alone_never_end_a_session_otherwise_than_paid(
        reports: list[tuple[Phase, bool]], truth: tuple[Phase, bool]) -> None:
    """Whatever signed events say, only Paid or a confirming retrieve ends a session; and
    the retrieve's truth always wins over the reports."""
    status = at(Phase.OPEN)
    for phase, cancel in reports:
        nxt = advance(status, webhook(phase, cancel=cancel), T0)
        assert nxt.phase is status.phase or nxt.phase in (Phase.PROCESSING, Phase.PAID)
        assert nxt.url == SNAP.url and nxt.session_id == SNAP.session_id
        status = nxt
    phase, cancel = truth
    final = advance(status, observed(phase, cancel=cancel, source=Source.POLL), T0)
    assert final.unconfirmed is None
    if status.phase is Phase.PAID:
        assert final.phase is Phase.PAID
