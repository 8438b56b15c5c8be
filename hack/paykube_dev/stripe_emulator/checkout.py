"""Validation of `POST /v1/checkout/sessions` parameters, the way Stripe words refusals."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from . import errors
from .errors import StripeError
from .forms import Params
from .model import LineItem, Session, new_id

MIN_LIFETIME = 30 * 60
MAX_LIFETIME = 24 * 60 * 60
MAX_AMOUNT = 99_999_999

# Parameters Stripe knows on this endpoint; only a subset is emulated, the rest are accepted.
KNOWN_PARAMS = frozenset({
    "adaptive_pricing", "after_expiration", "allow_promotion_codes", "automatic_tax",
    "billing_address_collection", "branding_settings", "cancel_url", "client_reference_id",
    "consent_collection", "currency", "custom_fields", "custom_text", "customer",
    "customer_creation", "customer_email", "customer_update", "discounts", "expand",
    "expires_at", "invoice_creation", "line_items", "locale", "metadata", "mode",
    "name_collection", "optional_items", "origin_context", "payment_intent_data",
    "payment_method_collection", "payment_method_configuration", "payment_method_data",
    "payment_method_options", "payment_method_types", "permissions",
    "phone_number_collection", "redirect_on_completion", "return_url",
    "saved_payment_method_options", "setup_intent_data", "shipping_address_collection",
    "shipping_options", "submit_type", "subscription_data", "success_url",
    "tax_id_collection", "ui_mode", "wallet_options",
})
LINE_ITEM_PARAMS = frozenset({
    "adjustable_quantity", "dynamic_tax_rates", "metadata", "price", "price_data",
    "quantity", "tax_rates",
})
PRICE_DATA_PARAMS = frozenset({
    "currency", "product", "product_data", "recurring", "tax_behavior", "unit_amount",
    "unit_amount_decimal",
})
PRODUCT_DATA_PARAMS = frozenset({
    "description", "images", "metadata", "name", "tax_code", "unit_label",
})



def _words(text: str) -> list[str]:
    return text.split()


# ISO 4217 codes Stripe settles or presents (lower case).
CURRENCIES = frozenset(_words("""
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd
std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar
zmw
"""))
ZERO_DECIMAL = frozenset(_words("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"))
# Minimum charge amounts (minor units) for the common currencies.
MINIMUM_AMOUNT = {
    "usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50,
    "nzd": 50, "sgd": 50, "hkd": 400, "sek": 300, "nok": 300, "dkk": 250, "pln": 200,
    "czk": 1500, "huf": 17500, "mxn": 1000, "brl": 50, "inr": 50,
}
_SYMBOL = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$", "jpy": "¥"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MODES = ("payment", "setup", "subscription")


def build_session(
    params: Params, *, account: str, livemode: bool, now: int, url_base: str,
) -> Session:
    """A new open session from the request parameters, or the StripeError Stripe would give."""
    for name in params:
        if name not in KNOWN_PARAMS:
            raise errors.unknown_param(name)
    mode = _string(params, "mode")
    if mode is None:
        raise errors.missing("mode")
    if mode not in _MODES:
        raise errors.invalid("mode", "Invalid mode: must be one of payment, setup, or subscription")
    if mode != "payment":
        raise errors.invalid("mode", "The paykube Stripe emulator implements only mode=payment.")
    success_url = _url(params, "success_url", required=True)
    cancel_url = _url(params, "cancel_url", required=False)
    items = _line_items(params.get("line_items"))
    currency = items[0].currency
    for i, item in enumerate(items):
        if item.currency != currency:
            raise errors.invalid(
                f"line_items[{i}][price_data][currency]",
                "All line items must use the same currency; "
                f"line_items[0] uses {currency}, line_items[{i}] uses {item.currency}.",
            )
    total = sum(item.amount for item in items)
    _check_amount(total, currency)
    email = _string(params, "customer_email")
    if email is not None and not _EMAIL.match(email):
        raise errors.invalid("customer_email", f"Invalid email address: {email}", "email_invalid")
    reference = _string(params, "client_reference_id")
    if reference is not None:
        _max_length("client_reference_id", reference, 200)
    return Session(
        id=new_id("cs_live_" if livemode else "cs_test_", 58), account=account,
        livemode=livemode, created=now, expires_at=_expires_at(params, now),
        currency=currency, line_items=items, success_url=success_url, cancel_url=cancel_url,
        customer_email=email, client_reference_id=reference,
        metadata=_metadata(params.get("metadata"), "metadata"), url_base=url_base,
        locale=_string(params, "locale"),
        payment_method_types=_string_list(params, "payment_method_types") or ["card"],
        intent_metadata=_intent_metadata(params.get("payment_intent_data")),
    )


def _intent_metadata(value: Any) -> dict[str, str]:
    """`payment_intent_data[metadata]`: the PaymentIntent's (and so its charge's) metadata;
    the rest of `payment_intent_data` is accepted and not emulated."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise errors.invalid("payment_intent_data", "Invalid hash")
    return _metadata(value.get("metadata"), "payment_intent_data[metadata]")


def _string(params: Params, name: str, param: str | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.invalid(param or name, f"Invalid string: {value!r}")
    return value


def _string_list(params: Params, name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.invalid(name, "Invalid array")
    return list(value)


def _max_length(param: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise errors.invalid(
            param, f"Invalid string: {value[:10]}...; must be at most {limit} characters",
        )


def _integer(value: Any, param: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise errors.invalid_integer(param, value)
    number = int(value)
    if minimum is not None and number < minimum:
        raise errors.invalid(
            param, f"This value must be greater than or equal to {minimum}.",
            "parameter_invalid_integer",
        )
    return number


def _url(params: Params, name: str, *, required: bool) -> str | None:
    value = _string(params, name)
    if value is None or value == "":
        if required:
            raise errors.missing(name)
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.invalid(name, "Not a valid URL", "url_invalid")
    _max_length(name, value, 5000)
    return value


def _line_items(value: Any) -> list[LineItem]:
    if value is None or value == []:
        raise errors.missing("line_items")
    if not isinstance(value, list):
        raise errors.invalid("line_items", "Invalid array")
    return [_line_item(item, f"line_items[{i}]") for i, item in enumerate(value)]


def _line_item(value: Any, at: str) -> LineItem:
    if not isinstance(value, dict):
        raise errors.invalid(at, "Invalid object")
    for name in value:
        if name not in LINE_ITEM_PARAMS:
            raise errors.unknown_param(f"{at}[{name}]")
    if "price" in value:
        raise errors.no_such("price", str(value["price"]), f"{at}[price]", saved=False)
    if "quantity" not in value:
        raise errors.missing(f"{at}[quantity]")
    quantity = _integer(value["quantity"], f"{at}[quantity]", minimum=1)
    data = value.get("price_data")
    if data is None:
        raise errors.missing(f"{at}[price_data]")
    if not isinstance(data, dict):
        raise errors.invalid(f"{at}[price_data]", "Invalid object")
    at = f"{at}[price_data]"
    for name in data:
        if name not in PRICE_DATA_PARAMS:
            raise errors.unknown_param(f"{at}[{name}]")
    currency = data.get("currency")
    if currency is None:
        raise errors.missing(f"{at}[currency]")
    if currency not in CURRENCIES:
        raise errors.invalid(
            f"{at}[currency]",
            f"Invalid currency: {currency}. Stripe currently supports these currencies: "
            + ", ".join(sorted(CURRENCIES)),
        )
    if "recurring" in data:
        raise errors.invalid(
            f"{at}[recurring]",
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
        )
    if "unit_amount" not in data:
        raise errors.missing(f"{at}[unit_amount]")
    unit_amount = _integer(data["unit_amount"], f"{at}[unit_amount]", minimum=0)
    if "product" in data:
        raise errors.no_such("product", str(data["product"]), f"{at}[product]", saved=False)
    product = data.get("product_data")
    if not isinstance(product, dict):
        raise errors.missing(f"{at}[product_data]")
    for name in product:
        if name not in PRODUCT_DATA_PARAMS:
            raise errors.unknown_param(f"{at}[product_data][{name}]")
    name = product.get("name")
    if not isinstance(name, str) or not name:
        raise errors.missing(f"{at}[product_data][name]")
    description = product.get("description")
    return LineItem(
        name=name, description=description if isinstance(description, str) else None,
        currency=currency, unit_amount=unit_amount, quantity=quantity,
    )


def _check_amount(total: int, currency: str) -> None:
    minimum = MINIMUM_AMOUNT.get(currency, 0)
    if total < minimum:
        raise StripeError(
            400,
            "The Checkout Session's total amount due must add up to at least "
            f"{money(minimum, currency)} {currency}",
            code="amount_too_small", param="line_items",
        )
    if total > MAX_AMOUNT:
        raise StripeError(
            400,
            "The Checkout Session's total amount due must be no more than "
            f"{money(MAX_AMOUNT, currency)} {currency}",
            code="amount_too_large", param="line_items",
        )


def money(minor: int, currency: str) -> str:
    symbol = _SYMBOL.get(currency, "")
    if currency in ZERO_DECIMAL:
        return f"{symbol}{minor:,}"
    return f"{symbol}{minor / 100:,.2f}"


def _expires_at(params: Params, now: int) -> int:
    if "expires_at" not in params:
        return now + MAX_LIFETIME
    expires_at = _integer(params["expires_at"], "expires_at")
    if expires_at - now < MIN_LIFETIME:
        raise errors.invalid(
            "expires_at",
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            "parameter_invalid_integer",
        )
    if expires_at - now > MAX_LIFETIME:
        raise errors.invalid(
            "expires_at",
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session "
            "creation.",
            "parameter_invalid_integer",
        )
    return expires_at


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise errors.invalid(param, "Invalid hash")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise errors.invalid(f"{param}[{key}]", "Invalid string")
        if len(key) > 40:
            raise errors.invalid(
                f"{param}[{key}]", "Metadata keys can have up to 40 characters.",
            )
        if len(item) > 500:
            raise errors.invalid(
                f"{param}[{key}]", "Metadata values can have up to 500 characters.",
            )
        if item != "":
            result[key] = item
    if len(result) > 50:
        raise errors.invalid(param, "Metadata can have up to 50 keys.")
    return result
