"""Payment events as CloudEvents 1.0: ids, types, structured JSON, what data never holds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from paykube.api.types import ErrorInfo, HistoryEntry, ObjectRef, Phase, Source, Status
from paykube.events import BrokerUnavailableError, CloudEvent, NullPublisher, build_event
from paykube.events.cloudevent import STRUCTURED_CONTENT_TYPE, event_id, event_type
from paykube.events.outbox import publish_pending
from paykube.events.stomp import destination_for
from paykube.lifecycle import mark_published, unpublished

REF = ObjectRef(namespace="shop", name="order-42", uid="5d1c7d0e-8a5b-4a57-9d0c-0c6b1f2e3a4b")
SECRET_METADATA = {"customer": "Jane Doe", "email": "jane@example.com", "note": "VIP-7781"}

# CloudEvents 1.0 core: required context attributes and the shape of optional ones.
REQUIRED = {"specversion", "id", "source", "type"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")


def status(phase: Phase = Phase.PAID, *, published: bool = False) -> Status:
    order = [Phase.PENDING, Phase.OPEN, Phase.PROCESSING, Phase.PAID]
    upto = order.index(phase) + 1 if phase in order else 2
    history = tuple(
        HistoryEntry(p, f"2025-03-0{i + 1}T10:00:0{i}Z",
                     Source.OPERATOR if i < 2 else Source.WEBHOOK,
                     None if i < 2 else f"evt_{i}", published)
        for i, p in enumerate(order[:upto])
    )
    if phase not in order:
        history = (*history, HistoryEntry(phase, "2025-03-09T10:00:00Z", Source.POLL))
    return Status(
        phase=phase, session_id="cs_test_a1", url="https://checkout.stripe.com/c/pay/cs_test_a1",
        payment_intent_id="pi_1", payment_status="paid", amount_total=4200, currency="eur",
        expires_at="2025-03-02T10:00:00Z", observed_generation=1, history=history,
    )


def events(st: Status, **kwargs: Any) -> list[CloudEvent]:
    return [build_event(REF, st, entry, **kwargs) for entry in st.history]


def test_ids_are_deterministic_uid_slash_phase() -> None:
    first = events(status())
    again = events(status())
    assert [e.id for e in first] == [
        f"{REF.uid}/pending", f"{REF.uid}/open", f"{REF.uid}/processing", f"{REF.uid}/paid"]
    assert [e.id for e in first] == [e.id for e in again]
    # The id does not depend on the rest of the status: a re-publish after more changes
    # (or from the other writer) carries the same id, so consumers can deduplicate.
    later = status().with_changes(payment_status="no_payment_required", amount_total=0)
    assert build_event(REF, later, later.history[0]).id == first[0].id
    assert first[0].to_json() == again[0].to_json()  # same input, same bytes


@pytest.mark.parametrize("phase", list(Phase))
def test_type_and_id_per_phase(phase: Phase) -> None:
    assert event_type(phase) == f"dev.paykube.paymentsession.{phase.value.lower()}"
    assert event_id("u-1", phase) == f"u-1/{phase.value.lower()}"
    entry = HistoryEntry(phase, "2025-03-01T00:00:00Z", Source.OPERATOR)
    event = build_event(REF, status().with_changes(phase=phase), entry)
    assert event.type == event_type(phase)
    assert event.id == event_id(REF.uid, phase)
    assert event.data["phase"] == phase.value


def test_structured_json_is_valid_cloudevents_1_0() -> None:
    for event in events(status()):
        body = json.loads(event.to_json().decode("utf-8"))
        assert body.keys() >= REQUIRED
        assert body["specversion"] == "1.0"
        assert isinstance(body["id"], str) and body["id"]
        assert isinstance(body["type"], str) and body["type"]
        # source: a non-empty URI-reference; here the object's API path
        assert body["source"] == REF.api_path == (
            "/apis/payments.paykube.dev/v1alpha1/namespaces/shop/paymentsessions/order-42")
        assert body["subject"] == "shop/order-42"
        assert body["datacontenttype"] == "application/json"
        assert RFC3339.match(body["time"]), body["time"]
        assert all(ATTRIBUTE_NAME.match(name) for name in body if name != "data")
        assert isinstance(body["data"], dict)
    assert STRUCTURED_CONTENT_TYPE.startswith("application/cloudevents+json")


def test_time_is_when_the_phase_was_reached_and_omitted_when_unknown() -> None:
    st = status()
    assert [e.time for e in events(st)] == [h.at for h in st.history]
    event = build_event(REF, st, HistoryEntry(Phase.OPEN, "", Source.OPERATOR))
    assert event.time is None
    assert "time" not in json.loads(event.to_json())


def test_data_carries_the_public_fields() -> None:
    st = status()
    paid = events(st, spec_amount=4000, spec_currency="usd")[-1]
    assert paid.data == {
        "namespace": "shop", "name": "order-42", "uid": REF.uid,
        "phase": "Paid", "currentPhase": "Paid", "source": "webhook", "eventId": "evt_3",
        "provider": "stripe", "sessionId": "cs_test_a1",
        "paymentIntentId": "pi_1", "paymentStatus": "paid",
        "amount": 4000, "amountTotal": 4200, "currency": "eur",
        "expiresAt": "2025-03-02T10:00:00Z",
    }
    # The checkout URL only when configured: whoever holds it can open the payment page.
    with_url = build_event(REF, st, st.history[-1], include_url=True)
    assert with_url.data["url"] == "https://checkout.stripe.com/c/pay/cs_test_a1"
    pending = events(st)[0]
    assert pending.data["source"] == "operator" and pending.data["eventId"] is None
    assert pending.data["currentPhase"] == "Paid"  # built later from a newer status
    # Before the provider reported anything, the spec fills the requested amount/currency.
    fresh = Status(history=(HistoryEntry(Phase.PENDING, "2025-03-01T00:00:00Z",
                                         Source.OPERATOR),))
    early = build_event(REF, fresh, fresh.history[0], spec_amount=999, spec_currency="usd")
    assert early.data["amount"] == 999 and early.data["amountTotal"] is None
    assert early.data["currency"] == "usd"


def test_failed_event_has_error_codes_but_not_the_message() -> None:
    error = ErrorInfo(code="ProviderRejected", message="Invalid email: jane@example.com",
                      provider_code="email_invalid",
                      doc_url="https://stripe.com/docs/error-codes/email-invalid",
                      explanation="Fix spec.customerEmail")
    st = status(Phase.FAILED).with_changes(error=error)
    failed = events(st)[-1]
    assert failed.data["error"] == {
        "code": "ProviderRejected", "providerCode": "email_invalid",
        "docUrl": "https://stripe.com/docs/error-codes/email-invalid"}
    assert b"jane@example.com" not in failed.to_json()
    assert "error" not in events(st)[0].data  # only on the Failed event


def test_no_metadata_or_personal_data_leaks() -> None:
    st = status()
    # build_event never sees the spec; even what the status could mention is not copied.
    for event in events(st, spec_amount=4200, spec_currency="eur"):
        text = event.to_json().decode("utf-8")
        for value in (*SECRET_METADATA.values(), *SECRET_METADATA.keys()):
            assert value not in text
        assert "metadata" not in text
        assert "customerEmail" not in text and "description" not in text
        assert "lineItems" not in text


def test_event_is_frozen_and_hashable() -> None:
    event = events(status())[0]
    with pytest.raises(AttributeError):
        event.id = "x"  # type: ignore[misc]
    assert hash(event) == hash(events(status())[0])


async def test_null_publisher_succeeds_so_the_outbox_drains() -> None:
    st = status()
    publisher = NullPublisher()
    phases = await publish_pending(st, REF, publisher)
    assert phases == (Phase.PENDING, Phase.OPEN, Phase.PROCESSING, Phase.PAID)
    for phase in phases:
        st = mark_published(st, phase)
    assert unpublished(st) == ()
    assert await publish_pending(st, REF, publisher) == ()
    await publisher.aclose()


async def test_outbox_stops_at_the_first_failure() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def publish(self, event: CloudEvent) -> None:
            if event.id.endswith("/processing"):
                raise BrokerUnavailableError("down")
            self.sent.append(event.id)

        async def aclose(self) -> None:
            return None

    st = mark_published(status(), Phase.PENDING)
    flaky = Flaky()
    assert await publish_pending(st, REF, flaky) == (Phase.OPEN,)
    assert flaky.sent == [f"{REF.uid}/open"]  # Paid was not attempted after the failure
    assert BrokerUnavailableError("x").retryable


def test_a_destination_may_carry_the_namespace() -> None:
    event = events(status())[-1]
    assert destination_for("/topic/VirtualTopic.payments.{namespace}", event) == (
        "/topic/VirtualTopic.payments.shop")
    assert destination_for("/topic/VirtualTopic.payments", event) == (
        "/topic/VirtualTopic.payments")
