"""Razorpay's mapping (links and events to phases and facts), its create body, its error
shapes, its webhook signature and the curated explanations: pure, no servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest

from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import CredentialsError, ErrorCode, ProviderError
from paykube.explain.catalog import CATALOG
from paykube.explain.details import ErrorDetails
from paykube.providers.base import AccountCredentials, CreateSession, ProviderPayloadInvalid
from paykube.providers.razorpay import (
    create_body,
    error_from_response,
    link_phase,
    snapshot,
    split_key,
)
from paykube.settings import SecretStr
from paykube_webhook.schemes import Applicable, Ignored, MalformedEvent
from paykube_webhook.schemes.razorpay import RazorpayScheme, parse_event
from paykube_webhook.verify import Failure, SignatureError

LINK_ID = "plink_Ab3dEf5hIj7kLm"
ACCOUNT = "acc_Xy9zAb3dEf5hIj"
SPEC: dict[str, Any] = {
    "amount": 50000, "currency": "inr", "successUrl": "https://shop.example/ok",
    "cancelUrl": "https://shop.example/cart", "description": "Tea, 1 kg",
    "customerEmail": "asha@example.com", "metadata": {"order": "77", "paykube_uid": "forged"},
    "razorpay": {"acceptPartial": True, "firstMinPartialAmount": 10000,
                 "customer": {"name": "Asha", "contact": "+919000090000"},
                 "notify": {"sms": True}},
}


def link(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": LINK_ID, "status": "created", "amount": 50000, "amount_paid": 0,
        "currency": "INR", "accept_partial": False, "expire_by": 1_900_000_000,
        "short_url": "https://rzp.io/i/abc1234", "reference_id": "uid",
        "notes": {"paykube_namespace": "shop", "paykube_name": "order-77",
                  "paykube_uid": "b7c1a2d4-0000-4000-8000-000000000001"},
        "payments": None,
    }
    return base | fields


@pytest.mark.parametrize(("fields", "phase"), [
    ({"status": "created"}, Phase.OPEN),
    ({"status": "partially_paid", "accept_partial": True, "amount_paid": 100},
     Phase.PROCESSING),
    ({"status": "partially_paid", "accept_partial": False}, Phase.OPEN),
    ({"status": "paid", "amount_paid": 50000}, Phase.PAID),
    ({"status": "expired"}, Phase.EXPIRED),
    ({"status": "expired", "amount_paid": 100, "accept_partial": True}, Phase.FAILED),
    ({"status": "cancelled"}, Phase.CANCELED),
])
def test_link_states_map_to_phases(fields: dict[str, Any], phase: Phase) -> None:
    assert link_phase(link(**fields)) is phase


@pytest.mark.parametrize("status", [None, "open", 3, "PAID"])
def test_an_unknown_link_status_is_refused(status: object) -> None:
    with pytest.raises(ProviderPayloadInvalid):
        link_phase(link(status=status))


def test_snapshot_keeps_the_facts_with_the_currency_in_lower_case() -> None:
    paid = link(status="paid", payments=[{"payment_id": "pay_Ab3dEf5hIj7kLm"}])
    snap = snapshot(paid, account=ACCOUNT)
    assert (snap.session_id, snap.url, snap.payment_intent_id) == (
        LINK_ID, "https://rzp.io/i/abc1234", "pay_Ab3dEf5hIj7kLm")
    assert (snap.amount_total, snap.currency, snap.payment_status) == (50000, "inr", "paid")
    assert snap.expires_at == "2030-03-17T17:46:40Z"
    assert (snap.provider, snap.account, snap.livemode) == ("razorpay", ACCOUNT, None)


@pytest.mark.parametrize("fields", [
    {"id": "cs_test_abc"}, {"id": "plink_../../x"}, {"id": None}, {"amount": "500"},
    {"amount": -1}, {"expire_by": 10**13}, {"payments": [{"payment_id": "pi_123"}]},
    {"payments": ["pay_x"]}, {"short_url": 7},
])
def test_snapshot_refuses_what_razorpay_does_not_send(fields: dict[str, Any]) -> None:
    with pytest.raises(ProviderPayloadInvalid):
        snapshot(link(**fields))


def request(spec: dict[str, Any] | None = None) -> CreateSession:
    return CreateSession(ObjectRef("shop", "order-77", str(uuid.uuid4())),
                         PaymentSessionSpec.from_dict(spec or SPEC),
                         dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


def test_create_body_maps_the_spec() -> None:
    req = request()
    body = create_body(req)
    assert body["amount"] == 50000 and body["currency"] == "INR"
    assert body["reference_id"] == req.ref.uid  # the crash-safe create's handle
    assert body["expire_by"] == int(dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp())
    assert body["notes"] == {"order": "77", "paykube_namespace": "shop",
                             "paykube_name": "order-77", "paykube_uid": req.ref.uid}
    assert (body["callback_url"], body["callback_method"]) == ("https://shop.example/ok", "get")
    assert body["accept_partial"] is True and body["first_min_partial_amount"] == 10000
    assert body["customer"] == {"name": "Asha", "contact": "+919000090000",
                                "email": "asha@example.com"}
    assert body["notify"] == {"email": False, "sms": True}


def test_create_body_without_razorpay_options_forbids_partial_payment() -> None:
    spec = {k: v for k, v in SPEC.items() if k not in ("razorpay", "customerEmail")}
    spec["lineItems"] = [{"name": "Tea", "unitAmount": 25000, "quantity": 2}]
    body = create_body(request(spec))
    assert body["accept_partial"] is False and "first_min_partial_amount" not in body
    assert "customer" not in body
    assert body["description"] == "Tea, 1 kg"


def test_more_metadata_than_razorpay_notes_hold_is_refused_before_any_call() -> None:
    spec = SPEC | {"metadata": {f"k{i}": "v" for i in range(13)}}
    with pytest.raises(ProviderError) as refused:
        create_body(request(spec))
    assert refused.value.code is ErrorCode.PROVIDER_REJECTED and not refused.value.retryable
    assert refused.value.param == "notes"
    assert "15 notes" in refused.value.message


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> ProviderError:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_from_response(httpx.Response(status, content=content, headers=headers))


def razorpay_error(code: str, description: str, field: str | None = None,
                   reason: str = "input_validation_failed") -> dict[str, Any]:
    body = {"code": code, "description": description, "source": "business",
            "step": "payment_initiation", "reason": reason, "metadata": {}}
    return {"error": body | ({"field": field} if field else {})}


def test_error_shapes_map_to_paykube_codes_and_keep_razorpay_s() -> None:
    bad = error(400, razorpay_error("BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00",
                                    "amount"))
    assert (bad.code, bad.provider_code, bad.param, bad.error_type, bad.provider) == (
        ErrorCode.PROVIDER_REJECTED, "BAD_REQUEST_ERROR", "amount", "input_validation_failed",
        "razorpay")
    assert not bad.retryable
    key = error(401, razorpay_error("BAD_REQUEST_ERROR", "Authentication failed", reason="NA"))
    assert key.code is ErrorCode.CREDENTIALS_INVALID and key.error_type is None
    limited = error(429, razorpay_error("BAD_REQUEST_ERROR", "Too many requests"),
                    {"Retry-After": "3"})
    assert (limited.code, limited.retry_after) == (ErrorCode.RATE_LIMITED, 3.0)
    down = error(500, razorpay_error("SERVER_ERROR", "The server encountered an error."))
    assert down.code is ErrorCode.PROVIDER_UNAVAILABLE and down.retryable
    assert error(502, b"<html>bad gateway</html>").code is ErrorCode.PROVIDER_UNAVAILABLE


def test_a_notes_key_in_an_error_field_is_not_kept() -> None:
    refused = error(400, razorpay_error("BAD_REQUEST_ERROR", "too long", "notes.customer-42"))
    assert refused.param == "notes"


@pytest.mark.parametrize("value", ["", "rzp_test_abc", "sk_test_abc:secret", "rzp_test_abc:",
                                   "rzp_prod_abc:secret"])
def test_a_key_that_is_not_key_id_colon_secret_is_refused_without_its_value(value: str) -> None:
    with pytest.raises(CredentialsError) as refused:
        split_key(AccountCredentials(SecretStr(value)))
    assert not refused.value.retryable
    if value:
        assert value not in refused.value.message


def sign(payload: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def event(name: str = "payment_link.paid", **link_fields: Any) -> bytes:
    entity = link(status="paid", amount_paid=50000,
                  payments=[{"payment_id": "pay_Ab3dEf5hIj7kLm"}]) | link_fields
    return json.dumps({
        "entity": "event", "account_id": ACCOUNT, "event": name,
        "contains": ["payment_link", "payment"], "created_at": 1_800_000_000,
        "payload": {"payment_link": {"entity": entity},
                    "payment": {"entity": {"id": "pay_Ab3dEf5hIj7kLm", "amount": 50000}}},
    }, separators=(",", ":")).encode()


SECRETS = (SecretStr("old-secret"), SecretStr("new-secret"))


def test_a_signature_by_any_of_the_route_secrets_verifies() -> None:
    payload = event()
    for secret in ("old-secret", "new-secret"):
        RazorpayScheme().verify(payload, {"X-Razorpay-Signature": sign(payload, secret)},
                                SECRETS, now=0)


@pytest.mark.parametrize(("header", "failure"), [
    (None, Failure.MISSING_HEADER),
    ("", Failure.MISSING_HEADER),
    ("t=1,v1=abc", Failure.MALFORMED_HEADER),
    ("zz" * 32, Failure.MALFORMED_HEADER),
    ("ab" * 32, Failure.MISMATCH),
])
def test_a_missing_or_malformed_signature_is_refused(header: str | None,
                                                     failure: Failure) -> None:
    headers = {} if header is None else {"X-Razorpay-Signature": header}
    with pytest.raises(SignatureError) as refused:
        RazorpayScheme().verify(event(), headers, SECRETS, now=0)
    assert refused.value.failure is failure


def test_one_changed_byte_or_another_account_s_secret_fails() -> None:
    payload = event()
    signature = sign(payload, "new-secret")
    changed = payload.replace(b"50000", b"50001", 1)
    for body, header in ((changed, signature), (payload, sign(payload, "tenant-b"))):
        with pytest.raises(SignatureError) as refused:
            RazorpayScheme().verify(body, {"X-Razorpay-Signature": header}, SECRETS, now=0)
        assert refused.value.failure is Failure.MISMATCH
    with pytest.raises(SignatureError) as none:
        RazorpayScheme().verify(payload, {"X-Razorpay-Signature": signature}, (), now=0)
    assert none.value.failure is Failure.NO_SECRETS


def test_a_paid_event_reads_into_an_applicable_observation() -> None:
    parsed = parse_event(event(), "evt_Ab3dEf5hIj7kLm")
    assert isinstance(parsed, Applicable)
    assert (parsed.event_id, parsed.phase, parsed.account) == (
        "evt_Ab3dEf5hIj7kLm", Phase.PAID, ACCOUNT)
    assert parsed.ref == ObjectRef("shop", "order-77", "b7c1a2d4-0000-4000-8000-000000000001")
    assert parsed.session.session_id == LINK_ID
    assert parsed.session.payment_intent_id == "pay_Ab3dEf5hIj7kLm"
    assert (parsed.session.amount_total, parsed.session.currency) == (50000, "inr")


def test_unknown_and_unmanaged_events_are_ignored() -> None:
    other = parse_event(event("payment.captured"), "evt_1")
    assert isinstance(other, Ignored) and other.outcome == "ignored_type"
    foreign = parse_event(event(notes={"order": "1"}), "evt_2")
    assert isinstance(foreign, Ignored) and foreign.outcome == "ignored_unmanaged"
    no_notes = parse_event(event(notes=None), "evt_3")
    assert isinstance(no_notes, Ignored)


@pytest.mark.parametrize(("payload", "event_id"), [
    (event(), None),
    (event(), "evt/../x"),
    (b"[]", "evt_1"),
    (event(id="plink_../../admin"), "evt_1"),
    (event(amount="lots"), "evt_1"),
    (event().replace(ACCOUNT.encode(), b"acct_123"), "evt_1"),
    (json.dumps({"event": "payment_link.paid", "payload": {}}).encode(), "evt_1"),
])
def test_malformed_events_are_the_sender_s_400(payload: bytes, event_id: str | None) -> None:
    with pytest.raises((MalformedEvent, ValueError)):
        parse_event(payload, event_id)


@pytest.mark.parametrize(("code", "param", "paykube", "expected"), [
    ("BAD_REQUEST_ERROR", "amount", "ProviderRejected", "spec.amount"),
    ("BAD_REQUEST_ERROR", "currency", "ProviderRejected", "spec.currency"),
    ("BAD_REQUEST_ERROR", "notes", "ProviderRejected", "12 keys"),
    ("BAD_REQUEST_ERROR", "expire_by", "ProviderRejected", "spec.expiresAfter"),
    ("BAD_REQUEST_ERROR", "customer.contact", "ProviderRejected", "customer.contact"),
    ("TOO_MANY_NOTES", "notes", "ProviderRejected", "spec.metadata"),
    ("SERVER_ERROR", None, "ProviderUnavailable", "status.razorpay.com"),
    ("BAD_REQUEST_ERROR", None, "CredentialsInvalid", "key_id:key_secret"),
])
def test_common_razorpay_errors_have_curated_explanations(
        code: str, param: str | None, paykube: str, expected: str) -> None:
    details = ErrorDetails(provider="razorpay", code=code, param=param, message="",
                           paykube_code=paykube)
    explanation = CATALOG.lookup(details)
    assert explanation is not None and expected in explanation
    assert "Stripe" not in explanation


def test_a_razorpay_error_is_explained_as_razorpay_s_whatever_the_explainer_default() -> None:
    refused = error(400, razorpay_error("BAD_REQUEST_ERROR", "The amount must be atleast "
                                        "INR 1.00", "amount"))
    details = ErrorDetails.of(refused, provider="stripe")
    assert details.provider == "razorpay"
    assert "100" in (CATALOG.lookup(details) or "")
