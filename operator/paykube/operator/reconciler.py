"""What the operator does to one PaymentSession. kopf handlers call these; each one
reads the object fresh, asks the provider, and writes status through the lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from paykube.accounts.resolver import AccountResolver
from paykube.api.types import ErrorInfo, ObjectRef, PaymentSessionSpec, Phase, Source, Status
from paykube.errors import ErrorCode, PaykubeError, ProviderError
from paykube.events.publisher import EventPublisher
from paykube.explain.service import Explainer
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.status import cancel_requested
from paykube.kube.writer import StatusWriter, Written
from paykube.lifecycle import (
    Observation,
    ProviderObserved,
    ProviderRejected,
    Reconciled,
    SyncFailed,
    advance,
    confirmation,
    initial,
    parse_timestamp,
    planned_expiry,
    replanned_expiry,
    unpublished,
)
from paykube.operator.metrics import OperatorMetrics
from paykube.providers.base import (
    AccountCredentials,
    CreateSession,
    PaymentProvider,
    ProviderSession,
)

log = logging.getLogger(__name__)
COMPONENT = "paykube-operator"
# Deleting a session that could still be paid: how often to try again after a permanent
# error, and how long after its expiresAt the provider has surely expired it by itself.
FINALIZE_HOLD_RETRY = 300.0
EXPIRY_MARGIN = dt.timedelta(minutes=2)
WARN_EVERY = 10  # a long-held deletion warns on the first and then every tenth retry
RECONCILE_CONCURRENCY = 32  # objects reconciled at once (twice the API client's slots)
CONFIG_RETRY = 30.0  # seconds between tries while the operator's default credentials are broken


class RetryLater(Exception):
    """A retryable failure was recorded in status; try again after `delay` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def error_info(exc: PaykubeError) -> ErrorInfo:
    if isinstance(exc, ProviderError):
        return ErrorInfo(code=exc.code.value, message=exc.message,
                         provider_code=exc.provider_code, doc_url=exc.doc_url,
                         retryable=exc.retryable, param=exc.param, type=exc.error_type)
    return ErrorInfo(code=exc.code.value, message=exc.message, retryable=exc.retryable)


def _generation(obj: Manifest) -> int:
    return int(obj["metadata"].get("generation", 1))


def payable_for(status: Status, now: dt.datetime) -> float | None:
    """Seconds the provider's session may still be paid (<= 0: it cannot any more, with a
    margin for clock skew); None when no expiry bounds it (a Processing payment settles
    whenever the bank says)."""
    if status.phase is Phase.PROCESSING or not status.expires_at:
        return None
    return (parse_timestamp(status.expires_at) + EXPIRY_MARGIN - now).total_seconds()


@dataclass
class Reconciler:
    kube: KubeClient
    providers: Callable[[str], PaymentProvider]
    accounts: AccountResolver
    metrics: OperatorMetrics
    publisher: EventPublisher
    explainer: Explainer
    writer: StatusWriter
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    processing_recheck: float = 10.0  # seconds between polls of a deleted Processing session
    concurrency: int = RECONCILE_CONCURRENCY

    def __post_init__(self) -> None:
        # Objects reconciled at once. kopf starts a handler per object; in a burst of
        # thousands they would all advance in lockstep through the API client's slots
        # (every object Pending long before any is Open). Waiting here, first come first
        # served, lets the early objects finish while the later ones wait.
        self._in_flight = asyncio.Semaphore(self.concurrency)

    async def reconcile(self, ref: ObjectRef, body: Manifest | None = None) -> Status:
        """Bring the object to what its spec asks: a session exists; canceled if asked.

        `body` is the object as kopf handed it over: the base of the first write, so that
        nothing is read that is already at hand (a conflict re-reads). Also after waiting
        for a reconcile slot: while an object waits, only a spec change, a webhook event
        or a poll can write it (kopf runs one handler per object at a time), so a read
        before every waiting write (one GET per object in a burst) costs more than the
        rare 409 and re-read. A stale body can at worst repeat the create, which the
        idempotency key makes the same session."""
        async with self._in_flight:
            return await self._reconcile(ref, body)

    async def _reconcile(self, ref: ObjectRef, body: Manifest | None) -> Status:
        obj, status = await self._ensure_session(ref, body)
        obj, _, status = await self._apply(ref, lambda o: Reconciled(_generation(o)), base=obj)
        if obj.get("spec", {}).get("cancel") and not status.phase.terminal:
            status = await self.expire(ref, base=obj)
        return status

    async def _ensure_session(self, ref: ObjectRef,
                              body: Manifest | None = None) -> tuple[Manifest, Status]:
        now = self.clock()

        def plan(obj: Manifest, current: Status) -> Status:
            if obj.get("status", {}).get("phase"):
                return current
            spec = PaymentSessionSpec.from_dict(obj["spec"])
            expires = planned_expiry(spec.expires_after, now)
            return initial(now, _generation(obj), expires)

        written = await self.writer.apply(ref, plan, base=body)
        obj, status = written.obj, written.after
        if status.phase is not Phase.PENDING or status.session_id:
            return obj, status
        spec = PaymentSessionSpec.from_dict(obj["spec"])
        assert status.expires_at is not None
        request = CreateSession(ref, spec, parse_timestamp(status.expires_at))

        async def create(provider: PaymentProvider, key: AccountCredentials) -> ProviderSession:
            try:
                return await provider.create_session(request, key)
            except ProviderError as exc:
                expires = replanned_expiry(status, error_info(exc), spec.expires_after,
                                           self.clock())
                if expires is None:
                    raise
            # Recorded before the retry, so that a crash now retries with the same plan.
            log.info("create refused the planned expiry; re-planned to %s", expires,
                     extra={"object": f"{ref.namespace}/{ref.name}"})
            await self._replan(ref, expires)
            return await provider.create_session(
                replace(request, expires_at=parse_timestamp(expires)), key)

        try:
            session = await self._call(ref, obj, create, Source.OPERATOR)
        except (PaykubeError, RetryLater):
            # Not created at once: say that the object was accepted and is waiting (when
            # the create succeeds at once, the Open Event says it all).
            if not written.before.history:
                await self._event(ref, "Normal", Phase.PENDING.value,
                                  f"accepted; creating the checkout session (expires "
                                  f"{status.expires_at})")
            raise
        written = await self._observe_written(ref, session, Source.OPERATOR, base=obj)
        return written.obj, written.after

    async def _replan(self, ref: ObjectRef, expires_at: str) -> None:
        def decide(_obj: Manifest, current: Status) -> Status:
            if current.phase is not Phase.PENDING or current.session_id:
                return current
            return current.with_changes(expires_at=expires_at)

        await self.writer.apply(ref, decide)

    async def poll(self, ref: ObjectRef, base: Manifest | None = None) -> Status:
        """Ask the provider how the open session is doing (a backstop for lost webhooks)."""
        return await self._on_open_session(
            ref, lambda p, session_id, key: p.get_session(session_id, key), Source.POLL,
            base)

    async def expire(self, ref: ObjectRef, base: Manifest | None = None) -> Status:
        """Expire the open session at the provider; the status follows what it confirms."""
        return await self._on_open_session(
            ref, lambda p, session_id, key: p.expire_session(session_id, key),
            Source.OPERATOR, base)

    async def _on_open_session(
        self, ref: ObjectRef,
        call: Callable[[PaymentProvider, str, AccountCredentials], Awaitable[ProviderSession]],
        source: Source, base: Manifest | None = None,
    ) -> Status:
        obj = base or await self.kube.get_session(ref.namespace, ref.name)
        status = Status.from_dict(obj.get("status"))
        session_id = status.session_id
        if status.phase.terminal or not session_id:
            return status
        session = await self._call(ref, obj, lambda p, key: call(p, session_id, key), source)
        return (await self._observe_written(ref, session, source, base=obj)).after

    async def finalize(self, ref: ObjectRef, attempt: int = 0) -> None:
        """On delete: expire an open session unless `deletionPolicy: Orphan`; in every case
        hold the object until its payment events are out.

        The finalizer is never released while the provider's session could still be paid:
        a permanent error (the provider's key Secret deleted first, a revoked key) is
        retried rarely until the session has expired at the provider by itself, and a
        Processing session (paid, settling) is watched until its outcome is recorded.
        `attempt` counts kopf's retries, so that a long wait warns now and then, not
        on every retry."""
        obj = await self.kube.get_session(ref.namespace, ref.name)
        status = Status.from_dict(obj.get("status"))
        policy = obj.get("spec", {}).get("deletionPolicy", "Expire")
        if policy != "Orphan" and not status.phase.terminal:
            try:
                status = await self._end_for_delete(ref, status)
            except PaykubeError as exc:
                if exc.retryable or isinstance(exc, NotFound):
                    raise
                await self._hold_after_permanent_error(ref, exc, attempt)
            if status.phase is Phase.PROCESSING:
                if attempt % WARN_EVERY == 0:
                    await self._event(
                        ref, "Warning", "DeletionAwaitsPayment",
                        "The customer paid and the payment is settling: deletion waits for "
                        "its outcome (remove the finalizer to give it up)")
                raise RetryLater("deletion waits for the payment's outcome",
                                 self.processing_recheck)
        # The object is about to vanish: its events must be out first (delay, never drop).
        written = await self.writer.record_published(ref)
        if unpublished(written.after):
            raise RetryLater("payment events not yet confirmed by the broker", 10.0)

    async def _end_for_delete(self, ref: ObjectRef, status: Status) -> Status:
        if not status.session_id:
            # A create may have reached the provider before a crash: the idempotent
            # create returns that session (or makes one), so it is expired, not leaked.
            _, status = await self._ensure_session(ref)
        if status.phase is Phase.PROCESSING:
            return await self.poll(ref)  # the provider refuses to expire it: ask how it ends
        if not status.phase.terminal:
            # An Open session whose customer just paid comes back Processing or Paid.
            return await self.expire(ref)
        return status

    async def _hold_after_permanent_error(self, ref: ObjectRef, exc: PaykubeError,
                                          attempt: int) -> None:
        """Returns when the finalizer may go (the session can no longer be paid), else
        raises RetryLater with a long delay."""
        status = Status.from_dict((await self.kube.get_session(ref.namespace, ref.name))
                                  .get("status"))
        if status.phase.terminal:
            return
        left = payable_for(status, self.clock())
        if left is not None and left <= 0:
            await self._event(ref, "Warning", exc.code.value,
                              f"Could not expire session {status.session_id} ({exc.message}); "
                              f"it expired at the provider at {status.expires_at}, so the "
                              "deletion goes ahead")
            return
        if attempt % WARN_EVERY == 0:
            until = f"until {status.expires_at}" if left is not None else "until it ends"
            await self._event(ref, "Warning", exc.code.value,
                              f"Deletion waits: session {status.session_id} could still be "
                              f"paid and the provider refused our call ({exc.message}); "
                              f"retrying {until} (remove the finalizer to give it up)")
        raise RetryLater(f"deletion held: {exc.message}",
                         max(1.0, min(FINALIZE_HOLD_RETRY, left if left is not None
                                      else FINALIZE_HOLD_RETRY)))

    async def relay(self, ref: ObjectRef, obj: Manifest | None = None) -> None:
        """Publish the outbox and record what the broker confirmed; a broker outage leaves
        it for the next run."""
        try:
            await self.writer.record_published(ref, obj)
        except PaykubeError as exc:
            log.warning("outbox not relayed: %s", exc.message,
                        extra={"object": f"{ref.namespace}/{ref.name}"})

    async def _call(
        self, ref: ObjectRef, obj: Manifest,
        call: Callable[[PaymentProvider, AccountCredentials], Awaitable[ProviderSession]],
        source: Source,
    ) -> ProviderSession:
        spec = PaymentSessionSpec.from_dict(obj["spec"])
        generation = _generation(obj)
        try:
            account = await self.accounts.for_session(ref.namespace, spec.provider_ref)
            provider = self.providers(account.type)
            session = await call(provider, account.credentials)
        except PaykubeError as exc:
            info = error_info(exc)
            if isinstance(exc, ProviderError):
                info = replace(info, explanation=self.explainer.explain_now(exc))
            # The operator's default key refused (revoked, rotated too early) is the
            # operator's configuration, not the object's: retry until it is repaired. A bad
            # key of the object's own provider account stays permanent.
            default_key_refused = (spec.provider_ref is None
                                   and exc.code is ErrorCode.CREDENTIALS_INVALID)
            if exc.retryable or default_key_refused:
                info = replace(info, retryable=True)
                await self._apply(ref, SyncFailed(info, generation))
                await self._event(ref, "Warning", info.code, info.message)
                delay = exc.retry_after if isinstance(exc, ProviderError) else None
                if default_key_refused or exc.code in (ErrorCode.SECRETS_UNAVAILABLE,
                                                       ErrorCode.PROVIDER_NOT_FOUND):
                    delay = CONFIG_RETRY  # someone has to repair it: do not hammer
                raise RetryLater(info.message, delay or 10.0) from exc
            await self._apply(ref, ProviderRejected(info, source, generation))
            await self._event(ref, "Warning", info.code, info.message)
            if isinstance(exc, ProviderError) and info.explanation is None:
                # Reconciliation never waits for the model; the explanation comes later.
                self.explainer.explain_in_background(
                    exc, lambda text: self._add_explanation(ref, info, text))
            raise
        return session

    async def explain_missing(self, ref: ObjectRef) -> None:
        """Ask again for an explanation the model could not give in time before."""
        obj = await self.kube.get_session(ref.namespace, ref.name)
        error = Status.from_dict(obj.get("status")).error
        if error is None or not error.awaits_explanation:
            return
        # The param and type kept in status.error make the same question (and cache key)
        # as the first attempt, which had the provider's error at hand.
        text = await self.explainer.explain_later(error)
        if text:
            await self._add_explanation(ref, error, text)

    async def _add_explanation(self, ref: ObjectRef, info: ErrorInfo, text: str) -> None:
        def decide(_obj: Manifest, current: Status) -> Status:
            error = current.error
            if error is None or error.explanation or (error.code, error.provider_code) != (
                    info.code, info.provider_code):
                return current  # a different error by now: leave it alone
            return current.with_changes(error=replace(error, explanation=text))

        await self.writer.apply(ref, decide)

    async def confirm(self, ref: ObjectRef) -> Status:
        """Settle what a webhook reported (`status.unconfirmed`) with one retrieve: the
        provider's answer decides, and a contradiction is a Warning Event and a metric."""
        obj = await self.kube.get_session(ref.namespace, ref.name)
        status = Status.from_dict(obj.get("status"))
        unconfirmed, session_id = status.unconfirmed, status.session_id
        if unconfirmed is None or session_id is None:
            return status
        session = await self._call(ref, obj, lambda p, key: p.get_session(session_id, key),
                                   Source.POLL)
        reported = session.phase
        if reported is Phase.EXPIRED and cancel_requested(obj):
            reported = Phase.CANCELED
        agreed = confirmation(status, reported)
        if agreed is None:
            self.metrics.contradictions.labels(unconfirmed.phase.value, reported.value).inc()
            await self._event(ref, "Warning", "WebhookContradicted",
                              f"A webhook event ({unconfirmed.event_id or 'no id'}) reported "
                              f"{unconfirmed.phase.value}, but the provider says "
                              f"{reported.value} for session {session_id}: the provider wins")
        source, event_id = agreed or (Source.POLL, None)
        written = await self._observe_written(ref, session, source, event_id=event_id,
                                              base=obj)
        return written.after

    async def _observe_written(self, ref: ObjectRef, session: ProviderSession, source: Source,
                               *, event_id: str | None = None,
                               base: Manifest | None = None) -> Written:
        """Write what the provider answered our own call (authoritative)."""
        now = self.clock()

        def decide(obj: Manifest, current: Status) -> Status:
            return advance(current, ProviderObserved(
                session.phase, session.snapshot, source, event_id=event_id,
                cancel_requested=cancel_requested(obj), generation=_generation(obj),
                authoritative=True), now)

        return await self.writer.apply(ref, decide, base=base)

    async def on_transition(self, ref: ObjectRef, before: Status, after: Status,
                            _obj: Manifest) -> None:
        """The writer's after-write step for a phase change: the metric and the Event."""
        entry = after.history[-1]
        self.metrics.transitions.labels(before.phase.value, after.phase.value,
                                        entry.source.value).inc()
        via = f"event {entry.event_id}" if entry.event_id else f"session {after.session_id}"
        await self._event(ref, "Normal", after.phase.value,
                          f"{before.phase.value} -> {after.phase.value} ({entry.source.value}, "
                          f"{via})")

    async def _apply(
        self, ref: ObjectRef, observation: Observation | Callable[[Manifest], Observation],
        *, base: Manifest | None = None,
    ) -> tuple[Manifest, Status, Status]:
        """Write what `observation` (or the observation made from the fresh object) means."""
        now = self.clock()

        def decide(obj: Manifest, current: Status) -> Status:
            seen = observation(obj) if callable(observation) else observation
            return advance(current, seen, now)

        written = await self.writer.apply(ref, decide, base=base)
        return written.obj, written.before, written.after

    async def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.create_event(ref, type_=type_, reason=reason, message=message,
                                         component=COMPONENT, now=self.clock())
        except PaykubeError as exc:  # an Event is best effort; the status is the record
            log.warning("event not recorded: %s", exc.message)
