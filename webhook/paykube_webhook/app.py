"""The aiohttp application: POST /webhooks/stripe, probes and metrics."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paykube.api.types import ObjectRef, Source
from paykube.errors import ErrorCode, PaykubeError
from paykube.events.publisher import EventPublisher
from paykube.events.relay import needs_relay, relay_outbox, settle_outbox
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.kube.status import cancel_requested, write_status
from paykube.lifecycle import ProviderObserved, advance
from paykube.providers.stripe import HANDLED_EVENTS, event_phase, snapshot
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings
from paykube_webhook.metrics import WebhookMetrics
from paykube_webhook.verify import SignatureError, verify

log = logging.getLogger("paykube.webhook")
COMPONENT = "paykube-webhook"


@dataclass
class WebhookService:
    settings: Settings
    kube: KubeClient
    metrics: WebhookMetrics
    publisher: EventPublisher
    secrets: StripeSecrets
    wall_clock: Callable[[], float] = time.time

    def _refuse(self, status: int, code: ErrorCode, outcome: str, **fields: Any) -> web.Response:
        self.metrics.requests.labels(outcome).inc()
        log.warning("webhook refused", extra={"outcome": outcome, "code": code.value, **fields})
        return web.json_response({"error": {"code": code.value}}, status=status)

    def _ok(self, outcome: str, **fields: Any) -> web.Response:
        self.metrics.requests.labels(outcome).inc()
        log.info("webhook handled", extra={"outcome": outcome, **fields})
        return web.json_response({"received": True, "outcome": outcome})

    async def stripe_webhook(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return self._refuse(415, ErrorCode.PAYLOAD_INVALID, "unsupported_media_type")
        limit = self.settings.webhook_max_body
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, ErrorCode.PAYLOAD_INVALID, "too_large")
        payload = await request.content.read(limit + 1)
        if len(payload) > limit:
            return self._refuse(413, ErrorCode.PAYLOAD_INVALID, "too_large")
        try:
            secrets = await self.secrets.webhook_secrets()
        except PaykubeError as exc:  # our problem, not the sender's: let Stripe retry
            self.metrics.requests.labels("secrets_unavailable").inc()
            log.error("webhook secrets unavailable", extra={"code": exc.code.value})
            return web.json_response({"error": {"code": exc.code.value}}, status=503)
        try:
            verify(payload, request.headers.get("Stripe-Signature"), secrets,
                   tolerance=self.settings.webhook_tolerance, now=self.wall_clock())
        except SignatureError as exc:
            self.metrics.verification_failures.labels(exc.failure.value).inc()
            return self._refuse(400, ErrorCode.SIGNATURE_INVALID, "signature_invalid",
                                reason=exc.failure.value)
        try:
            event = json.loads(payload)
            event_id, event_type = str(event["id"]), str(event["type"])
            session = event["data"]["object"]
            if not isinstance(session, dict):
                raise TypeError("data.object is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            return self._refuse(400, ErrorCode.PAYLOAD_INVALID, "payload_invalid",
                                reason=type(exc).__name__)
        if event_type not in HANDLED_EVENTS:
            return self._ok("ignored_type", event_id=event_id, event_type=event_type)
        ref = _object_of(session)
        phase = event_phase(event_type, session)
        if ref is None or phase is None or "id" not in session:
            return self._ok("ignored_unmanaged", event_id=event_id, event_type=event_type)
        started = time.monotonic()
        try:
            written, before, after = await write_status(
                self.kube, ref, lambda obj, current: settle_outbox(advance(
                    current,
                    ProviderObserved(phase, snapshot(session), Source.WEBHOOK, event_id,
                                     cancel_requested=cancel_requested(obj)),
                    dt.datetime.now(dt.UTC),
                ), self.publisher),
            )
        except NotFound:
            return self._ok("ignored_unknown_object", event_id=event_id,
                            object=f"{ref.namespace}/{ref.name}")
        except PaykubeError as exc:
            self.metrics.requests.labels("unavailable").inc()
            log.error("event not stored, Stripe will retry",
                      extra={"event_id": event_id, "code": exc.code.value,
                             "object": f"{ref.namespace}/{ref.name}"})
            return web.json_response({"error": {"code": exc.code.value}}, status=503)
        self.metrics.apply_seconds.observe(time.monotonic() - started)
        if after.phase is not before.phase:
            message = (f"{before.phase.value} -> {after.phase.value} "
                       f"(webhook {event_type}, event {event_id})")
            await asyncio.gather(self._event(ref, message, after.phase.value),
                                 self._relay(ref, written))
        return self._ok("applied" if after != before else "duplicate", event_id=event_id,
                        event_type=event_type, object=f"{ref.namespace}/{ref.name}",
                        phase=after.phase.value)

    async def _relay(self, ref: ObjectRef, written: Manifest) -> None:
        """Publish the phase event now; on failure the operator's outbox timer retries."""
        if not needs_relay(self.publisher):
            return
        try:
            phases = await relay_outbox(self.kube, ref, self.publisher, written)
        except PaykubeError as exc:
            self.metrics.publishes.labels("deferred").inc()
            log.warning("outbox not relayed", extra={"code": exc.code.value,
                                                     "object": f"{ref.namespace}/{ref.name}"})
            return
        self.metrics.publishes.labels("published" if phases else "deferred").inc()

    async def _event(self, ref: ObjectRef, message: str, reason: str) -> None:
        try:
            await self.kube.create_event(ref, type_="Normal", reason=reason, message=message,
                                         component=COMPONENT, now=dt.datetime.now(dt.UTC))
        except PaykubeError as exc:
            log.warning("event not recorded: %s", exc.message)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        if not await self.kube.ready():
            return web.Response(text="api server unreachable", status=503)
        try:
            await self.secrets.webhook_secrets()
        except PaykubeError as exc:
            return web.Response(text=f"webhook secrets unavailable: {exc.code.value}",
                                status=503)
        return web.Response(text="ok")

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        if not basic_auth_ok(request.headers.get("Authorization"),
                             self.settings.metrics_username, self.settings.metrics_password):
            log.warning("metrics request refused", extra={"outcome": "unauthorized"})
            return web.Response(status=401, text="unauthorized",
                                headers={"WWW-Authenticate": 'Basic realm="paykube"'})
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def basic_auth_ok(header: str | None, username: str, password: SecretStr) -> bool:
    """Constant-time Basic auth check; with no configured credentials nothing passes."""
    if not username or not password or not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True)
    except ValueError:
        return False
    expected = f"{username}:{password.get()}".encode()
    return hmac.compare_digest(given, expected)


def _object_of(session: dict[str, Any]) -> ObjectRef | None:
    metadata = session.get("metadata") or {}
    try:
        return ObjectRef(str(metadata["paykube_namespace"]), str(metadata["paykube_name"]),
                         str(metadata["paykube_uid"]))
    except (KeyError, TypeError):
        return None


@web.middleware
async def no_stack_traces(request: web.Request, handler: Any) -> web.StreamResponse:
    """Whatever goes wrong, the caller sees a generic body, never a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return web.json_response({"error": {"code": "Internal"}}, status=500)
    return response


def create_app(service: WebhookService) -> web.Application:
    app = web.Application(middlewares=[no_stack_traces],
                          client_max_size=service.settings.webhook_max_body + 1024)
    app.router.add_post("/webhooks/stripe", service.stripe_webhook)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/readyz", service.readyz)
    app.router.add_get("/metrics", service.metrics_endpoint)
    return app
