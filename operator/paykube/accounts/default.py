"""The operator's default account: the key from the environment, a mounted file, AWS
Secrets Manager, or a Secret named in the settings (`PAYKUBE_STRIPE_CREDENTIALS_SECRET`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from paykube.errors import ApiRejected, CredentialsError, ErrorCode, PaykubeError
from paykube.kube.client import KubeClient, NotFound
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings

API_KEY_FIELD = "apiKey"


async def read_secret(kube: KubeClient, namespace: str, name: str) -> dict[str, str]:
    """A Secret's data, or a CredentialsError that names it (never a value): missing is
    CredentialsMissing, forbidden by RBAC CredentialsInvalid (the reference is unusable)."""
    try:
        return await kube.get_secret(namespace, name)
    except NotFound:
        raise CredentialsError(f"Secret {namespace}/{name} not found",
                               code=ErrorCode.CREDENTIALS_MISSING) from None
    except ApiRejected as exc:
        if exc.http_status != 403:
            raise
        raise CredentialsError(f"Secret {namespace}/{name} cannot be read (forbidden)",
                               code=ErrorCode.CREDENTIALS_INVALID) from None


class DefaultCredentials:
    """Resolves the default key, caching a Secret for `ttl` seconds (rotation, no restart)."""

    def __init__(self, settings: Settings, kube: KubeClient, stripe: StripeSecrets, *,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._stripe = stripe
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, SecretStr] | None = None

    @property
    def ttl(self) -> float:
        return self._ttl

    async def api_key(self) -> SecretStr:
        try:
            default = await self._stripe.api_key()
            if not default and self._settings.stripe_credentials_secret:
                default = await self._from_secret(self._settings.stripe_credentials_secret)
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
                               "no spec.providerRef", code=ErrorCode.CREDENTIALS_MISSING)

    async def _from_secret(self, where: str) -> SecretStr:
        if self._cached and self._clock() - self._cached[0] < self._ttl:
            return self._cached[1]
        namespace, _, name = where.partition("/")
        data = await read_secret(self._kube, namespace, name)
        value = data.get(API_KEY_FIELD, "").strip()
        if not value:
            raise CredentialsError(f"Secret {namespace}/{name} has no {API_KEY_FIELD!r} key",
                                   code=ErrorCode.CREDENTIALS_MISSING)
        key = SecretStr(value)
        self._cached = (self._clock(), key)
        return key
