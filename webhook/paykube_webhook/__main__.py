"""`paykube-webhook`: serve Stripe webhooks."""

from __future__ import annotations

import sys

from aiohttp import web

from paykube import logs
from paykube.events.relay import build_publisher
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube.secrets.stripe_secrets import StripeSecrets, build_aws_source
from paykube.settings import Settings
from paykube_webhook.app import WebhookService, create_app
from paykube_webhook.metrics import WebhookMetrics


async def build_app(settings: Settings) -> web.Application:
    kube = KubeClient(KubeConfig.load())
    publisher = build_publisher(settings)
    secrets = StripeSecrets(settings, build_aws_source(settings))
    app = create_app(WebhookService(settings, kube, WebhookMetrics(), publisher, secrets))

    async def close(_: web.Application) -> None:
        await publisher.aclose()
        await kube.aclose()

    app.on_cleanup.append(close)
    return app


def main() -> int:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    web.run_app(build_app(settings), host=settings.webhook_host, port=settings.webhook_port,
                shutdown_timeout=20, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
