"""One settings object per process, read from the environment once.

Secret values are wrapped in `SecretStr`, whose repr never shows them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class SecretStr:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def parse_secrets(raw: str) -> tuple[SecretStr, ...]:
    """Several secrets in one value: separated by commas or newlines."""
    return tuple(SecretStr(s.strip()) for s in raw.replace("\n", ",").split(",") if s.strip())


@dataclass(frozen=True)
class Settings:
    """Every knob of both programs; see the README's configuration reference."""

    namespaces: tuple[str, ...] = ()
    stripe_api_base: str = "https://api.stripe.com"
    stripe_api_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    stripe_api_key_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    stripe_credentials_secret: str = ""  # "namespace/name" of a Secret with key `apiKey`
    stripe_rate_limit: float = 20.0
    stripe_timeout: float = 20.0
    poll_min_interval: float = 10.0
    poll_max_interval: float = 300.0
    operator_host: str = "0.0.0.0"  # noqa: S104 -- metrics and liveness on the pod's IP
    metrics_port: int = 9090
    health_port: int = 8081
    webhook_port: int = 8443
    webhook_host: str = "0.0.0.0"  # noqa: S104 -- a pod serves on its own IP
    webhook_secrets: tuple[SecretStr, ...] = ()
    webhook_secrets_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    webhook_tolerance: int = 300
    webhook_max_body: int = 1024 * 1024
    broker_urls: tuple[str, ...] = ()  # host:port of STOMP listeners (failover order)
    broker_destination: str = "/topic/VirtualTopic.paykube.payments"
    broker_username: str = ""
    broker_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    broker_tls: bool = False
    outbox_interval: float = 10.0
    database_url: SecretStr = field(default_factory=lambda: SecretStr(""))  # may hold a password
    database_url_file: str = ""  # a mounted Secret's file holding the URL; re-read (rotation)
    database_host: str = ""
    database_port: int = 3306
    database_name: str = "paykube"
    secrets_source: str = "kubernetes"  # or "aws" (Secrets Manager)
    secrets_ttl: float = 300.0
    aws_region: str = ""
    aws_endpoint_url: str = ""
    aws_stripe_secret_id: str = ""  # JSON {"apiKey": ..., "webhookSecrets": [...]}
    aws_database_secret_id: str = ""  # RDS-managed format
    explain_base_url: str = ""
    explain_model: str = ""
    explain_api_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    explain_api_key_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    explain_timeout: float = 3.0
    explain_retry: float = 60.0  # seconds before asking the model again after a failure
    metrics_username: str = ""
    metrics_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    metrics_username_file: str = ""  # mounted Secret files; re-read every secrets_ttl
    metrics_password_file: str = ""
    log_level: str = "INFO"
    # Provider accounts (PaymentProvider / ClusterPaymentProvider).
    cluster_namespace: str = "paykube"  # where ClusterPaymentProviders' Secrets live
    route_table_secret: str = "paykube-webhook-routes"  # noqa: S105 -- a Secret name
    routes_ttl: float = 30.0  # seconds the webhook keeps the route table
    provider_resync: float = 60.0  # seconds between checks of each provider's key/secrets
    webhook_public_url: str = ""  # base URL of the webhook, for webhook.register
    webhook_read_timeout: float = 10.0  # seconds to receive a whole webhook body
    webhook_max_readers: int = 64  # bodies read at once (bounds memory under slow clients)
    aws_webhook_secret_id: str = ""  # JSON {"webhookSecrets": [...]}: the webhook's own
    events_include_url: bool = False  # put the checkout URL into CloudEvents

    def __post_init__(self) -> None:
        if self.secrets_source not in ("kubernetes", "aws"):
            raise ValueError("PAYKUBE_SECRETS_SOURCE must be 'kubernetes' or 'aws'")
        if self.secrets_source == "aws" and not (self.aws_stripe_secret_id
                                                 or self.aws_webhook_secret_id
                                                 or self.aws_database_secret_id):
            raise ValueError("PAYKUBE_SECRETS_SOURCE=aws needs PAYKUBE_AWS_STRIPE_SECRET_ID, "
                             "PAYKUBE_AWS_WEBHOOK_SECRET_ID and/or "
                             "PAYKUBE_AWS_DATABASE_SECRET_ID")

    @property
    def aws(self) -> bool:
        return self.secrets_source == "aws"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            return env.get(f"PAYKUBE_{name}", default)

        base = cls()
        return cls(
            namespaces=tuple(n for n in get("NAMESPACES", "").split(",") if n.strip()),
            stripe_api_base=get("STRIPE_API_BASE", base.stripe_api_base).rstrip("/"),
            stripe_api_key=SecretStr(get("STRIPE_API_KEY", "")),
            stripe_api_key_file=get("STRIPE_API_KEY_FILE", ""),
            stripe_credentials_secret=get("STRIPE_CREDENTIALS_SECRET", ""),
            stripe_rate_limit=float(get("STRIPE_RATE_LIMIT", str(base.stripe_rate_limit))),
            stripe_timeout=float(get("STRIPE_TIMEOUT", str(base.stripe_timeout))),
            poll_min_interval=float(get("POLL_MIN_INTERVAL", str(base.poll_min_interval))),
            poll_max_interval=float(get("POLL_MAX_INTERVAL", str(base.poll_max_interval))),
            operator_host=get("OPERATOR_HOST", base.operator_host),
            metrics_port=int(get("METRICS_PORT", str(base.metrics_port))),
            health_port=int(get("HEALTH_PORT", str(base.health_port))),
            webhook_port=int(get("WEBHOOK_PORT", str(base.webhook_port))),
            webhook_host=get("WEBHOOK_HOST", base.webhook_host),
            webhook_secrets=parse_secrets(get("WEBHOOK_SECRETS", "")),
            webhook_secrets_file=get("WEBHOOK_SECRETS_FILE", ""),
            webhook_tolerance=int(get("WEBHOOK_TOLERANCE", str(base.webhook_tolerance))),
            webhook_max_body=int(get("WEBHOOK_MAX_BODY", str(base.webhook_max_body))),
            broker_urls=tuple(u.strip() for u in get("BROKER_URLS", "").split(",") if u.strip()),
            broker_destination=get("BROKER_DESTINATION", base.broker_destination),
            broker_username=get("BROKER_USERNAME", ""),
            broker_password=SecretStr(get("BROKER_PASSWORD", "")),
            broker_tls=get("BROKER_TLS", "false").lower() in ("1", "true", "yes"),
            outbox_interval=float(get("OUTBOX_INTERVAL", str(base.outbox_interval))),
            database_url=SecretStr(get("DATABASE_URL", "")),
            database_url_file=get("DATABASE_URL_FILE", ""),
            database_host=get("DATABASE_HOST", ""),
            database_port=int(get("DATABASE_PORT", str(base.database_port))),
            database_name=get("DATABASE_NAME", base.database_name),
            secrets_source=get("SECRETS_SOURCE", base.secrets_source).lower(),
            secrets_ttl=float(get("SECRETS_TTL", str(base.secrets_ttl))),
            aws_region=get("AWS_REGION", ""),
            aws_endpoint_url=get("AWS_ENDPOINT_URL", ""),
            aws_stripe_secret_id=get("AWS_STRIPE_SECRET_ID", ""),
            aws_database_secret_id=get("AWS_DATABASE_SECRET_ID", ""),
            explain_base_url=get("EXPLAIN_BASE_URL", ""),
            explain_model=get("EXPLAIN_MODEL", ""),
            explain_api_key=SecretStr(get("EXPLAIN_API_KEY", "")),
            explain_api_key_file=get("EXPLAIN_API_KEY_FILE", ""),
            explain_timeout=float(get("EXPLAIN_TIMEOUT", str(base.explain_timeout))),
            explain_retry=float(get("EXPLAIN_RETRY", str(base.explain_retry))),
            metrics_username=get("METRICS_USERNAME", ""),
            metrics_password=SecretStr(get("METRICS_PASSWORD", "")),
            metrics_username_file=get("METRICS_USERNAME_FILE", ""),
            metrics_password_file=get("METRICS_PASSWORD_FILE", ""),
            log_level=get("LOG_LEVEL", base.log_level).upper(),
            cluster_namespace=get("CLUSTER_NAMESPACE", base.cluster_namespace),
            route_table_secret=get("ROUTE_TABLE_SECRET", base.route_table_secret),
            routes_ttl=float(get("ROUTES_TTL", str(base.routes_ttl))),
            provider_resync=float(get("PROVIDER_RESYNC", str(base.provider_resync))),
            webhook_public_url=get("WEBHOOK_PUBLIC_URL", "").rstrip("/"),
            webhook_read_timeout=float(get("WEBHOOK_READ_TIMEOUT",
                                           str(base.webhook_read_timeout))),
            webhook_max_readers=int(get("WEBHOOK_MAX_READERS", str(base.webhook_max_readers))),
            aws_webhook_secret_id=get("AWS_WEBHOOK_SECRET_ID", ""),
            events_include_url=get("EVENTS_INCLUDE_URL", "false").lower() in ("1", "true", "yes"),
        )
