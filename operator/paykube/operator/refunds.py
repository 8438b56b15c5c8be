"""What the operator does to one PaymentRefund (docs/refunds.md).

Reserve the amount on the PaymentSession (a conditional write: the per-session lock), then
create the refund at the PSP once under the refund's own idempotency key, then follow it
to a final phase (webhooks, with the poll timer as the backstop), keeping the session's
record and `amountRefunded` in step.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from paykube.accounts.resolver import Account, AccountResolver
from paykube.api.refunds import RefundSpec, RefundStatus, refund_ref
from paykube.api.types import (
    ErrorInfo,
    ObjectRef,
    PaymentSessionSpec,
    Phase,
    ProviderRef,
    RefundPhase,
    RefundRecord,
    Source,
    Status,
)
from paykube.errors import ErrorCode, PaykubeError, ProviderError
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.refund_writer import RefundWriter, RefundWritten
from paykube.kube.status import ref_of
from paykube.kube.writer import StatusWriter
from paykube.operator.reconciler import CONFIG_RETRY, RetryLater, error_info
from paykube.providers.base import CreateRefund, PaymentProvider, RefundSnapshot
from paykube.refunds.lifecycle import (
    RefundObservation,
    RefundObserved,
    RefundReconciled,
    RefundRefused,
    RefundReserved,
    RefundSyncFailed,
    advance_refund,
    initial_refund,
    refund_confirmation,
)
from paykube.refunds.reservation import (
    not_paid,
    psp_refunded,
    record_of,
    refundable_rest,
    refusal,
    reserve,
    update_record,
    with_refunded,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
COMPONENT = "paykube-operator"
WAIT_FOR_PAYMENT = 30.0  # seconds between looks at a Processing session a refund waits for
FINALIZE_RETRY = 30.0  # seconds between looks at a deleted refund the PSP has not settled


def _generation(obj: Manifest) -> int:
    return int(obj["metadata"].get("generation", 1))


@dataclass
class RefundReconciler:
    kube: KubeClient
    providers: Callable[[str], PaymentProvider]
    accounts: AccountResolver
    writer: RefundWriter
    sessions: StatusWriter
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    async def reconcile(self, body: Manifest) -> RefundStatus:
        """Bring the refund to the PSP once, or refuse it; then follow it."""
        ref = refund_ref(body)
        now = self.clock()

        def start(obj: Manifest, current: RefundStatus) -> RefundStatus:
            if current.history:
                return advance_refund(current, RefundReconciled(_generation(obj)), now)
            return initial_refund(now, _generation(obj))

        written = await self.writer.apply(ref, start, base=body)
        obj, status = written.obj, written.after
        if status.refund_id is not None:
            if not status.phase.settled:
                return await self.poll(ref, obj)
            await self._settle_record(ref, obj, status)
            return status
        if status.phase is not RefundPhase.PENDING:
            return status  # refused before it reached the PSP
        try:
            return await self._reserve_and_create(ref, obj)
        except _Refused as refused:
            return refused.status

    async def _reserve_and_create(self, ref: ObjectRef, obj: Manifest) -> RefundStatus:
        spec = RefundSpec.from_dict(obj["spec"])
        status = RefundStatus.from_dict(obj.get("status"))
        session_obj = await self._session_or_none(ref.namespace, spec.session_name,
                                                  status.session_uid)
        if session_obj is None:
            return await self._refuse(ref, ErrorInfo(
                code=ErrorCode.SESSION_NOT_FOUND.value, param="sessionRef",
                message=f"no PaymentSession {spec.session_name} in {ref.namespace}"
                        + (" (the one reserved on was deleted)" if status.session_uid
                           else "")))
        session_ref = ref_of(session_obj)
        session = Status.from_dict(session_obj.get("status"))
        if session.phase is Phase.PROCESSING:
            raise RetryLater(f"session {spec.session_name} is still Processing",
                             WAIT_FOR_PAYMENT)
        record = record_of(session, ref.uid)
        if record is None and session.phase is not Phase.PAID:
            return await self._refuse(ref, not_paid(session))
        payment_id = session.payment_intent_id
        if payment_id is None:
            return await self._refuse(ref, ErrorInfo(
                code=ErrorCode.SESSION_NOT_PAID.value,
                message=f"session {spec.session_name} records no payment to refund"))
        session_spec = PaymentSessionSpec.from_dict(session_obj["spec"])
        account = await self._account(ref, obj, session_spec.provider_ref)
        provider = self.providers(account.type)
        if record is None:
            at_psp = await self._psp(ref, obj, lambda: provider.list_refunds(
                payment_id, account.credentials))
            record, refused = await self._reserve(ref, session_ref, spec, at_psp,
                                                  session_obj)
            if refused is not None:
                return await self._refuse(ref, refused)
        assert record is not None
        reserved = RefundReserved(
            session_uid=session_ref.uid, payment_id=payment_id, amount=record.amount,
            currency=session.currency or session_spec.currency,
            provider=session.provider or account.type, account=session.account,
            livemode=session.livemode, provider_ref=session_spec.provider_ref)
        written = await self._apply(ref, reserved)
        request = CreateRefund(ref=ref, session=session_ref, payment_id=payment_id,
                               amount=record.amount, currency=reserved.currency,
                               reason=spec.reason, metadata=spec.metadata)
        try:
            refund = await self._psp(ref, written.obj, lambda: provider.create_refund(
                request, account.credentials))
        except _Refused:
            await self._follow_on_session(session_ref, ref.uid, RefundPhase.FAILED, None,
                                          provider, account, payment_id)
            raise
        after = await self._observed(ref, refund, Source.OPERATOR)
        await self._follow_on_session(session_ref, ref.uid, after.phase, refund.refund_id,
                                      provider, account, payment_id)
        return after

    async def _reserve(self, ref: ObjectRef, session_ref: ObjectRef, spec: RefundSpec,
                       at_psp: tuple[RefundSnapshot, ...], session_obj: Manifest,
                       ) -> tuple[RefundRecord | None, ErrorInfo | None]:
        """Record the refund on the session by a conditional write; the write that loses
        a race decides again on the winner's status."""
        outcome: dict[str, RefundRecord | ErrorInfo | None] = {}

        def decide(_obj: Manifest, current: Status) -> Status:
            outcome.clear()
            mine = record_of(current, ref.uid)
            if mine is not None:
                outcome["record"] = mine
                return current
            if current.phase is not Phase.PAID:
                outcome["refused"] = not_paid(current)
                return current
            rest = refundable_rest(current, at_psp, ref.uid)
            refused = refusal(current, spec, rest)
            if refused is not None:
                outcome["refused"] = refused
                return current
            record = RefundRecord(ref.name, ref.uid, spec.amount or rest)
            outcome["record"] = record
            return reserve(current, record)

        written = await self.sessions.apply(session_ref, decide, base=session_obj)
        record = outcome.get("record")
        refused = outcome.get("refused")
        if isinstance(record, RefundRecord) and record_of(
                Status.from_dict(written.obj.get("status")), ref.uid) is None:
            # An older PaymentSession CRD prunes status.refunds: the reservation, the lock
            # against refunding the same money twice, would silently not exist.
            return None, ErrorInfo(
                code=ErrorCode.API_REJECTED.value,
                message="the cluster's PaymentSession CRD does not keep status.refunds: "
                        "apply this version's crds/ (Helm does not upgrade CRDs)")
        return (record if isinstance(record, RefundRecord) else None,
                refused if isinstance(refused, ErrorInfo) else None)

    async def poll(self, ref: ObjectRef, base: Manifest | None = None) -> RefundStatus:
        """Ask the PSP how the refund is doing (the backstop for lost webhooks), and settle
        a webhook's unconfirmed report with the PSP's answer."""
        obj = base or await self.writer.get(ref.namespace, ref.name)
        status = RefundStatus.from_dict(obj.get("status"))
        refund_id = status.refund_id
        if refund_id is None or (status.phase.terminal and status.unconfirmed is None):
            return status
        try:
            account = await self._account(ref, obj, status.provider_ref)
            provider = self.providers(account.type)
            refund = await self._psp(ref, obj, lambda: provider.get_refund(
                refund_id, account.credentials))
        except _Refused as refused:
            return refused.status
        agreed = refund_confirmation(status, refund.phase)
        source, event_id = agreed or (Source.POLL, None)
        after = await self._observed(ref, refund, source, event_id, base=obj)
        spec = RefundSpec.from_dict(obj["spec"])
        session_obj = await self._session_or_none(ref.namespace, spec.session_name,
                                                  status.session_uid)
        if session_obj is not None and status.payment_id is not None:
            await self._follow_on_session(ref_of(session_obj), ref.uid, after.phase,
                                          refund_id, provider, account, status.payment_id)
        return after

    async def _settle_record(self, ref: ObjectRef, obj: Manifest, status: RefundStatus) -> None:
        """A settled refund whose session still records another phase (the webhook that
        settled it could not update the session): bring the record in step."""
        spec = RefundSpec.from_dict(obj["spec"])
        session_obj = await self._session_or_none(ref.namespace, spec.session_name,
                                                  status.session_uid)
        if session_obj is None or status.payment_id is None:
            return
        record = record_of(Status.from_dict(session_obj.get("status")), ref.uid)
        if record is None or record.phase is status.phase:
            return
        try:
            account = await self._account(ref, obj, status.provider_ref)
        except _Refused:
            return
        await self._follow_on_session(ref_of(session_obj), ref.uid, status.phase,
                                      status.refund_id, self.providers(account.type), account,
                                      status.payment_id)

    async def finalize(self, body: Manifest) -> None:
        """Deleting never reverses or loses money: a refund at the PSP keeps its finalizer
        until the PSP settled it; one never created releases its reservation."""
        ref = refund_ref(body)
        status = RefundStatus.from_dict(body.get("status"))
        if status.phase.settled:
            return
        if status.refund_id is not None:
            after = await self.poll(ref, body)
            if not after.phase.settled:
                raise RetryLater(f"refund {status.refund_id} is {after.phase.value} at the "
                                 "provider: the object stays until it settles", FINALIZE_RETRY)
            return
        spec = RefundSpec.from_dict(body["spec"])
        session_obj = await self._session_or_none(ref.namespace, spec.session_name,
                                                  status.session_uid)
        if session_obj is None:
            return
        session = Status.from_dict(session_obj.get("status"))
        if record_of(session, ref.uid) is None:
            return
        # Reserved, maybe created by a call whose answer was lost: look before releasing.
        payment_id = session.payment_intent_id
        if payment_id is None:
            return
        session_spec = PaymentSessionSpec.from_dict(session_obj["spec"])
        try:
            account = await self._account(ref, body, session_spec.provider_ref)
            provider = self.providers(account.type)
            at_psp = await self._psp(ref, body, lambda: provider.list_refunds(
                payment_id, account.credentials))
        except _Refused as refused:
            raise RetryLater("the refund cannot be looked up at the provider: "
                             f"{refused.status.error.message if refused.status.error else ''}",
                             FINALIZE_RETRY) from None
        mine = next((r for r in at_psp if r.refund_uid == ref.uid), None)
        if mine is not None:
            after = await self._observed(ref, mine, Source.POLL)
            await self._follow_on_session(ref_of(session_obj), ref.uid, after.phase,
                                          mine.refund_id, provider, account, payment_id)
            if not after.phase.settled:
                raise RetryLater(f"refund {mine.refund_id} is {after.phase.value} at the "
                                 "provider: the object stays until it settles", FINALIZE_RETRY)
            return
        await self._follow_on_session(ref_of(session_obj), ref.uid, RefundPhase.CANCELED,
                                      None, provider, account, payment_id)

    async def relay(self, ref: ObjectRef, obj: Manifest | None = None) -> None:
        try:
            await self.writer.record_published(ref, obj)
        except PaykubeError as exc:
            log.warning("refund outbox not relayed: %s", exc.message,
                        extra={"object": f"{ref.namespace}/{ref.name}"})

    async def refresh_session(self, session_ref: ObjectRef) -> None:
        """Set the session's amountRefunded from the PSP's own list (the Dashboard's
        refunds included)."""
        session_obj = await self.kube.get_session(session_ref.namespace, session_ref.name)
        session = Status.from_dict(session_obj.get("status"))
        payment_id = session.payment_intent_id
        if session.phase is not Phase.PAID or payment_id is None:
            return
        session_spec = PaymentSessionSpec.from_dict(session_obj["spec"])
        account = await self.accounts.for_session(session_ref.namespace,
                                                  session_spec.provider_ref)
        provider = self.providers(account.type)
        at_psp = await provider.list_refunds(payment_id, account.credentials)
        now = self.clock()
        await self.sessions.apply(
            session_ref, lambda _o, current: with_refunded(current, psp_refunded(at_psp), now),
            base=session_obj)

    # -- helpers -------------------------------------------------------------------------

    async def _follow_on_session(self, session_ref: ObjectRef, uid: str, phase: RefundPhase,
                                 refund_id: str | None, provider: PaymentProvider,
                                 account: Account, payment_id: str) -> None:
        """The session's record follows the refund; once it settles, amountRefunded is
        set from the PSP's list."""
        at_psp: tuple[RefundSnapshot, ...] | None = None
        if phase.settled:
            try:
                at_psp = await provider.list_refunds(payment_id, account.credentials)
            except PaykubeError as exc:  # the record still moves; the amount comes later
                log.warning("refunds of %s not listed: %s", payment_id, exc.message)
        now = self.clock()

        def decide(_obj: Manifest, current: Status) -> Status:
            status = update_record(current, uid, phase, refund_id)
            if at_psp is not None:
                status = with_refunded(status, psp_refunded(at_psp), now)
            return status

        try:
            await self.sessions.apply(session_ref, decide)
        except NotFound:
            return  # the session is gone: the refund's own status is the record

    async def _session_or_none(self, namespace: str, name: str,
                               uid: str | None) -> Manifest | None:
        try:
            obj = await self.kube.get_session(namespace, name)
        except NotFound:
            return None
        if uid is not None and obj["metadata"]["uid"] != uid:
            return None
        return obj

    async def _account(self, ref: ObjectRef, obj: Manifest,
                       provider_ref: ProviderRef | None) -> Account:
        """The session's account: a refund lives where its payment does."""
        try:
            return await self.accounts.for_session(ref.namespace, provider_ref)
        except PaykubeError as exc:
            raise _Refused(await self._failed_call(ref, exc, obj)) from exc

    async def _psp(self, ref: ObjectRef, obj: Manifest,
                   call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call()
        except PaykubeError as exc:
            raise _Refused(await self._failed_call(ref, exc, obj)) from exc

    async def _failed_call(self, ref: ObjectRef, exc: PaykubeError,
                           obj: Manifest) -> RefundStatus:
        """A retryable error: Synced=False and RetryLater. A permanent one: the refund
        fails if it never reached the PSP (the lifecycle keeps a refund that did)."""
        info = error_info(exc)
        generation = _generation(obj)
        if exc.retryable:
            await self._apply(ref, RefundSyncFailed(info, generation))
            await self._event(ref, "Warning", info.code, info.message)
            delay = exc.retry_after if isinstance(exc, ProviderError) else None
            if exc.code in (ErrorCode.SECRETS_UNAVAILABLE, ErrorCode.PROVIDER_NOT_FOUND):
                delay = CONFIG_RETRY
            raise RetryLater(info.message, delay or 10.0) from exc
        written = await self._apply(ref, RefundRefused(info, generation))
        await self._event(ref, "Warning", info.code, info.message)
        return written.after

    async def _refuse(self, ref: ObjectRef, error: ErrorInfo) -> RefundStatus:
        written = await self._apply(ref, RefundRefused(error))
        await self._event(ref, "Warning", error.code, error.message)
        return written.after

    async def _observed(self, ref: ObjectRef, refund: RefundSnapshot, source: Source,
                        event_id: str | None = None, *,
                        base: Manifest | None = None) -> RefundStatus:
        observed = RefundObserved(refund, source, event_id, authoritative=True)
        return (await self._apply(ref, observed, base=base)).after

    async def _apply(self, ref: ObjectRef, observation: RefundObservation, *,
                     base: Manifest | None = None) -> RefundWritten:
        now = self.clock()
        return await self.writer.apply(
            ref, lambda _obj, current: advance_refund(current, observation, now), base=base)

    async def on_transition(self, ref: ObjectRef, before: RefundStatus, after: RefundStatus,
                            _obj: Manifest) -> None:
        entry = after.history[-1]
        via = f"event {entry.event_id}" if entry.event_id else f"refund {after.refund_id}"
        await self._event(ref, "Normal", after.phase.value,
                          f"{before.phase.value} -> {after.phase.value} ({entry.source.value}, "
                          f"{via})")

    async def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.create_event(ref, type_=type_, reason=reason, message=message,
                                         component=COMPONENT, now=self.clock(),
                                         kind="PaymentRefund")
        except PaykubeError as exc:
            log.warning("event not recorded: %s", exc.message)


class _Refused(Exception):
    """A permanent PSP refusal, already written to the refund's status."""

    def __init__(self, status: RefundStatus) -> None:
        super().__init__("refused")
        self.status = status
