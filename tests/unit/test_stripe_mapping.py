"""Stripe session/event mapping and request encoding (pure parts of the Stripe adapter)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from paykube.api.types import LineItem, ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, PaykubeError, ProviderError
from paykube.providers.base import CreateSession, ProviderPayloadInvalid
from paykube.providers.ratelimit import RateLimiter
from paykube.providers.stripe import (
    MAX_RETRY_AFTER,
    StripeProvider,
    create_params,
    error_from_stripe,
    event_phase,
    provider_session,
    retry_after_seconds,
    session_phase,
    snapshot,
)
from paykube.settings import SecretStr

REF = ObjectRef("shop", "order-1", "0b7d7c1e-uid")


@pytest.mark.parametrize(
    ("status", "payment_status", "phase"),
    [
        ("open", "unpaid", Phase.OPEN),
        ("complete", "paid", Phase.PAID),
        ("complete", "no_payment_required", Phase.PAID),
        ("complete", "unpaid", Phase.PROCESSING),
        ("expired", "unpaid", Phase.EXPIRED),
    ],
)
def test_session_phase(status: str, payment_status: str, phase: Phase) -> None:
    assert session_phase({"status": status, "payment_status": payment_status}) is phase


@pytest.mark.parametrize(
    ("payment_status", "intent_status", "phase"),
    [
        ("unpaid", "requires_payment_method", Phase.FAILED),
        ("unpaid", "canceled", Phase.FAILED),
        ("unpaid", "processing", Phase.PROCESSING),
        ("unpaid", "succeeded", Phase.PAID),
        ("unpaid", "requires_action", Phase.PROCESSING),
        ("paid", "succeeded", Phase.PAID),
        ("paid", "requires_payment_method", Phase.PAID),  # paid is never taken back
    ],
)
def test_session_phase_with_expanded_payment_intent(
        payment_status: str, intent_status: str, phase: Phase) -> None:
    session = {"status": "complete", "payment_status": payment_status,
               "payment_intent": {"id": "pi_1", "object": "payment_intent",
                                  "status": intent_status}}
    assert session_phase(session) is phase


def test_unexpanded_intent_of_complete_unpaid_session_is_processing() -> None:
    """A webhook's session carries the intent's id only: nothing to tell a failure by."""
    session = {"status": "complete", "payment_status": "unpaid", "payment_intent": "pi_1"}
    assert session_phase(session) is Phase.PROCESSING


def test_event_phase() -> None:
    complete = {"status": "complete", "payment_status": "unpaid"}
    assert event_phase("checkout.session.completed", complete) is Phase.PROCESSING
    assert event_phase("checkout.session.async_payment_succeeded", complete) is Phase.PAID
    assert event_phase("checkout.session.async_payment_failed", complete) is Phase.FAILED
    assert event_phase("checkout.session.expired", {"status": "expired"}) is Phase.EXPIRED
    assert event_phase("charge.refunded", complete) is None


def spec(**changes: object) -> PaymentSessionSpec:
    base = PaymentSessionSpec.from_dict({
        "amount": 2500, "currency": "eur", "successUrl": "https://shop.example/ok",
        "cancelUrl": "https://shop.example/cancel", "description": "Gift card",
        "metadata": {"order": "A-17"},
    })
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_create_params_single_item_metadata_and_reference() -> None:
    expires = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    params = create_params(CreateSession(REF, spec(), expires))
    assert params["client_reference_id"] == REF.uid
    assert params["expires_at"] == int(expires.timestamp())
    assert params["metadata"] == {"order": "A-17", "paykube_namespace": "shop",
                                  "paykube_name": "order-1", "paykube_uid": REF.uid}
    assert params["line_items"] == [{"quantity": 1, "price_data": {
        "currency": "eur", "unit_amount": 2500, "product_data": {"name": "Gift card"}}}]


def test_create_params_line_items_and_idempotency_key() -> None:
    items = (LineItem("a", 1000, 2), LineItem("b", 500, 1))
    request = CreateSession(REF, spec(line_items=items), dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    assert [i["quantity"] for i in create_params(request)["line_items"]] == [2, 1]
    assert request.idempotency_key == f"paykube:{REF.uid}:create"


SESSION: dict[str, Any] = {
    "id": "cs_test_a1", "object": "checkout.session", "status": "complete",
    "payment_status": "paid", "url": None, "amount_total": 5497, "currency": "eur",
    "expires_at": 1795000000, "payment_intent": {"id": "pi_1", "status": "succeeded"},
}


def test_snapshot_of_a_stripe_session() -> None:
    snap = snapshot(SESSION)
    assert (snap.session_id, snap.payment_intent_id, snap.amount_total, snap.currency) == (
        "cs_test_a1", "pi_1", 5497, "eur")
    assert snap.expires_at == "2026-11-18T11:06:40Z"
    assert provider_session(SESSION).phase is Phase.PAID
    bare = snapshot({"id": "cs_test_b", "status": "open"})
    assert (bare.expires_at, bare.amount_total, bare.payment_intent_id) == (None, None, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", "x"), ("expires_at", 1e20), ("expires_at", 10**20), ("expires_at", -1),
        ("expires_at", 1795000000.5), ("expires_at", True), ("expires_at", [1]),
        ("amount_total", "x"), ("amount_total", 12.5), ("amount_total", -1),
        ("amount_total", 2**63), ("amount_total", False), ("amount_total", {"a": 1}),
        ("id", 17), ("id", ""), ("id", None), ("id", "c" * 256),
        ("url", 5), ("payment_status", ["paid"]), ("currency", "e" * 17),
        ("payment_intent", 9), ("payment_intent", {"id": 9}),
        ("payment_intent", {"id": "pi_1", "status": 3}),
        ("status", None), ("status", "finished"), ("status", 1),
    ],
)
def test_malformed_fields_are_payload_errors(field: str, value: object) -> None:
    session = {**SESSION, "payment_status": "unpaid", field: value}
    if value is None:
        del session[field]
    with pytest.raises(ProviderPayloadInvalid) as caught:
        provider_session(session)
    error = caught.value
    assert isinstance(error, PaykubeError)
    assert error.code is ErrorCode.PAYLOAD_INVALID
    assert not error.retryable
    assert error.param is not None and field in error.param
    assert repr(value) not in error.message


@pytest.mark.parametrize("body", [[], "cs_test", 5, None])
def test_a_session_that_is_not_an_object_is_a_payload_error(body: Any) -> None:
    with pytest.raises(ProviderPayloadInvalid):
        provider_session(body)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=8,
)
FIELDS = ("id", "status", "payment_status", "url", "amount_total", "currency", "expires_at",
          "payment_intent")


@given(st.dictionaries(st.sampled_from(FIELDS), JSON), st.sampled_from(sorted([
    "checkout.session.completed", "checkout.session.expired",
    "checkout.session.async_payment_failed", "checkout.session.async_payment_succeeded"])))
def test_any_json_maps_or_is_a_payload_error(fields: dict[str, Any], event_type: str) -> None:
    """Never a TypeError, ValueError or OverflowError of our own from a strange object."""
    session = {**SESSION, **fields}
    try:
        mapped = provider_session(session)
        event_phase(event_type, session)
    except ProviderPayloadInvalid:
        return
    assert isinstance(mapped.snapshot.session_id, str)
    assert mapped.snapshot.expires_at is None or mapped.snapshot.expires_at.endswith("Z")


NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0), ("0.5", 0.5), (" 3 ", 3.0), ("-5", 0.0), ("inf", MAX_RETRY_AFTER),
        ("86400", MAX_RETRY_AFTER),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0),  # RFC 9110's IMF-fixdate
        ("Thursday, 26-Nov-26 12:00:07 GMT", 7.0),  # obsolete RFC 850 form
        ("Thu Nov 26 12:00:09 2026", 9.0),  # asctime, no zone: GMT
        ("Thu, 26 Nov 2026 11:59:00 GMT", 0.0),  # already past
        (None, None), ("", None), ("soon", None), ("nan", None), ("Thu, 99 Foo", None),
    ],
)
def test_retry_after_in_both_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=lambda: NOW) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises(header: str) -> None:
    seconds = retry_after_seconds(header)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


async def sdk_error(status: int, body: bytes, headers: dict[str, str]) -> ProviderError:
    """What one answer becomes through the SDK and paykube's mapping (no retries)."""
    answer = httpx.MockTransport(lambda _request: httpx.Response(status, content=body,
                                                                 headers=headers))
    stripe = StripeProvider(api_base="http://stripe.invalid", attempts=1, transport=answer,
                            limiter=RateLimiter(rate=1000, burst=10))
    try:
        with pytest.raises(ProviderError) as caught:
            await stripe.get_session("cs_test_a1", SecretStr("sk_test_unit"))
    finally:
        await stripe.aclose()
    return caught.value


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (502, b"<html>Bad gateway</html>", ErrorCode.PROVIDER_UNAVAILABLE),
        (429, b"[1, 2]", ErrorCode.RATE_LIMITED),
        (400, b'{"error": "oops"}', ErrorCode.PROVIDER_REJECTED),
        (400, b'{"error": {"message": 7, "code": "resource_missing"}}',
         ErrorCode.PROVIDER_REJECTED),
        (401, b"\xff\xfe", ErrorCode.CREDENTIALS_INVALID),
        (403, b"{}", ErrorCode.CREDENTIALS_INVALID),
        (409, b'{"error": {"type": "idempotency_error"}}', ErrorCode.PROVIDER_UNAVAILABLE),
    ],
)
async def test_error_bodies_that_are_not_stripe_errors(status: int, body: bytes,
                                                       code: ErrorCode) -> None:
    error = await sdk_error(status, body, {"Retry-After": "Thu, 26 Nov 2026 12:00:30 GMT"})
    assert error.code is code
    assert error.http_status == status
    assert error.message  # Stripe's own when readable, else the HTTP status
    assert error.retry_after is not None and 0 <= error.retry_after <= MAX_RETRY_AFTER


@pytest.mark.parametrize(("status", "code"), [
    (402, ErrorCode.PROVIDER_REJECTED), (404, ErrorCode.PROVIDER_REJECTED),
    (429, ErrorCode.RATE_LIMITED), (500, ErrorCode.PROVIDER_UNAVAILABLE),
])
async def test_each_sdk_error_class_keeps_stripes_fields(status: int, code: ErrorCode) -> None:
    """CardError, InvalidRequestError, RateLimitError and APIError carry different subsets
    of Stripe's fields as attributes: paykube reads them from the body, the same for all."""
    body = (b'{"error": {"type": "card_error", "code": "card_declined", "param": "amount",'
            b' "message": "Declined.", "doc_url": "https://stripe.com/docs/error-codes/x"}}')
    error = await sdk_error(status, body, {"retry-after": "3"})
    assert (error.code, error.http_status, error.provider_code, error.param, error.error_type,
            error.doc_url, error.message, error.retry_after) == (
        code, status, "card_declined", "amount", "card_error",
        "https://stripe.com/docs/error-codes/x", "Declined.", 3.0)


@pytest.mark.parametrize("body", [b'{"id": "cs_test_a', b"[1, 2]", b'"text"', b"\xff"])
async def test_a_2xx_that_is_not_a_json_object_is_retryable(body: bytes) -> None:
    error = await sdk_error(200, body, {})
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE and error.retryable


def test_a_connection_error_is_a_retryable_unavailability() -> None:
    error = error_from_stripe(stripe.APIConnectionError("refused"))  # type: ignore[no-untyped-call]
    assert (error.code, error.http_status, error.retryable) == (
        ErrorCode.PROVIDER_UNAVAILABLE, None, True)
