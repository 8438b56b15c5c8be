"""Which provider API key an object uses: its `credentialsRef` Secret, else the default."""

from __future__ import annotations

import time
from collections.abc import Callable

from paykube.errors import ApiRejected, CredentialsError, ErrorCode, PaykubeError
from paykube.kube.client import KubeClient, NotFound
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings

API_KEY_FIELD = "apiKey"


class CredentialResolver:
    """Resolves API keys, caching Secrets for `ttl` seconds so rotation needs no restart."""

    def __init__(self, settings: Settings, kube: KubeClient, stripe: StripeSecrets, *,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._stripe = stripe
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, SecretStr]] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    async def api_key(self, namespace: str, secret_name: str | None) -> SecretStr:
        if secret_name:
            return await self._from_secret(namespace, secret_name)
        try:
            default = await self._stripe.api_key()
            if not default and self._settings.stripe_credentials_secret:
                ns, _, name = self._settings.stripe_credentials_secret.partition("/")
                default = await self._from_secret(ns, name)
        except PaykubeError as exc:
            if exc.retryable:
                raise
            # The operator-wide secret is broken (missing, denied, malformed): not the
            # object's fault, and fixed once someone repairs it, so retry rather than fail.
            raise CredentialsError(f"the operator's default Stripe credentials: {exc.message}",
                                   code=ErrorCode.SECRETS_UNAVAILABLE) from exc
        if default:
            return default
        raise CredentialsError("no default Stripe API key is configured and the object has "
                               "no spec.credentialsRef", code=ErrorCode.CREDENTIALS_MISSING)

    async def _from_secret(self, namespace: str, name: str) -> SecretStr:
        cached = self._cache.get((namespace, name))
        if cached and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            data = await self._kube.get_secret(namespace, name)
        except NotFound:
            raise CredentialsError(f"Secret {namespace}/{name} not found",
                                   code=ErrorCode.CREDENTIALS_MISSING) from None
        except ApiRejected as exc:
            if exc.http_status != 403:
                raise
            # RBAC keeps the operator from this Secret: the reference is not usable as is.
            raise CredentialsError(f"Secret {namespace}/{name} cannot be read (forbidden)",
                                   code=ErrorCode.CREDENTIALS_INVALID) from None
        value = data.get(API_KEY_FIELD, "").strip()
        if not value:
            raise CredentialsError(f"Secret {namespace}/{name} has no {API_KEY_FIELD!r} key",
                                   code=ErrorCode.CREDENTIALS_MISSING)
        key = SecretStr(value)
        self._cache[(namespace, name)] = (self._clock(), key)
        return key
