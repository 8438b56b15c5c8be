"""Credentials from AWS Secrets Manager (boto3), cached with a TTL so rotation needs no restart.

Secret formats (each a JSON object in the secret's `SecretString`):

Stripe (`stripe_credentials`)::

    {"apiKey": "sk_live_...", "webhookSecrets": ["whsec_new", "whsec_old"]}

  `apiKey` is the secret (or restricted) API key. `webhookSecrets` holds the webhook
  endpoint's signing secrets, newest first during a rotation; it may also be one string
  with commas (`"whsec_new,whsec_old"`) and may be left out by processes that only call
  the API. Other fields are ignored.

Database (`database_credentials`), the format that RDS writes for a managed secret::

    {"engine": "mysql", "host": "db.example.rds.amazonaws.com", "port": 3306,
     "username": "paykube", "password": "...", "dbname": "paykube"}

  A secret that RDS manages itself (`ManageMasterUserPassword`) holds only `username` and
  `password`; `host`, `port`, `dbname` and `engine` then come from the caller's defaults
  (settings). A value present in the secret wins over the default. `port` may be a number
  or a numeric string.

The boto3 client is built once at startup (region and endpoint URL configurable; in EKS
with IRSA or Pod Identity the default credential chain needs nothing else) and injected.
Reads are cached per secret id (and version stage) for `ttl` seconds; `invalidate()`
forces the next read to go to AWS, e.g. after the database refused a rotated password.

Errors (missing secret, access denied, malformed JSON, missing field) raise
`CredentialsError` naming the secret id and the problem, never a value, and log one
WARNING line per secret and problem (repeated failures stay quiet until the problem
changes or the secret becomes readable again). botocore logs request and response bodies
at DEBUG: importing this module installs a filter on botocore's loggers that withholds
any message carrying a Secrets Manager payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import sqlalchemy
from sqlalchemy.engine import URL

from paykube.errors import CredentialsError, ErrorCode
from paykube.secrets.engine import bind_connect_params
from paykube.settings import SecretStr

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"

API_KEY_FIELD = "apiKey"
WEBHOOK_SECRETS_FIELD = "webhookSecrets"

# AWS error codes that say "you may not read this", as opposed to "try again later".
_ACCESS_CODES = frozenset({
    "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
    "InvalidSignatureException", "ExpiredTokenException", "InvalidClientTokenId",
    "SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken",
    "UnauthorizedOperation", "KMSAccessDeniedException",
})
_TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalServiceError", "InternalServiceErrorException", "InternalFailure",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
    "RequestTimeoutException",
})
# Drivers for the RDS `engine` values paykube can use with SQLAlchemy.
_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "aurora": "mysql+pymysql",
    "aurora-mysql": "mysql+pymysql",
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "aurora-postgresql": "postgresql+psycopg2",
}
_DEFAULT_PORTS = {"mysql+pymysql": 3306, "postgresql+psycopg2": 5432}


# --- keeping secret payloads out of botocore's DEBUG logs --------------------------------

_PAYLOAD_MARKERS = ("SecretString", "SecretBinary")
_WITHHELD = "<withheld by paykube: Secrets Manager payload>"
_BOTOCORE_LOGGERS = (
    "botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.auth",
    "botocore.httpsession", "botocore.retryhandler", "botocore.retries.standard",
    "botocore.awsrequest", "botocore.client", "boto3.resources.action",
    "urllib3.connectionpool",
)


class WithholdSecretPayloads(logging.Filter):
    """Rewrites any log record that carries a Secrets Manager payload; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not ours to fix; pass it on
            return True
        if any(marker in text for marker in _PAYLOAD_MARKERS):
            if isinstance(record.args, tuple) and isinstance(record.msg, str):
                try:
                    record.msg = record.msg % tuple(_WITHHELD for _ in record.args)
                except (TypeError, ValueError):
                    record.msg = f"{record.name}: {_WITHHELD}"
            else:
                record.msg = f"{record.name}: {_WITHHELD}"
            record.args = None
        return True


def protect_botocore_logs() -> None:
    """Install `WithholdSecretPayloads` on the loggers where botocore writes bodies.

    Idempotent; runs when this module is imported. Logger filters apply to records
    created on that logger, whatever handlers (files, pytest's caplog) sit above it.
    """
    for name in _BOTOCORE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithholdSecretPayloads) for f in logger.filters):
            logger.addFilter(WithholdSecretPayloads())


protect_botocore_logs()


# --- typed credentials -------------------------------------------------------------------

@dataclass(frozen=True)
class StripeCredentials:
    api_key: SecretStr
    webhook_secrets: tuple[SecretStr, ...] = ()
    version: str | None = None  # the secret's VersionId: changes on every rotation


@dataclass(frozen=True)
class DatabaseCredentials:
    username: str
    password: SecretStr
    host: str
    port: int
    dbname: str | None = None
    engine: str = "mysql"
    version: str | None = None  # the secret's VersionId: changes on every rotation

    def sqlalchemy_url(self, *, drivername: str | None = None,
                       query: Mapping[str, str] | None = None) -> URL:
        """A SQLAlchemy URL with the password (its repr and str show `***`).

        `drivername` overrides the one derived from `engine` (`mysql+pymysql` for MySQL,
        MariaDB and Aurora MySQL).
        """
        driver = drivername or _DRIVERS.get(self.engine.lower())
        if driver is None:
            raise CredentialsError(
                f"database engine {self.engine!r} is not supported; use one of "
                f"{', '.join(sorted(_DRIVERS))} or pass a drivername",
                code=ErrorCode.CREDENTIALS_INVALID)
        return URL.create(driver, username=self.username, password=self.password.get(),
                          host=self.host, port=self.port, database=self.dbname,
                          query=dict(query or {}))


class SecretsUnavailable(CredentialsError):
    """Secrets Manager could not be reached or answered with a server error: retry later."""

    code = ErrorCode.SECRETS_UNAVAILABLE


# --- the source ----------------------------------------------------------------------------

def make_client(region: str | None = None, endpoint_url: str | None = None, *,
                session: boto3.session.Session | None = None, connect_timeout: float = 5.0,
                read_timeout: float = 10.0, max_attempts: int = 3) -> SecretsManagerClient:
    """A Secrets Manager client. `None` region/endpoint use the SDK's defaults
    (`AWS_REGION`, `AWS_ENDPOINT_URL`, the IRSA web identity, the instance role...)."""
    config = botocore.config.Config(
        connect_timeout=connect_timeout, read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
    )
    try:
        return (session or boto3.session.Session()).client(
            "secretsmanager", region_name=region or None, endpoint_url=endpoint_url or None,
            config=config)
    except botocore.exceptions.NoRegionError:
        raise CredentialsError(
            "no AWS region configured for Secrets Manager: set the region in settings or "
            "AWS_REGION", code=ErrorCode.CREDENTIALS_MISSING) from None


@dataclass
class _Entry:
    fetched_at: float
    raw: SecretStr | None = None
    version: str | None = None
    error: CredentialsError | None = None
    stale: bool = False  # an older value served while AWS is unreachable


@dataclass(frozen=True)
class _Document:
    fields: dict[str, Any]
    version: str | None
    stale: bool


@dataclass
class _State:
    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    reported: dict[str, str] = field(default_factory=dict)


class SecretsManagerSource:
    """Reads JSON secrets by id, caching each for `ttl` seconds.

    `client` is built once at startup (see `make_client`); without one, the source builds
    it from `region` and `endpoint_url`. A failed read is remembered for `error_ttl`
    seconds so that a missing secret does not turn every reconcile into an AWS call; when
    AWS is unreachable and an older value is cached, that value is served (for at most
    `error_ttl` seconds at a time) rather than failing. Thread-safe; the `a*` methods
    run the boto3 call in a worker thread (`asyncio.to_thread`) when the cache is stale.
    """

    def __init__(self, client: SecretsManagerClient | None = None, *, region: str | None = None,
                 endpoint_url: str | None = None, ttl: float = 300.0, error_ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client if client is not None else make_client(region, endpoint_url)
        self._ttl = ttl
        self._error_ttl = min(error_ttl, ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State()

    # --- typed accessors ---

    def stripe_credentials(self, secret_id: str, *, require_api_key: bool = True,
                           require_webhook_secrets: bool = False,
                           stage: str = CURRENT) -> StripeCredentials:
        def build(doc: _Document) -> StripeCredentials:
            api_key = self._string(secret_id, doc.fields, API_KEY_FIELD,
                                   required=require_api_key)
            secrets = self._secret_list(secret_id, doc.fields, WEBHOOK_SECRETS_FIELD,
                                        required=require_webhook_secrets)
            return StripeCredentials(SecretStr(api_key or ""), secrets, doc.version)

        return self._read(secret_id, stage, build)

    def secret_values(self, secret_id: str, field: str, *,
                      stage: str = CURRENT) -> tuple[SecretStr, ...]:
        """One field of a JSON secret: a string (comma-separated values) or a list."""
        return self._read(secret_id, stage,
                          lambda doc: self._secret_list(secret_id, doc.fields, field,
                                                        required=True))

    async def asecret_values(self, secret_id: str, field: str) -> tuple[SecretStr, ...]:
        if self._fresh(secret_id, CURRENT):
            return self.secret_values(secret_id, field)
        return await asyncio.to_thread(self.secret_values, secret_id, field)

    def database_credentials(self, secret_id: str, *, host: str | None = None,
                             port: int | None = None, dbname: str | None = None,
                             engine: str | None = None,
                             stage: str = CURRENT) -> DatabaseCredentials:
        """The RDS-format secret; `host`, `port`, `dbname`, `engine` are defaults used
        when the secret lacks them (RDS-managed secrets hold only username/password)."""
        def build(document: _Document) -> DatabaseCredentials:
            doc = document.fields
            username = self._required(secret_id, doc, "username")
            password = self._required(secret_id, doc, "password")
            engine_ = (self._string(secret_id, doc, "engine", required=False) or engine
                       or "mysql")
            host_ = self._string(secret_id, doc, "host", required=False) or host
            if not host_:
                raise self._fail(secret_id, "has no 'host' field and no default database "
                                 "host is configured")
            port_ = self._port(secret_id, doc)
            if port_ is None:
                port_ = port or _DEFAULT_PORTS.get(_DRIVERS.get(engine_.lower(), ""), 3306)
            dbname_ = self._string(secret_id, doc, "dbname", required=False) or dbname
            return DatabaseCredentials(username, SecretStr(password), host_, port_, dbname_,
                                       engine_, document.version)

        return self._read(secret_id, stage, build)

    # --- async wrappers ---

    async def astripe_credentials(self, secret_id: str, *, require_api_key: bool = True,
                                  require_webhook_secrets: bool = False,
                                  stage: str = CURRENT) -> StripeCredentials:
        call = self.stripe_credentials
        if self._fresh(secret_id, stage):
            return call(secret_id, require_api_key=require_api_key,
                        require_webhook_secrets=require_webhook_secrets, stage=stage)
        return await asyncio.to_thread(call, secret_id, require_api_key=require_api_key,
                                       require_webhook_secrets=require_webhook_secrets,
                                       stage=stage)

    async def adatabase_credentials(self, secret_id: str, *, host: str | None = None,
                                    port: int | None = None, dbname: str | None = None,
                                    engine: str | None = None,
                                    stage: str = CURRENT) -> DatabaseCredentials:
        call = self.database_credentials
        if self._fresh(secret_id, stage):
            return call(secret_id, host=host, port=port, dbname=dbname, engine=engine,
                        stage=stage)
        return await asyncio.to_thread(call, secret_id, host=host, port=port, dbname=dbname,
                                       engine=engine, stage=stage)

    # --- cache control ---

    def invalidate(self, secret_id: str | None = None) -> None:
        """Forget the cached value of `secret_id` (every stage), or of every secret."""
        with self._lock:
            if secret_id is None:
                self._state.entries.clear()
            else:
                for key in [k for k in self._state.entries if k[0] == secret_id]:
                    del self._state.entries[key]

    def _fresh(self, secret_id: str, stage: str) -> bool:
        with self._lock:
            entry = self._state.entries.get((secret_id, stage))
            return entry is not None and self._clock() < entry.fetched_at + self._lifetime(entry)

    def _lifetime(self, entry: _Entry) -> float:
        return self._error_ttl if entry.error is not None else self._ttl

    # --- reading ---

    def _read(self, secret_id: str, stage: str, build: Callable[[_Document], _T]) -> _T:
        try:
            doc = self._document(secret_id, stage)
            result = build(doc)
        except CredentialsError:
            self._shorten(secret_id, stage)
            raise
        self._readable(secret_id, doc)
        return result

    def _shorten(self, secret_id: str, stage: str) -> None:
        """A value that failed validation is read again after `error_ttl`, not `ttl`:
        the fix of a malformed secret shows up quickly."""
        with self._lock:
            entry = self._state.entries.get((secret_id, stage))
            if entry is not None and entry.error is None:
                entry.fetched_at = min(entry.fetched_at,
                                       self._clock() - self._ttl + self._error_ttl)

    def _document(self, secret_id: str, stage: str) -> _Document:
        key = (secret_id, stage)
        with self._lock:
            entry = self._state.entries.get(key)
            now = self._clock()
            fresh = entry is not None and now < entry.fetched_at + self._lifetime(entry)
        if not fresh:
            entry = self._fetch(secret_id, stage, entry)
            with self._lock:
                self._state.entries[key] = entry
        assert entry is not None
        if entry.error is not None:
            raise type(entry.error)(entry.error.message, code=entry.error.code)
        assert entry.raw is not None
        return _Document(self._parse(secret_id, entry.raw), entry.version, entry.stale)

    def _fetch(self, secret_id: str, stage: str, previous: _Entry | None) -> _Entry:
        now = self._clock()
        try:
            answer = self._client.get_secret_value(SecretId=secret_id, VersionStage=stage)
        except botocore.exceptions.ClientError as exc:
            error = self._client_error(secret_id, stage, exc)
        except (botocore.exceptions.NoCredentialsError,
                botocore.exceptions.PartialCredentialsError,
                botocore.exceptions.CredentialRetrievalError) as exc:
            error = self._fail(secret_id, f"cannot be read: no usable AWS credentials "
                               f"({type(exc).__name__}); check the service account's IAM role",
                               ErrorCode.CREDENTIALS_INVALID)
        except botocore.exceptions.BotoCoreError as exc:
            error = self._fail(secret_id, f"cannot be read: Secrets Manager unreachable "
                               f"({type(exc).__name__})", transient=True)
        else:
            if "SecretString" not in answer:
                error = self._fail(secret_id, "holds binary data; paykube expects a JSON "
                                   "object in SecretString")
                return _Entry(now, error=error)
            return _Entry(now, SecretStr(answer["SecretString"]), answer.get("VersionId"))
        if isinstance(error, SecretsUnavailable) and previous is not None and previous.raw:
            # Serve the last good value for a while rather than fail on an AWS hiccup.
            return _Entry(now - self._ttl + self._error_ttl, previous.raw, previous.version,
                          stale=True)
        return _Entry(now, error=error)

    def _client_error(self, secret_id: str, stage: str,
                      exc: botocore.exceptions.ClientError) -> CredentialsError:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code == "ResourceNotFoundException":
            problem = ("was not found" if stage == CURRENT
                       else f"was not found or has no version in stage {stage}")
            return self._fail(secret_id, f"{problem} (check the secret id and region)",
                              ErrorCode.CREDENTIALS_MISSING)
        if code in _ACCESS_CODES:
            return self._fail(secret_id, f"cannot be read: access denied ({code}); allow "
                              "secretsmanager:GetSecretValue (and kms:Decrypt) to the "
                              "service account's IAM role")
        if code == "DecryptionFailure":
            return self._fail(secret_id, "cannot be decrypted with its KMS key "
                              "(DecryptionFailure); allow kms:Decrypt on that key")
        if code == "InvalidRequestException":
            return self._fail(secret_id, "cannot be read (InvalidRequestException): it may be "
                              "scheduled for deletion")
        if code in _TRANSIENT_CODES or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 0) >= 500:
            return self._fail(secret_id, f"cannot be read: Secrets Manager answered {code}",
                              transient=True)
        return self._fail(secret_id, f"cannot be read ({code})")

    # --- parsing (messages name fields, never values) ---

    def _parse(self, secret_id: str, raw: SecretStr) -> dict[str, Any]:
        try:
            doc = json.loads(raw.get())
        except json.JSONDecodeError as exc:
            raise self._fail(secret_id, f"is not valid JSON (line {exc.lineno}, column "
                             f"{exc.colno})") from None
        except ValueError:
            raise self._fail(secret_id, "is not valid JSON") from None
        if not isinstance(doc, dict):
            raise self._fail(secret_id, f"holds a JSON {type(doc).__name__}, not a JSON object")
        return doc

    def _string(self, secret_id: str, doc: Mapping[str, Any], name: str, *,
                required: bool) -> str | None:
        value = doc.get(name)
        if value is None:
            if required:
                raise self._fail(secret_id, f"has no {name!r} field")
            return None
        if not isinstance(value, str):
            raise self._fail(secret_id, f"field {name!r} must be a string, not a JSON "
                             f"{_json_type(value)}")
        value = value.strip()
        if not value and required:
            raise self._fail(secret_id, f"field {name!r} is empty")
        return value or None

    def _required(self, secret_id: str, doc: Mapping[str, Any], name: str) -> str:
        value = self._string(secret_id, doc, name, required=True)
        assert value is not None
        return value

    def _secret_list(self, secret_id: str, doc: Mapping[str, Any], name: str, *,
                     required: bool) -> tuple[SecretStr, ...]:
        value = doc.get(name)
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise self._fail(secret_id, f"field {name!r} must be a list of strings")
            items = value
        elif value is None:
            items = []
        else:
            raise self._fail(secret_id, f"field {name!r} must be a list of strings or one "
                             f"comma-separated string, not a JSON {_json_type(value)}")
        secrets = tuple(SecretStr(s.strip()) for s in items if s.strip())
        if required and not secrets:
            raise self._fail(secret_id, f"has no {name!r} field or it is empty")
        return secrets

    def _port(self, secret_id: str, doc: Mapping[str, Any]) -> int | None:
        value = doc.get("port")
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self._fail(secret_id, "field 'port' must be a number")
        try:
            port = int(value)
        except ValueError:
            raise self._fail(secret_id, "field 'port' must be a number") from None
        if not 0 < port < 65536:
            raise self._fail(secret_id, "field 'port' is out of range")
        return port

    # --- one log line per secret and problem ---

    def _fail(self, secret_id: str, problem: str,
              code: ErrorCode = ErrorCode.CREDENTIALS_INVALID, *,
              transient: bool = False) -> CredentialsError:
        message = f"AWS secret {secret_id!r} {problem}"
        with self._lock:
            repeated = self._state.reported.get(secret_id) == message
            self._state.reported[secret_id] = message
        if not repeated:
            log.warning("%s", message)
        if transient:
            return SecretsUnavailable(message)
        return CredentialsError(message, code=code)

    def _readable(self, secret_id: str, doc: _Document) -> None:
        if doc.stale:
            return
        with self._lock:
            had_problem = self._state.reported.pop(secret_id, None) is not None
        if had_problem:
            log.info("AWS secret %r is readable again", secret_id)


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", dict: "object",
            list: "array"}.get(type(value), type(value).__name__)


# --- SQLAlchemy: every new connection uses the current password ---------------------------

def bind_engine_credentials(engine: sqlalchemy.Engine, source: SecretsManagerSource,
                            secret_id: str, *, host: str | None = None,
                            port: int | None = None, dbname: str | None = None,
                            db_engine: str | None = None) -> None:
    """Make `engine` take user and password from `secret_id` for every new connection
    (cached for the source's TTL, read again at once when the server refuses them)."""

    def provide(dialect: Any, cparams: dict[str, Any]) -> None:
        creds = source.database_credentials(secret_id, host=host, port=port, dbname=dbname,
                                            engine=db_engine)
        cparams["user"] = creds.username
        cparams.pop("passwd", None)
        cparams["password"] = creds.password.get()
        # Where to connect comes from the secret too (an RDS secret names its instance), so
        # the engine may be created from a bare "mysql+pymysql://" URL.
        cparams["host"], cparams["port"] = creds.host, creds.port
        if creds.dbname:
            cparams["database"] = creds.dbname

    bind_connect_params(engine, provide, lambda: source.invalidate(secret_id),
                        f"AWS secret {secret_id!r}")
