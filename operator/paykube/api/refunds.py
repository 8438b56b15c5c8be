"""Typed values for `PaymentRefund` (payments.paykube.dev/v1alpha1): pure, no I/O.

The CRD in `crds/paymentrefund.yaml` is the schema's source; these types parse what the API
server validated and render status. How refunds are reconciled: `docs/refunds.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from paykube.api.types import (
    GROUP,
    VERSION,
    Condition,
    ErrorInfo,
    ObjectRef,
    ProviderRef,
    RefundPhase,
    Source,
)

REFUND_KIND = "PaymentRefund"
REFUND_PLURAL = "paymentrefunds"
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# At most this many paykube refunds are recorded on one PaymentSession (`status.refunds`).
MAX_REFUNDS_PER_SESSION = 50


def refund_api_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{REFUND_PLURAL}/{name}"


@dataclass(frozen=True)
class RefundSpec:
    session_name: str  # spec.sessionRef.name, a PaymentSession in the same namespace
    amount: int | None = None  # minor units; None: the whole refundable rest
    reason: str | None = None  # one of REFUND_REASONS
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> RefundSpec:
        amount = spec.get("amount")
        return cls(
            session_name=str(spec["sessionRef"]["name"]),
            amount=int(amount) if amount is not None else None,
            reason=spec.get("reason"),
            metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
        )


@dataclass(frozen=True)
class RefundHistoryEntry:
    phase: RefundPhase
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
    def from_dict(cls, data: dict[str, Any]) -> RefundHistoryEntry:
        return cls(RefundPhase(data["phase"]), str(data.get("at", "")),
                   Source(data.get("source", Source.OPERATOR)), data.get("eventId"),
                   bool(data.get("published", False)))


@dataclass(frozen=True)
class RefundUnconfirmed:
    """A webhook's report of Failed or Canceled, awaiting the operator's retrieve."""

    phase: RefundPhase
    event_id: str | None
    at: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase.value, "at": self.at}
        if self.event_id is not None:
            out["eventId"] = self.event_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefundUnconfirmed:
        return cls(RefundPhase(data["phase"]), data.get("eventId"), str(data.get("at", "")))


@dataclass(frozen=True)
class RefundStatus:
    phase: RefundPhase = RefundPhase.PENDING
    provider: str | None = None
    account: str | None = None  # the Connect account (as the session's)
    livemode: bool | None = None
    session_uid: str | None = None  # the PaymentSession refunded (its uid at reservation)
    # The session's account, kept so that the refund is still followed (and its webhooks
    # still bound) after the session object is deleted.
    provider_ref: ProviderRef | None = None
    payment_id: str | None = None  # the PSP's payment refunded (Stripe: the PaymentIntent)
    refund_id: str | None = None
    amount: int | None = None  # fixed when the amount is reserved on the session
    currency: str | None = None
    provider_status: str | None = None  # the PSP's own status word
    failure_reason: str | None = None  # the PSP's failure_reason
    unconfirmed: RefundUnconfirmed | None = None
    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    error: ErrorInfo | None = None
    history: tuple[RefundHistoryEntry, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_changes(self, **changes: Any) -> RefundStatus:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "provider": self.provider,
            "account": self.account,
            "livemode": self.livemode,
            "sessionUid": self.session_uid,
            "providerRef": ({"kind": self.provider_ref.kind, "name": self.provider_ref.name}
                            if self.provider_ref else None),
            "paymentId": self.payment_id,
            "refundId": self.refund_id,
            "amount": self.amount,
            "currency": self.currency,
            "providerStatus": self.provider_status,
            "failureReason": self.failure_reason,
            "unconfirmed": self.unconfirmed.to_dict() if self.unconfirmed else None,
            "observedGeneration": self.observed_generation,
            "conditions": [c.to_dict() for c in self.conditions],
            "error": self.error.to_dict() if self.error else None,
            "history": [h.to_dict() for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RefundStatus:
        data = data or {}
        amount = data.get("amount")
        generation = data.get("observedGeneration")
        return cls(
            phase=RefundPhase(data.get("phase") or RefundPhase.PENDING),
            provider=data.get("provider"),
            account=data.get("account"),
            livemode=data.get("livemode"),
            session_uid=data.get("sessionUid"),
            provider_ref=ProviderRef.from_dict(data.get("providerRef")),
            payment_id=data.get("paymentId"),
            refund_id=data.get("refundId"),
            amount=int(amount) if amount is not None else None,
            currency=data.get("currency"),
            provider_status=data.get("providerStatus"),
            failure_reason=data.get("failureReason"),
            unconfirmed=(RefundUnconfirmed.from_dict(data["unconfirmed"])
                         if data.get("unconfirmed") else None),
            observed_generation=int(generation) if generation is not None else None,
            conditions=tuple(Condition.from_dict(c) for c in data.get("conditions") or ()),
            error=ErrorInfo.from_dict(data["error"]) if data.get("error") else None,
            history=tuple(RefundHistoryEntry.from_dict(h) for h in data.get("history") or ()),
        )


@dataclass(frozen=True)
class RefundSnapshot:
    """A refund as the PSP reports it, mapped to our phase."""

    refund_id: str
    phase: RefundPhase
    amount: int
    currency: str | None = None
    payment_id: str | None = None  # Stripe: the PaymentIntent; Razorpay: the payment
    provider_status: str | None = None
    failure_reason: str | None = None
    refund_uid: str | None = None  # metadata paykube_uid: the PaymentRefund it is for
    livemode: bool | None = None



def refund_ref(obj: dict[str, Any]) -> ObjectRef:
    meta = obj["metadata"]
    return ObjectRef(meta["namespace"], meta["name"], meta["uid"])
