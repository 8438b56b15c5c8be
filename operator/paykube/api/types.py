"""Typed values for `PaymentSession` (payments.paykube.dev/v1alpha1).

The CRD in `crds/paymentsession.yaml` is the schema's source of truth and the API server
enforces it; these types only parse what the server already validated and render status.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

GROUP = "payments.paykube.dev"
VERSION = "v1alpha1"
KIND = "PaymentSession"
PLURAL = "paymentsessions"

RESERVED_METADATA_PREFIX = "paykube_"


class Phase(StrEnum):
    PENDING = "Pending"
    OPEN = "Open"
    PROCESSING = "Processing"
    PAID = "Paid"
    FAILED = "Failed"
    EXPIRED = "Expired"
    CANCELED = "Canceled"

    @property
    def rank(self) -> int:
        """A total order consistent with the lifecycle's partial order (`precedes`): the
        mirror packs it into its version key. Never use it to decide a move: Processing
        ranks below Expired, yet a Processing session can never expire."""
        return _RANK[self]

    @property
    def terminal(self) -> bool:
        return not _LATER[self]

    def precedes(self, other: Phase) -> bool:
        """Whether a session in this phase may later be in `other` (DESIGN's diagram,
        transitively closed, so a skipped report such as Open -> Paid is a move forward)."""
        return other in _LATER[self]


_TERMINAL_RANK = 3
_RANK = {
    Phase.PENDING: 0,
    Phase.OPEN: 1,
    Phase.PROCESSING: 2,
    Phase.PAID: _TERMINAL_RANK,
    Phase.FAILED: _TERMINAL_RANK,
    Phase.EXPIRED: _TERMINAL_RANK,
    Phase.CANCELED: _TERMINAL_RANK,
}
# The transitive closure of DESIGN's diagram: Pending < Open < Processing < {Paid, Failed};
# Open < {Expired, Canceled}; Pending < Failed. A Processing session (the customer paid
# and the payment is settling) can no longer be expired or canceled.
_LATER: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.OPEN, Phase.PROCESSING, Phase.PAID, Phase.FAILED,
                              Phase.EXPIRED, Phase.CANCELED}),
    Phase.OPEN: frozenset({Phase.PROCESSING, Phase.PAID, Phase.FAILED, Phase.EXPIRED,
                           Phase.CANCELED}),
    Phase.PROCESSING: frozenset({Phase.PAID, Phase.FAILED}),
    Phase.PAID: frozenset(),
    Phase.FAILED: frozenset(),
    Phase.EXPIRED: frozenset(),
    Phase.CANCELED: frozenset(),
}


class Source(StrEnum):
    OPERATOR = "operator"
    WEBHOOK = "webhook"
    POLL = "poll"


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str

    @property
    def api_path(self) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.name}"


@dataclass(frozen=True)
class LineItem:
    name: str
    unit_amount: int
    quantity: int


_DURATION_PART = re.compile(r"(\d+)(h|m|s)")


def parse_duration(text: str) -> dt.timedelta:
    """Parse the Go-style durations the CRD admits (`30m`, `1h30m`, `24h`)."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    seconds = {"h": 3600, "m": 60, "s": 1}
    return dt.timedelta(seconds=sum(int(n) * seconds[u] for n, u in parts))


PAYMENT_PROVIDER = "PaymentProvider"
CLUSTER_PAYMENT_PROVIDER = "ClusterPaymentProvider"


@dataclass(frozen=True)
class ProviderRef:
    """`spec.providerRef`: the account a PaymentSession lives in."""

    kind: str  # PaymentProvider | ClusterPaymentProvider
    name: str

    @property
    def cluster(self) -> bool:
        return self.kind == CLUSTER_PAYMENT_PROVIDER

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ProviderRef | None:
        if not data:
            return None
        return cls(str(data["kind"]), str(data["name"]))


@dataclass(frozen=True)
class RazorpayOptions:
    """`spec.razorpay`: what only a Razorpay Payment Link has (ignored by other PSPs)."""

    accept_partial: bool = False
    first_min_partial_amount: int | None = None
    customer_name: str | None = None
    customer_contact: str | None = None
    notify_email: bool = False
    notify_sms: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RazorpayOptions:
        data = data or {}
        customer = data.get("customer") or {}
        notify = data.get("notify") or {}
        minimum = data.get("firstMinPartialAmount")
        return cls(
            accept_partial=bool(data.get("acceptPartial", False)),
            first_min_partial_amount=int(minimum) if minimum is not None else None,
            customer_name=customer.get("name"),
            customer_contact=customer.get("contact"),
            notify_email=bool(notify.get("email", False)),
            notify_sms=bool(notify.get("sms", False)),
        )


@dataclass(frozen=True)
class PaymentSessionSpec:
    amount: int
    currency: str
    success_url: str
    cancel_url: str
    description: str | None = None
    line_items: tuple[LineItem, ...] = ()
    customer_email: str | None = None
    expires_after: dt.timedelta = dt.timedelta(hours=24)
    metadata: dict[str, str] = field(default_factory=dict)
    cancel: bool = False
    deletion_policy: str = "Expire"
    provider_ref: ProviderRef | None = None
    razorpay: RazorpayOptions = field(default_factory=RazorpayOptions)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> PaymentSessionSpec:
        items = tuple(
            LineItem(str(i["name"]), int(i["unitAmount"]), int(i["quantity"]))
            for i in spec.get("lineItems") or ()
        )
        return cls(
            amount=int(spec["amount"]),
            currency=str(spec["currency"]),
            success_url=str(spec["successUrl"]),
            cancel_url=str(spec["cancelUrl"]),
            description=spec.get("description"),
            line_items=items,
            customer_email=spec.get("customerEmail"),
            expires_after=parse_duration(str(spec.get("expiresAfter", "24h"))),
            metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
            cancel=bool(spec.get("cancel", False)),
            deletion_policy=str(spec.get("deletionPolicy", "Expire")),
            provider_ref=ProviderRef.from_dict(spec.get("providerRef")),
            razorpay=RazorpayOptions.from_dict(spec.get("razorpay")),
        )


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str
    provider_code: str | None = None
    doc_url: str | None = None
    explanation: str | None = None
    retryable: bool = False
    param: str | None = None  # the request parameter the provider objected to
    type: str | None = None   # the provider's error type, e.g. invalid_request_error

    @property
    def awaits_explanation(self) -> bool:
        """A provider error (code or type known) that has no explanation yet."""
        return not self.explanation and bool(self.provider_code or self.type)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message,
                               "retryable": self.retryable}
        for key, value in (("providerCode", self.provider_code), ("docUrl", self.doc_url),
                           ("explanation", self.explanation), ("param", self.param),
                           ("type", self.type)):
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            code=str(data.get("code", "")), message=str(data.get("message", "")),
            provider_code=data.get("providerCode"), doc_url=data.get("docUrl"),
            explanation=data.get("explanation"), retryable=bool(data.get("retryable", False)),
            param=data.get("param"), type=data.get("type"),
        )


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "status": self.status, "reason": self.reason,
                               "message": self.message,
                               "lastTransitionTime": self.last_transition_time}
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Condition:
        generation = data.get("observedGeneration")
        return cls(
            type=str(data["type"]), status=str(data.get("status", "Unknown")),
            reason=str(data.get("reason", "")), message=str(data.get("message", "")),
            last_transition_time=str(data.get("lastTransitionTime", "")),
            observed_generation=int(generation) if generation is not None else None,
        )


@dataclass(frozen=True)
class HistoryEntry:
    phase: Phase
    at: str
    source: Source
    event_id: str | None = None
    published: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase.value, "at": self.at,
                               "source": self.source.value, "published": self.published}
        if self.event_id is not None:
            out["eventId"] = self.event_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(
            phase=Phase(data["phase"]), at=str(data.get("at", "")),
            source=Source(data.get("source", Source.OPERATOR)), event_id=data.get("eventId"),
            published=bool(data.get("published", False)),
        )


@dataclass(frozen=True)
class Unconfirmed:
    """A webhook's report of an ending other than Paid, awaiting the operator's retrieve."""

    phase: Phase
    event_id: str | None
    at: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase.value, "at": self.at}
        if self.event_id is not None:
            out["eventId"] = self.event_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unconfirmed:
        return cls(Phase(data["phase"]), data.get("eventId"), str(data.get("at", "")))


class RefundPhase(StrEnum):
    PENDING = "Pending"
    REQUIRES_ACTION = "RequiresAction"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def terminal(self) -> bool:
        """No report can move it any more (Succeeded is not: a bank may return a refund,
        which Stripe reports as succeeded -> failed)."""
        return not _REFUND_LATER[self]

    @property
    def settled(self) -> bool:
        """The PSP decided: polling may stop (a late return still arrives by webhook)."""
        return self in (RefundPhase.SUCCEEDED, RefundPhase.FAILED, RefundPhase.CANCELED)

    @property
    def holds_money(self) -> bool:
        """Whether a refund in this phase counts against the payment's refundable rest."""
        return self not in (RefundPhase.FAILED, RefundPhase.CANCELED)

    def precedes(self, other: RefundPhase) -> bool:
        return other in _REFUND_LATER[self]


# Pending < RequiresAction < {Succeeded, Failed, Canceled}; Pending < each ending;
# Succeeded < Failed (returned by the bank; only an authoritative retrieve may say so).
_REFUND_LATER: dict[RefundPhase, frozenset[RefundPhase]] = {
    RefundPhase.PENDING: frozenset({RefundPhase.REQUIRES_ACTION, RefundPhase.SUCCEEDED,
                                    RefundPhase.FAILED, RefundPhase.CANCELED}),
    RefundPhase.REQUIRES_ACTION: frozenset({RefundPhase.SUCCEEDED, RefundPhase.FAILED,
                                            RefundPhase.CANCELED}),
    RefundPhase.SUCCEEDED: frozenset({RefundPhase.FAILED}),
    RefundPhase.FAILED: frozenset(),
    RefundPhase.CANCELED: frozenset(),
}


@dataclass(frozen=True)
class RefundRecord:
    """One paykube refund as the PaymentSession records it (`status.refunds[]`): the
    reservation that serializes refunds of one payment (docs/refunds.md)."""

    name: str
    uid: str
    amount: int
    phase: RefundPhase = RefundPhase.PENDING
    refund_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "uid": self.uid, "amount": self.amount,
                               "phase": self.phase.value}
        if self.refund_id is not None:
            out["refundId"] = self.refund_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefundRecord:
        return cls(str(data["name"]), str(data["uid"]), int(data["amount"]),
                   RefundPhase(data.get("phase") or RefundPhase.PENDING), data.get("refundId"))


@dataclass(frozen=True)
class Status:
    phase: Phase = Phase.PENDING
    provider: str | None = None
    livemode: bool | None = None
    account: str | None = None
    unconfirmed: Unconfirmed | None = None
    session_id: str | None = None
    url: str | None = None
    payment_intent_id: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    expires_at: str | None = None
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    error: ErrorInfo | None = None
    history: tuple[HistoryEntry, ...] = ()
    # What the PSP reports refunded (pending and succeeded, by paykube or elsewhere), and
    # paykube's own refunds of this payment: docs/refunds.md.
    amount_refunded: int | None = None
    refunds: tuple[RefundRecord, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_changes(self, **changes: Any) -> Status:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Render as the CRD's status; absent values are sent as null to clear them."""
        return {
            "phase": self.phase.value,
            "provider": self.provider,
            "livemode": self.livemode,
            "account": self.account,
            "unconfirmed": self.unconfirmed.to_dict() if self.unconfirmed else None,
            "sessionId": self.session_id,
            "url": self.url,
            "paymentIntentId": self.payment_intent_id,
            "paymentStatus": self.payment_status,
            "amountTotal": self.amount_total,
            "currency": self.currency,
            "expiresAt": self.expires_at,
            "observedGeneration": self.observed_generation,
            "conditions": [c.to_dict() for c in self.conditions],
            "error": self.error.to_dict() if self.error else None,
            "history": [h.to_dict() for h in self.history],
            "amountRefunded": self.amount_refunded,
            "refunds": [r.to_dict() for r in self.refunds] if self.refunds else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Status:
        data = data or {}
        generation = data.get("observedGeneration")
        amount = data.get("amountTotal")
        return cls(
            phase=Phase(data.get("phase") or Phase.PENDING),
            provider=data.get("provider"),
            livemode=data.get("livemode"),
            account=data.get("account"),
            unconfirmed=(Unconfirmed.from_dict(data["unconfirmed"])
                         if data.get("unconfirmed") else None),
            session_id=data.get("sessionId"),
            url=data.get("url"),
            payment_intent_id=data.get("paymentIntentId"),
            payment_status=data.get("paymentStatus"),
            amount_total=int(amount) if amount is not None else None,
            currency=data.get("currency"),
            expires_at=data.get("expiresAt"),
            observed_generation=int(generation) if generation is not None else None,
            conditions=tuple(Condition.from_dict(c) for c in data.get("conditions") or ()),
            error=ErrorInfo.from_dict(data["error"]) if data.get("error") else None,
            history=tuple(HistoryEntry.from_dict(h) for h in data.get("history") or ()),
            amount_refunded=(int(data["amountRefunded"])
                             if data.get("amountRefunded") is not None else None),
            refunds=tuple(RefundRecord.from_dict(r) for r in data.get("refunds") or ()),
        )
