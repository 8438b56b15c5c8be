"""Validation of `POST /v1/payment_links` bodies, refused the way Razorpay refuses them."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from paykube_dev.psp_emulator.clock import ALNUM, JsonObject, new_id

from . import errors
from .model import SIX_MONTHS, PaymentLink

KNOWN = frozenset({
    "amount", "currency", "accept_partial", "first_min_partial_amount", "expire_by",
    "reference_id", "description", "customer", "notify", "reminder_enable", "notes",
    "callback_url", "callback_method", "upi_link", "options",
})
CURRENCIES = frozenset({"INR", "USD", "EUR", "GBP", "SGD", "AED", "AUD", "CAD", "JPY", "MYR"})
MIN_AMOUNT = 100
MAX_NOTES = 15
MAX_NOTE_LENGTH = 256
MIN_LIFETIME = 15 * 60
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def build_link(
    body: JsonObject, *, account_id: str, key_id: str, livemode: bool, now: int,
    short_url_base: str,
) -> PaymentLink:
    for name in body:
        if name not in KNOWN:
            raise errors.extra_field(name)
    amount = _integer(body, "amount", required=True)
    currency = body.get("currency", "INR")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise errors.invalid("currency", "The selected currency is invalid.")
    if amount < MIN_AMOUNT:
        raise errors.invalid("amount", "The amount must be atleast INR 1.00")
    accept_partial = _boolean(body, "accept_partial")
    first_min = _integer(body, "first_min_partial_amount")
    if first_min and not accept_partial:
        raise errors.invalid("first_min_partial_amount",
                             "first_min_partial_amount is allowed only with accept_partial")
    if first_min > amount:
        raise errors.invalid("first_min_partial_amount",
                             "first_min_partial_amount should be less than or equal to amount")
    expire_by = _integer(body, "expire_by")
    if expire_by and expire_by < now + MIN_LIFETIME:
        raise errors.invalid("expire_by",
                             "expire_by should be at least 15 minutes after current time")
    if expire_by > now + SIX_MONTHS:
        raise errors.invalid("expire_by",
                             "expire_by cannot be more than 6 months from the current time")
    reference = _string(body, "reference_id", 40)
    callback_url = _string(body, "callback_url", 2048)
    callback_method = _string(body, "callback_method", 10)
    if callback_url is not None:
        parts = urlsplit(callback_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errors.invalid("callback_url", "The callback url format is invalid.")
        if callback_method != "get":
            raise errors.invalid("callback_method",
                                 "callback_method should be get when callback_url is sent")
    elif callback_method is not None:
        raise errors.invalid("callback_url",
                             "callback_url is required when callback_method is sent")
    return PaymentLink(
        id=new_id("plink_", 14), account_id=account_id, livemode=livemode, amount=amount,
        currency=currency, created_at=now, expire_by=expire_by, reference_id=reference,
        description=_string(body, "description", 2048), notes=_notes(body.get("notes")),
        customer=_customer(body.get("customer")), notify=_notify(body.get("notify")),
        callback_url=callback_url, callback_method=callback_method,
        accept_partial=accept_partial, first_min_partial_amount=first_min,
        reminder_enable=_boolean(body, "reminder_enable"),
        short_url=short_url_base + "".join(secrets.choice(ALNUM) for _ in range(7)),
        key_id=key_id,
    )


def _integer(body: JsonObject, name: str, *, required: bool = False) -> int:
    value = body.get(name)
    if value is None:
        if required:
            raise errors.required(name)
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise errors.invalid(name, f"The {name} must be an integer.")
    if value < 0:
        raise errors.invalid(name, f"The {name} must be at least 0.")
    return value


def _boolean(body: JsonObject, name: str) -> bool:
    value = body.get(name, False)
    if value in ("true", "1", 1):
        return True
    if value in ("false", "0", 0, None):
        return False
    if not isinstance(value, bool):
        raise errors.invalid(name, f"The {name} field must be true or false.")
    return value


def _string(body: JsonObject, name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.invalid(name, f"The {name} must be a string.")
    if len(value) > limit:
        raise errors.invalid(name, f"The {name} may not be greater than {limit} characters.")
    return value


def _notes(value: Any) -> dict[str, str]:
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise errors.invalid("notes", "The notes must be an array.")
    if len(value) > MAX_NOTES:
        raise errors.invalid("notes", f"Number of notes should not exceed {MAX_NOTES}")
    notes: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise errors.invalid(f"notes.{key}", f"The notes.{key} must be a string.")
        text = str(item)
        if len(text) > MAX_NOTE_LENGTH or len(str(key)) > MAX_NOTE_LENGTH:
            raise errors.invalid(
                f"notes.{key}",
                f"The notes.{key} may not be greater than {MAX_NOTE_LENGTH} characters.",
            )
        notes[str(key)] = text
    return notes


def _customer(value: Any) -> JsonObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.invalid("customer", "The customer must be an array.")
    customer: JsonObject = {}
    for key in ("contact", "email", "name"):
        item = value.get(key)
        if item is None:
            continue
        if not isinstance(item, str):
            raise errors.invalid(f"customer.{key}", f"The customer.{key} must be a string.")
        if key == "email" and not _EMAIL.match(item):
            raise errors.invalid("customer.email",
                                 "The customer.email must be a valid email address.")
        customer[key] = item
    for key in value:
        if key not in ("contact", "email", "name"):
            raise errors.extra_field(f"customer.{key}")
    return customer


def _notify(value: Any) -> JsonObject:
    if value is None:
        return {"email": False, "sms": False}
    if not isinstance(value, dict):
        raise errors.invalid("notify", "The notify must be an array.")
    return {"email": _boolean(value, "email"), "sms": _boolean(value, "sms")}
