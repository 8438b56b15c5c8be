"""Where the default Stripe API key and the webhook signing secrets come from: the
environment, a file from a mounted Kubernetes Secret (re-read, so rotation needs no restart)
or AWS Secrets Manager (cached, TTL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from paykube.secrets.files import SecretFile, SecretSetting
from paykube.settings import SecretStr, Settings

if TYPE_CHECKING:
    from paykube.secrets.aws import SecretsManagerSource


def build_aws_source(settings: Settings) -> SecretsManagerSource | None:
    if not settings.aws:
        return None
    from paykube.secrets.aws import SecretsManagerSource, make_client  # boto3 only if used

    client = make_client(settings.aws_region or None, settings.aws_endpoint_url or None)
    return SecretsManagerSource(client, ttl=settings.secrets_ttl)


class StripeSecrets:
    def __init__(self, settings: Settings, aws: SecretsManagerSource | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._aws = aws if settings.aws_stripe_secret_id else None
        # The webhook's signing secrets have their own secret id: the webhook's IAM role
        # may read that one and never the document that holds the API key.
        self._aws_webhook = aws if settings.aws_webhook_secret_id else None

        self._api_key = SecretSetting(settings.stripe_api_key, settings.stripe_api_key_file,
                                      settings.secrets_ttl, clock)
        self._webhook_file = (SecretFile(Path(settings.webhook_secrets_file),
                                         settings.secrets_ttl, clock)
                              if settings.webhook_secrets_file else None)

    async def api_key(self) -> SecretStr | None:
        if self._aws is not None:
            creds = await self._aws.astripe_credentials(self._settings.aws_stripe_secret_id)
            return creds.api_key
        return self._api_key() or None

    async def webhook_secrets(self) -> tuple[SecretStr, ...]:
        if self._aws_webhook is not None:
            creds = await self._aws_webhook.astripe_credentials(
                self._settings.aws_webhook_secret_id, require_api_key=False,
                require_webhook_secrets=True)
            return creds.webhook_secrets
        if self._webhook_file is not None:
            return self._webhook_file.values()
        return self._settings.webhook_secrets
