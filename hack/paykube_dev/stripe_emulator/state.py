"""All the emulator's state, in one object attached to the aiohttp app."""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterable
from typing import Literal, get_args

from paykube_dev.psp_emulator.control import EmulatorCore

from . import errors
from .accounts import Account, AccountBook, Scope
from .checkout import build_session
from .endpoints import build_endpoint
from .errors import StripeError
from .faults import FAULT_KINDS, RATE_LIMIT_REASONS, FaultBook
from .forms import Params
from .model import (
    Charge,
    Event,
    JsonObject,
    PaymentIntent,
    Refund,
    RequestRecord,
    Session,
    WebhookEndpoint,
    new_id,
)
from .refunds import (
    START_STATUSES,
    RefundChange,
    RefundTransitionError,
    change_refund,
    open_refund,
    refund_params,
)

DEFAULT_API_VERSION = "2025-03-31.basil"
DEFAULT_CHECKOUT_URL_BASE = "https://checkout.stripe.com/c/pay/"
Action = Literal["paid", "async_pending", "async_succeeded", "async_failed", "expire"]
ACTIONS: tuple[str, ...] = get_args(Action)
_EVENT_TYPES: dict[str, str] = {
    "paid": "checkout.session.completed",
    "async_pending": "checkout.session.completed",
    "async_succeeded": "checkout.session.async_payment_succeeded",
    "async_failed": "checkout.session.async_payment_failed",
    "expire": "checkout.session.expired",
}


class TransitionError(Exception):
    """The session is not in a state where the requested change can happen."""


MAX_ENDPOINTS_PER_MODE = 16


class EmulatorState(EmulatorCore[RequestRecord]):
    fault_kinds = FAULT_KINDS
    rate_limit_reasons = RATE_LIMIT_REASONS
    request_filters = {"path": "path", "account": "account_id",
                       "key_account": "key_account_id", "method": "method"}

    def __init__(
        self, *, api_version: str = DEFAULT_API_VERSION,
        checkout_url_base: str = DEFAULT_CHECKOUT_URL_BASE,
        webhook_endpoints: Iterable[WebhookEndpoint] = (), rate_limit: float | None = None,
        retry_delays: Iterable[float] = (),
    ) -> None:
        super().__init__()
        self.api_version = api_version
        self.checkout_url_base = checkout_url_base
        self._initial_endpoints = list(webhook_endpoints)
        self._initial_rate_limit = rate_limit
        self.retry_delays = list(retry_delays)
        self.faults = FaultBook()
        self.reset()

    def reset(self) -> None:
        """Forget everything but the constructor's configuration; release held responses."""
        self.faults.release()
        self.faults = FaultBook()
        self.clock.offset = 0.0
        self.book = AccountBook()
        self.sessions: dict[str, Session] = {}
        self.refunds: dict[str, Refund] = {}
        # How new refunds start: per PaymentIntent id, or "*" for all (control plane).
        self.refund_modes: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self.endpoints: dict[str, WebhookEndpoint] = {
            e.id: copy.deepcopy(e) for e in self._initial_endpoints
        }
        self.deliveries = []
        self.requests = []
        self.rate_limit = self._initial_rate_limit

    # --- accounts and keys -------------------------------------------------------------

    @property
    def accounts(self) -> dict[str, Account]:
        return self.book.accounts

    @property
    def revoked_keys(self) -> set[str]:
        return self.book.revoked

    @property
    def rejected_keys(self) -> set[str]:
        return self.book.rejected

    def account(self, account_id: str) -> Account:
        """Any account (control endpoints); KeyError when unknown."""
        return self.book.accounts[account_id]

    def check_rate(self, account: Account) -> None:
        """Stripe's per-account request rate limit, when one is configured."""
        if self.rate_limit is None:
            return
        now = self.clock.now()
        while account.recent and account.recent[0] <= now - 1.0:
            account.recent.popleft()
        if len(account.recent) >= self.rate_limit:
            raise errors.rate_limited("global-rate", 1)
        account.recent.append(now)

    # --- webhook endpoints ---------------------------------------------------------------

    def endpoints_of(self, scope: Scope) -> list[WebhookEndpoint]:
        """The endpoints `/v1/webhook_endpoints` shows this scope, newest first."""
        return [
            e for e in reversed(self.endpoints.values())
            if e.via_api and e.account_id == scope.account.id and e.livemode == scope.livemode
        ]

    def create_endpoint(self, scope: Scope, params: Params) -> WebhookEndpoint:
        if len(self.endpoints_of(scope)) >= MAX_ENDPOINTS_PER_MODE:
            mode = "live" if scope.livemode else "test"
            raise StripeError(
                400, f"You have reached the maximum of {MAX_ENDPOINTS_PER_MODE} {mode} "
                "webhook endpoints.",
            )
        endpoint = build_endpoint(params, account_id=scope.account.id, livemode=scope.livemode,
                                  now=self.clock.now_int())
        endpoint.retry_delays = list(self.retry_delays)
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def get_endpoint(self, scope: Scope, endpoint_id: str) -> WebhookEndpoint:
        for endpoint in self.endpoints_of(scope):
            if endpoint.id == endpoint_id:
                return endpoint
        raise errors.no_such("webhook_endpoint", endpoint_id, "webhook_endpoint")

    # --- sessions --------------------------------------------------------------------

    def create_session(self, scope: Scope, params: Params) -> Session:
        session = build_session(
            params, account=scope.account.id, livemode=scope.livemode,
            now=self.clock.now_int(), url_base=self.checkout_url_base,
        )
        scope.account.sessions[session.id] = session
        self.sessions[session.id] = session
        return session

    def get_session(self, scope: Scope, session_id: str, param: str = "session") -> Session:
        session = scope.account.sessions.get(session_id)
        if session is None or session.livemode != scope.livemode:
            raise errors.no_such("checkout.session", session_id, param)
        return session

    @staticmethod
    def sessions_of(scope: Scope) -> list[Session]:
        """The scope's sessions in its mode, newest first."""
        return [s for s in reversed(scope.account.sessions.values())
                if s.livemode == scope.livemode]

    @staticmethod
    def events_of(scope: Scope) -> list[Event]:
        return [e for e in reversed(scope.account.events) if e.livemode == scope.livemode]

    def session(self, session_id: str) -> Session:
        """Any account's session (control endpoints); KeyError when unknown."""
        return self.sessions[session_id]

    # --- transitions -------------------------------------------------------------------

    def transition(
        self, session_id: str, action: Action, *, email: str | None = None,
        name: str | None = None, request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        session = self.session(session_id)
        if action in ("paid", "async_pending"):
            self._require(session, action, status="open")
            session.status = "complete"
            session.payment_status = "paid" if action == "paid" else "unpaid"
            session.payment_intent = PaymentIntent(
                id=new_id("pi_live_" if session.livemode else "pi_"),
                amount=session.amount_total, currency=session.currency,
                created=self.clock.now_int(), livemode=session.livemode,
                status="succeeded" if action == "paid" else "processing",
                payment_method_types=list(session.payment_method_types),
                metadata=dict(session.intent_metadata),
            )
            if action == "paid":
                self._charge(session.payment_intent)
            session.customer_details = customer_details(
                email or session.customer_email or "customer@example.com", name,
            )
        elif action in ("async_succeeded", "async_failed"):
            self._require(session, action, status="complete", payment_status="unpaid")
            if session.async_outcome is not None:
                raise TransitionError(
                    f"{session.id}: the async payment already {session.async_outcome}"
                )
            intent = session.payment_intent
            assert intent is not None  # set when the session completed
            if action == "async_succeeded":
                session.payment_status = "paid"
                session.async_outcome = "succeeded"
                intent.status = "succeeded"
                self._charge(intent)
            else:
                # As Stripe does: the session stays complete/unpaid, the intent goes back to
                # requires_payment_method with the failure recorded.
                session.async_outcome = "failed"
                intent.status = "requires_payment_method"
                intent.last_payment_error = {
                    "type": "card_error", "code": "payment_intent_payment_attempt_failed",
                    "message": "The payment failed.",
                }
        elif action == "expire":
            self._require(session, action, status="open")
            session.status = "expired"
        else:
            raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        return self.record_event(
            session, _EVENT_TYPES[action], request_id=request_id,
            idempotency_key=idempotency_key,
        )

    def _charge(self, intent: PaymentIntent) -> None:
        """The succeeded payment's charge; it carries the intent's metadata, as Stripe's
        does (which is how a `charge.refunded` names paykube's session)."""
        intent.charge = Charge(
            id=new_id("ch_"), amount=intent.amount, currency=intent.currency,
            payment_intent=intent.id, created=self.clock.now_int(), livemode=intent.livemode,
            metadata=dict(intent.metadata),
        )

    def expire_via_api(
        self, scope: Scope, session_id: str, request_id: str, idempotency_key: str | None,
    ) -> tuple[Session, Event]:
        session = self.get_session(scope, session_id)
        if session.status != "open":
            raise StripeError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f"Checkout Session has a status of `{session.status}`.",
                saved=True,
            )
        event = self.transition(
            session_id, "expire", request_id=request_id, idempotency_key=idempotency_key,
        )
        return session, event

    def sweep(self) -> list[Event]:
        """Expire open sessions whose `expires_at` has passed, as Stripe does."""
        now = self.clock.now()
        due = [s for s in self.sessions.values() if s.status == "open" and s.expires_at <= now]
        return [self.transition(s.id, "expire") for s in due]

    @staticmethod
    def _require(
        session: Session, action: str, *, status: str, payment_status: str | None = None,
    ) -> None:
        if session.status != status or (
            payment_status is not None and session.payment_status != payment_status
        ):
            raise TransitionError(
                f"{session.id} is {session.status}/{session.payment_status}; "
                f"{action} needs {status}" + (f"/{payment_status}" if payment_status else "")
            )

    # --- refunds -------------------------------------------------------------------------

    def paid_session(self, scope: Scope, params: Params) -> Session:
        """The session whose charge a create names (`payment_intent` or `charge`), refused
        as Stripe does when there is no successful charge to refund."""
        intent_id, charge_id = params.get("payment_intent"), params.get("charge")
        if intent_id is None and charge_id is None:
            raise StripeError(400, "One of the following params should be provided for this "
                                   "request: payment_intent or charge.")
        for session in self.sessions_of(scope):
            intent = session.payment_intent
            if intent is None or (intent_id is not None and intent.id != intent_id):
                continue
            if charge_id is not None and (intent.charge is None or intent.charge.id != charge_id):
                continue
            if intent.charge is None or intent.status != "succeeded":
                raise StripeError(
                    400, f"This PaymentIntent ({intent.id}) does not have a successful charge "
                         "to refund.", param="payment_intent", saved=True)
            return session
        if intent_id is not None:
            raise errors.no_such("payment_intent", str(intent_id), "payment_intent")
        raise errors.no_such("charge", str(charge_id), "charge")

    def start_status(self, intent_id: str) -> str:
        return self.refund_modes.get(intent_id) or self.refund_modes.get("*") or "succeeded"

    def set_refund_mode(self, status: str, intent_id: str | None) -> None:
        if status not in START_STATUSES:
            raise RefundTransitionError(
                f"refunds can start as one of {', '.join(START_STATUSES)}, not {status!r}")
        self.refund_modes[intent_id or "*"] = status

    def create_refund(
        self, scope: Scope, params: Params, *, request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Refund, list[Event]]:
        amount, reason, metadata = refund_params(params)
        session = self.paid_session(scope, params)
        return self._open(session, amount, reason, metadata, request_id, idempotency_key)

    def dashboard_refund(self, intent_id: str, amount: int | None) -> tuple[Refund, list[Event]]:
        """A refund made in the Dashboard: no metadata, no API request."""
        session = next((s for s in self.sessions.values()
                        if s.payment_intent is not None and s.payment_intent.id == intent_id),
                       None)
        if session is None:
            raise KeyError(intent_id)
        intent = session.payment_intent
        assert intent is not None
        if intent.charge is None or intent.status != "succeeded":
            raise RefundTransitionError(f"{intent_id} has no successful charge to refund")
        return self._open(session, amount, None, {}, None, None)

    def _open(
        self, session: Session, amount: int | None, reason: str | None,
        metadata: dict[str, str], request_id: str | None, idempotency_key: str | None,
    ) -> tuple[Refund, list[Event]]:
        intent = session.payment_intent
        assert intent is not None
        assert intent.charge is not None
        change = open_refund(
            intent.charge, account=session.account, session_id=session.id, amount=amount,
            reason=reason, metadata=metadata, status=self.start_status(intent.id),
            now=self.clock.now_int(),
        )
        self.refunds[change.refund.id] = change.refund
        return change.refund, self._record_change(session, change, request_id, idempotency_key)

    def move_refund(
        self, refund_id: str, action: str, failure_reason: str | None = None,
    ) -> tuple[Refund, list[Event]]:
        """A control-plane status change; KeyError for an unknown refund."""
        refund = self.refunds[refund_id]
        session = self.sessions[refund.session_id]
        intent = session.payment_intent
        assert intent is not None
        assert intent.charge is not None
        change = change_refund(refund, intent.charge, action, failure_reason)
        return refund, self._record_change(session, change, None, None)

    def get_refund(self, scope: Scope, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if (refund is None or refund.account != scope.account.id
                or refund.livemode != scope.livemode):
            raise errors.no_such("refund", refund_id, "refund")
        return refund

    def refunds_of(self, scope: Scope) -> list[Refund]:
        """The scope's refunds in its mode, newest first."""
        return [r for r in reversed(self.refunds.values())
                if r.account == scope.account.id and r.livemode == scope.livemode]

    def charge(self, scope: Scope, charge_id: str) -> Charge:
        for session in self.sessions_of(scope):
            intent = session.payment_intent
            if intent is not None and intent.charge is not None and intent.charge.id == charge_id:
                return intent.charge
        raise errors.no_such("charge", charge_id, "charge")

    def _record_change(
        self, session: Session, change: RefundChange, request_id: str | None,
        idempotency_key: str | None,
    ) -> list[Event]:
        return [self.record_event(session, event_type, snapshot=snapshot,
                                  request_id=request_id, idempotency_key=idempotency_key)
                for event_type, snapshot in change.events]

    # --- events ------------------------------------------------------------------------

    def record_event(
        self, session: Session, event_type: str, *, request_id: str | None = None,
        idempotency_key: str | None = None, snapshot: JsonObject | None = None,
    ) -> Event:
        """An event of the session's account, filed under the session; `snapshot` is the
        event's object (the session itself unless given: a refund, a charge)."""
        account = self.accounts[session.account]
        event = Event(
            id=new_id("evt_"), type=event_type, created=self.clock.now_int(),
            api_version=self.api_version, livemode=session.livemode, account_id=account.id,
            session_id=session.id,
            snapshot=session.to_api() if snapshot is None else snapshot,
            request_id=request_id, idempotency_key=idempotency_key,
            connected_to=account.platform,
        )
        event.pending = {e.id for e in self.endpoints.values() if e.wants(event)}
        self.events[event.id] = event
        account.events.append(event)
        return event

    def stats(self) -> JsonObject:
        by_reference: dict[str, int] = collections.Counter(
            s.client_reference_id for s in self.sessions.values() if s.client_reference_id
        )
        by_status: dict[str, int] = collections.Counter(
            f"{s.status}/{s.payment_status}" for s in self.sessions.values()
        )
        by_type: dict[str, int] = collections.Counter(e.type for e in self.events.values())
        return {
            "sessions_created": len(self.sessions),
            "create_requests": sum(
                1 for r in self.requests
                if r.method == "POST" and r.path == "/v1/checkout/sessions"
            ),
            "sessions_by_client_reference_id": dict(by_reference),
            "sessions_by_status": dict(by_status),
            "events": len(self.events), "events_by_type": dict(by_type),
            "refunds_created": len(self.refunds),
            "refunds_by_status": dict(collections.Counter(
                r.status for r in self.refunds.values())),
            "deliveries": len(self.deliveries),
            "api_requests": len(self.requests), "accounts": len(self.accounts),
            "held": len([h for h in self.faults.held if not h.released.is_set()]),
        }


def customer_details(email: str, name: str | None) -> JsonObject:
    return {
        "address": {
            "city": None, "country": "US", "line1": None, "line2": None,
            "postal_code": "94103", "state": None,
        },
        "email": email, "name": name or "Jenny Rosen", "phone": None,
        "tax_exempt": "none", "tax_ids": [],
    }
