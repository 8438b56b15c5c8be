"""The refund lifecycle and the per-session reservation: pure functions, tested
exhaustively where the space is small and by properties where it is not."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paykube.api.refunds import RefundSnapshot, RefundSpec, RefundStatus
from paykube.api.types import ErrorInfo, Phase, RefundPhase, RefundRecord, Source, Status
from paykube.refunds.lifecycle import (
    RefundObserved,
    RefundRefused,
    RefundReserved,
    RefundSyncFailed,
    advance_refund,
    initial_refund,
    refund_confirmation,
)
from paykube.refunds.reservation import (
    REFUNDED,
    record_of,
    refundable_rest,
    refusal,
    reserve,
    update_record,
    with_refunded,
)

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
PHASES = list(RefundPhase)
SOURCES = [Source.WEBHOOK, Source.POLL, Source.OPERATOR]


def snap(phase: RefundPhase, refund_id: str = "re_1", amount: int = 500,
         uid: str | None = "uid-1") -> RefundSnapshot:
    return RefundSnapshot(refund_id, phase, amount, "usd", "pi_1", phase.value.lower(),
                          "unknown" if phase is RefundPhase.FAILED else None, uid, False)


def created(phase: RefundPhase = RefundPhase.PENDING) -> RefundStatus:
    status = initial_refund(NOW, 1)
    status = advance_refund(status, RefundReserved("s-uid", "pi_1", 500, "usd", "stripe"), NOW)
    return advance_refund(status, RefundObserved(snap(phase), Source.OPERATOR,
                                                 authoritative=True), NOW)


def test_the_order_is_pending_action_then_endings_and_a_bank_return() -> None:
    p, a, s, f, c = PHASES
    assert {x for x in PHASES if p.precedes(x)} == {a, s, f, c}
    assert {x for x in PHASES if a.precedes(x)} == {s, f, c}
    assert {x for x in PHASES if s.precedes(x)} == {f}
    assert f.terminal and c.terminal and not s.terminal
    assert s.settled and f.settled and c.settled and not p.settled and not a.settled
    assert [x for x in PHASES if x.holds_money] == [p, a, s]


@pytest.mark.parametrize(("current", "reported"), list(itertools.product(PHASES, PHASES)))
def test_an_authoritative_report_moves_forward_or_not_at_all(current: RefundPhase,
                                                             reported: RefundPhase) -> None:
    status = created(current) if current is not RefundPhase.PENDING else created()
    assert status.phase is current
    after = advance_refund(status, RefundObserved(snap(reported), Source.POLL,
                                                  authoritative=True), NOW)
    moves = reported is current or current.precedes(reported)
    assert after.phase is (reported if moves else current)


@pytest.mark.parametrize(("current", "reported"), list(itertools.product(PHASES, PHASES)))
def test_a_webhook_moves_forward_only_to_action_or_success(current: RefundPhase,
                                                           reported: RefundPhase) -> None:
    status = created(current)
    after = advance_refund(status, RefundObserved(snap(reported), Source.WEBHOOK, "evt_1"),
                           NOW)
    if not current.precedes(reported):
        assert after.phase is current and after.unconfirmed == status.unconfirmed
    elif reported in (RefundPhase.FAILED, RefundPhase.CANCELED):
        assert after.phase is current
        assert after.unconfirmed is not None and after.unconfirmed.phase is reported
        assert refund_confirmation(after, reported) == (Source.WEBHOOK, "evt_1")
    else:
        assert after.phase is reported
        assert after.history[-1].source is Source.WEBHOOK


def test_a_webhook_never_names_the_refund() -> None:
    reserved = advance_refund(initial_refund(NOW, 1),
                              RefundReserved("s-uid", "pi_1", 500, "usd", "stripe"), NOW)
    for phase in PHASES:
        after = advance_refund(reserved, RefundObserved(snap(phase), Source.WEBHOOK), NOW)
        assert after is reserved


def test_another_refund_id_is_ignored() -> None:
    status = created()
    other = RefundObserved(snap(RefundPhase.SUCCEEDED, refund_id="re_other"), Source.POLL,
                           authoritative=True)
    assert advance_refund(status, other, NOW) is status


def test_a_refusal_fails_only_what_never_reached_the_provider() -> None:
    error = ErrorInfo(code="AmountExceedsRefundable", message="too much")
    pending = initial_refund(NOW, 1)
    failed = advance_refund(pending, RefundRefused(error), NOW)
    assert failed.phase is RefundPhase.FAILED and failed.error == error
    ready = failed.condition("Ready")
    assert ready is not None and ready.reason == "AmountExceedsRefundable"
    at_psp = created()
    kept = advance_refund(at_psp, RefundRefused(error), NOW)
    assert kept.phase is RefundPhase.PENDING
    synced = kept.condition("Synced")
    assert synced is not None and synced.status == "False"


def test_the_reservation_is_fixed_once() -> None:
    first = advance_refund(initial_refund(NOW, 1),
                           RefundReserved("s-uid", "pi_1", 500, "usd", "stripe"), NOW)
    again = advance_refund(first, RefundReserved("other", "pi_2", 9, "eur", "stripe"), NOW)
    assert again is first and first.amount == 500 and first.payment_id == "pi_1"


def test_a_sync_failure_moves_nothing_and_success_clears_it() -> None:
    status = created()
    error = ErrorInfo(code="RateLimited", message="429", retryable=True)
    failed = advance_refund(status, RefundSyncFailed(error), NOW)
    assert failed.phase is status.phase and failed.error == error
    done = advance_refund(failed, RefundObserved(snap(RefundPhase.SUCCEEDED), Source.POLL,
                                                 authoritative=True), NOW)
    assert done.error is None and done.phase is RefundPhase.SUCCEEDED


def test_status_round_trips_through_its_dict() -> None:
    status = advance_refund(created(), RefundObserved(snap(RefundPhase.FAILED), Source.WEBHOOK,
                                                      "evt_9"), NOW)
    assert RefundStatus.from_dict(status.to_dict()) == status


OBSERVATIONS = st.tuples(st.sampled_from(PHASES), st.sampled_from(SOURCES), st.booleans())


@given(st.lists(OBSERVATIONS, max_size=12))
def test_random_observations_never_move_backwards(steps: list[tuple[RefundPhase, Source,
                                                                    bool]]) -> None:
    status = created()
    for phase, source, authoritative in steps:
        after = advance_refund(status, RefundObserved(snap(phase), source, None,
                                                      authoritative=authoritative), NOW)
        assert after.phase is status.phase or status.phase.precedes(after.phase)
        assert len(after.history) >= len(status.history)
        # Only an authoritative report ends a refund otherwise than Succeeded.
        if after.phase in (RefundPhase.FAILED, RefundPhase.CANCELED) and \
                after.phase is not status.phase:
            assert authoritative
        status = after


@given(st.permutations([RefundPhase.REQUIRES_ACTION, RefundPhase.SUCCEEDED]),
       st.lists(st.sampled_from(PHASES), max_size=4))
def test_webhooks_in_any_order_end_where_the_provider_is(
        order: list[RefundPhase], noise: list[RefundPhase]) -> None:
    status = created()
    for phase in [*order, *noise]:
        status = advance_refund(status, RefundObserved(snap(phase), Source.WEBHOOK), NOW)
    # Whatever arrived, the retrieve (the provider's truth: succeeded) settles it.
    final = advance_refund(status, RefundObserved(snap(RefundPhase.SUCCEEDED), Source.POLL,
                                                  authoritative=True), NOW)
    assert final.phase is RefundPhase.SUCCEEDED and final.unconfirmed is None


def paid(total: int = 1000, records: tuple[RefundRecord, ...] = ()) -> Status:
    return Status(phase=Phase.PAID, amount_total=total, currency="usd", refunds=records)


def test_the_rest_counts_the_provider_and_our_unknown_reservations() -> None:
    at_psp = [snap(RefundPhase.SUCCEEDED, "re_a", 200, None),  # the Dashboard's
              snap(RefundPhase.FAILED, "re_b", 300, "u-b")]   # gave nothing back
    records = (RefundRecord("b", "u-b", 300, RefundPhase.FAILED, "re_b"),
               RefundRecord("c", "u-c", 100),  # reserved, not yet at the provider
               RefundRecord("me", "u-me", 50))
    assert refundable_rest(paid(1000, records), at_psp, "u-me") == 1000 - 200 - 100
    # Once the provider knows c (by id or by its uid), it counts once.
    known = [*at_psp, snap(RefundPhase.PENDING, "re_c", 100, "u-c")]
    assert refundable_rest(paid(1000, records), known, "u-me") == 1000 - 200 - 100


@given(st.integers(1, 10_000), st.lists(st.integers(1, 5_000), max_size=6))
def test_reservations_never_exceed_what_was_paid(total: int, asks: list[int]) -> None:
    session = paid(total)
    for i, ask in enumerate(asks):
        rest = refundable_rest(session, [], f"u-{i}")
        spec = RefundSpec("s", ask)
        if refusal(session, spec, rest) is None:
            session = reserve(session, RefundRecord(f"r{i}", f"u-{i}", ask))
    assert sum(r.amount for r in session.refunds) <= total


def test_refusals_say_what_to_fix() -> None:
    session = paid(1000)
    assert refusal(session, RefundSpec("s", 1001), 1000) is not None
    too_much = refusal(session, RefundSpec("s", 1001), 1000)
    assert too_much is not None and too_much.code == "AmountExceedsRefundable"
    assert "1000" in too_much.message
    nothing = refusal(session, RefundSpec("s"), 0)
    assert nothing is not None and nothing.code == "AmountExceedsRefundable"
    full = paid(1000, tuple(RefundRecord(f"r{i}", f"u{i}", 1) for i in range(50)))
    many = refusal(full, RefundSpec("s", 1), 500)
    assert many is not None and many.code == "TooManyRefunds"


def test_records_follow_their_refund_forward_only() -> None:
    session = reserve(paid(), RefundRecord("r", "u", 300))
    assert reserve(session, RefundRecord("r", "u", 999)) is session
    moved = update_record(session, "u", RefundPhase.SUCCEEDED, "re_1")
    record = record_of(moved, "u")
    assert record is not None and (record.phase, record.refund_id) == (
        RefundPhase.SUCCEEDED, "re_1")
    back = update_record(moved, "u", RefundPhase.PENDING, None)
    assert record_of(back, "u") == record


def test_refunded_amount_and_condition_keep_paid() -> None:
    session = paid(1000)
    part = with_refunded(session, 300, NOW)
    condition = part.condition(REFUNDED)
    assert part.phase is Phase.PAID and part.amount_refunded == 300
    assert condition is not None and (condition.status, condition.reason) == (
        "False", "PartiallyRefunded")
    full = with_refunded(part, 1000, NOW)
    condition = full.condition(REFUNDED)
    assert condition is not None and (condition.status, condition.reason) == (
        "True", "FullyRefunded")
    # A webhook's report only raises it; the operator's list may lower it (a return).
    assert with_refunded(full, 300, NOW, raise_only=True) is full
    assert with_refunded(full, 300, NOW).amount_refunded == 300
    assert with_refunded(session, 0, NOW) is session
