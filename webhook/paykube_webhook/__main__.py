"""`paykube-webhook`: serve Stripe webhooks."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from paykube import logs
from paykube.accounts.routes import RouteTable
from paykube.events.relay import build_publisher
from paykube.kube.cache import SessionCache
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig, load_at_start
from paykube.secrets.stripe_secrets import StripeSecrets, build_aws_source
from paykube.settings import Settings, load_settings
from paykube_webhook.app import WebhookService, create_app
from paykube_webhook.metrics import WebhookMetrics
from paykube_webhook.schemes.registry import webhook_schemes


async def build_app(settings: Settings, kube_config: KubeConfig) -> web.Application:
    kube = KubeClient(kube_config)
    publisher = build_publisher(settings)
    secrets = StripeSecrets(settings, build_aws_source(settings))
    routes = RouteTable(kube, settings.cluster_namespace, settings.route_table_secret,
                        ttl=settings.routes_ttl)
    cache = SessionCache(kube) if settings.webhook_session_cache else None
    app = create_app(WebhookService(settings, kube, WebhookMetrics(), publisher, secrets,
                                    routes, cache), webhook_schemes(settings))

    async def close(_: web.Application) -> None:
        await publisher.aclose()
        await kube.aclose()

    app.on_cleanup.append(close)
    return app


def main() -> int:
    settings = load_settings("paykube-webhook")
    logs.configure(settings.log_level)
    app = build_app(settings, load_at_start("paykube-webhook"))
    # libuv's loop: the asyncio machinery around each request was a fifth of the
    # webhook's CPU on the standard loop (docs/benchmarks.md).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host=settings.webhook_host, port=settings.webhook_port,
                shutdown_timeout=20, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
