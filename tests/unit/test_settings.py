"""Typed, grouped settings: each group refuses a bad value with a message that names the
variable and says what is wrong (never a secret's value); a program given one stops at
start with that message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paykube.settings import (
    GROUPS,
    AccountsSettings,
    BrokerSettings,
    DatabaseSettings,
    ExplainSettings,
    LoggingSettings,
    MetricsSettings,
    OperatorSettings,
    SecretsSettings,
    SecretStr,
    Settings,
    SettingsError,
    StripeSettings,
    WebhookSettings,
    load_settings,
)
from paykube_dev.kube import REPO

BAD = [
    (StripeSettings, {"PAYKUBE_STRIPE_RATE_LIMIT": "0"},
     "PAYKUBE_STRIPE_RATE_LIMIT: Input should be greater than 0 (got '0')"),
    (StripeSettings, {"PAYKUBE_STRIPE_TIMEOUT": "soon"},
     "PAYKUBE_STRIPE_TIMEOUT: Input should be a valid number"),
    (StripeSettings, {"PAYKUBE_STRIPE_CREDENTIALS_SECRET": "just-a-name"},
     "PAYKUBE_STRIPE_CREDENTIALS_SECRET: must be namespace/name, not 'just-a-name'"),
    (StripeSettings, {"PAYKUBE_STRIPE_API_BASE": "api.stripe.com"},
     "PAYKUBE_STRIPE_API_BASE: must be an http(s) URL"),
    (WebhookSettings, {"PAYKUBE_WEBHOOK_PORT": "70000"},
     "PAYKUBE_WEBHOOK_PORT: Input should be less than or equal to 65535 (got '70000')"),
    (WebhookSettings, {"PAYKUBE_WEBHOOK_MAX_BODY": "-1"},
     "PAYKUBE_WEBHOOK_MAX_BODY: Input should be greater than 0"),
    (WebhookSettings, {"PAYKUBE_WEBHOOK_PUBLIC_URL": "hooks.example.com"},
     "PAYKUBE_WEBHOOK_PUBLIC_URL: must be an http(s) URL"),
    (BrokerSettings, {"PAYKUBE_BROKER_TLS": "maybe"},
     "PAYKUBE_BROKER_TLS: Input should be a valid boolean"),
    (BrokerSettings, {"PAYKUBE_BROKER_DESTINATION": "payments"},
     "PAYKUBE_BROKER_DESTINATION: must start with /topic/ or /queue/"),
    (DatabaseSettings, {"PAYKUBE_DATABASE_PORT": "0"},
     "PAYKUBE_DATABASE_PORT: Input should be greater than 0"),
    (SecretsSettings, {"PAYKUBE_SECRETS_SOURCE": "vault"},
     "PAYKUBE_SECRETS_SOURCE: Input should be 'kubernetes' or 'aws' (got 'vault')"),
    (SecretsSettings, {"PAYKUBE_SECRETS_SOURCE": "aws"},
     "PAYKUBE_SECRETS_SOURCE=aws needs PAYKUBE_AWS_STRIPE_SECRET_ID"),
    (SecretsSettings, {"PAYKUBE_SECRETS_TTL": "-1"},
     "PAYKUBE_SECRETS_TTL: Input should be greater than or equal to 0"),
    (ExplainSettings, {"PAYKUBE_EXPLAIN_TIMEOUT": "0"},
     "PAYKUBE_EXPLAIN_TIMEOUT: Input should be greater than 0"),
    (ExplainSettings, {"PAYKUBE_EXPLAIN_BASE_URL": "localhost:8000/v1"},
     "PAYKUBE_EXPLAIN_BASE_URL: must be an http(s) URL"),
    (MetricsSettings, {"PAYKUBE_METRICS_PORT": "http"},
     "PAYKUBE_METRICS_PORT: Input should be a valid integer"),
    (OperatorSettings, {"PAYKUBE_POLL_MIN_INTERVAL": "60", "PAYKUBE_POLL_MAX_INTERVAL": "30"},
     "PAYKUBE_POLL_MAX_INTERVAL (30) must not be below PAYKUBE_POLL_MIN_INTERVAL (60)"),
    (AccountsSettings, {"PAYKUBE_ROUTES_TTL": "0"},
     "PAYKUBE_ROUTES_TTL: Input should be greater than 0"),
    (LoggingSettings, {"PAYKUBE_LOG_LEVEL": "loud"},
     "PAYKUBE_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
]


@pytest.mark.parametrize(("group", "env", "message"), BAD,
                         ids=[f"{g.__name__}-{next(iter(e))}" for g, e, _ in BAD])
def test_a_bad_value_names_its_variable_and_what_is_wrong(
        group: type[StripeSettings], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as alone:
        group.from_env(env)
    with pytest.raises(SettingsError) as within:
        Settings.from_env(env)  # the same through the whole settings
    for error in (alone.value, within.value):
        assert len(error.problems) == 1 and error.problems[0].startswith(message), error


def test_every_group_has_a_bad_value_above() -> None:
    assert {group for group, _, _ in BAD} == set(GROUPS)


@pytest.mark.parametrize(("variable", "value"), [
    ("PAYKUBE_DATABASE_URL", "hunter2-not-a-url"),
    ("PAYKUBE_WEBHOOK_SECRETS", "whsec_x"),  # fine: the check below is about errors only
])
def test_a_secret_value_never_appears_in_an_error(variable: str, value: str) -> None:
    env = {variable: value, "PAYKUBE_STRIPE_RATE_LIMIT": "-1"}
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert value not in str(error.value)


def test_several_problems_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"PAYKUBE_WEBHOOK_PORT": "x", "PAYKUBE_METRICS_PORT": "-1"})
    assert [p.split(":")[0] for p in error.value.problems] == [
        "PAYKUBE_METRICS_PORT", "PAYKUBE_WEBHOOK_PORT"]


def test_values_are_parsed_as_before() -> None:
    settings = Settings.from_env({
        "PAYKUBE_STRIPE_API_BASE": "http://127.0.0.1:12111/", "PAYKUBE_NAMESPACES": "a, b,",
        "PAYKUBE_WEBHOOK_SECRETS": "whsec_a\nwhsec_b", "PAYKUBE_BROKER_URLS": "h1:61613,h2:61613",
        "PAYKUBE_BROKER_TLS": "yes", "PAYKUBE_EVENTS_INCLUDE_URL": "1",
        "PAYKUBE_SECRETS_SOURCE": "AWS", "PAYKUBE_AWS_STRIPE_SECRET_ID": "paykube/stripe",
        "PAYKUBE_LOG_LEVEL": "debug", "PAYKUBE_STRIPE_RATE_LIMIT": "2.5",
        "PAYKUBE_WEBHOOK_PUBLIC_URL": "https://hooks.example.com/",
        # An empty variable is unset (a chart renders absent values so).
        "PAYKUBE_POLL_MIN_INTERVAL": "", "PAYKUBE_STRIPE_API_KEY": "",
        "paykube_stripe_timeout": "1",  # names are case-sensitive, as before
    })
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.namespaces == ("a", "b")
    assert [s.get() for s in settings.webhook_secrets] == ["whsec_a", "whsec_b"]
    assert settings.broker_urls == ("h1:61613", "h2:61613")
    assert settings.broker_tls and settings.events_include_url
    assert settings.aws and settings.secrets_source == "aws"
    assert settings.log_level == "DEBUG" and settings.stripe_rate_limit == 2.5
    assert settings.webhook_public_url == "https://hooks.example.com"
    assert settings.poll_min_interval == 10.0 and settings.stripe_timeout == 20.0
    assert settings.stripe_api_key == SecretStr("")


def test_groups_are_views_of_the_one_settings_object() -> None:
    settings = Settings(stripe_rate_limit=5, metrics_port=9999)
    assert settings.stripe.stripe_rate_limit == 5 and settings.metrics.metrics_port == 9999
    assert isinstance(settings.stripe, StripeSettings)
    assert settings.explanations.explain_timeout == 3.0
    assert sorted(Settings.model_fields) == sorted(
        name for group in GROUPS for name in group.model_fields)
    # No group's check hides another's (same method names would, through inheritance).
    checks = [set(group.__pydantic_decorators__.field_validators)
              | set(group.__pydantic_decorators__.model_validators) for group in GROUPS]
    assert sum(map(len, checks)) == len(set().union(*checks))


def test_settings_are_frozen_and_replace_validates() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.stripe_rate_limit = 1
    assert settings.replace(stripe_rate_limit=3).stripe_rate_limit == 3
    with pytest.raises(SettingsError, match="PAYKUBE_STRIPE_RATE_LIMIT"):
        settings.replace(stripe_rate_limit=0)


def test_secrets_stay_masked_in_repr() -> None:
    settings = Settings.from_env({"PAYKUBE_STRIPE_API_KEY": "sk_test_abc",
                                  "PAYKUBE_BROKER_PASSWORD": "broker-pw",
                                  "PAYKUBE_DATABASE_URL": "mysql+pymysql://u:dbpw@h/paykube",
                                  "PAYKUBE_EXPLAIN_API_KEY": "model-key",
                                  "PAYKUBE_METRICS_PASSWORD": "metrics-pw"})
    text = repr(settings) + str(settings)
    for secret in ("sk_test_abc", "broker-pw", "dbpw", "model-key", "metrics-pw"):
        assert secret not in text
    assert settings.database_url.get().endswith("@h/paykube")


def test_load_settings_stops_the_program_with_the_problems(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_settings("paykube-test", {"PAYKUBE_WEBHOOK_TOLERANCE": "0"})
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["paykube-test: invalid configuration:",
                                "  PAYKUBE_WEBHOOK_TOLERANCE: Input should be greater than 0 "
                                "(got '0')"]


@pytest.mark.parametrize("module", ["paykube.operator", "paykube_webhook"])
def test_the_programs_stop_at_start_on_a_bad_value(module: str) -> None:
    """No API server needed: the settings are read before anything connects."""
    result = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'webhook'}",
             "PAYKUBE_STRIPE_RATE_LIMIT": "-5", "PAYKUBE_BROKER_PASSWORD": "not-shown"},
        check=False)
    assert result.returncode == 2, result.stderr
    assert "PAYKUBE_STRIPE_RATE_LIMIT: Input should be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr and "not-shown" not in result.stderr
