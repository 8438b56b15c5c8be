"""Credentials from external secret stores (AWS Secrets Manager) and their readiness.

Adapter layer: imports paykube.api, paykube.errors and paykube.settings only.
"""

from paykube.secrets.aws import (
    DatabaseCredentials,
    SecretsManagerSource,
    SecretsUnavailable,
    StripeCredentials,
    bind_engine_credentials,
    make_client,
)
from paykube.secrets.health import Readiness, check, combine

__all__ = [
    "DatabaseCredentials",
    "Readiness",
    "SecretsManagerSource",
    "SecretsUnavailable",
    "StripeCredentials",
    "bind_engine_credentials",
    "check",
    "combine",
    "make_client",
]
