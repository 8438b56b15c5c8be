"""All the Razorpay emulator's state, in one object attached to the aiohttp app."""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterable
from typing import Literal, get_args

from paykube_dev.psp_emulator.clock import JsonObject, new_id
from paykube_dev.psp_emulator.control import EmulatorCore
from paykube_dev.psp_emulator.faults import COMMON_KINDS, FaultBook

from . import errors
from .accounts import AccountBook, Scope
from .links import build_link
from .model import Event, Payment, PaymentLink, Refund, RequestRecord, WebhookEndpoint
from .refunds import (
    START_STATUSES,
    RefundTransitionError,
    change_refund,
    check_idempotency_key,
    open_refund,
    refund_body,
)
from .signing import sign_body

DEFAULT_SHORT_URL_BASE = "https://rzp.io/i/"
FAULT_KINDS = (*COMMON_KINDS, "razorpay_error")
Action = Literal["pay", "part_pay", "expire", "cancel"]
ACTIONS: tuple[str, ...] = get_args(Action)
EVENTS = ("payment_link.paid", "payment_link.partially_paid", "payment_link.expired",
          "payment_link.cancelled", "refund.created", "refund.processed", "refund.failed")


class TransitionError(Exception):
    """The link is not in a state where the requested change can happen."""


class RazorpayState(EmulatorCore[RequestRecord]):
    fault_kinds = FAULT_KINDS
    request_filters = {"path": "path", "account": "account_id", "key": "key_id",
                       "method": "method"}

    def __init__(
        self, *, short_url_base: str = DEFAULT_SHORT_URL_BASE,
        webhook_endpoints: Iterable[WebhookEndpoint] = (),
        retry_delays: Iterable[float] = (),
    ) -> None:
        super().__init__()
        self.short_url_base = short_url_base
        self._initial_endpoints = list(webhook_endpoints)
        self.retry_delays = list(retry_delays)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the constructor's configuration; release held responses."""
        self.faults.release()
        self.faults = FaultBook()
        self.clock.offset = 0.0
        self.book = AccountBook()
        self.links: dict[str, PaymentLink] = {}
        self.refunds: dict[str, Refund] = {}
        # X-Refund-Idempotency keys: (account, livemode, key) -> (payment, body, refund id).
        self.refund_keys: dict[tuple[str, bool, str], tuple[str, JsonObject, str]] = {}
        # How new refunds start: per payment id, or "*" for all (control plane).
        self.refund_modes: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self.endpoints: dict[str, WebhookEndpoint] = {
            e.id: copy.deepcopy(e) for e in self._initial_endpoints
        }
        self.deliveries = []
        self.requests = []

    # --- the API --------------------------------------------------------------------------

    def create_link(self, scope: Scope, body: JsonObject) -> PaymentLink:
        link = build_link(body, account_id=scope.account.id, key_id=scope.key_id,
                          livemode=scope.livemode, now=self.clock.now_int(),
                          short_url_base=self.short_url_base)
        if link.reference_id is not None and self.find(scope, link.reference_id):
            raise errors.invalid(
                "reference_id",
                f"Payment Link with reference id {link.reference_id} already exists",
            )
        self.links[link.id] = link
        return link

    def get_link(self, scope: Scope, link_id: str) -> PaymentLink:
        link = self.links.get(link_id)
        if link is None or link.account_id != scope.account.id or link.livemode != scope.livemode:
            raise errors.no_such_id()
        return link

    def find(self, scope: Scope, reference_id: str | None) -> list[PaymentLink]:
        """The scope's links, newest first, with this reference id if one is given."""
        return [
            link for link in reversed(self.links.values())
            if link.account_id == scope.account.id and link.livemode == scope.livemode
            and (reference_id is None or link.reference_id == reference_id)
        ]

    def cancel_via_api(self, scope: Scope, link_id: str) -> tuple[PaymentLink, Event]:
        link = self.get_link(scope, link_id)
        if link.status != "created":
            raise errors.invalid(
                "id", f"Payment Link cannot be cancelled as it is in {link.status} state")
        return link, self.transition(link.id, "cancel")

    # --- transitions ------------------------------------------------------------------------

    def transition(
        self, link_id: str, action: Action, *, amount: int | None = None,
        email: str | None = None, contact: str | None = None,
    ) -> Event:
        """One change of a link and its event; TransitionError when it cannot happen."""
        link = self.links[link_id]
        now = self.clock.now_int()
        if action in ("pay", "part_pay"):
            return self._pay(link, action, amount, email, contact, now)
        if action == "expire":
            if link.status not in ("created", "partially_paid"):
                raise TransitionError(f"{link.id} is {link.status}; only an unpaid link expires")
            link.status, link.expired_at = "expired", now
        elif action == "cancel":
            if link.status != "created":
                raise TransitionError(f"{link.id} is {link.status}; only a created link cancels")
            link.status, link.cancelled_at = "cancelled", now
        else:
            raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        link.updated_at = now
        return self._record(link, f"payment_link.{link.status}", None)

    def _pay(
        self, link: PaymentLink, action: Action, amount: int | None, email: str | None,
        contact: str | None, now: int,
    ) -> Event:
        if link.status not in ("created", "partially_paid"):
            raise TransitionError(f"{link.id} is {link.status}; it cannot be paid")
        due = link.amount - link.amount_paid
        if action == "pay":
            amount = due if amount is None else amount
            if amount != due:
                raise TransitionError(f"pay takes the whole amount due ({due}); use part_pay")
        else:
            if not link.accept_partial:
                raise TransitionError(f"{link.id} does not accept partial payments")
            if amount is None or not 0 < amount < due:
                raise TransitionError(f"part_pay needs an amount in 1..{due - 1}")
            if not link.payments and amount < link.first_min_partial_amount:
                raise TransitionError(
                    f"the first payment must be at least {link.first_min_partial_amount}")
        if link.order_id is None:
            link.order_id, link.order_created_at = new_id("order_", 14), now
        payment = Payment(
            id=new_id("pay_", 14), amount=amount, currency=link.currency,
            order_id=link.order_id, created_at=now,
            email=email or link.customer.get("email") or "void@razorpay.com",
            contact=contact or link.customer.get("contact") or "+919000090000",
        )
        link.payments.append(payment)
        link.amount_paid += amount
        link.status = "paid" if link.amount_paid >= link.amount else "partially_paid"
        link.updated_at = now
        return self._record(link, f"payment_link.{link.status}", payment)

    def link_by_short_code(self, code: str) -> PaymentLink | None:
        for link in self.links.values():
            if link.short_url.rsplit("/", 1)[-1] == code:
                return link
        return None

    def callback_signature(self, link: PaymentLink, payment_id: str) -> str:
        """`razorpay_signature` of the redirect to `callback_url`: HMAC-SHA256, keyed with
        the secret of the key that made the link, of `id|reference_id|status|payment_id`."""
        secret = self.book.accounts[link.account_id].keys.get(link.key_id, "")
        message = f"{link.id}|{link.reference_id or ''}|{link.status}|{payment_id}"
        return sign_body(message.encode("utf-8"), secret)

    def sweep(self) -> list[Event]:
        """Expire unpaid links whose time has passed, as Razorpay does."""
        now = self.clock.now()
        due = [link for link in self.links.values()
               if link.status in ("created", "partially_paid") and link.expires_at <= now]
        return [self.transition(link.id, "expire") for link in due]

    # --- refunds ----------------------------------------------------------------------------

    def payment(self, scope: Scope | None, payment_id: str) -> tuple[PaymentLink, Payment]:
        """A payment of the scope's links (any account's without a scope); Razorpay's "does
        not exist" otherwise."""
        for link in self.links.values():
            if scope is not None and (link.account_id != scope.account.id
                                      or link.livemode != scope.livemode):
                continue
            for payment in link.payments:
                if payment.id == payment_id:
                    return link, payment
        raise errors.no_such_id()

    def set_refund_mode(self, status: str, payment_id: str | None) -> None:
        if status not in START_STATUSES:
            raise RefundTransitionError(
                f"refunds can start as one of {', '.join(START_STATUSES)}, not {status!r}")
        self.refund_modes[payment_id or "*"] = status

    def create_refund_once(self, scope: Scope, payment_id: str, body: JsonObject,
                           key: str | None) -> tuple[Refund, list[Event]]:
        """A create with Razorpay's `X-Refund-Idempotency`: the same key with the same
        request gives the refund made the first time (as it is now, no new events); with
        another request it is refused. A refused create keeps no key."""
        if key is None:
            return self.create_refund(scope, payment_id, body)
        check_idempotency_key(key)
        slot = (scope.account.id, scope.livemode, key)
        if slot in self.refund_keys:
            first_payment, first_body, refund_id = self.refund_keys[slot]
            if (first_payment, first_body) != (payment_id, body):
                raise errors.RazorpayError(
                    400, "Different request with the same idempotency key has already been "
                         "processed.", source="NA", step="NA", reason="NA")
            return self.refunds[refund_id], []
        refund, events = self.create_refund(scope, payment_id, body)
        self.refund_keys[slot] = (payment_id, copy.deepcopy(body), refund.id)
        return refund, events

    def create_refund(self, scope: Scope | None, payment_id: str,
                      body: JsonObject) -> tuple[Refund, list[Event]]:
        """`scope` None: a refund made on the Dashboard (any account's payment)."""
        amount, speed, notes, receipt = refund_body(body)
        link, payment = self.payment(scope, payment_id)
        status = (self.refund_modes.get(payment.id) or self.refund_modes.get("*")
                  or "processed")
        refund = open_refund(
            payment, account_id=link.account_id, livemode=link.livemode, link_id=link.id,
            amount=amount, speed=speed, notes=notes, receipt=receipt, status=status,
            existing=self.refunds_of_payment(payment.id), now=self.clock.now_int())
        self.refunds[refund.id] = refund
        events = [self._record_refund(link, payment, refund, "refund.created")]
        if refund.status == "processed":
            events.append(self._record_refund(link, payment, refund, "refund.processed"))
        return refund, events

    def move_refund(self, refund_id: str, action: str) -> tuple[Refund, Event]:
        """A control-plane status change; KeyError for an unknown refund."""
        refund = self.refunds[refund_id]
        link = self.links[refund.link_id]
        payment = next(p for p in link.payments if p.id == refund.payment_id)
        name = change_refund(refund, payment, action)
        return refund, self._record_refund(link, payment, refund, name)

    def get_refund(self, scope: Scope, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if (refund is None or refund.account_id != scope.account.id
                or refund.livemode != scope.livemode):
            raise errors.no_such_id()
        return refund

    def refunds_of_payment(self, payment_id: str) -> list[Refund]:
        """The payment's refunds, newest first."""
        return [r for r in reversed(self.refunds.values()) if r.payment_id == payment_id]

    # --- events -----------------------------------------------------------------------------

    def _record_refund(self, link: PaymentLink, payment: Payment, refund: Refund,
                       name: str) -> Event:
        return self._record(link, name, payment, {"refund": {"entity": refund.to_api()}})

    def _record(self, link: PaymentLink, name: str, payment: Payment | None,
                payload: JsonObject | None = None) -> Event:
        """An event filed under the link; `payload` replaces the link's own entities (a
        refund event carries the refund and its payment)."""
        if payload is None:
            payload = {"payment_link": {"entity": link.to_api()}}
            if payment is not None:
                payload["order"] = {"entity": link.order_to_api()}
        if payment is not None:
            payload["payment"] = {"entity": payment.to_api(link.description, link.notes)}
        event = Event(
            id=new_id("evt_", 14), event=name, account_id=link.account_id,
            livemode=link.livemode, link_id=link.id, created_at=self.clock.now_int(),
            payload=payload,
        )
        event.pending = {e.id for e in self.endpoints.values() if e.wants(event)}
        self.events[event.id] = event
        return event

    def stats(self) -> JsonObject:
        by_reference: dict[str, int] = collections.Counter(
            link.reference_id for link in self.links.values() if link.reference_id)
        by_status: dict[str, int] = collections.Counter(
            link.status for link in self.links.values())
        return {
            "links_created": len(self.links),
            "create_requests": sum(1 for r in self.requests
                                   if r.method == "POST" and r.path == "/v1/payment_links"),
            "links_by_reference_id": dict(by_reference), "links_by_status": dict(by_status),
            "events": len(self.events), "deliveries": len(self.deliveries),
            "refunds_created": len(self.refunds),
            "api_requests": len(self.requests), "accounts": len(self.book.accounts),
            "held": len([h for h in self.faults.held if not h.released.is_set()]),
        }
