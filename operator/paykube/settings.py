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


def _secrets(raw: str) -> tuple[SecretStr, ...]:
    return tuple(SecretStr(s.strip()) for s in raw.split(",") if s.strip())


@dataclass(frozen=True)
class Settings:
    """Every knob of both programs; see the README's configuration reference."""

    namespaces: tuple[str, ...] = ()
    stripe_api_base: str = "https://api.stripe.com"
    stripe_api_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    stripe_credentials_secret: str = ""  # "namespace/name" of a Secret with key `apiKey`
    stripe_rate_limit: float = 20.0
    stripe_timeout: float = 20.0
    poll_min_interval: float = 10.0
    poll_max_interval: float = 300.0
    metrics_port: int = 9090
    health_port: int = 8081
    webhook_port: int = 8443
    webhook_host: str = "0.0.0.0"  # noqa: S104 -- a pod serves on its own IP
    webhook_secrets: tuple[SecretStr, ...] = ()
    webhook_tolerance: int = 300
    webhook_max_body: int = 1024 * 1024
    broker_urls: tuple[str, ...] = ()  # host:port of STOMP listeners (failover order)
    broker_destination: str = "/topic/VirtualTopic.paykube.payments"
    broker_username: str = ""
    broker_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    broker_tls: bool = False
    outbox_interval: float = 10.0
    metrics_username: str = ""
    metrics_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    log_level: str = "INFO"

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
            stripe_credentials_secret=get("STRIPE_CREDENTIALS_SECRET", ""),
            stripe_rate_limit=float(get("STRIPE_RATE_LIMIT", str(base.stripe_rate_limit))),
            stripe_timeout=float(get("STRIPE_TIMEOUT", str(base.stripe_timeout))),
            poll_min_interval=float(get("POLL_MIN_INTERVAL", str(base.poll_min_interval))),
            poll_max_interval=float(get("POLL_MAX_INTERVAL", str(base.poll_max_interval))),
            metrics_port=int(get("METRICS_PORT", str(base.metrics_port))),
            health_port=int(get("HEALTH_PORT", str(base.health_port))),
            webhook_port=int(get("WEBHOOK_PORT", str(base.webhook_port))),
            webhook_host=get("WEBHOOK_HOST", base.webhook_host),
            webhook_secrets=_secrets(get("WEBHOOK_SECRETS", "")),
            webhook_tolerance=int(get("WEBHOOK_TOLERANCE", str(base.webhook_tolerance))),
            webhook_max_body=int(get("WEBHOOK_MAX_BODY", str(base.webhook_max_body))),
            broker_urls=tuple(u.strip() for u in get("BROKER_URLS", "").split(",") if u.strip()),
            broker_destination=get("BROKER_DESTINATION", base.broker_destination),
            broker_username=get("BROKER_USERNAME", ""),
            broker_password=SecretStr(get("BROKER_PASSWORD", "")),
            broker_tls=get("BROKER_TLS", "false").lower() in ("1", "true", "yes"),
            outbox_interval=float(get("OUTBOX_INTERVAL", str(base.outbox_interval))),
            metrics_username=get("METRICS_USERNAME", ""),
            metrics_password=SecretStr(get("METRICS_PASSWORD", "")),
            log_level=get("LOG_LEVEL", base.log_level).upper(),
        )
