"""Whether a verified webhook event may move a PaymentSession: pure, no I/O.

The signature says only that the event comes from the account whose route it arrived on.
Whether it is about *this* object is decided here, from the object's own record of what
the operator's calls to the provider answered (DESIGN, "Accounts and trust").
"""

from __future__ import annotations

from enum import StrEnum

from paykube.api.providers import ProviderId
from paykube.api.refunds import RefundStatus
from paykube.api.types import PaymentSessionSpec, Phase, Status
from paykube.lifecycle import SessionSnapshot


class Ignored(StrEnum):
    """Why an event was acknowledged without a change: a metric label and a log field."""

    WRONG_ACCOUNT = "ignored_wrong_account"
    WRONG_PROVIDER = "ignored_wrong_provider"
    NO_SESSION_YET = "ignored_no_session_yet"
    SESSION_MISMATCH = "ignored_session_mismatch"
    LIVEMODE_MISMATCH = "ignored_livemode_mismatch"
    CONNECT_ACCOUNT_MISMATCH = "ignored_connect_account_mismatch"
    AMOUNT_MISMATCH = "ignored_amount_mismatch"
    NO_REFUND_YET = "ignored_no_refund_yet"
    REFUND_MISMATCH = "ignored_refund_mismatch"
    PAYMENT_MISMATCH = "ignored_payment_mismatch"


def event_binding(
    *, route: ProviderId, bound: ProviderId, spec: PaymentSessionSpec, status: Status,
    phase: Phase, session: SessionSnapshot, livemode: bool | None,
    connect_account: str | None, provider_type: str = "stripe",
) -> Ignored | None:
    """None when the event may be applied to the object, else why not.

    `route` is the account whose signing secret verified the event, `bound` the account
    the object lives in; `livemode` and `connect_account` are the event's own fields.
    """
    if route != bound:
        return Ignored.WRONG_ACCOUNT
    if (status.provider or "stripe") != provider_type:
        return Ignored.WRONG_PROVIDER
    if status.session_id is None:
        # Only the operator's own create names the session: an event cannot adopt one.
        return Ignored.NO_SESSION_YET
    if session.session_id != status.session_id:
        return Ignored.SESSION_MISMATCH
    if status.livemode is not None and livemode is not status.livemode:
        return Ignored.LIVEMODE_MISMATCH
    if (connect_account or None) != (status.account or None):
        return Ignored.CONNECT_ACCOUNT_MISMATCH
    if _amount_differs(spec, session, required=phase is Phase.PAID):
        return Ignored.AMOUNT_MISMATCH
    return None


def _amount_differs(spec: PaymentSessionSpec, session: SessionSnapshot, *,
                    required: bool) -> bool:
    """A session for another amount or currency is not this object's, whatever its id;
    before Paid both must be present and equal."""
    if session.amount_total is None or session.currency is None:
        return required
    return session.amount_total != spec.amount or session.currency.lower() != spec.currency


def refund_binding(
    *, route: ProviderId, namespace: str, status: RefundStatus, refund_id: str, amount: int,
    livemode: bool | None, connect_account: str | None, provider_type: str = "stripe",
) -> Ignored | None:
    """None when a refund event may be applied to the PaymentRefund, else why not. The
    refund's account is its session's, fixed at reservation (`status.providerRef`)."""
    if status.refund_id is None:
        # Only the operator's own create names the refund: an event cannot adopt one.
        return Ignored.NO_REFUND_YET
    if route != ProviderId.bound_to(namespace, status.provider_ref):
        return Ignored.WRONG_ACCOUNT
    if (status.provider or "stripe") != provider_type:
        return Ignored.WRONG_PROVIDER
    if refund_id != status.refund_id:
        return Ignored.REFUND_MISMATCH
    if status.livemode is not None and livemode is not None and livemode is not status.livemode:
        return Ignored.LIVEMODE_MISMATCH
    if (connect_account or None) != (status.account or None):
        return Ignored.CONNECT_ACCOUNT_MISMATCH
    if status.amount is not None and amount != status.amount:
        return Ignored.AMOUNT_MISMATCH
    return None


def refunded_binding(
    *, route: ProviderId, bound: ProviderId, status: Status, payment_id: str,
    amount_refunded: int, livemode: bool | None, connect_account: str | None,
    provider_type: str = "stripe",
) -> Ignored | None:
    """None when a report of the payment's refunded amount (`charge.refunded`) may be
    applied to the PaymentSession, else why not."""
    if route != bound:
        return Ignored.WRONG_ACCOUNT
    if (status.provider or "stripe") != provider_type:
        return Ignored.WRONG_PROVIDER
    if status.phase is not Phase.PAID or status.payment_intent_id != payment_id:
        return Ignored.PAYMENT_MISMATCH
    if status.livemode is not None and livemode is not None and livemode is not status.livemode:
        return Ignored.LIVEMODE_MISMATCH
    if (connect_account or None) != (status.account or None):
        return Ignored.CONNECT_ACCOUNT_MISMATCH
    if not 0 <= amount_refunded <= (status.amount_total or 0):
        return Ignored.AMOUNT_MISMATCH
    return None
