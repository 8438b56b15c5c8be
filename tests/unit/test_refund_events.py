"""PaymentRefund events as CloudEvents 1.0: ids, types, source, what data holds and never
holds, and the refund outbox (order, stop at the first broker failure, marks)."""

from __future__ import annotations

import json

import pytest

from paykube.api.refunds import RefundHistoryEntry, RefundStatus, refund_api_path
from paykube.api.types import ErrorInfo, ObjectRef, RefundPhase, Source
from paykube.events import BrokerUnavailableError, CloudEvent, NullPublisher
from paykube.events.cloudevent import build_refund_event, refund_event_id, refund_event_type
from paykube.events.refund_outbox import (
    mark_refund_published,
    publish_pending_refund,
    unpublished_refund,
)
from paykube.events.stomp import destination_for

REF = ObjectRef(namespace="shop", name="order-42-shipping",
                uid="0a4e2c55-7f1d-4b8e-9a61-2f3c4d5e6f70")
SESSION = "order-42"
SESSION_UID = "5d1c7d0e-8a5b-4a57-9d0c-0c6b1f2e3a4b"


def status(*phases: RefundPhase, published: bool = False,
           error: ErrorInfo | None = None) -> RefundStatus:
    phases = phases or (RefundPhase.PENDING, RefundPhase.SUCCEEDED)
    history = tuple(
        RefundHistoryEntry(p, f"2026-11-2{i}T10:00:00Z",
                           Source.OPERATOR if i == 0 else Source.WEBHOOK,
                           None if i == 0 else f"evt_r{i}", published)
        for i, p in enumerate(phases))
    return RefundStatus(
        phase=phases[-1], provider="stripe", account="acct_1", livemode=False,
        session_uid=SESSION_UID, payment_id="pi_1", refund_id="re_1", amount=500,
        currency="eur", provider_status=phases[-1].value.lower(),
        failure_reason="expired_or_canceled_card" if phases[-1] is RefundPhase.FAILED else None,
        error=error, history=history)


def events(st: RefundStatus) -> list[CloudEvent]:
    return [build_refund_event(REF, st, entry, SESSION) for entry in st.history]


@pytest.mark.parametrize("phase", list(RefundPhase))
def test_type_and_id_per_phase(phase: RefundPhase) -> None:
    lower = phase.value.lower()
    assert refund_event_type(phase) == f"dev.paykube.paymentrefund.{lower}"
    assert refund_event_id(REF.uid, phase) == f"{REF.uid}/{lower}"
    st = status(RefundPhase.PENDING, phase) if phase is not RefundPhase.PENDING else status(
        RefundPhase.PENDING)
    event = events(st)[-1]
    assert (event.type, event.id) == (refund_event_type(phase), refund_event_id(REF.uid, phase))


def test_envelope_is_the_refunds_own() -> None:
    pending, succeeded = events(status())
    assert succeeded.source == refund_api_path("shop", "order-42-shipping") == (
        "/apis/payments.paykube.dev/v1alpha1/namespaces/shop/paymentrefunds/order-42-shipping")
    assert succeeded.subject == "shop/order-42-shipping"
    assert (pending.time, succeeded.time) == ("2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z")
    body = json.loads(succeeded.to_json())
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert succeeded.to_json() == events(status())[1].to_json()  # same input, same bytes


def test_data_carries_the_public_fields() -> None:
    data = events(status(RefundPhase.PENDING, RefundPhase.REQUIRES_ACTION,
                         RefundPhase.SUCCEEDED))[1].data
    assert data == {
        "namespace": "shop", "name": "order-42-shipping", "uid": REF.uid,
        "sessionName": SESSION, "sessionUid": SESSION_UID,
        "phase": "RequiresAction", "currentPhase": "Succeeded",
        "source": "webhook", "eventId": "evt_r1", "provider": "stripe",
        "refundId": "re_1", "paymentId": "pi_1", "amount": 500, "currency": "eur",
    }


def test_failed_event_has_error_codes_but_not_the_message() -> None:
    error = ErrorInfo(code="ProviderRejected", message="card of jane@example.com expired",
                      provider_code="charge_expired_for_capture",
                      doc_url="https://stripe.com/docs/error-codes", explanation="x")
    st = status(RefundPhase.PENDING, RefundPhase.SUCCEEDED, RefundPhase.FAILED, error=error)
    failed = events(st)[-1]
    assert failed.data["error"] == {"code": "ProviderRejected",
                                    "providerCode": "charge_expired_for_capture",
                                    "docUrl": "https://stripe.com/docs/error-codes"}
    assert failed.data["failureReason"] == "expired_or_canceled_card"
    assert "jane@example.com" not in failed.to_json().decode()
    # The earlier phases' events (re-published from the newer status) carry no error.
    assert all("error" not in e.data for e in events(st)[:-1])


def test_no_metadata_leaks() -> None:
    # RefundStatus has no metadata at all; the event's keys are a closed set.
    for event in events(status(RefundPhase.PENDING, RefundPhase.FAILED)):
        assert "metadata" not in event.to_json().decode()
        assert set(event.data) <= {
            "namespace", "name", "uid", "sessionName", "sessionUid", "phase", "currentPhase",
            "source", "eventId", "provider", "refundId", "paymentId", "amount", "currency",
            "failureReason", "error"}


def test_destination_and_group_follow_the_refund() -> None:
    event = events(status())[0]
    assert destination_for("/topic/VirtualTopic.payments.{namespace}", event) == (
        "/topic/VirtualTopic.payments.shop")
    assert event.data["uid"] == REF.uid  # JMSXGroupID: one refund's events stay in order


def test_marks_are_pure_and_per_phase() -> None:
    st = status(RefundPhase.PENDING, RefundPhase.SUCCEEDED, RefundPhase.FAILED)
    assert [h.phase for h in unpublished_refund(st)] == [
        RefundPhase.PENDING, RefundPhase.SUCCEEDED, RefundPhase.FAILED]
    marked = mark_refund_published(st, RefundPhase.SUCCEEDED)
    assert [h.phase for h in unpublished_refund(marked)] == [RefundPhase.PENDING,
                                                              RefundPhase.FAILED]
    assert unpublished_refund(st) == st.history  # the input is unchanged
    assert marked.history[1].at == st.history[1].at and marked.history[1].event_id == "evt_r1"
    assert mark_refund_published(marked, RefundPhase.SUCCEEDED) == marked  # idempotent
    assert RefundStatus.from_dict(marked.to_dict()) == marked  # survives the status write


async def test_null_publisher_drains_the_outbox() -> None:
    st = status(RefundPhase.PENDING, RefundPhase.SUCCEEDED)
    publisher = NullPublisher()
    phases = await publish_pending_refund(st, REF, publisher, SESSION)
    assert phases == (RefundPhase.PENDING, RefundPhase.SUCCEEDED)
    for phase in phases:
        st = mark_refund_published(st, phase)
    assert unpublished_refund(st) == ()
    assert await publish_pending_refund(st, REF, publisher, SESSION) == ()


async def test_outbox_sends_in_history_order_and_stops_at_the_first_failure() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def publish(self, event: CloudEvent) -> None:
            if event.id.endswith("/succeeded"):
                raise BrokerUnavailableError("down")
            self.sent.append(event.id)

        async def aclose(self) -> None:
            return None

    st = status(RefundPhase.PENDING, RefundPhase.REQUIRES_ACTION, RefundPhase.SUCCEEDED,
                RefundPhase.FAILED)
    st = mark_refund_published(st, RefundPhase.PENDING)
    flaky = Flaky()
    assert await publish_pending_refund(st, REF, flaky, SESSION) == (
        RefundPhase.REQUIRES_ACTION,)
    # Failed (the bank's return) is not sent before the Succeeded it reverses.
    assert flaky.sent == [f"{REF.uid}/requiresaction"]
