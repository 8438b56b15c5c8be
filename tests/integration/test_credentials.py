"""Per-object Stripe keys from `spec.credentialsRef` Secrets on the real API server: cached
for the TTL, then read again, so a rotated Secret needs no restart."""

from __future__ import annotations

from paykube.kube.client import KubeClient
from paykube.operator.credentials import CredentialResolver
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings
from paykube_dev.kube import ControlPlane
from tests.plugins.kube_fixtures import create_secret


async def test_a_credentials_ref_secret_is_cached_for_the_ttl(
        kube: ControlPlane, kube_client: KubeClient, unmanaged_namespace: str) -> None:
    settings = Settings(secrets_ttl=30)
    now = [100.0]
    resolver = CredentialResolver(settings, kube_client, StripeSecrets(settings, None),
                                  ttl=settings.secrets_ttl, clock=lambda: now[0])
    create_secret(kube, unmanaged_namespace, "shop-stripe", {"apiKey": "sk_test_first"})
    assert await resolver.api_key(unmanaged_namespace, "shop-stripe") == SecretStr(
        "sk_test_first")

    kube.kubectl("delete", "secret", "shop-stripe", "-n", unmanaged_namespace)
    create_secret(kube, unmanaged_namespace, "shop-stripe", {"apiKey": "sk_test_rotated"})
    now[0] += 29  # within the TTL: no API read
    assert await resolver.api_key(unmanaged_namespace, "shop-stripe") == SecretStr(
        "sk_test_first")
    now[0] += 1  # the TTL has passed: read again
    assert await resolver.api_key(unmanaged_namespace, "shop-stripe") == SecretStr(
        "sk_test_rotated")
