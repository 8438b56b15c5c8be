"""kopf handler registrations: thin adapters from kopf's callbacks to the Reconciler."""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from paykube.api.providers import CLUSTER_PROVIDER_PLURAL, PROVIDER_PLURAL
from paykube.api.refunds import REFUND_PLURAL, RefundStatus, refund_ref
from paykube.api.types import GROUP, PLURAL, VERSION, Status
from paykube.errors import PaykubeError
from paykube.kube.client import NotFound
from paykube.kube.config import KubeConfig
from paykube.kube.status import ref_of
from paykube.lifecycle import parse_timestamp, unpublished
from paykube.operator.diffbase import CREATE_HANDLER, SessionDiffBaseStorage
from paykube.operator.login import KopfLogin
from paykube.operator.reconciler import RetryLater
from paykube.operator.refunds import RefundReconciler
from paykube.operator.runtime import Runtime
from paykube.settings import Settings

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
PROVIDER_RESOURCES = ((GROUP, VERSION, PROVIDER_PLURAL), (GROUP, VERSION, CLUSTER_PROVIDER_PLURAL))
REFUND_RESOURCE = (GROUP, VERSION, REFUND_PLURAL)


def plain(body: Any) -> dict[str, Any]:
    """kopf's body (read-only mapping views) as plain JSON data: the base of a write."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


async def _guard(runtime: Runtime, handler: str, call: Any) -> Any:
    """Map our errors to kopf's retry semantics, counting outcomes."""
    outcome = "ok"
    try:
        return await call
    except RetryLater as exc:
        outcome = "retry"
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except NotFound:
        outcome = "gone"
        return None  # deleted meanwhile: nothing left to do
    except PaykubeError as exc:
        outcome = exc.code.value
        if exc.retryable:
            raise kopf.TemporaryError(exc.message, delay=10) from exc
        raise kopf.PermanentError(exc.message) from exc
    finally:
        runtime.metrics.reconciles.labels(handler, outcome).inc()


def build_registry(kube_config: KubeConfig, settings: Settings,
                   diffbase: SessionDiffBaseStorage) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    credentials = KopfLogin(kube_config)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return credentials()

    async def reconcile(body: Any, memo: Any, **_: Any) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        runtime = _runtime(memo)
        await _guard(runtime, "reconcile",
                     runtime.reconciler.reconcile(ref_of(body), plain(body)))

    @kopf.on.create(*RESOURCE, registry=registry, id=CREATE_HANDLER)
    async def create(body: Any, memo: Any, **_: Any) -> None:
        await reconcile(body, memo)
        # The status now says it was handled: kopf need not write that down too.
        diffbase.handled(body["metadata"]["uid"])

    kopf.on.resume(*RESOURCE, registry=registry, id="reconcile-resume")(reconcile)
    kopf.on.update(*RESOURCE, registry=registry, id="reconcile-cancel",
                   field="spec.cancel")(reconcile)

    @kopf.on.delete(*RESOURCE, registry=registry, id="finalize")
    async def finalize(body: Any, memo: Any, retry: int = 0, **_: Any) -> None:
        runtime = _runtime(memo)
        await _guard(runtime, "finalize", runtime.reconciler.finalize(ref_of(body), retry))

    @kopf.on.event(*RESOURCE, registry=registry, id="poll-schedule")
    async def schedule_polls(event: Any, body: Any, memo: Any, **_: Any) -> None:
        """Every watch event says which background work the object needs now: a backstop
        poll while it is open (for lost webhooks), a confirming retrieve of an ending a
        webhook reported, the outbox relay, a missing explanation. One scheduler each
        serves all objects (a heap entry per object, not a task or a kopf timer, which
        would keep every object's body in memory)."""
        runtime = _runtime(memo)
        ref = ref_of(body)
        gone = event.get("type") == "DELETED" or bool(body["metadata"].get("deletionTimestamp"))
        status = Status.from_dict(body.get("status"))
        chores = runtime.chores
        if chores is not None:
            # Deletion stops them, as it stopped kopf's timers: the finalizer waits for
            # the events itself.
            chores.confirm.want(ref, not gone and status.unconfirmed is not None)
            chores.outbox.want(ref, not gone and bool(unpublished(status)))
            if chores.explain is not None:
                error = status.error
                chores.explain.want(ref, not gone and error is not None
                                    and error.awaits_explanation)
        if runtime.polls is None:
            return
        if gone or not status.session_id:
            runtime.polls.forget(ref.uid)
            return
        created = parse_timestamp(body["metadata"]["creationTimestamp"])
        runtime.polls.track(ref, created, status)

    for resource in PROVIDER_RESOURCES:
        register_provider_handlers(registry, resource, settings)
    register_refund_handlers(registry, settings)

    return registry


def register_provider_handlers(registry: kopf.OperatorRegistry, resource: tuple[str, str, str],
                               settings: Settings) -> None:
    """PaymentProvider / ClusterPaymentProvider: check the key and publish the routes on
    every change and every `provider_resync` seconds (secrets rotate without an event)."""
    plural = resource[2]

    async def check(body: Any, memo: Any, **_: Any) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        runtime = _runtime(memo)
        await _guard(runtime, f"{plural}-check", runtime.provider_accounts.reconcile(body))

    kopf.on.resume(*resource, registry=registry, id=f"{plural}-resume")(check)
    kopf.on.create(*resource, registry=registry, id=f"{plural}-create")(check)
    kopf.on.update(*resource, registry=registry, id=f"{plural}-update", field="spec")(check)
    kopf.timer(*resource, registry=registry, id=f"{plural}-resync",
               interval=settings.provider_resync, initial_delay=settings.provider_resync,
               idle=None)(check)

    @kopf.on.delete(*resource, registry=registry, id=f"{plural}-finalize")
    async def finalize(body: Any, memo: Any, **_: Any) -> None:
        runtime = _runtime(memo)
        await _guard(runtime, f"{plural}-finalize", runtime.provider_accounts.finalize(body))


def _refunds(runtime: Runtime) -> RefundReconciler:
    assert runtime.refunds is not None
    return runtime.refunds


def _refund_followed(body: Any, **_: Any) -> bool:
    """At the PSP and not settled, or a webhook's ending awaiting the operator's retrieve."""
    status = RefundStatus.from_dict(body.get("status"))
    return status.refund_id is not None and (
        not status.phase.settled or status.unconfirmed is not None)


def _refund_unconfirmed(body: Any, **_: Any) -> bool:
    return RefundStatus.from_dict(body.get("status")).unconfirmed is not None


def _refund_unpublished(body: Any, **_: Any) -> bool:
    status = RefundStatus.from_dict(body.get("status"))
    return any(not h.published for h in status.history)


def register_refund_handlers(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """PaymentRefund: reserve and create once, follow to a final phase (docs/refunds.md)."""

    async def reconcile(body: Any, memo: Any, **_: Any) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        runtime = _runtime(memo)
        await _guard(runtime, "refund-reconcile", _refunds(runtime).reconcile(plain(body)))

    kopf.on.resume(*REFUND_RESOURCE, registry=registry, id="refund-resume")(reconcile)
    kopf.on.create(*REFUND_RESOURCE, registry=registry, id="refund-create")(reconcile)

    @kopf.on.delete(*REFUND_RESOURCE, registry=registry, id="refund-finalize")
    async def finalize(body: Any, memo: Any, **_: Any) -> None:
        runtime = _runtime(memo)
        await _guard(runtime, "refund-finalize", _refunds(runtime).finalize(plain(body)))

    @kopf.timer(*REFUND_RESOURCE, registry=registry, id="refund-poll",
                interval=settings.poll_min_interval, initial_delay=settings.poll_min_interval,
                when=_refund_followed)
    async def poll(body: Any, memo: Any, **_: Any) -> None:
        """The backstop for lost refund webhooks, until the PSP settled the refund."""
        runtime = _runtime(memo)
        await _guard(runtime, "refund-poll", _refunds(runtime).poll(refund_ref(body), plain(body)))

    @kopf.timer(*REFUND_RESOURCE, registry=registry, id="refund-confirm", interval=1.0,
                when=_refund_unconfirmed)
    async def confirm(body: Any, memo: Any, **_: Any) -> None:
        """A webhook reported Failed or Canceled: one retrieve decides."""
        runtime = _runtime(memo)
        await _guard(runtime, "refund-confirm",
                     _refunds(runtime).poll(refund_ref(body), plain(body)))

    @kopf.timer(*REFUND_RESOURCE, registry=registry, id="refund-outbox",
                interval=settings.outbox_interval, initial_delay=settings.outbox_interval,
                when=_refund_unpublished)
    async def outbox(body: Any, memo: Any, **_: Any) -> None:
        # Read afresh, not kopf's body: the webhook may have published and marked since
        # the watch delivered it, and refunds are few enough for the extra GET.
        runtime = _runtime(memo)
        await _guard(runtime, "refund-outbox", _refunds(runtime).relay(refund_ref(body)))
