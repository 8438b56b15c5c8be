"""Typed values for provider accounts: `PaymentProvider` and `ClusterPaymentProvider`.

An account is named by a `ProviderId`; every PaymentSession is bound to exactly one (its
`spec.providerRef`, else the operator's default account), and the webhook serves one route
per account. The CRDs in `crds/` are the schema's source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from paykube.api.types import (
    CLUSTER_PAYMENT_PROVIDER,
    GROUP,
    PAYMENT_PROVIDER,
    VERSION,
    ProviderRef,
)

PROVIDER_PLURAL = "paymentproviders"
CLUSTER_PROVIDER_PLURAL = "clusterpaymentproviders"
DEFAULT_KIND = "Default"  # the operator's configured account (no object)
API_KEY_FIELD = "apiKey"
SIGNING_SECRETS_FIELD = "webhookSecrets"
# The Stripe API version paykube is tested with; a provider may pin another.
DEFAULT_STRIPE_API_VERSION = "2024-06-20"
PROVIDER_TYPES = ("stripe", "razorpay")


@dataclass(frozen=True)
class ProviderId:
    """Which account: a PaymentProvider (namespace, name), a ClusterPaymentProvider
    (name) or the operator's default account."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def default(cls) -> ProviderId:
        return cls(DEFAULT_KIND, "", "default")

    @classmethod
    def bound_to(cls, namespace: str, ref: ProviderRef | None) -> ProviderId:
        """The account a PaymentSession in `namespace` with `ref` lives in."""
        if ref is None:
            return cls.default()
        if ref.kind == CLUSTER_PAYMENT_PROVIDER:
            return cls(CLUSTER_PAYMENT_PROVIDER, "", ref.name)
        return cls(PAYMENT_PROVIDER, namespace, ref.name)

    @property
    def is_default(self) -> bool:
        return self.kind == DEFAULT_KIND

    @property
    def route_key(self) -> str:
        """The key of this account's signing secrets in the webhook's route table (a valid
        Secret data key: namespaces have no dots, so the split is unambiguous)."""
        if self.is_default:
            return "default"
        if self.kind == CLUSTER_PAYMENT_PROVIDER:
            return f"cluster.{self.name}"
        return f"ns.{self.namespace}.{self.name}"

    @classmethod
    def from_route_key(cls, key: str) -> ProviderId | None:
        if key == "default":
            return cls.default()
        kind, _, rest = key.partition(".")
        if kind == "cluster" and rest:
            return cls(CLUSTER_PAYMENT_PROVIDER, "", rest)
        namespace, _, name = rest.partition(".")
        if kind == "ns" and namespace and name:
            return cls(PAYMENT_PROVIDER, namespace, name)
        return None

    def webhook_path(self, provider_type: str = "stripe") -> str:
        base = f"/webhooks/{provider_type}"
        if self.is_default:
            return base
        if self.kind == CLUSTER_PAYMENT_PROVIDER:
            return f"{base}/cluster/{quote(self.name, safe='')}"
        return f"{base}/ns/{quote(self.namespace, safe='')}/{quote(self.name, safe='')}"

    @property
    def api_path(self) -> str:
        base = f"/apis/{GROUP}/{VERSION}"
        if self.kind == CLUSTER_PAYMENT_PROVIDER:
            return f"{base}/{CLUSTER_PROVIDER_PLURAL}/{quote(self.name, safe='')}"
        return (f"{base}/namespaces/{quote(self.namespace, safe='')}/{PROVIDER_PLURAL}/"
                f"{quote(self.name, safe='')}")

    def __str__(self) -> str:
        if self.is_default:
            return "the default provider"
        if self.kind == CLUSTER_PAYMENT_PROVIDER:
            return f"ClusterPaymentProvider {self.name}"
        return f"PaymentProvider {self.namespace}/{self.name}"


@dataclass(frozen=True)
class SecretSource:
    """Where one secret value lives: a key of a Kubernetes Secret, or a field of an AWS
    Secrets Manager JSON document."""

    secret_name: str | None = None
    key: str = API_KEY_FIELD
    aws_secret_id: str | None = None
    aws_field: str = API_KEY_FIELD

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_key: str) -> SecretSource:
        ref = data.get("secretRef") or {}
        aws = data.get("aws") or {}
        return cls(secret_name=ref.get("name"), key=str(ref.get("key") or default_key),
                   aws_secret_id=aws.get("secretId"),
                   aws_field=str(aws.get("field") or default_key))

    def describe(self) -> str:
        """Where, for messages: names only, never a value."""
        if self.aws_secret_id:
            return f"AWS secret {self.aws_secret_id} field {self.aws_field!r}"
        return f"Secret {self.secret_name} key {self.key!r}"


@dataclass(frozen=True)
class ProviderSpec:
    type: str
    api_key: SecretSource
    signing_secrets: SecretSource | None = None
    connect_account: str | None = None
    api_version: str = DEFAULT_STRIPE_API_VERSION
    register_webhook: bool = False
    namespace_selector: Mapping[str, Any] | None = None
    # The account the key belongs to, where the PSP's API cannot tell it (Razorpay: acc_...)
    account_id: str | None = None

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ProviderSpec:
        signing = spec.get("signingSecrets")
        return cls(
            type=str(spec.get("type", "stripe")),
            api_key=SecretSource.from_dict(spec.get("apiKey") or {}, API_KEY_FIELD),
            signing_secrets=(SecretSource.from_dict(signing, SIGNING_SECRETS_FIELD)
                             if signing else None),
            connect_account=spec.get("connectAccount"),
            api_version=str(spec.get("apiVersion") or DEFAULT_STRIPE_API_VERSION),
            register_webhook=bool((spec.get("webhook") or {}).get("register", False)),
            namespace_selector=spec.get("namespaceSelector"),
            account_id=spec.get("accountId"),
        )


def selector_admits(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a ClusterPaymentProvider's namespaceSelector admits a namespace with
    `labels`. An absent or empty selector admits nothing: offering an account to every
    namespace must be said explicitly (`matchExpressions: [{key: kubernetes.io/metadata.name,
    operator: Exists}]`)."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expression in expressions:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or ())
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
