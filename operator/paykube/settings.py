"""One settings object per process, read from the environment once.

Settings are typed and grouped (`StripeSettings`, `WebhookSettings`, `BrokerSettings`,
`DatabaseSettings`, `SecretsSettings`, `ExplainSettings`, `MetricsSettings`, and the
operator's, provider accounts' and logging's). `Settings` is all groups at once, so code
reads `settings.stripe_rate_limit`; a function that needs one group can take that group's
type (`settings.stripe` is the same object, typed as the group).

Every field `name` is read from `PAYKUBE_<NAME>` (pydantic-settings' environment source,
case-sensitive; an empty variable counts as unset). A bad value stops the program at
start: `SettingsError` names each variable and what is wrong, never a secret's value. The
README's configuration reference lists exactly these variables (a test checks both ways).

Secret values are wrapped in `SecretStr`, whose repr never shows them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasGenerator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "PAYKUBE_"


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

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(cls._validate)

    @classmethod
    def _validate(cls, value: object) -> SecretStr:
        if isinstance(value, SecretStr):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ValueError("must be a string")


def parse_secrets(raw: str) -> tuple[SecretStr, ...]:
    """Several secrets in one value: separated by commas or newlines."""
    return tuple(SecretStr(s.strip()) for s in raw.replace("\n", ",").split(",") if s.strip())


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


class SettingsError(ValueError):
    """Bad settings: one line per variable, saying what is wrong (never a secret value)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# Lists in one variable: comma-separated (not JSON, as pydantic-settings would decode them).
CommaList = Annotated[tuple[str, ...], NoDecode]
Secrets = Annotated[tuple[SecretStr, ...], NoDecode]
Port = Annotated[int, Field(ge=0, le=65535)]
Positive = Annotated[float, Field(gt=0)]


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class _Group(BaseSettings):
    """A group of settings; each field `name` comes from `PAYKUBE_<NAME>`."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, validate_by_name=True,
        validate_by_alias=True, validate_default=False,
        alias_generator=AliasGenerator(validation_alias=env_name))

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructed directly (tests, defaults), settings read no environment: from_env
        # reads it, once, explicitly.
        return (init_settings,)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_problems(type(self), exc)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `env` (default: the process environment)."""
        source = _Environment(cls, os.environ if env is None else env)
        return cls(**source())

    @classmethod
    def env_names(cls) -> list[str]:
        return [env_name(name) for name in cls.model_fields]


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # An empty variable counts as unset (a chart renders absent values as "").
        return parse_env_vars(self._environ, True, True, None)


def _problems(group: type[_Group], exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields: its message names them
            problems.append(message)
            continue
        name = str(error["loc"][0]).removeprefix(PREFIX).lower()
        field = group.model_fields.get(name)
        secret = field is not None and "SecretStr" in repr(field.annotation)
        given = "" if secret or not isinstance(error.get("input"), str) else (
            f" (got {error['input']!r})")
        problems.append(f"{env_name(name)}: {message}{given}")
    return problems


class StripeSettings(_Group):
    stripe_api_base: str = "https://api.stripe.com"
    stripe_api_key: SecretStr = SecretStr("")
    stripe_api_key_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    stripe_credentials_secret: str = ""  # "namespace/name" of a Secret with key `apiKey`
    stripe_rate_limit: Positive = 20.0  # requests per second (any positive number)
    stripe_timeout: Positive = 20.0

    @field_validator("stripe_api_base")
    @classmethod
    def _stripe_base(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    @field_validator("stripe_credentials_secret")
    @classmethod
    def _stripe_credentials_secret(cls, value: str) -> str:
        if value and (value.count("/") != 1 or not all(value.split("/"))):
            raise ValueError(f"must be namespace/name, not {value!r}")
        return value


class WebhookSettings(_Group):
    webhook_port: Port = 8443
    webhook_host: str = "0.0.0.0"  # noqa: S104 -- a pod serves on its own IP
    webhook_secrets: Secrets = ()
    webhook_secrets_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    webhook_tolerance: Annotated[int, Field(gt=0)] = 300
    webhook_max_body: Annotated[int, Field(gt=0)] = 1024 * 1024
    webhook_public_url: str = ""  # base URL of the webhook, for webhook.register
    webhook_read_timeout: Positive = 10.0  # seconds to receive a whole webhook body
    webhook_max_readers: Annotated[int, Field(gt=0)] = 16  # bodies read at once
    # Kubernetes Events per second (bursts of five seconds' worth); the rest are skipped.
    webhook_event_rate: Annotated[float, Field(ge=0)] = 10.0
    # Watch PaymentSessions and write on the watched object: no GET before a write.
    webhook_session_cache: bool = False

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _webhook_secrets(cls, value: object) -> object:
        return parse_secrets(value) if isinstance(value, str) else value

    @field_validator("webhook_public_url")
    @classmethod
    def _webhook_public_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value.rstrip("/")


class BrokerSettings(_Group):
    broker_urls: CommaList = ()  # host:port of STOMP listeners (failover order)
    broker_destination: str = "/topic/VirtualTopic.paykube.payments"
    broker_username: str = ""
    broker_password: SecretStr = SecretStr("")
    broker_tls: bool = False
    outbox_interval: Positive = 10.0
    events_include_url: bool = False  # put the checkout URL into CloudEvents

    @field_validator("broker_urls", mode="before")
    @classmethod
    def _broker_urls(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("broker_destination")
    @classmethod
    def _broker_destination(cls, value: str) -> str:
        if not value.startswith(("/topic/", "/queue/")):
            raise ValueError(f"must start with /topic/ or /queue/, not {value!r}")
        return value


class DatabaseSettings(_Group):
    database_url: SecretStr = SecretStr("")  # may hold a password
    database_url_file: str = ""  # a mounted Secret's file holding the URL; re-read (rotation)
    database_host: str = ""
    database_port: Annotated[int, Field(gt=0, le=65535)] = 3306
    database_name: str = "paykube"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        if value and "://" not in value.get():
            raise ValueError("must be a SQLAlchemy URL such as mysql+pymysql://user:password@"
                             "host:3306/paykube (the value is not shown)")
        return value


class SecretsSettings(_Group):
    secrets_source: Literal["kubernetes", "aws"] = "kubernetes"  # or Secrets Manager
    secrets_ttl: Annotated[float, Field(ge=0)] = 300.0
    aws_region: str = ""
    aws_endpoint_url: str = ""
    aws_stripe_secret_id: str = ""  # JSON {"apiKey": ...}: the operator's default account
    aws_webhook_secret_id: str = ""  # JSON {"webhookSecrets": [...]}: the webhook's own
    aws_database_secret_id: str = ""  # RDS-managed format

    @field_validator("secrets_source", mode="before")
    @classmethod
    def _secrets_source(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _aws_ids(self) -> Self:
        if self.secrets_source == "aws" and not (self.aws_stripe_secret_id
                                                 or self.aws_webhook_secret_id
                                                 or self.aws_database_secret_id):
            raise ValueError("PAYKUBE_SECRETS_SOURCE=aws needs PAYKUBE_AWS_STRIPE_SECRET_ID, "
                             "PAYKUBE_AWS_WEBHOOK_SECRET_ID and/or "
                             "PAYKUBE_AWS_DATABASE_SECRET_ID")
        return self

    @property
    def aws(self) -> bool:
        return self.secrets_source == "aws"


class ExplainSettings(_Group):
    explain_base_url: str = ""
    explain_model: str = ""
    explain_api_key: SecretStr = SecretStr("")
    explain_api_key_file: str = ""  # a mounted Secret's file; re-read every secrets_ttl
    explain_timeout: Positive = 3.0
    explain_retry: Annotated[float, Field(ge=0)] = 60.0  # seconds before asking again

    @field_validator("explain_base_url")
    @classmethod
    def _explain_base(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value


class MetricsSettings(_Group):
    metrics_port: Port = 9090
    metrics_username: str = ""
    metrics_password: SecretStr = SecretStr("")
    metrics_username_file: str = ""  # mounted Secret files; re-read every secrets_ttl
    metrics_password_file: str = ""


class OperatorSettings(_Group):
    """The operator program's own: what it watches, how it polls, where it listens."""

    namespaces: CommaList = ()
    poll_min_interval: Positive = 10.0
    poll_max_interval: Positive = 300.0
    # Objects reconciled at once (kopf's handlers beyond it wait, first come first served).
    reconcile_concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    operator_host: str = "0.0.0.0"  # noqa: S104 -- metrics and liveness on the pod's IP
    health_port: Port = 8081

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespaces(cls, value: object) -> object:
        return _comma_list(value)

    @model_validator(mode="after")
    def _poll_order(self) -> Self:
        if self.poll_max_interval < self.poll_min_interval:
            raise ValueError(
                f"PAYKUBE_POLL_MAX_INTERVAL ({self.poll_max_interval:g}) must not be below "
                f"PAYKUBE_POLL_MIN_INTERVAL ({self.poll_min_interval:g})")
        return self


class AccountsSettings(_Group):
    """Provider accounts (PaymentProvider / ClusterPaymentProvider)."""

    cluster_namespace: str = "paykube"  # where ClusterPaymentProviders' Secrets live
    route_table_secret: str = "paykube-webhook-routes"  # noqa: S105 -- a Secret name
    routes_ttl: Positive = 30.0  # seconds the webhook keeps the route table
    provider_resync: Positive = 60.0  # seconds between checks of each provider's key/secrets
    # Razorpay accounts (PaymentProviders of type razorpay; there is no default one). Its
    # calls share a limiter of their own, apart from Stripe's.
    razorpay_api_base: str = "https://api.razorpay.com"
    razorpay_rate_limit: Positive = 10.0  # requests per second for the whole process
    razorpay_timeout: Positive = 20.0

    @field_validator("razorpay_api_base")
    @classmethod
    def _razorpay_base(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value.rstrip("/")


class LoggingSettings(_Group):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Settings(StripeSettings, WebhookSettings, BrokerSettings, DatabaseSettings,
               SecretsSettings, ExplainSettings, MetricsSettings, OperatorSettings,
               AccountsSettings, LoggingSettings):
    """Every knob of both programs; see the README's configuration reference."""

    @property
    def stripe(self) -> StripeSettings:
        return self

    @property
    def webhook(self) -> WebhookSettings:
        return self

    @property
    def broker(self) -> BrokerSettings:
        return self

    @property
    def database(self) -> DatabaseSettings:
        return self

    @property
    def secrets(self) -> SecretsSettings:
        return self

    @property
    def explanations(self) -> ExplainSettings:
        return self

    @property
    def metrics(self) -> MetricsSettings:
        return self

    @property
    def operator(self) -> OperatorSettings:
        return self

    @property
    def accounts(self) -> AccountsSettings:
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (validated as at start)."""
        return Settings(**{**dict(self), **changes})


GROUPS: tuple[type[_Group], ...] = (
    StripeSettings, WebhookSettings, BrokerSettings, DatabaseSettings, SecretsSettings,
    ExplainSettings, MetricsSettings, OperatorSettings, AccountsSettings, LoggingSettings)


def load_settings(program: str, env: Mapping[str, str] | None = None) -> Settings:
    """The settings at a program's start; bad ones end it with one line per problem."""
    try:
        return Settings.from_env(env)
    except SettingsError as exc:
        print(f"{program}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None
