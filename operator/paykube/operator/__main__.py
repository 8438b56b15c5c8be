"""`paykube-operator`: run the kopf operator with paykube's settings."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import kopf
import uvloop

from paykube import logs
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig, load_at_start
from paykube.operator import probes
from paykube.operator.diffbase import ProgressStorage, SessionDiffBaseStorage
from paykube.operator.handlers import build_registry
from paykube.operator.runtime import Runtime
from paykube.settings import Settings, load_settings


def configure_kopf(settings: kopf.OperatorSettings, namespaces: tuple[str, ...],
                   diffbase: SessionDiffBaseStorage, reconcile_concurrency: int = 32) -> None:
    # Progress in annotations: our status schema is strict and not kopf's to write. The
    # handled spec of a PaymentSession is read from its status (operator/diffbase.py).
    settings.persistence.progress_storage = ProgressStorage()
    settings.persistence.diffbase_storage = diffbase
    settings.persistence.finalizer = "payments.paykube.dev/finalizer"
    settings.posting.enabled = False  # paykube posts its own Events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = [1, 2, 5, 10, 30]
    # Objects kopf works on at once (per kind); the others' watch events wait in their
    # queues, first come first served. Unbounded, a burst of 10,000 new objects had 10,000
    # handlers in flight, each holding its body, copies and diff (622 MiB; bounded: 245
    # MiB, and faster). A finished object's worker lingers for events that follow its own
    # writes, but not for kopf's default 5 s, which would hold the slots.
    settings.queueing.worker_limit = 8 * reconcile_concurrency
    settings.queueing.idle_timeout = 2.0
    # Runtime scanning finds new CRDs and namespaces matching globs. Only globs need it; else
    # skipping it spares the operator any cluster-level read rights.
    settings.scanning.disabled = not any(c in n for n in namespaces for c in "*?[!")


async def run(settings: Settings, kube_config: KubeConfig) -> None:
    kube = KubeClient(kube_config)
    runtime = Runtime.build(settings, kube)
    runtime.start()
    endpoints = await probes.serve(
        probes.create_app(runtime.metrics.registry, runtime.readiness_checks()),
        settings.operator_host, settings.metrics_port)
    diffbase = SessionDiffBaseStorage()
    registry = build_registry(kube_config, settings, diffbase)

    @kopf.on.startup(registry=registry)
    def startup(**kwargs: Any) -> None:
        configure_kopf(kwargs["settings"], settings.namespaces, diffbase,
                       settings.reconcile_concurrency)

    try:
        await kopf.operator(
            registry=registry, clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces), standalone=True,
            memo=kopf.Memo(runtime=runtime),
            liveness_endpoint=f"http://{settings.operator_host}:{settings.health_port}/healthz",
        )
    finally:
        await endpoints.cleanup()
        await runtime.aclose()


def main() -> int:
    settings = load_settings("paykube-operator")
    logs.configure(settings.log_level)
    # libuv's loop, as kopf's own CLI picks it when uvloop is installed.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(settings, load_at_start("paykube-operator")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
