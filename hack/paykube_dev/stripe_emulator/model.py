"""The emulator's records and their Stripe-shaped JSON forms."""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from paykube_dev.psp_emulator.clock import Clock as Clock
from paykube_dev.psp_emulator.clock import JsonObject as JsonObject
from paykube_dev.psp_emulator.clock import new_id as new_id
from paykube_dev.psp_emulator.delivery import Delivery as Delivery

SessionStatus = Literal["open", "complete", "expired"]
PaymentStatus = Literal["paid", "unpaid", "no_payment_required"]
IntentStatus = Literal["requires_payment_method", "processing", "succeeded", "canceled"]


def mask_key(key: str) -> str:
    """`sk_test_****abcd`, the way Stripe quotes keys back."""
    prefix, _, rest = key.rpartition("_")
    return f"{prefix}_****{rest[-4:]}" if prefix else f"****{key[-4:]}"


@dataclass
class LineItem:
    name: str
    description: str | None
    currency: str
    unit_amount: int
    quantity: int
    id: str = field(default_factory=lambda: new_id("li_"))
    price_id: str = field(default_factory=lambda: new_id("price_"))
    product_id: str = field(default_factory=lambda: new_id("prod_", 14))

    @property
    def amount(self) -> int:
        return self.unit_amount * self.quantity

    def to_api(self, livemode: bool, created: int) -> JsonObject:
        price = {
            "id": self.price_id, "object": "price", "active": False,
            "billing_scheme": "per_unit", "created": created, "currency": self.currency,
            "custom_unit_amount": None, "livemode": livemode, "lookup_key": None,
            "metadata": {}, "nickname": None, "product": self.product_id, "recurring": None,
            "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "one_time", "unit_amount": self.unit_amount,
            "unit_amount_decimal": str(self.unit_amount),
        }
        return {
            "id": self.id, "object": "item", "amount_discount": 0,
            "amount_subtotal": self.amount, "amount_tax": 0, "amount_total": self.amount,
            "currency": self.currency, "description": self.name, "price": price,
            "quantity": self.quantity,
        }


@dataclass
class PaymentIntent:
    """The intent behind a completed session; its status is what tells an async failure."""

    id: str
    amount: int
    currency: str
    created: int
    livemode: bool
    status: IntentStatus
    payment_method_types: list[str]
    last_payment_error: JsonObject | None = None
    # From the session create's `payment_intent_data[metadata]`; its charge copies it.
    metadata: dict[str, str] = field(default_factory=dict)
    charge: Charge | None = None  # made when the payment succeeds

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "object": "payment_intent", "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount if self.status == "succeeded" else 0,
            "capture_method": "automatic_async", "client_secret": f"{self.id}_secret_emulated",
            "confirmation_method": "automatic", "created": self.created,
            "currency": self.currency, "customer": None, "description": None,
            "last_payment_error": copy.deepcopy(self.last_payment_error),
            "latest_charge": self.charge.id if self.charge else None,
            "livemode": self.livemode, "metadata": dict(self.metadata),
            "payment_method": None, "payment_method_types": list(self.payment_method_types),
            "status": self.status,
        }


@dataclass
class Charge:
    """The successful charge of a PaymentIntent: what refunds draw on.

    `amount_refunded` counts refunds pending, needing action or succeeded, as Stripe's does
    (a refund that fails or is canceled gives its amount back)."""

    id: str
    amount: int
    currency: str
    payment_intent: str
    created: int
    livemode: bool
    metadata: dict[str, str]
    amount_refunded: int = 0

    @property
    def remaining(self) -> int:
        return self.amount - self.amount_refunded

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "object": "charge", "amount": self.amount,
            "amount_captured": self.amount, "amount_refunded": self.amount_refunded,
            "application": None, "application_fee": None, "application_fee_amount": None,
            "balance_transaction": None, "billing_details": {
                "address": None, "email": None, "name": None, "phone": None},
            "calculated_statement_descriptor": "PAYKUBE EMULATOR", "captured": True,
            "created": self.created, "currency": self.currency, "customer": None,
            "description": None, "disputed": False, "failure_balance_transaction": None,
            "failure_code": None, "failure_message": None, "fraud_details": {},
            "livemode": self.livemode, "metadata": dict(self.metadata), "on_behalf_of": None,
            "outcome": None, "paid": True, "payment_intent": self.payment_intent,
            "payment_method": None, "receipt_email": None, "receipt_number": None,
            "receipt_url": None, "refunded": self.amount_refunded >= self.amount,
            "review": None, "shipping": None, "source_transfer": None,
            "statement_descriptor": None, "statement_descriptor_suffix": None,
            "status": "succeeded", "transfer_data": None, "transfer_group": None,
        }


RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
# The statuses whose amount the charge counts as refunded.
HOLDS_MONEY: frozenset[str] = frozenset({"pending", "requires_action", "succeeded"})


@dataclass
class Refund:
    """A refund of part or all of a charge; `session_id` is the Checkout Session it came
    from (the emulator's events are filed by session)."""

    id: str
    account: str
    session_id: str
    amount: int
    currency: str
    payment_intent: str
    charge: str
    created: int
    livemode: bool
    status: RefundStatus
    reason: str | None
    metadata: dict[str, str]
    failure_reason: str | None = None

    def to_api(self) -> JsonObject:
        body: JsonObject = {
            "id": self.id, "object": "refund", "amount": self.amount,
            "balance_transaction": None, "charge": self.charge, "created": self.created,
            "currency": self.currency, "destination_details": None,
            "metadata": dict(self.metadata), "payment_intent": self.payment_intent,
            "reason": self.reason, "receipt_number": None,
            "source_transfer_reversal": None, "status": self.status,
            "transfer_reversal": None,
        }
        if self.status == "failed":  # Stripe sends it only on failed refunds
            body["failure_reason"] = self.failure_reason
        if self.status == "requires_action":
            body["next_action"] = {"type": "display_details", "display_details": {
                "email_sent": {"email_sent_at": self.created, "email_sent_to": "jenny@example.com"},
                "expires_at": self.created + 45 * 24 * 3600}}
        return body


@dataclass
class Session:
    id: str
    account: str
    livemode: bool
    created: int
    expires_at: int
    currency: str
    line_items: list[LineItem]
    success_url: str | None
    cancel_url: str | None
    customer_email: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    url_base: str
    locale: str | None = None
    payment_method_types: list[str] = field(default_factory=lambda: ["card"])
    status: SessionStatus = "open"
    payment_status: PaymentStatus = "unpaid"
    payment_intent: PaymentIntent | None = None
    customer_details: JsonObject | None = None
    intent_metadata: dict[str, str] = field(default_factory=dict)
    async_outcome: Literal["succeeded", "failed"] | None = None

    @property
    def amount_total(self) -> int:
        return sum(item.amount for item in self.line_items)

    def to_api(self, expand: Collection[str] = ()) -> JsonObject:
        """Stripe's JSON; `payment_intent` is the id unless `expand` names it."""
        intent: str | JsonObject | None = None
        if self.payment_intent is not None:
            intent = (self.payment_intent.to_api() if "payment_intent" in expand
                      else self.payment_intent.id)
        return {
            "id": self.id, "object": "checkout.session", "adaptive_pricing": None,
            "after_expiration": None, "allow_promotion_codes": None,
            "amount_subtotal": self.amount_total, "amount_total": self.amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None, "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id, "client_secret": None,
            "consent": None, "consent_collection": None, "created": self.created,
            "currency": self.currency, "currency_conversion": None, "custom_fields": [],
            "custom_text": {
                "after_submit": None, "shipping_address": None, "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": None, "customer_creation": "if_required",
            "customer_details": copy.deepcopy(self.customer_details),
            "customer_email": self.customer_email, "discounts": [],
            "expires_at": self.expires_at, "invoice": None,
            "invoice_creation": None, "livemode": self.livemode, "locale": self.locale,
            "metadata": dict(self.metadata), "mode": "payment",
            "payment_intent": intent, "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None, "payment_method_options": {},
            "payment_method_types": list(self.payment_method_types),
            "payment_status": self.payment_status,
            "phone_number_collection": {"enabled": False}, "recovered_from": None,
            "saved_payment_method_options": None, "setup_intent": None,
            "shipping_address_collection": None, "shipping_cost": None,
            "shipping_options": [], "status": self.status, "submit_type": None,
            "subscription": None, "success_url": self.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{self.url_base}{self.id}" if self.status == "open" else None,
        }


@dataclass
class Event:
    """One event of one account; `connected_to` is the platform when the account is a
    connected one (its events then carry `account` and go to the platform's Connect
    endpoints)."""

    id: str
    type: str
    created: int
    api_version: str
    livemode: bool
    account_id: str
    session_id: str
    snapshot: JsonObject
    request_id: str | None = None
    idempotency_key: str | None = None
    connected_to: str | None = None
    pending: set[str] = field(default_factory=set)

    def to_api(self, api_version: str | None = None) -> JsonObject:
        """Stripe's JSON; `api_version` is the receiving endpoint's pinned version."""
        body: JsonObject = {"id": self.id, "object": "event"}
        if self.connected_to is not None:
            body["account"] = self.account_id
        body.update({
            "api_version": api_version or self.api_version,
            "created": self.created, "data": {"object": copy.deepcopy(self.snapshot)},
            "livemode": self.livemode, "pending_webhooks": len(self.pending),
            "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
            "type": self.type,
        })
        return body


@dataclass
class WebhookEndpoint:
    """Where events go. Made by the API (`/v1/webhook_endpoints`: `account_id`, `livemode`
    and `connect` set, one secret) or by the control plane (`api_key` names the account, or
    nothing: every event)."""

    url: str
    secrets: list[str]
    api_key: str | None = None
    enabled_events: list[str] = field(default_factory=lambda: ["*"])
    retry_delays: list[float] = field(default_factory=list)
    timeout: float = 10.0
    id: str = field(default_factory=lambda: new_id("we_"))
    account_id: str | None = None
    livemode: bool | None = None
    connect: bool = False
    api_version: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created: int = 0
    disabled: bool = False
    via_api: bool = False

    def wants(self, event: Event) -> bool:
        if self.disabled:
            return False
        if self.account_id is not None:
            owner = event.connected_to if self.connect else event.account_id
            if owner != self.account_id:
                return False
        if self.livemode is not None and self.livemode != event.livemode:
            return False
        return "*" in self.enabled_events or event.type in self.enabled_events

    def to_api(self) -> JsonObject:
        """The control plane's view (secrets counted, not shown)."""
        return {
            "id": self.id, "url": self.url, "secrets": len(self.secrets),
            "account": mask_key(self.api_key) if self.api_key else None,
            "account_id": self.account_id, "livemode": self.livemode,
            "connect": self.connect, "api_version": self.api_version,
            "status": "disabled" if self.disabled else "enabled", "via_api": self.via_api,
            "enabled_events": list(self.enabled_events),
            "retry_delays": list(self.retry_delays), "timeout": self.timeout,
        }

    def to_stripe(self, *, with_secret: bool = False) -> JsonObject:
        """Stripe's webhook_endpoint object; the secret only in the create answer."""
        body: JsonObject = {
            "id": self.id, "object": "webhook_endpoint", "api_version": self.api_version,
            "application": None, "created": self.created, "description": self.description,
            "enabled_events": list(self.enabled_events), "livemode": bool(self.livemode),
            "metadata": dict(self.metadata),
        }
        if with_secret:
            body["secret"] = self.secrets[0]
        body.update({"status": "disabled" if self.disabled else "enabled", "url": self.url})
        return body


@dataclass
class RequestRecord:
    """One API request. `path` is the decoded path the router saw; `raw_path` the request
    target exactly as sent (escapes and query kept), so a test can prove where a client
    tried to go. `account` is the masked key; `account_id` the account acted on (the
    connected one under `Stripe-Account`), `key_account_id` the key's own."""

    request_id: str
    method: str
    path: str
    at: float
    account: str | None = None
    idempotency_key: str | None = None
    status: int = 0
    replayed: bool = False
    fault: str | None = None
    stripe_version: str | None = None
    raw_path: str = ""
    account_id: str | None = None
    key_account_id: str | None = None
    stripe_account: str | None = None
    livemode: bool | None = None

    def to_api(self) -> JsonObject:
        return {
            "request_id": self.request_id, "method": self.method, "path": self.path,
            "raw_path": self.raw_path, "at": self.at, "account": self.account,
            "account_id": self.account_id, "key_account_id": self.key_account_id,
            "stripe_account": self.stripe_account, "livemode": self.livemode,
            "idempotency_key": self.idempotency_key, "status": self.status,
            "replayed": self.replayed, "fault": self.fault,
            "stripe_version": self.stripe_version,
        }
