"""The emulator's records and their Razorpay-shaped JSON entities."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from paykube_dev.psp_emulator.clock import JsonObject, new_id

LinkStatus = Literal["created", "partially_paid", "paid", "expired", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"paid", "expired", "cancelled"})
SIX_MONTHS = 180 * 24 * 3600


@dataclass
class Payment:
    id: str
    amount: int
    currency: str
    order_id: str
    created_at: int
    email: str
    contact: str
    method: str = "card"
    # Refunds pending or processed (a failed one gives its amount back), as Razorpay counts.
    amount_refunded: int = 0

    @property
    def remaining(self) -> int:
        return self.amount - self.amount_refunded

    def to_api(self, description: str | None, notes: dict[str, str]) -> JsonObject:
        full = self.amount_refunded >= self.amount
        return {
            "id": self.id, "entity": "payment", "amount": self.amount,
            "currency": self.currency, "status": "refunded" if full else "captured",
            "order_id": self.order_id, "invoice_id": None, "international": False,
            "method": self.method, "amount_refunded": self.amount_refunded,
            "refund_status": ("full" if full else "partial") if self.amount_refunded else None,
            "captured": True,
            "description": description, "card_id": None, "bank": None, "wallet": None,
            "vpa": None, "email": self.email, "contact": self.contact,
            "notes": dict(notes) or [], "fee": self.amount * 2 // 100,
            "tax": self.amount * 2 // 100 * 18 // 100, "error_code": None,
            "error_description": None, "error_source": None, "error_step": None,
            "error_reason": None, "acquirer_data": {"auth_code": "123456"},
            "created_at": self.created_at,
        }


RefundStatus = Literal["pending", "processed", "failed"]


@dataclass
class Refund:
    """A refund of a link's payment; `link_id` files its events under the link."""

    id: str
    account_id: str
    livemode: bool
    link_id: str
    payment_id: str
    amount: int
    currency: str
    created_at: int
    status: RefundStatus
    notes: dict[str, str]
    receipt: str | None
    speed_requested: str = "normal"

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "entity": "refund", "amount": self.amount,
            "currency": self.currency, "payment_id": self.payment_id,
            "notes": dict(self.notes) or [], "receipt": self.receipt,
            "acquirer_data": {"arn": None}, "created_at": self.created_at,
            "batch_id": None, "status": self.status,
            "speed_processed": "normal" if self.status == "processed" else None,
            "speed_requested": self.speed_requested,
        }


@dataclass
class PaymentLink:
    id: str
    account_id: str
    livemode: bool
    amount: int
    currency: str
    created_at: int
    expire_by: int
    reference_id: str | None
    description: str | None
    notes: dict[str, str]
    customer: JsonObject
    notify: JsonObject
    callback_url: str | None
    callback_method: str | None
    accept_partial: bool
    first_min_partial_amount: int
    reminder_enable: bool
    short_url: str
    key_id: str = ""
    status: LinkStatus = "created"
    amount_paid: int = 0
    cancelled_at: int = 0
    expired_at: int = 0
    updated_at: int = 0
    order_id: str | None = None
    order_created_at: int = 0
    payments: list[Payment] = field(default_factory=list)

    @property
    def expires_at(self) -> int:
        """When the emulator expires it: `expire_by`, or six months after creation."""
        return self.expire_by or self.created_at + SIX_MONTHS

    def to_api(self) -> JsonObject:
        payments = [{
            "amount": p.amount, "created_at": p.created_at, "method": p.method,
            "payment_id": p.id, "plink_id": self.id, "status": "captured",
            "updated_at": p.created_at,
        } for p in self.payments]
        body: JsonObject = {
            "accept_partial": self.accept_partial, "amount": self.amount,
            "amount_paid": self.amount_paid,
        }
        if self.callback_url is not None:
            body["callback_method"] = self.callback_method
            body["callback_url"] = self.callback_url
        body.update({
            "cancelled_at": self.cancelled_at, "created_at": self.created_at,
            "currency": self.currency, "customer": copy.deepcopy(self.customer),
            "description": self.description or "", "expire_by": self.expire_by,
            "expired_at": self.expired_at,
            "first_min_partial_amount": self.first_min_partial_amount, "id": self.id,
            "notes": dict(self.notes) or None, "notify": copy.deepcopy(self.notify),
            "order_id": self.order_id or "", "payments": payments or None,
            "reference_id": self.reference_id or "", "reminder_enable": self.reminder_enable,
            "reminders": [], "short_url": self.short_url, "status": self.status,
            "updated_at": self.updated_at or self.created_at, "upi_link": False,
            "user_id": "",
        })
        return body

    def order_to_api(self) -> JsonObject:
        paid = self.amount_paid
        return {
            "id": self.order_id, "entity": "order", "amount": self.amount,
            "amount_paid": paid, "amount_due": self.amount - paid, "currency": self.currency,
            "receipt": self.reference_id, "offer_id": None,
            "status": "paid" if paid >= self.amount else "attempted",
            "attempts": len(self.payments), "notes": dict(self.notes) or [],
            "created_at": self.order_created_at,
        }


@dataclass
class Event:
    """One webhook event; its id (the `x-razorpay-event-id` header) stays the same on every
    delivery of it."""

    id: str
    event: str
    account_id: str
    livemode: bool
    link_id: str
    created_at: int
    payload: JsonObject
    pending: set[str] = field(default_factory=set)

    @property
    def type(self) -> str:
        return self.event

    def to_api(self) -> JsonObject:
        return {
            "entity": "event", "account_id": self.account_id, "event": self.event,
            "contains": list(self.payload), "payload": copy.deepcopy(self.payload),
            "created_at": self.created_at,
        }

    def to_control(self) -> JsonObject:
        return {"id": self.id, "link_id": self.link_id, "livemode": self.livemode,
                "pending_webhooks": len(self.pending), "body": self.to_api()}


@dataclass
class WebhookEndpoint:
    """A webhook of one account (both modes unless `livemode` is set)."""

    url: str
    secret: str
    account_id: str | None
    events: list[str]
    livemode: bool | None = None
    retry_delays: list[float] = field(default_factory=list)
    timeout: float = 10.0
    active: bool = True
    id: str = field(default_factory=lambda: new_id("wh_", 14))

    def wants(self, event: Event) -> bool:
        if not self.active:
            return False
        if self.account_id is not None and self.account_id != event.account_id:
            return False
        if self.livemode is not None and self.livemode != event.livemode:
            return False
        return "*" in self.events or event.event in self.events

    def to_api(self) -> JsonObject:
        return {
            "id": self.id, "url": self.url, "account_id": self.account_id,
            "events": list(self.events), "livemode": self.livemode, "active": self.active,
            "retry_delays": list(self.retry_delays), "timeout": self.timeout,
        }


@dataclass
class RequestRecord:
    """One API request: `path` as routed, `raw_path` exactly as sent."""

    request_id: str
    method: str
    path: str
    raw_path: str
    at: float
    key_id: str | None = None
    account_id: str | None = None
    livemode: bool | None = None
    status: int = 0
    fault: str | None = None

    def to_api(self) -> JsonObject:
        return {
            "request_id": self.request_id, "method": self.method, "path": self.path,
            "raw_path": self.raw_path, "at": self.at, "key_id": self.key_id,
            "account_id": self.account_id, "livemode": self.livemode,
            "status": self.status, "fault": self.fault,
        }
