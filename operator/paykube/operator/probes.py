"""The operator's HTTP endpoints beside kopf's liveness probe: `/metrics` (Prometheus) and
`/readyz`, which says whether the operator can do its work: the API server answers and the
operator-wide credentials (the default Stripe key, the database secret) can be read.

The broker is reported, never required: while it is down the outbox holds the events.
A flip of readiness is logged once, with the reason (never a secret value).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from paykube.secrets.health import ReadinessChecks


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
