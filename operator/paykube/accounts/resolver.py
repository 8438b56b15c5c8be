"""Which account a PaymentSession lives in, and that account's credentials.

A PaymentSession names its account with `spec.providerRef` (a PaymentProvider of its own
namespace or a ClusterPaymentProvider that admits the namespace), else it lives in the
operator's default account. Only provider objects name Secrets, and only Secrets of their
own namespace (a ClusterPaymentProvider: of the operator's namespace), so a user who may
create PaymentSessions but not providers cannot make the operator read any Secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from paykube.accounts.default import DefaultCredentials, read_secret
from paykube.api.providers import ProviderId, ProviderSpec, SecretSource, selector_admits
from paykube.api.types import ProviderRef
from paykube.errors import CredentialsError, ErrorCode
from paykube.kube.client import KubeClient, Manifest, NotFound
from paykube.providers.base import AccountCredentials
from paykube.secrets.aws import SecretsManagerSource
from paykube.settings import SecretStr, parse_secrets

# A provider object is re-read after this long: a changed spec (a new key Secret, a new
# API version) takes effect within it, and a burst of sessions costs one read.
PROVIDER_TTL = 5.0


@dataclass(frozen=True)
class Account:
    """A resolved account: who it is, which PSP, and how to call it."""

    id: ProviderId
    type: str
    credentials: AccountCredentials
    spec: ProviderSpec | None = None  # None for the operator's default account


class AccountResolver:
    def __init__(self, kube: KubeClient, default: DefaultCredentials,
                 aws: SecretsManagerSource | None, *, cluster_namespace: str,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._default = default
        self._aws = aws
        self.cluster_namespace = cluster_namespace
        self._ttl = ttl
        self._clock = clock
        self._objects: dict[ProviderId, tuple[float, Manifest]] = {}
        self._secrets: dict[tuple[str, SecretSource], tuple[float, tuple[SecretStr, ...]]] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    async def for_session(self, namespace: str, ref: ProviderRef | None) -> Account:
        """The account of a PaymentSession in `namespace`; CredentialsError when the
        reference cannot be used (ProviderNotAllowed is permanent, ProviderNotFound
        retryable)."""
        provider = ProviderId.bound_to(namespace, ref)
        if provider.is_default:
            return Account(provider, "stripe",
                           AccountCredentials(await self._default.api_key()))
        obj = await self.provider_object(provider)
        spec = ProviderSpec.from_dict(obj.get("spec") or {})
        if ref is not None and ref.cluster:
            labels = await self._kube.namespace_labels(namespace)
            if not selector_admits(spec.namespace_selector, labels):
                raise CredentialsError(
                    f"namespace {namespace} may not use {provider}: its namespaceSelector "
                    "does not admit this namespace (ask the platform team, or use a "
                    "PaymentProvider of this namespace)", code=ErrorCode.PROVIDER_NOT_ALLOWED)
        return await self.for_provider(provider, spec)

    async def for_provider(self, provider: ProviderId, spec: ProviderSpec) -> Account:
        values = await self.secret_values(provider, spec.api_key)
        credentials = AccountCredentials(values[0], spec.api_version, spec.connect_account,
                                         spec.account_id)
        return Account(provider, spec.type, credentials, spec)

    async def provider_object(self, provider: ProviderId) -> Manifest:
        cached = self._objects.get(provider)
        now = self._clock()
        if cached and now - cached[0] < min(self._ttl, PROVIDER_TTL):
            return cached[1]
        try:
            obj = await self._kube.get_object(provider.api_path)
        except NotFound:
            self._objects.pop(provider, None)
            raise CredentialsError(f"{provider} does not exist (yet)",
                                   code=ErrorCode.PROVIDER_NOT_FOUND) from None
        self._objects[provider] = (now, obj)
        return obj

    def secrets_namespace(self, provider: ProviderId) -> str:
        return provider.namespace or self.cluster_namespace

    async def secret_values(self, provider: ProviderId,
                            source: SecretSource) -> tuple[SecretStr, ...]:
        """The value(s) `source` holds for `provider`, cached for the TTL so that rotation
        needs no restart. Errors name where, never what."""
        namespace = self.secrets_namespace(provider)
        cached = self._secrets.get((namespace, source))
        now = self._clock()
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        values = await self._read(namespace, source)
        if not values:
            raise CredentialsError(f"{source.describe()} of {provider} is empty",
                                   code=ErrorCode.CREDENTIALS_MISSING)
        self._secrets[(namespace, source)] = (now, values)
        return values

    async def _read(self, namespace: str, source: SecretSource) -> tuple[SecretStr, ...]:
        if source.aws_secret_id:
            if self._aws is None:
                raise CredentialsError(
                    f"{source.describe()}: the operator has no AWS Secrets Manager access "
                    "configured (PAYKUBE_AWS_REGION)", code=ErrorCode.CREDENTIALS_MISSING)
            return await self._aws.asecret_values(source.aws_secret_id, source.aws_field)
        assert source.secret_name is not None
        data = await read_secret(self._kube, namespace, source.secret_name)
        if source.key not in data:
            raise CredentialsError(
                f"Secret {namespace}/{source.secret_name} has no {source.key!r} key",
                code=ErrorCode.CREDENTIALS_MISSING)
        return parse_secrets(data[source.key])

    def forget(self, provider: ProviderId) -> None:
        """Drop what is cached for `provider` (its spec changed)."""
        self._objects.pop(provider, None)
