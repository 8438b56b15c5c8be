"""The provider interface: what the operator and webhook need from any PSP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# A pure value, part of this interface (re-exported for the adapters).
from paykube.api.refunds import RefundSnapshot as RefundSnapshot
from paykube.api.types import ObjectRef, PaymentSessionSpec, Phase
from paykube.errors import ErrorCode, ProviderError
from paykube.lifecycle import SessionSnapshot
from paykube.settings import SecretStr


class ProviderPayloadInvalid(ProviderError, ValueError):
    """A provider object or event paykube cannot read (wrong type, out of range, missing).

    Permanent: the same object reads the same way again. Also a ValueError, so that code
    which refuses malformed input by catching ValueError (the webhook) still does. The
    message names the field, never its value, which may be personal data.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"the provider's {field} {problem}", code=ErrorCode.PAYLOAD_INVALID,
                         param=field)


def optional_text(obj: Mapping[str, Any], name: str, max_length: int,
                  prefix: str = "") -> str | None:
    """A PSP object's text field, checked against the status schema's bounds."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderPayloadInvalid(f"{prefix}{name}", "is not a string")
    if len(value) > max_length:
        raise ProviderPayloadInvalid(f"{prefix}{name}", f"is longer than {max_length}")
    return value


def optional_int(obj: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    # bool is an int to Python, and 1e20 a float to JSON: neither is what a PSP sends.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProviderPayloadInvalid(name, "is not an integer")
    if not low <= value <= high:
        raise ProviderPayloadInvalid(name, f"is outside {low}..{high}")
    return value


@dataclass(frozen=True)
class CreateSession:
    """Everything needed to open a checkout session; deterministic for one object."""

    ref: ObjectRef
    spec: PaymentSessionSpec
    expires_at: dt.datetime

    @property
    def idempotency_key(self) -> str:
        return f"paykube:{self.ref.uid}:create"


@dataclass(frozen=True)
class AccountCredentials:
    """What a call needs to act as one account: its key and how to address it."""

    api_key: SecretStr
    api_version: str | None = None  # Stripe-Version (pinned per provider account)
    connect_account: str | None = None  # Stripe-Account (Connect)
    # The account the key belongs to, declared where no API call tells it (Razorpay).
    account_id: str | None = None


@dataclass(frozen=True)
class AccountIdentity:
    """What the provider says a key is: the account id and whether it is live mode."""

    account_id: str
    livemode: bool


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    secret: SecretStr | None = None  # only in the create answer


@dataclass(frozen=True)
class ProviderSession:
    """A session as the provider reports it, mapped to our phase."""

    phase: Phase
    snapshot: SessionSnapshot


@dataclass(frozen=True)
class CreateRefund:
    """A refund of `amount` on the PSP's payment `payment_id`, for one PaymentRefund.

    `ref` is the PaymentRefund, `session` the PaymentSession refunded; both go into the
    refund's metadata (`paykube_namespace`, `paykube_name`, `paykube_uid`,
    `paykube_session`), so that its webhooks find their object and a crashed create is
    found again by uid."""

    ref: ObjectRef
    session: ObjectRef
    payment_id: str
    amount: int
    currency: str
    reason: str | None = None
    metadata: Mapping[str, str] | None = None

    @property
    def idempotency_key(self) -> str:
        return f"paykube:{self.ref.uid}:refund"


class PaymentProvider(Protocol):
    name: str

    async def create_session(self, request: CreateSession,
                             account: AccountCredentials) -> ProviderSession:
        ...

    async def get_session(self, session_id: str, account: AccountCredentials) -> ProviderSession:
        ...

    async def expire_session(self, session_id: str,
                             account: AccountCredentials) -> ProviderSession:
        """Expire an open session; when it already ended, return its final state instead."""
        ...

    def valid_session_id(self, session_id: str) -> bool:
        """Whether `session_id` has this provider's id format (ids reach URL paths)."""
        ...

    async def identify(self, account: AccountCredentials) -> AccountIdentity:
        """Check the key with a real call: which account, which mode."""
        ...

    async def ensure_webhook_endpoint(self, account: AccountCredentials, url: str,
                                      ) -> WebhookEndpoint:
        """The account's endpoint for `url`, created when missing (its secret is known
        only then: an existing one comes back without it)."""
        ...

    async def delete_webhook_endpoint(self, account: AccountCredentials,
                                      endpoint_id: str) -> None:
        ...

    def valid_refund_id(self, refund_id: str) -> bool:
        """Whether `refund_id` has this provider's refund id format (ids reach URL paths)."""
        ...

    async def create_refund(self, request: CreateRefund,
                            account: AccountCredentials) -> RefundSnapshot:
        """Create once: a retry with the same request returns the same refund."""
        ...

    async def get_refund(self, refund_id: str, account: AccountCredentials) -> RefundSnapshot:
        ...

    async def list_refunds(self, payment_id: str,
                           account: AccountCredentials) -> tuple[RefundSnapshot, ...]:
        """Every refund of the payment, made by paykube or elsewhere (the Dashboard)."""
        ...
