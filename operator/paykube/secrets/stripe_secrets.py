"""Where the default Stripe API key and the webhook signing secrets come from: the
environment (a Kubernetes Secret mounted as env) or AWS Secrets Manager (cached, TTL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    def __init__(self, settings: Settings, aws: SecretsManagerSource | None) -> None:
        self._settings = settings
        self._aws = aws if settings.aws_stripe_secret_id else None

    async def api_key(self) -> SecretStr | None:
        if self._aws is not None:
            creds = await self._aws.astripe_credentials(self._settings.aws_stripe_secret_id)
            return creds.api_key
        return self._settings.stripe_api_key or None

    async def webhook_secrets(self) -> tuple[SecretStr, ...]:
        if self._aws is not None:
            creds = await self._aws.astripe_credentials(
                self._settings.aws_stripe_secret_id, require_api_key=False,
                require_webhook_secrets=True)
            return creds.webhook_secrets
        return self._settings.webhook_secrets
