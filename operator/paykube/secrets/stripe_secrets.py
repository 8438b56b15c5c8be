"""Where the default Stripe API key and the webhook signing secrets come from: the
environment, a file from a mounted Kubernetes Secret (re-read, so rotation needs no restart)
or AWS Secrets Manager (cached, TTL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from paykube.errors import ErrorCode, PaykubeError
from paykube.settings import SecretStr, Settings, parse_secrets

if TYPE_CHECKING:
    from paykube.secrets.aws import SecretsManagerSource


def build_aws_source(settings: Settings) -> SecretsManagerSource | None:
    if not settings.aws:
        return None
    from paykube.secrets.aws import SecretsManagerSource, make_client  # boto3 only if used

    client = make_client(settings.aws_region or None, settings.aws_endpoint_url or None)
    return SecretsManagerSource(client, ttl=settings.secrets_ttl)


class SecretFile:
    """Secrets in a file of a mounted Secret volume, comma- or newline-separated.

    The kubelet rewrites the file when the Secret changes (never for a subPath mount), so it
    is read again once `ttl` seconds have passed: a rotated secret is picked up without a
    restart. Errors name the file, never its content.
    """

    def __init__(self, path: Path, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._path, self._ttl, self._clock = path, ttl, clock
        self._values: tuple[SecretStr, ...] = ()
        self._read_at: float | None = None

    def values(self) -> tuple[SecretStr, ...]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            try:
                values = parse_secrets(self._path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise PaykubeError(f"cannot read the secret file {self._path}: "
                                   f"{type(exc).__name__}",
                                   code=ErrorCode.SECRETS_UNAVAILABLE) from None
            if not values:
                raise PaykubeError(f"the secret file {self._path} is empty",
                                   code=ErrorCode.SECRETS_UNAVAILABLE)
            self._values, self._read_at = values, now
        return self._values


class StripeSecrets:
    def __init__(self, settings: Settings, aws: SecretsManagerSource | None) -> None:
        self._settings = settings
        self._aws = aws if settings.aws_stripe_secret_id else None
        self._webhook_file = (SecretFile(Path(settings.webhook_secrets_file),
                                         settings.secrets_ttl)
                              if settings.webhook_secrets_file else None)

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
        if self._webhook_file is not None:
            return self._webhook_file.values()
        return self._settings.webhook_secrets
