"""A curated catalog of explanations for the provider errors a PaymentSession meets.

Each explanation tells the platform team, in plain words, what to change: a field of the
PaymentSession manifest, the Secret with the Stripe key, or an operator setting. No
network: this is data in the package.

Lookup order for a provider error: (code, param), (code, last part of param), code,
message patterns (for errors Stripe sends without a code), error type; then, for errors
that are not the provider's (no provider code), paykube's own error code.
`{field}` in an explanation is replaced with the manifest field behind the Stripe param.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paykube.explain.details import ErrorDetails

IMMUTABLE = ("The spec cannot be changed after creation: delete the PaymentSession and "
             "create it again with the corrected value.")
KEY_PLACES = ("the API key Secret of the provider account in spec.providerRef (its "
              "spec.apiKey), or the operator's "
              "default key (PAYKUBE_STRIPE_API_KEY, the Secret in "
              "PAYKUBE_STRIPE_CREDENTIALS_SECRET, or the apiKey field of the AWS Secrets "
              "Manager secret); paykube picks up a changed key within its cache TTL, without "
              "a restart")

# The manifest field behind each Stripe Checkout Session parameter paykube sends.
PARAM_FIELDS: dict[str, str] = {
    "line_items": "spec.lineItems (or spec.amount when there are no line items)",
    "line_items[*][quantity]": "spec.lineItems[].quantity",
    "line_items[*][price_data]": "spec.lineItems[] (or spec.amount)",
    "line_items[*][price_data][unit_amount]": "spec.lineItems[].unitAmount (or spec.amount)",
    "line_items[*][price_data][currency]": "spec.currency",
    "line_items[*][price_data][product_data]": "spec.lineItems[].name (or spec.description)",
    "line_items[*][price_data][product_data][name]":
        "spec.lineItems[].name (or spec.description when there are no line items)",
    "success_url": "spec.successUrl",
    "cancel_url": "spec.cancelUrl",
    "customer_email": "spec.customerEmail",
    "expires_at": "spec.expiresAfter",
    "metadata": "spec.metadata",
    "metadata[*]": "spec.metadata",
    "currency": "spec.currency",
    "client_reference_id": "the object's uid (set by paykube)",
    "mode": "the Checkout mode (set by paykube)",
}

_BY_CODE_PARAM: dict[tuple[str, str], str] = {
    ("parameter_invalid_integer", "expires_at"): (
        "spec.expiresAfter must be between 30m and 24h, counted from the moment the Stripe "
        "session is created. Use a value inside that range, e.g. 1h or 23h (24h exactly can "
        "fail when the session is created late, after a backlog or with a skewed clock on "
        "the operator's node). " + IMMUTABLE),
    ("parameter_invalid_integer", "line_items[*][quantity]"): (
        "spec.lineItems[].quantity must be a whole number of at least 1. " + IMMUTABLE),
    ("parameter_invalid_integer", "line_items[*][price_data][unit_amount]"): (
        "spec.lineItems[].unitAmount (or spec.amount) must be a non-negative whole number in "
        "the currency's minor unit, e.g. 1999 for 19.99 USD. " + IMMUTABLE),
    ("parameter_missing", "line_items[*][price_data][product_data][name]"): (
        "Every line item needs a product name: set spec.lineItems[].name (without line "
        "items, spec.description or the object's name is used). " + IMMUTABLE),
    ("parameter_missing", "success_url"): (
        "spec.successUrl is required: the https URL the customer returns to after paying. "
        + IMMUTABLE),
    ("parameter_missing", "cancel_url"): (
        "spec.cancelUrl is required by this Stripe account's API version: the https URL the "
        "customer returns to when abandoning the payment. " + IMMUTABLE),
    ("url_invalid", "success_url"): (
        "spec.successUrl is not a valid URL. It must be an absolute URL with scheme and host "
        "(https://shop.example.com/thanks), at most 5000 characters. " + IMMUTABLE),
    ("url_invalid", "cancel_url"): (
        "spec.cancelUrl is not a valid URL. It must be an absolute URL with scheme and host "
        "(https://shop.example.com/cart), at most 5000 characters. " + IMMUTABLE),
    ("amount_too_small", "line_items"): (
        "The total of spec.amount (the sum of spec.lineItems) is below Stripe's minimum "
        "charge for spec.currency, about 0.50 USD (50 for usd and eur, 30 for gbp, 50 for "
        "jpy). Amounts are in the minor unit: 50 means 0.50. Use a larger amount. "
        + IMMUTABLE),
    ("amount_too_large", "line_items"): (
        "The total of spec.amount (the sum of spec.lineItems) is above Stripe's maximum, "
        "99,999,999 in the minor unit (999,999.99 for two-decimal currencies). Check that "
        "the amount is in the minor unit and not scaled twice, or split the payment into "
        "several PaymentSessions. " + IMMUTABLE),
    ("email_invalid", "customer_email"): (
        "spec.customerEmail is not a valid e-mail address. Fix it or leave it out (it only "
        "prefills the checkout page). " + IMMUTABLE),
    ("resource_missing", "session"): (
        "Stripe does not know the Checkout Session in status.sessionId for this API key. The "
        "key now belongs to another Stripe account or mode than the one that created the "
        "session (the key of the spec.providerRef account or the operator's default key changed). "
        "Restore the original key, or delete and recreate the PaymentSession."),
}

_BY_CODE: dict[str, str] = {
    "parameter_missing": (
        "Stripe says a required value is missing: {field}. If that is a spec field, set it. "
        + IMMUTABLE + " If paykube fills it in itself, the operator and the Stripe API "
        "version disagree: upgrade paykube."),
    "parameter_invalid_integer": (
        "{field} is not a whole number Stripe accepts, or is out of range. Amounts are "
        "whole numbers in the minor unit (1999 for 19.99), quantities at least 1, and "
        "spec.expiresAfter between 30m and 24h. " + IMMUTABLE),
    "parameter_invalid_empty": (
        "{field} was sent empty. Give it a value (for example a product name in "
        "spec.lineItems[].name or spec.description), or leave the field out. " + IMMUTABLE),
    "parameter_invalid_string_empty": (
        "{field} was sent as an empty string. Give it a value or leave the field out. "
        + IMMUTABLE),
    "parameter_invalid_string_blank": (
        "{field} holds only spaces. Give it a real value or leave the field out. "
        + IMMUTABLE),
    "parameter_unknown": (
        "Stripe does not accept a parameter that paykube sent ({field}). Nothing in the "
        "manifest causes this: the operator targets a different Stripe API version than the "
        "endpoint it talks to. Check PAYKUBE_STRIPE_API_BASE and upgrade paykube."),
    "parameters_exclusive": (
        "paykube sent two parameters that Stripe accepts only one at a time. This is not a "
        "manifest problem: upgrade paykube, or report the error with its code and param."),
    "url_invalid": (
        "{field} is not a valid URL. spec.successUrl and spec.cancelUrl must be absolute "
        "URLs with scheme and host, e.g. https://shop.example.com/thanks. " + IMMUTABLE),
    "amount_too_small": (
        "The amount is below Stripe's minimum charge for spec.currency, about 0.50 USD (50 "
        "for usd and eur, 30 for gbp). spec.amount and spec.lineItems[].unitAmount are in "
        "the minor unit: 50 means 0.50. " + IMMUTABLE),
    "amount_too_large": (
        "The amount is above Stripe's maximum, 99,999,999 in the minor unit (999,999.99 for "
        "two-decimal currencies). Check spec.amount is in the minor unit, or split the "
        "payment. " + IMMUTABLE),
    "email_invalid": (
        "spec.customerEmail is not a valid e-mail address. Fix it or leave it out. "
        + IMMUTABLE),
    "idempotency_key_in_use": (
        "Two requests for the same PaymentSession reached Stripe at the same time with the "
        "same idempotency key. This is usually two operator replicas working without leader "
        "election. paykube retries; if it persists, run one active operator replica."),
    "resource_missing": (
        "Stripe does not know an object paykube refers to ({field}), usually the Checkout "
        "Session in status.sessionId. The API key now belongs to another Stripe account or "
        "mode than the one that created it (the spec.providerRef account's key or the default key "
        "changed), or PAYKUBE_STRIPE_API_BASE points elsewhere. Restore the original key, or "
        "delete and recreate the PaymentSession."),
    "rate_limit": (
        "Stripe limited the request rate of this account. paykube retries with backoff. If "
        "it persists, lower PAYKUBE_STRIPE_RATE_LIMIT (Stripe allows about 25 requests/s in "
        "test mode and 100/s live, shared with every other system using the account), or "
        "create many PaymentSessions more gradually."),
    "lock_timeout": (
        "Another request was changing the same Stripe object at the same moment. paykube "
        "retries; nothing to change."),
    "api_key_expired": (
        "The Stripe API key has expired (it was rolled in the Stripe Dashboard). Put a "
        "current secret key (sk_live_/sk_test_) or restricted key (rk_) into " + KEY_PLACES
        + "."),
    "platform_api_key_expired": (
        "The platform's Stripe API key has expired. Put a current key into " + KEY_PLACES
        + "."),
    "secret_key_required": (
        "A publishable key (pk_...) is configured where a secret key is needed. Put the "
        "secret key (sk_...) or a restricted key (rk_...) into " + KEY_PLACES + "."),
    "account_invalid": (
        "The Stripe account behind the API key cannot be used (closed, rejected, or the key "
        "does not belong to it). Check the account in the Stripe Dashboard, then put a key "
        "of a working account into " + KEY_PLACES + "."),
    "testmode_charges_only": (
        "The Stripe account is not activated for live payments, but a live key is "
        "configured. Activate the account in the Stripe Dashboard, or use a test key "
        "(sk_test_) in " + KEY_PLACES + "."),
    "livemode_mismatch": (
        "Test and live mode were mixed: the Checkout Session was created with a test key and "
        "is now read with a live key, or the other way round (the spec.providerRef account's key "
        "or the default key changed mode). Restore a key of the original mode, or delete and "
        "recreate the PaymentSession."),
    "payment_method_unactivated": (
        "No payment method that Checkout would offer is activated for this Stripe account "
        "and spec.currency. Activate one (e.g. cards) in the Stripe Dashboard under "
        "Settings > Payment methods, or use a currency your methods support."),
    "currency_not_supported": (
        "spec.currency is not supported by this Stripe account or payment method. Use a "
        "three-letter lower-case ISO 4217 code your account settles, e.g. usd or eur. "
        + IMMUTABLE),
    "country_unsupported": (
        "The Stripe account's country does not support this request. Check the account's "
        "country and capabilities in the Stripe Dashboard; nothing in the manifest can "
        "change it."),
    "invalid_characters": (
        "{field} contains characters Stripe does not accept. Use plain text. " + IMMUTABLE),
}


@dataclass(frozen=True)
class _Pattern:
    pattern: re.Pattern[str]
    explanation: str
    param: str | None = None  # normalized param the rule is limited to
    codeless_only: bool = False  # a generic rule: not for errors that carry a code


def _p(regex: str, explanation: str, param: str | None = None, *,
       codeless_only: bool = False) -> _Pattern:
    return _Pattern(re.compile(regex, re.IGNORECASE), explanation, param, codeless_only)


# Errors Stripe sends without a code: matched on the (never transmitted) message.
_BY_MESSAGE: tuple[_Pattern, ...] = (
    _p(r"invalid currency", (
        "spec.currency is not a currency Stripe supports. Use a three-letter lower-case ISO "
        "4217 code that your Stripe account accepts, e.g. usd, eur or gbp. " + IMMUTABLE)),
    _p(r"metadata can have up to \d+ keys|too many (metadata )?keys", (
        "spec.metadata has too many keys. The manifest allows at most 20 (paykube adds its "
        "own paykube_namespace, paykube_name and paykube_uid). " + IMMUTABLE)),
    _p(r"metadata keys? can have up to \d+ characters|metadata key.*too long", (
        "A key in spec.metadata is longer than 40 characters. Shorten it. " + IMMUTABLE)),
    _p(r"metadata values? can have up to \d+ characters|metadata value.*too long", (
        "A value in spec.metadata is longer than 500 characters. Shorten it, or keep the "
        "data elsewhere and put a reference in metadata. " + IMMUTABLE)),
    _p(r"invalid hash", (
        "spec.metadata must be a map of string keys to string values. " + IMMUTABLE),
       "metadata"),
    _p(r"only checkout sessions with a status .*open.* can be expired", (
        "The Checkout Session had already ended (paid or expired) when paykube tried to "
        "expire it, so spec.cancel or the deletion had nothing to do. status.phase shows "
        "how it ended; nothing to change.")),
    _p(r"this checkout session is no longer active|session has expired", (
        "The Checkout Session has already expired at Stripe. Create a new PaymentSession "
        "if the customer still needs to pay; a longer spec.expiresAfter (up to 24h) keeps "
        "the next one open longer.")),
    _p(r"invalid api key provided", (
        "Stripe does not recognise the configured API key (mistyped, revoked, or from "
        "another account). Put a valid secret key into " + KEY_PLACES + ".")),
    _p(r"expired api key provided", _BY_CODE["api_key_expired"]),
    _p(r"did not provide an api key", (
        "No Stripe API key was sent: the configured key is empty. Put the secret key into "
        + KEY_PLACES + ".")),
    _p(r"does not have the required permissions", (
        "The restricted Stripe key lacks a permission paykube needs (Checkout Sessions: "
        "write). Grant it on the key in the Stripe Dashboard, or use a key that has it, in "
        + KEY_PLACES + ".")),
    _p(r"must be at most \d+ characters", (
        "{field} is too long for Stripe. Shorten it (product names and descriptions "
        "should stay well under a few hundred characters). " + IMMUTABLE),
       codeless_only=True),
    _p(r"passed a recurring price|`payment` mode", (
        "A recurring price cannot be used in a one-time payment. PaymentSession only makes "
        "one-time payments: use unit amounts in spec.lineItems, not recurring prices.")),
    _p(r"invalid string|invalid (integer|array|object)", (
        "{field} has a value of the wrong kind or length for Stripe. Check it against the "
        "PaymentSession reference (kubectl explain paymentsession.spec). " + IMMUTABLE),
       codeless_only=True),
)

_BY_TYPE: dict[str, str] = {
    "idempotency_error": (
        "Stripe already received a create request for this PaymentSession (the same "
        "idempotency key, paykube:<uid>:create) with different parameters, within the last "
        "24 hours. This happens when the operator's settings, version or API key changed "
        "between two attempts. Delete and recreate the PaymentSession (a new object gets a "
        "new key)."),
    "rate_limit_error": _BY_CODE["rate_limit"],
    "api_error": (
        "Stripe had an internal error. paykube retries with backoff; nothing to change "
        "unless it persists (see status.stripe.com)."),
    "api_connection_error": (
        "paykube could not reach Stripe. It retries; if it persists, check the operator's "
        "network egress (proxy, NetworkPolicy, DNS) and PAYKUBE_STRIPE_API_BASE."),
    "authentication_error": (
        "Stripe refused the API key. Put a valid secret key into " + KEY_PLACES + "."),
    "permission_error": (
        "The Stripe key lacks a permission paykube needs (Checkout Sessions: write). Grant "
        "it in the Stripe Dashboard, or use another key, in " + KEY_PLACES + "."),
}

# paykube's own codes, for errors that did not come from the provider's answer.
_BY_PAYKUBE_CODE: dict[str, str] = {
    "CredentialsMissing": (
        "No Stripe API key is configured for this PaymentSession. Point spec.providerRef at "
        "a PaymentProvider whose spec.apiKey names a Secret holding the key (check that the "
        "Secret and its key exist), or configure the operator's default "
        "(PAYKUBE_STRIPE_API_KEY, PAYKUBE_STRIPE_CREDENTIALS_SECRET, or the apiKey field of "
        "the AWS Secrets Manager secret)."),
    "ProviderNotAllowed": (
        "This namespace may not use the ClusterPaymentProvider in spec.providerRef: its "
        "namespaceSelector does not admit the namespace. Ask the platform team to admit it, "
        "or use a PaymentProvider of this namespace; the spec is immutable, so recreate the "
        "PaymentSession."),
    "ProviderNotFound": (
        "The provider account named in spec.providerRef does not exist (yet). Create the "
        "PaymentProvider (or ClusterPaymentProvider); the session waits and goes on by "
        "itself once it exists."),
    "CredentialsInvalid": (
        "Stripe refused the configured API key (HTTP 401/403). Put a valid secret key into "
        + KEY_PLACES + "."),
    "ProviderUnavailable": (
        "Stripe did not answer or answered with a server error. paykube retries with "
        "backoff; nothing to change unless it persists (check status.stripe.com and the "
        "operator's network egress)."),
    "RateLimited": _BY_CODE["rate_limit"],
}


# Razorpay answers nearly every refusal with code BAD_REQUEST_ERROR: its `field` says what
# it objects to, so the entries are keyed by field (the adapter reduces notes.<key>, which
# is user data, to notes).
RAZORPAY_KEY_PLACES = (
    "the API key Secret of the razorpay provider account in spec.providerRef (its "
    "spec.apiKey: one value key_id:key_secret, for example rzp_test_AbC123:s3cr3t); paykube "
    "picks up a changed key within its cache TTL, without a restart")
_RAZORPAY_BY_FIELD: dict[str, str] = {
    "amount": (
        "Razorpay refused spec.amount: a Payment Link takes at least 100 in the currency's "
        "smallest unit (1.00 INR) and at most the account's per-transaction limit. "
        + IMMUTABLE),
    "currency": (
        "Razorpay does not accept spec.currency for this account. Use a currency enabled on "
        "the Razorpay account (inr everywhere; others only with international payments "
        "enabled). " + IMMUTABLE),
    "expire_by": (
        "Razorpay refused the link's expiry: it must be at least 15 minutes after the "
        "create reaches Razorpay. spec.expiresAfter (30m..24h) satisfies that unless the "
        "create waited long in a backlog; recreate the PaymentSession."),
    "notes": (
        "spec.metadata does not fit Razorpay's notes: at most 15 notes including paykube's "
        "three (so at most 12 keys in spec.metadata), each value up to 256 characters. "
        + IMMUTABLE),
    "description": (
        "spec.description (or the line items summed up into it) is too long for a Razorpay "
        "Payment Link (2048 characters). " + IMMUTABLE),
    "callback_url": (
        "Razorpay refused spec.successUrl as the link's callback URL. Use an absolute "
        "https:// URL. " + IMMUTABLE),
    "customer.email": (
        "Razorpay refused spec.customerEmail. Use a valid email address. " + IMMUTABLE),
    "customer.contact": (
        "Razorpay refused spec.razorpay.customer.contact. Use a phone number with its "
        "country code, for example +919000090000. " + IMMUTABLE),
    "first_min_partial_amount": (
        "Razorpay refused spec.razorpay.firstMinPartialAmount: it must be at most "
        "spec.amount, and only with spec.razorpay.acceptPartial: true. " + IMMUTABLE),
    "reference_id": (
        "Razorpay already has a Payment Link with this object's uid as reference_id, and "
        "paykube could not find it again with this key (another key of another account "
        "made it?). Check spec.providerRef's account; recreate the PaymentSession."),
    "id": (
        "Razorpay does not know this Payment Link for the configured key: the provider "
        "account's key now belongs to another account or mode than the one that created "
        "it. Put the original account's key back in " + "the provider's spec.apiKey."),
}
_RAZORPAY_BY_CODE: dict[str, str] = {
    "TOO_MANY_NOTES": _RAZORPAY_BY_FIELD["notes"],
    "SERVER_ERROR": (
        "Razorpay had an internal error. paykube retries with backoff; nothing to change "
        "unless it persists (see status.razorpay.com)."),
    "GATEWAY_ERROR": (
        "Razorpay's gateway failed. paykube retries with backoff; nothing to change unless "
        "it persists (see status.razorpay.com)."),
}
_RAZORPAY_BY_MESSAGE: tuple[_Pattern, ...] = (
    _p(r"api key provided is invalid|authentication failed", (
        "Razorpay refused the key id or secret (mistyped, regenerated, or of the other "
        "mode). Put a valid key into " + RAZORPAY_KEY_PLACES + ".")),
    _p(r"provide your api key", (
        "No Razorpay key was sent. Put the key into " + RAZORPAY_KEY_PLACES + ".")),
)
_RAZORPAY_BY_PAYKUBE_CODE: dict[str, str] = {
    "CredentialsInvalid": (
        "Razorpay refused the configured key (HTTP 401), or the value is not "
        "key_id:key_secret. Put a valid key into " + RAZORPAY_KEY_PLACES + "."),
    "CredentialsMissing": (
        "The razorpay provider account lacks its key or its spec.accountId. Check that "
        "spec.apiKey names an existing Secret and key holding key_id:key_secret, and that "
        "spec.accountId (acc_..., on the Razorpay Dashboard) is set."),
    "ProviderUnavailable": _RAZORPAY_BY_CODE["SERVER_ERROR"],
    "RateLimited": (
        "Razorpay is rate-limiting this account. paykube waits and retries; lower "
        "PAYKUBE_RAZORPAY_RATE_LIMIT if it happens often."),
}


def _tail(param: str) -> str:
    """The last name in a param: `line_items[*][price_data][currency]` → `currency`."""
    parts = [p for p in param.replace("]", "").split("[") if p and p != "*"]
    return parts[-1] if parts else param


def field_for(param: str | None) -> str:
    if not param:
        return "a value in the request"
    return PARAM_FIELDS.get(param) or PARAM_FIELDS.get(_tail(param)) or f"Stripe's {param!r}"


class Catalog:
    """The curated explanations; `lookup` is pure and instant."""

    def lookup(self, error: ErrorDetails) -> str | None:
        text = self._find(error)
        if text is None:
            return None
        return text.replace("{field}", field_for(error.param))

    def _find(self, error: ErrorDetails) -> str | None:
        if error.provider == "stripe" and error.is_provider_error:
            found = self._stripe(error)
            if found:
                return found
        if error.provider == "razorpay":
            found = self._razorpay(error)
            if found:
                return found
        if error.paykube_code:
            return _BY_PAYKUBE_CODE.get(error.paykube_code)
        return None

    @staticmethod
    def _stripe(error: ErrorDetails) -> str | None:
        code, param = error.code, error.param
        if code and param:
            found = _BY_CODE_PARAM.get((code, param)) or _BY_CODE_PARAM.get(
                (code, _tail(param)))
            if found:
                return found
        if code and code in _BY_CODE:
            return _BY_CODE[code]
        for rule in _BY_MESSAGE:
            if rule.param is not None and rule.param != param:
                continue
            if rule.codeless_only and code:
                continue
            if rule.pattern.search(error.message):
                return rule.explanation
        if not code and error.error_type:
            return _BY_TYPE.get(error.error_type)
        return None

    @staticmethod
    def _razorpay(error: ErrorDetails) -> str | None:
        if error.code and error.code in _RAZORPAY_BY_CODE:
            return _RAZORPAY_BY_CODE[error.code]
        if error.param and error.param in _RAZORPAY_BY_FIELD:
            return _RAZORPAY_BY_FIELD[error.param]
        for rule in _RAZORPAY_BY_MESSAGE:
            if rule.pattern.search(error.message):
                return rule.explanation
        return _RAZORPAY_BY_PAYKUBE_CODE.get(error.paykube_code or "")

    @staticmethod
    def codes() -> frozenset[str]:
        """Every Stripe code with an entry (with or without a param)."""
        return frozenset(_BY_CODE) | frozenset(code for code, _ in _BY_CODE_PARAM)


CATALOG = Catalog()
