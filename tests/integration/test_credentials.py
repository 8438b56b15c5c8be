"""Provider accounts' keys from their Secrets on the real API server: cached for the TTL,
then read again, so a rotated Secret needs no restart; a namespace a ClusterPaymentProvider
does not admit is refused before any provider call."""

from __future__ import annotations

import pytest

from paykube.accounts.default import DefaultCredentials
from paykube.accounts.resolver import AccountResolver
from paykube.api.types import ProviderRef
from paykube.errors import CredentialsError, ErrorCode
from paykube.kube.client import KubeClient
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings
from paykube_dev.kube import ControlPlane
from tests.plugins.kube_fixtures import make_namespace
from tests.plugins.paykube_fixtures import create_provider


def resolver(kube_client: KubeClient, now: list[float], cluster_namespace: str = "x",
             ) -> AccountResolver:
    settings = Settings(secrets_ttl=30)
    default = DefaultCredentials(settings, kube_client, StripeSecrets(settings, None))
    return AccountResolver(kube_client, default, None, cluster_namespace=cluster_namespace,
                           ttl=settings.secrets_ttl, clock=lambda: now[0])


async def test_a_provider_key_secret_is_cached_for_the_ttl(
        kube: ControlPlane, crd_installed: object, kube_client: KubeClient,
        unmanaged_namespace: str) -> None:
    now = [100.0]
    accounts = resolver(kube_client, now)
    create_provider(kube, unmanaged_namespace, "shop-stripe", "sk_test_first")
    ref = ProviderRef("PaymentProvider", "shop-stripe")
    account = await accounts.for_session(unmanaged_namespace, ref)
    assert account.credentials.api_key == SecretStr("sk_test_first")

    kube.kubectl("delete", "secret", "shop-stripe", "-n", unmanaged_namespace)
    kube.kubectl("create", "secret", "generic", "shop-stripe", "-n", unmanaged_namespace,
                 "--from-literal=apiKey=sk_test_rotated")
    now[0] += 29  # within the TTL: no API read
    account = await accounts.for_session(unmanaged_namespace, ref)
    assert account.credentials.api_key == SecretStr("sk_test_first")
    now[0] += 1  # the TTL has passed: read again
    account = await accounts.for_session(unmanaged_namespace, ref)
    assert account.credentials.api_key == SecretStr("sk_test_rotated")


async def test_a_cluster_provider_serves_only_the_namespaces_it_admits(
        kube: ControlPlane, crd_installed: object, kube_client: KubeClient) -> None:
    platform = make_namespace(kube, "platform")
    admitted = make_namespace(kube, "admitted")
    other = make_namespace(kube, "other")
    kube.kubectl("label", "namespace", admitted, "payments.example/shared=yes")
    create_provider(kube, None, f"shared-{platform}", "sk_test_shared",
                    secrets_namespace=platform,
                    namespaceSelector={"matchLabels": {"payments.example/shared": "yes"}})
    accounts = resolver(kube_client, [0.0], cluster_namespace=platform)
    ref = ProviderRef("ClusterPaymentProvider", f"shared-{platform}")
    account = await accounts.for_session(admitted, ref)
    assert account.credentials.api_key == SecretStr("sk_test_shared")
    with pytest.raises(CredentialsError) as refused:
        await accounts.for_session(other, ref)
    assert refused.value.code is ErrorCode.PROVIDER_NOT_ALLOWED
    assert not refused.value.retryable
    assert "namespaceSelector" in refused.value.message
    with pytest.raises(CredentialsError) as missing:
        await accounts.for_session(admitted, ProviderRef("PaymentProvider", "nowhere"))
    assert missing.value.code is ErrorCode.PROVIDER_NOT_FOUND and missing.value.retryable
