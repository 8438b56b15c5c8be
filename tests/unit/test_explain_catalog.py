"""The explanation catalog (no network at all) and the redaction of error messages."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from paykube.api.types import ErrorInfo
from paykube.errors import ErrorCode, ProviderError
from paykube.explain import (
    CATALOG,
    ErrorDetails,
    Explainer,
    build_explainer,
    normalize_param,
    redact,
)
from paykube.explain.catalog import PARAM_FIELDS
from paykube.explain.llm import SYSTEM_PROMPT, build_messages


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the catalog must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def stripe_error(code: str | None, message: str = "", *, param: str | None = None,
                 type_: str = "invalid_request_error", status: int = 400) -> ProviderError:
    """As `providers.stripe.error_from_response` builds it: provider_code = code or type."""
    paykube_code = {401: ErrorCode.CREDENTIALS_INVALID, 429: ErrorCode.RATE_LIMITED}.get(
        status, ErrorCode.PROVIDER_REJECTED)
    return ProviderError(message or "Stripe said no", code=paykube_code,
                         provider_code=code or type_, param=param, http_status=status,
                         error_type=type_,
                         doc_url=f"https://stripe.com/docs/error-codes/{code}" if code else None)


# --- catalog -----------------------------------------------------------------------------

async def test_catalog_hit_without_a_model_or_network() -> None:
    explainer = build_explainer(base_url=None, model=None)
    assert not explainer.model_configured
    error = stripe_error("parameter_invalid_integer",
                         "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                         "Session creation.", param="expires_at")
    now = explainer.explain_now(error)
    assert now is not None
    assert "spec.expiresAfter" in now
    assert "30m" in now
    assert "24h" in now
    assert await explainer.explain_later(error) == now
    assert not explainer.needs_model(error)
    assert explainer.explain_in_background(error, _never) is None


async def _never(text: str) -> None:
    raise AssertionError("no background work expected")


def test_catalog_covers_the_common_checkout_codes() -> None:
    codes = CATALOG.codes()
    for code in ("parameter_missing", "parameter_invalid_integer", "parameter_invalid_empty",
                 "parameter_unknown", "url_invalid", "amount_too_small", "amount_too_large",
                 "email_invalid", "idempotency_key_in_use", "resource_missing", "rate_limit",
                 "api_key_expired", "secret_key_required", "platform_api_key_expired",
                 "account_invalid", "testmode_charges_only", "livemode_mismatch"):
        assert code in codes, code
    assert len(codes) >= 25


@pytest.mark.parametrize(("error", "expected"), [
    (stripe_error("parameter_invalid_integer", param="line_items[0][quantity]"),
     "spec.lineItems[].quantity"),
    (stripe_error("parameter_invalid_integer", param="line_items[3][price_data][unit_amount]"),
     "spec.lineItems[].unitAmount"),
    (stripe_error("parameter_missing", param="line_items[0][price_data][product_data][name]"),
     "spec.lineItems[].name"),
    (stripe_error("url_invalid", "Not a valid URL", param="success_url"), "spec.successUrl"),
    (stripe_error("url_invalid", "Not a valid URL", param="cancel_url"), "spec.cancelUrl"),
    (stripe_error("amount_too_small", param="line_items"), "minimum"),
    (stripe_error("amount_too_large", param="line_items"), "99,999,999"),
    (stripe_error("email_invalid", param="customer_email"), "spec.customerEmail"),
    (stripe_error("api_key_expired", status=401), "spec.providerRef"),
    (stripe_error("secret_key_required", status=401), "publishable"),
    (stripe_error("testmode_charges_only"), "test key"),
    (stripe_error("livemode_mismatch"), "mode"),
    (stripe_error("rate_limit", type_="rate_limit_error", status=429),
     "PAYKUBE_STRIPE_RATE_LIMIT"),
    (stripe_error("parameter_unknown", param="automatic_tax[enabled]"),
     "PAYKUBE_STRIPE_API_BASE"),
    (stripe_error("parameter_missing", param="success_url"), "spec.successUrl"),
    # Code-less Stripe errors: by message (and param), then by type.
    (stripe_error(None, "Invalid currency: xyz. Stripe currently supports these currencies: "
                        "usd, eur", param="line_items[0][price_data][currency]"),
     "spec.currency"),
    (stripe_error(None, "Metadata can have up to 50 keys.", param="metadata"), "20"),
    (stripe_error(None, "Metadata keys can have up to 40 characters.",
                  param="metadata[a_very_long_key_name_that_is_far_too_long_ok]"), "40"),
    (stripe_error(None, "Metadata values can have up to 500 characters.",
                  param="metadata[note]"), "500"),
    (stripe_error(None, "Invalid API Key provided: sk_test_****abcd", status=401),
     "valid secret key"),
    (stripe_error(None, 'Only Checkout Sessions with a status in ["open"] can be expired.'),
     "already ended"),
    (stripe_error(None, "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.", type_="idempotency_error"),
     "idempotency key"),
    (stripe_error(None, "Sorry, something went wrong.", type_="api_error", status=500),
     "retries"),
])
def test_catalog_entries(error: ProviderError, expected: str) -> None:
    text = Explainer().explain_now(error)
    assert text is not None
    assert expected in text
    assert "{field}" not in text


def test_param_specific_entry_beats_the_code_entry() -> None:
    explainer = Explainer()
    specific = explainer.explain_now(stripe_error("parameter_invalid_integer",
                                                  param="expires_at"))
    generic = explainer.explain_now(stripe_error("parameter_invalid_integer",
                                                 param="something_else"))
    assert specific != generic
    assert generic is not None
    assert "something_else" in generic  # the unmapped param is named


def test_error_info_without_param_falls_back_to_the_code() -> None:
    explainer = Explainer()
    info = ErrorInfo(code="ProviderRejected", message="x", provider_code="url_invalid")
    text = explainer.explain_now(info)
    assert text is not None
    assert "spec.successUrl" in text
    with_param = explainer.explain_now(info, param="cancel_url")
    assert with_param is not None
    assert with_param.startswith("spec.cancelUrl")


def test_error_info_with_a_type_as_provider_code() -> None:
    info = ErrorInfo(code="ProviderRejected", message="Invalid currency: abc",
                     provider_code="invalid_request_error")
    details = ErrorDetails.of(info)
    assert details.code is None
    assert details.error_type == "invalid_request_error"
    assert "spec.currency" in (Explainer().explain_now(info) or "")


def test_paykube_codes_are_explained_too() -> None:
    info = ErrorInfo(code="CredentialsMissing", message="no default Stripe API key")
    text = Explainer().explain_now(info)
    assert text is not None
    assert "spec.providerRef" in text


def test_unknown_codes_are_left_to_the_model() -> None:
    error = stripe_error("checkout_quantum_flux_misaligned", "Something new.")
    without_model = Explainer()
    assert without_model.explain_now(error) is None
    assert not without_model.needs_model(error)  # no model configured: nothing to wait for
    with_model = build_explainer(base_url="http://127.0.0.1:9/v1", model="m")
    assert with_model.needs_model(error)
    assert with_model.explain_now(error) is None  # and still no network


@pytest.mark.parametrize(("param", "expected"), [
    (None, None),
    ("", None),
    ("expires_at", "expires_at"),
    ("line_items[0][price_data][currency]", "line_items[*][price_data][currency]"),
    ("metadata[customer_name]", "metadata[*]"),
    ("payment_intent_data[metadata][order]", "payment_intent_data[metadata][*]"),
    ("metadata[weird key with spaces]", "metadata[*]"),
    ("name with spaces", None),
])
def test_normalize_param(param: str | None, expected: str | None) -> None:
    assert normalize_param(param) == expected


def test_every_mapped_param_has_a_field() -> None:
    assert all(v.startswith(("spec.", "the ")) for v in PARAM_FIELDS.values())


# --- redaction ---------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "gone", "kept"), [
    ("Invalid email address: jane.doe+shop@example.com", ["jane", "example.com"],
     ["Invalid email address"]),
    ("Invalid API Key provided: sk_live_51Hx****************abcd", ["sk_live", "abcd"],
     ["Invalid API Key provided"]),
    ("Signing secret whsec_AbC123dEf456 is wrong", ["whsec_", "AbC123"], ["Signing secret"]),
    ("use pk_test_TYooMQauvdEDq54NiTphI7jx instead", ["pk_test", "TYooMQ"], ["instead"]),
    ("restricted rk_live_abcdEFGH1234 lacks permissions", ["rk_live", "abcdEFGH"],
     ["lacks permissions"]),
    ("see https://dashboard.stripe.com/test/logs/req_abc123?x=1 for details",
     ["dashboard.stripe.com", "req_abc123"], ["for details"]),
    ("return to www.shop.example.com/thanks", ["shop.example"], ["return to"]),
    ("No such checkout.session: 'cs_test_a1B2c3D4e5F6g7H8i9J0'", ["cs_test_a1B2"],
     ["No such checkout.session"]),
    ("object 3f2504e0-4f89-11d3-9a0c-0305e82c3301 missing", ["3f2504e0"], ["missing"]),
    ("card 4242 4242 4242 4242 declined", ["4242"], ["declined"]),
    ("call +1 (555) 123-4567 now", ["555", "4567"], ["now"]),
    ("at 1700000000 the thing", ["1700000000"], ["the thing"]),
    ('value "Jane Smith" rejected', ["Jane", "Smith"], ["rejected"]),
    ("value 'Jane Smith' rejected", ["Jane", "Smith"], ["rejected"]),
    ("Invalid value for metadata[customer_ssn]: 078-05-1120", ["customer_ssn", "078-05"],
     ["metadata[*]"]),
    ("customer=jane order_id=A-77", ["jane", "A-77"], ["customer=", "order_id="]),
    ("Invalid string: Jane Smith...; must be at most 40 characters", ["Jane"],
     ["must be at most 40 characters"]),
    ("Invalid currency: xyz. Stripe currently supports these currencies: usd, eur",
     ["xyz"], ["Invalid currency"]),
    ("The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
     [], ["The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
          "creation."]),
    ("The Checkout Session's total amount due must add up to at least $0.50 usd", [],
     ["The Checkout Session's total amount due must add up to at least $0.50 usd"]),
    ("Metadata can have up to 50 keys.", [], ["Metadata can have up to 50 keys."]),
    ("Bearer abc.def.ghi rejected from 10.1.2.3", ["abc.def", "10.1.2.3"], ["rejected"]),
])
def test_redact(message: str, gone: list[str], kept: list[str]) -> None:
    out = redact(message)
    for value in gone:
        assert value not in out, (value, out)
    for text in kept:
        assert text in out, (text, out)
    assert redact(out) == out  # stable: redacting twice changes nothing


@pytest.mark.parametrize(("message", "gone", "expected"), [
    ("Customer Jane Doe cannot pay with this account.", ["Jane", "Doe"],
     "Customer <name> cannot pay with this account."),
    ("Address 12 Main Street is invalid", ["12", "Main", "Street"],
     "Address <number> <name> is invalid"),
    ("Jane Doe cannot pay.", ["Jane", "Doe"], "<name> cannot pay."),
    ("Shipping to John O'Brien at 221B Baker Street, London NW1 6XE failed.",
     ["John", "Brien", "221B", "Baker", "London", "NW1", "6XE"],
     "Shipping to <name> at <value> <name>, <name> <value> failed."),
    ("The card of Ann Lee was declined. Contact Acme Corp for help.",
     ["Ann", "Lee", "Acme"], "The card of <name> was declined. Contact <name> for help."),
    ("Order 4471 for customer 88 failed", ["4471", "88"],
     "Order <number> for customer <number> failed"),
])
def test_redact_unquoted_names_addresses_and_numbers(message: str, gone: list[str],
                                                     expected: str) -> None:
    out = redact(message)
    for value in gone:
        assert value not in out, (value, out)
    assert out == expected
    assert redact(out) == out


@pytest.mark.parametrize("message", [
    "Your card was declined.",
    "Your card has insufficient funds.",
    "This PaymentIntent's amount could not be updated because it has a status of succeeded.",
    "You cannot create a Checkout Session in payment mode without line items.",
    "Amount must be at least 50 cents",
    "The Checkout Session's total amount due must add up to at least $0.50 usd",
    "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
    "Only 20 line items are allowed in a Checkout Session.",
    "Your account cannot currently make live charges.",
    "Stripe API keys for Connect accounts cannot create SEPA Direct Debit payments.",
    "Apple Pay and Google Pay are not enabled for this account in the Dashboard.",
])
def test_redact_keeps_typical_stripe_messages(message: str) -> None:
    assert redact(message) == message


def test_redact_caps_the_length() -> None:
    out = redact("word " * 500)
    assert len(out) <= 300


def test_prompt_carries_only_type_code_and_param() -> None:
    message = ("Invalid value for metadata[customer_name]: 'Jane Doe' (jane@example.com) "
               "key sk_live_abcDEF123456 secret whsec_XYZ789 url https://shop.example.com/ok "
               "uid 0f8fad5b-d9cb-469f-a165-70867728950e card 4000056655665556")
    error = stripe_error("parameter_weird_new_code", message, param="metadata[customer_name]")
    key, messages = build_messages(ErrorDetails.of(error))
    assert key == ("stripe", "parameter_weird_new_code", "metadata[*]")
    assert messages[0]["content"] == SYSTEM_PROMPT
    prompt = "\n".join(str(m["content"]) for m in messages)
    for value in ("Jane", "Doe", "jane@example.com", "sk_live", "abcDEF123456", "whsec_",
                  "XYZ789", "shop.example.com", "0f8fad5b", "4000056655665556",
                  "customer_name"):
        assert value not in prompt, value
    user = str(messages[1]["content"])
    assert "Error code: parameter_weird_new_code" in user
    assert "Parameter: metadata[*]" in user
    assert "Error type: invalid_request_error" in user
    assert "Message" not in user  # no free text from the provider, redacted or not


def test_prompt_carries_no_text_of_the_providers_message() -> None:
    """Tenants share the model and its cache: another team's words never reach it."""
    error = stripe_error("weird_new_code", "Customer Jane Doe at 12 Main Street cannot pay "
                         "with this account.")
    _, messages = build_messages(ErrorDetails.of(error))
    prompt = "\n".join(str(m["content"]) for m in messages)
    for value in ("Jane", "Doe", "12", "Main", "Street", "Customer", "cannot pay"):
        assert value not in prompt, value


def test_codeless_errors_get_distinct_cache_keys_without_values() -> None:
    a = ErrorDetails.of(stripe_error(None, "Invalid thing: alice@example.com"))
    b = ErrorDetails.of(stripe_error(None, "Invalid thing: bob@example.org"))
    c = ErrorDetails.of(stripe_error(None, "Another problem entirely"))
    key_a, _ = build_messages(a)
    key_b, _ = build_messages(b)
    key_c, _ = build_messages(c)
    assert key_a == key_b  # the values differ, the redacted message does not
    assert key_a != key_c
    assert key_a.code.startswith("invalid_request_error#")
