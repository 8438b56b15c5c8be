"""The aiohttp application: POST /webhooks/stripe, probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paykube.accounts.routes import RouteTable
from paykube.api.providers import ProviderId
from paykube.api.refunds import RefundStatus
from paykube.api.types import (
    CLUSTER_PAYMENT_PROVIDER,
    PAYMENT_PROVIDER,
    ObjectRef,
    PaymentSessionSpec,
    Source,
    Status,
)
from paykube.basic_auth import credentials_match
from paykube.binding import event_binding, refund_binding, refunded_binding
from paykube.errors import ErrorCode, PaykubeError
from paykube.events.publisher import EventPublisher
from paykube.events.relay import broker_state, needs_relay
from paykube.kube.cache import SessionCache
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.refund_writer import RefundWriter
from paykube.kube.status import cancel_requested
from paykube.kube.writer import Decide, StatusWriter, Written
from paykube.lifecycle import ProviderObserved, advance
from paykube.refunds.lifecycle import RefundObserved, advance_refund
from paykube.refunds.reservation import update_record, with_refunded
from paykube.secrets.files import SecretSetting
from paykube.secrets.health import ReadinessChecks
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings
from paykube_webhook.event_budget import EventBudget
from paykube_webhook.metrics import WebhookMetrics
from paykube_webhook.refusals import RefusalLog
from paykube_webhook.schemes import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    MALFORMED,
    Applicable,
    Ignored,
    MalformedEvent,
    PaymentRefunded,
    RefundReport,
    WebhookScheme,
)
from paykube_webhook.verify import Failure, SignatureError

log = logging.getLogger("paykube.webhook")
COMPONENT = "paykube-webhook"


@dataclass
class WebhookService:
    settings: Settings
    kube: KubeClient
    metrics: WebhookMetrics
    publisher: EventPublisher
    secrets: StripeSecrets
    routes: RouteTable | None = None
    cache: SessionCache | None = None
    wall_clock: Callable[[], float] = time.time
    broker_check_interval: float = 5.0

    def __post_init__(self) -> None:
        # The one status writer: it publishes before the answer, the Event follows it.
        self.writer = StatusWriter(self.kube, self.publisher, on_transition=self._transition,
                                   include_url=self.settings.events_include_url,
                                   record_after_write=True,
                                   on_publish=lambda outcome: self.metrics.publishes.labels(
                                       outcome).inc())
        self.refund_writer = RefundWriter(self.kube, self.publisher,
                                          on_transition=self._refund_transition)
        self._children: dict[tuple[object, str], Any] = {}
        self.event_budget = EventBudget(self.settings.webhook_event_rate)
        self._over_budget = False
        self.refusals = RefusalLog(log)
        # Bodies being read at once: bounds the memory many slow senders can hold.
        self._readers = asyncio.Semaphore(self.settings.webhook_max_readers)
        self.metrics.broker_connected.set_function(
            lambda: 1.0 if self.broker_state() == "connected" else 0.0)
        self.readiness = ReadinessChecks(
            "webhook", required={"apiServer": self.kube.check_ready,
                                 "secrets": self.secrets.webhook_secrets},
            reported={"broker": self.broker_state})
        settings = self.settings
        self.metrics_username = SecretSetting(SecretStr(settings.metrics_username),
                                              settings.metrics_username_file,
                                              settings.secrets_ttl)
        self.metrics_password = SecretSetting(settings.metrics_password,
                                              settings.metrics_password_file,
                                              settings.secrets_ttl)

    def _inc(self, counter: Any, label: str) -> None:
        """Exact counters whose labelled child is looked up once per label
        (prometheus_client's label lookup was a visible share of a refusal's cost)."""
        child = self._children.get((counter, label))
        if child is None:
            child = self._children[(counter, label)] = counter.labels(label)
        child.inc()

    def _count(self, outcome: str) -> None:
        self._inc(self.metrics.requests, outcome)

    def _refuse(self, status: int, code: ErrorCode, outcome: str, **fields: Any) -> web.Response:
        self._count(outcome)
        self.refusals.refused(outcome, code=code.value, **fields)
        return web.Response(body=_error_body(code), status=status,
                            content_type="application/json")

    def _ok(self, outcome: str, **fields: Any) -> web.Response:
        self._count(outcome)
        log.info("webhook handled", extra={"outcome": outcome, **fields})
        return web.json_response({"received": True, "outcome": outcome})

    async def refusal_flush(self, _: web.Application) -> AsyncIterator[None]:
        """Say the counts of refusal floods that stopped (see `RefusalLog`)."""

        async def flush() -> None:
            while True:
                await asyncio.sleep(self.refusals.window)
                self.refusals.flush()

        task = asyncio.create_task(flush())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.refusals.flush(final=True)

    async def receive(self, scheme: WebhookScheme, request: web.Request) -> web.Response:
        """One route per account and PSP type: `/webhooks/<type>` (the default account),
        `/webhooks/<type>/cluster/<name>` and `/webhooks/<type>/ns/<namespace>/<name>`."""
        route = _route_of(request.match_info)
        if route is None:
            return self._refuse(404, ErrorCode.PAYLOAD_INVALID, "unknown_route")
        # The header as every PSP sends it is taken as it is; anything else is parsed.
        if (request.headers.get("Content-Type") != "application/json"
                and request.content_type != "application/json"):
            return self._refuse(415, ErrorCode.PAYLOAD_INVALID, "unsupported_media_type")
        limit = self.settings.webhook_max_body
        announced = request.content_length
        if announced is not None and announced > limit:
            return self._refuse(413, ErrorCode.PAYLOAD_INVALID, "too_large")
        try:
            if request.content.is_eof():
                # The whole body came with the headers (a webhook's few kilobytes usually
                # do): nothing to wait for, so no reader slot and no deadline to arm.
                payload = _buffered_body(request, limit)
            else:
                # One deadline for waiting for a reader slot and reading: a stalled upload
                # holds a slot (and its bytes) for seconds, not forever.
                async with asyncio.timeout(self.settings.webhook_read_timeout), self._readers:
                    payload = await _read_body(request, limit)
        except TimeoutError:
            response = self._refuse(408, ErrorCode.PAYLOAD_INVALID, "read_timeout")
            response.force_close()  # not a second more for the rest of a stalled body
            return response
        except (ConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError):
            # The sender went away mid-body: nobody to answer, nothing to learn.
            self._count("client_disconnected")
            log.info("webhook sender disconnected during the body")
            raise web.HTTPBadRequest() from None
        if payload is None:
            return self._refuse(413, ErrorCode.PAYLOAD_INVALID, "too_large")
        try:
            await self._verify(scheme, route, payload, request.headers)
        except PaykubeError as exc:  # our problem, not the sender's: let Stripe retry
            self.metrics.requests.labels("secrets_unavailable").inc()
            # Secret sources put names and causes in their messages, never values.
            log.error("webhook secrets unavailable", extra={"code": exc.code.value,
                                                            "reason": exc.message})
            return web.json_response({"error": {"code": exc.code.value}}, status=503)
        except SignatureError as exc:
            self._inc(self.metrics.verification_failures, exc.failure.value)
            return self._refuse(400, ErrorCode.SIGNATURE_INVALID, "signature_invalid",
                                reason=exc.failure.value)
        try:
            parsed = scheme.parse(payload, request.headers)
        except MALFORMED as exc:
            # Signed, yet not an event we can read: only a sender bug does this, and a
            # retry would fail the same way, so it is the sender's 4xx, never our 5xx.
            # The field our own checks name; never the value, which may be personal data.
            detail = str(exc) if isinstance(exc, MalformedEvent) else None
            return self._refuse(400, ErrorCode.PAYLOAD_INVALID, "payload_invalid",
                                reason=type(exc).__name__, detail=detail)
        if isinstance(parsed, Ignored):
            return self._ok(parsed.outcome, event_id=parsed.event_id,
                            event_type=parsed.event_type)
        if isinstance(parsed, RefundReport):
            return await self._apply_refund(scheme.type, route, parsed)
        if isinstance(parsed, PaymentRefunded):
            return await self._apply_refunded(scheme.type, route, parsed)
        return await self._apply(scheme.type, route, parsed)

    async def _verify(self, scheme: WebhookScheme, route: ProviderId, payload: bytes,
                      headers: Mapping[str, str]) -> None:
        """Only the route's own account's secrets count (one HMAC per secret of that
        account, however many tenants there are). A miss on a provider route re-reads the
        route table once (rate-limited), so a new or rotated secret works within seconds."""
        now = self.wall_clock()
        if route.is_default or self.routes is None:
            # The default account is the operator's configured Stripe account.
            default = route.is_default and scheme.type == "stripe"
            secrets = await self.secrets.webhook_secrets() if default else ()
            scheme.verify(payload, headers, secrets, now=now)
            return
        try:
            scheme.verify(payload, headers, await self.routes.secrets(route), now=now)
        except SignatureError as exc:
            retry = exc.failure in (Failure.MISMATCH, Failure.NO_SECRETS)
            if not retry or not await self.routes.refresh(eager=True):
                raise
            scheme.verify(payload, headers, await self.routes.secrets(route), now=now)

    async def _apply(self, provider_type: str, route: ProviderId,
                     event: Applicable) -> web.Response:
        ref, phase, session = event.ref, event.phase, event.session
        refused: list[str] = []

        def decide(obj: Manifest, current: Status) -> Status:
            spec = PaymentSessionSpec.from_dict(obj["spec"])
            reason = event_binding(
                provider_type=provider_type,
                route=route, bound=ProviderId.bound_to(ref.namespace, spec.provider_ref),
                spec=spec, status=current, phase=phase, session=session,
                livemode=event.livemode, connect_account=event.account)
            if reason is not None:
                refused.append(reason.value)
                return current
            return advance(
                current,
                ProviderObserved(phase, session, Source.WEBHOOK, event.event_id,
                                 cancel_requested=cancel_requested(obj)),
                dt.datetime.now(dt.UTC),
            )

        async def write() -> Written:
            written = await self._write_session(ref, decide)
            if not refused and written.after == written.before:
                await self.writer.redeliver(ref, written.obj, phase)
            return written

        return await self._store(event.event_id, event.event_type, ref, refused, write,
                                 unconfirmed=True, route=route)

    async def _apply_refund(self, provider_type: str, route: ProviderId,
                            event: RefundReport) -> web.Response:
        """A refund event: forward to RequiresAction or Succeeded, or an ending awaiting
        the operator's retrieve (paykube.refunds.lifecycle)."""
        ref, refund = event.ref, event.refund
        refused: list[str] = []
        now = dt.datetime.now(dt.UTC)

        def decide(_obj: Manifest, current: RefundStatus) -> RefundStatus:
            reason = refund_binding(
                route=route, namespace=ref.namespace, status=current,
                refund_id=refund.refund_id, amount=refund.amount, livemode=event.livemode,
                connect_account=event.account, provider_type=provider_type)
            if reason is not None:
                refused.append(reason.value)
                return current
            return advance_refund(current, RefundObserved(refund, Source.WEBHOOK,
                                                          event.event_id), now)

        return await self._store(
            event.event_id, event.event_type, ref, refused,
            lambda: self.refund_writer.apply(ref, decide), unconfirmed=True, route=route)

    async def _apply_refunded(self, provider_type: str, route: ProviderId,
                              event: PaymentRefunded) -> web.Response:
        """How much of a payment is refunded (ours or the Dashboard's): the session's
        amountRefunded rises at once; only the operator's own list may lower it."""
        ref = event.ref
        refused: list[str] = []
        now = dt.datetime.now(dt.UTC)

        def decide(obj: Manifest, current: Status) -> Status:
            spec = PaymentSessionSpec.from_dict(obj["spec"])
            reason = refunded_binding(
                route=route, bound=ProviderId.bound_to(ref.namespace, spec.provider_ref),
                status=current, payment_id=event.payment_id,
                amount_refunded=event.amount_refunded, livemode=event.livemode,
                connect_account=event.account, provider_type=provider_type)
            if reason is not None:
                refused.append(reason.value)
                return current
            return with_refunded(current, event.amount_refunded, now, raise_only=True)

        return await self._store(event.event_id, event.event_type, ref, refused,
                                 lambda: self._write_session(ref, decide), route=route)

    async def _write_session(self, ref: ObjectRef, decide: Decide) -> Written:
        """The session's status write, on the cached copy when there is one; the phase
        events it stores are published before the answer (or given to the outbox)."""
        written = await self.writer.apply_delivered(ref, decide, base=self._cached(ref))
        self._remember(written.obj)
        return written

    async def _store(self, event_id: str, event_type: str, ref: ObjectRef,
                     refused: list[str], write: Callable[[], Awaitable[Any]], *,
                     route: ProviderId, unconfirmed: bool = False) -> web.Response:
        """Write what an event means, and answer: 200 for applied, duplicate or ignored;
        422 when the API server refuses the change for good (resending the same event
        cannot succeed, so no 5xx that would have the PSP retry for days); 503 to have the
        PSP retry."""
        fields = {"event_id": event_id, "event_type": event_type,
                  "object": f"{ref.namespace}/{ref.name}"}
        started = time.monotonic()
        try:
            written = await write()
        except NotFound:
            return self._ok("ignored_unknown_object", **fields)
        except PaykubeError as exc:
            if not exc.retryable:
                self.metrics.requests.labels("rejected").inc()
                log.error("event refused by the API server: %s", exc.message,
                          extra={**fields, "code": exc.code.value})
                return web.json_response({"error": {"code": exc.code.value}}, status=422)
            self.metrics.requests.labels("unavailable").inc()
            log.error("event not stored, the provider will retry",
                      extra={**fields, "code": exc.code.value})
            return web.json_response({"error": {"code": exc.code.value}}, status=503)
        if refused:
            return self._ok(refused[-1], **fields, route=route.route_key)
        self.metrics.apply_seconds.observe(time.monotonic() - started)
        before, after = written.before, written.after
        outcome = "applied" if after != before else "duplicate"
        if unconfirmed and after.unconfirmed is not None and \
                after.unconfirmed != before.unconfirmed:
            outcome = "awaiting_confirmation"
        return self._ok(outcome, **fields, phase=after.phase.value)

    def _cached(self, ref: ObjectRef) -> Manifest | None:
        return self.cache.get(ref) if self.cache is not None else None

    def _remember(self, obj: Manifest) -> None:
        if self.cache is not None:
            self.cache.remember(obj)

    async def session_watch(self, _: web.Application) -> AsyncIterator[None]:
        """Keep the session cache (the base of each write) while the app runs."""
        if self.cache is None:
            yield
            return
        task = asyncio.create_task(self.cache.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _refund_transition(self, ref: ObjectRef, before: RefundStatus,
                                 after: RefundStatus, obj: Manifest) -> None:
        """After the answer: the session's record of the refund follows it (the amount
        refunded came with `charge.refunded`; a failure is the operator's to confirm, and
        its retrieve resets the amount), and the Event."""
        entry = after.history[-1]
        session = str(obj.get("spec", {}).get("sessionRef", {}).get("name", ""))
        if session and after.session_uid:
            session_ref = ObjectRef(ref.namespace, session, after.session_uid)
            try:
                await self.writer.apply(session_ref, lambda _o, current: update_record(
                    current, ref.uid, after.phase, after.refund_id))
            except NotFound:
                pass  # the session is gone; the refund's own status is the record
            except PaykubeError as exc:  # the operator's poll brings it in step later
                log.warning("session record not updated: %s", exc.message)
        try:
            await self.kube.create_event(
                ref, type_="Normal", reason=after.phase.value,
                message=(f"{before.phase.value} -> {after.phase.value} (webhook, event "
                         f"{entry.event_id})"),
                component=COMPONENT, now=dt.datetime.now(dt.UTC), aggregate=False,
                kind="PaymentRefund")
        except PaykubeError as exc:
            log.warning("event not recorded: %s", exc.message)

    async def _transition(self, ref: ObjectRef, before: Status, after: Status,
                          _obj: Manifest) -> None:
        """After the answer: the Event naming the provider event that moved the object."""
        entry = after.history[-1]
        await self._event(ref, f"{before.phase.value} -> {after.phase.value} "
                               f"(webhook, event {entry.event_id})", after.phase.value)

    async def _event(self, ref: ObjectRef, message: str, reason: str) -> None:
        if not self.event_budget.take():
            self._inc(self.metrics.kube_events, "skipped")
            if not self._over_budget:  # once per burst; the counter keeps the number
                self._over_budget = True
                log.warning("Kubernetes Events over PAYKUBE_WEBHOOK_EVENT_RATE: skipping "
                            "them (status.history keeps every transition)")
            return
        self._over_budget = False
        self._inc(self.metrics.kube_events, "written")
        try:
            # One Event per delivery applied (each names its Stripe event): nothing to
            # aggregate, so the webhook needs only `create` on Events.
            await self.kube.create_event(ref, type_="Normal", reason=reason, message=message,
                                         component=COMPONENT, now=dt.datetime.now(dt.UTC),
                                         aggregate=False)
        except PaykubeError as exc:
            log.warning("event not recorded: %s", exc.message)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        """Ready when events can be verified and stored: API server and secrets.

        The broker is reported but does not count: with it down, status changes still land
        and wait in the outbox, so taking every replica out of the Service would turn a
        harmless outage into refused webhooks.
        """
        ready, body = await self.readiness.run()
        return web.json_response(body, status=200 if ready else 503)

    def broker_state(self) -> str:
        return broker_state(self.publisher)

    async def keep_broker_connected(self) -> None:
        """Reconnect while idle, so that `broker_state` says whether the broker is reachable
        now, not only whether the last publish got through."""
        connect = getattr(self.publisher, "connect", None)
        if connect is None or not needs_relay(self.publisher):
            return
        while True:
            if self.broker_state() != "connected":
                with contextlib.suppress(PaykubeError):  # the publisher logs and backs off
                    await asyncio.to_thread(connect)
            await asyncio.sleep(self.broker_check_interval)

    async def broker_watch(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.keep_broker_connected())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        try:
            username, password = self.metrics_username().get(), self.metrics_password()
        except PaykubeError as exc:  # nothing passes without readable credentials
            log.error("metrics credentials unavailable", extra={"code": exc.code.value,
                                                                 "reason": exc.message})
            username, password = "", SecretStr("")
        if not credentials_match(request.headers.get("Authorization"), username, password):
            log.warning("metrics request refused", extra={"outcome": "unauthorized"})
            return web.Response(status=401, text="unauthorized",
                                headers={"WWW-Authenticate": 'Basic realm="paykube"'})
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _buffered_body(request: web.Request, limit: int) -> bytes | None:
    """`_read_body` for a body that has arrived whole."""
    body = request.content.read_nowait(-1)
    return body if len(body) <= limit else None


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than `limit`.

    `content.read(n)` returns what has arrived so far, not n bytes: a body split across
    TCP segments must be read until EOF, or it would be verified truncated.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


@functools.cache
def _error_body(code: ErrorCode) -> bytes:
    """A refusal's body: the same few bytes per code, built once."""
    return json.dumps({"error": {"code": code.value}}).encode()


_DEFAULT_ROUTE = ProviderId.default()


def _route_of(match: Mapping[str, str]) -> ProviderId | None:
    """The account a request's path names, or None when the path could not name one."""
    namespace, name = match.get("namespace"), match.get("name")
    if name is None:
        return _DEFAULT_ROUTE
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        return None
    if namespace is None:
        return ProviderId(CLUSTER_PAYMENT_PROVIDER, "", name)
    if not DNS1123_LABEL.fullmatch(namespace):
        return None
    return ProviderId(PAYMENT_PROVIDER, namespace, name)



Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def no_stack_traces(handler: Handler) -> Handler:
    """Whatever goes wrong, the caller sees a generic body, never a traceback. A wrapper
    per route rather than a middleware: aiohttp's middleware chain cost a visible share of
    a refusal's CPU."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            return web.json_response({"error": {"code": "Internal"}}, status=500)

    return guarded


def create_app(service: WebhookService, schemes: Sequence[WebhookScheme]) -> web.Application:
    """The routes of every scheme (PSP type), probes and metrics."""
    app = web.Application(client_max_size=service.settings.webhook_max_body + 1024)
    for scheme in schemes:
        handler = no_stack_traces(functools.partial(service.receive, scheme))
        base = f"/webhooks/{scheme.type}"
        app.router.add_post(base, handler)
        app.router.add_post(f"{base}/cluster/{{name}}", handler)
        app.router.add_post(f"{base}/ns/{{namespace}}/{{name}}", handler)
    app.router.add_get("/healthz", no_stack_traces(service.healthz))
    app.router.add_get("/readyz", no_stack_traces(service.readyz))
    app.router.add_get("/metrics", no_stack_traces(service.metrics_endpoint))
    app.cleanup_ctx.append(service.broker_watch)
    app.cleanup_ctx.append(service.refusal_flush)
    app.cleanup_ctx.append(service.session_watch)
    return app
