"""The operator's HTTP endpoints beside kopf's liveness probe: `/metrics` (Prometheus) and
`/readyz`, which says whether the operator can do its work: the API server answers and the
operator-wide credentials (the default Stripe key, the database secret) can be read.

The broker is reported, never required: while it is down the outbox holds the events.
A flip of readiness is logged once, with the reason (never a secret value).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from paykube.secrets.health import Readiness, check

log = logging.getLogger("paykube.operator")

Probe = Callable[[], Awaitable[object]]


@dataclass
class ReadinessChecks:
    """Named checks; `required` ones decide readiness, the others are only reported."""

    required: dict[str, Probe] = field(default_factory=dict)
    reported: dict[str, Callable[[], str]] = field(default_factory=dict)
    _last: bool | None = None

    async def run(self) -> tuple[bool, dict[str, object]]:
        results = {name: await check(probe) for name, probe in self.required.items()}
        ready = all(results.values())
        body: dict[str, object] = {"ready": ready,
                                   **{n: r.to_dict() for n, r in results.items()},
                                   **{n: state() for n, state in self.reported.items()}}
        if ready != self._last:
            self._log_flip(ready, results)
        return ready, body

    def _log_flip(self, ready: bool, results: dict[str, Readiness]) -> None:
        self._last = ready
        if ready:
            log.info("operator ready")
            return
        for name, result in results.items():
            if not result:
                log.error("operator not ready: %s", name,
                          extra={"code": result.reason, "reason": result.message})


def create_app(registry: CollectorRegistry, checks: ReadinessChecks) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(_: web.Request) -> web.Response:
        ready, body = await checks.run()
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
