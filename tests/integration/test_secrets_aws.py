"""Credentials from AWS Secrets Manager, against a real moto server (and MariaDB for the
rotated-password reconnect).

Every secret value used here is in SECRET_VALUES; an autouse fixture captures all logs at
DEBUG (botocore's request and response bodies, SQLAlchemy's statements and pool included)
and fails the test if any of them appears in any record, and every CredentialsError
message is checked the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import sqlalchemy
from botocore.stub import Stubber
from sqlalchemy.pool import NullPool

from paykube.errors import CredentialsError, ErrorCode
from paykube.mirror.migrate import migrate
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube.secrets.aws import (
    PENDING,
    SecretsManagerSource,
    SecretsUnavailable,
    bind_engine_credentials,
    make_client,
)
from paykube.secrets.health import Readiness, check
from paykube_dev.proc import free_port
from paykube_dev.services import MariaDB, MotoServer

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

pytestmark = pytest.mark.integration

API_KEY = "sk_test_51AbcSEKRETapiKEYvalue000111"
API_KEY_2 = "sk_test_51RotatedSEKRETapiKEY222333"
WHSEC_1 = "whsec_FirstSigningSEKRET444555"
WHSEC_2 = "whsec_SecondSigningSEKRET666777"
DB_USER = "pk_dbuser_7f3a"
DB_PASSWORD = "Db-pa55-SEKRET-888999"
DB_PASSWORD_2 = "Db-pa55-ROTATED-SEKRET-000aaa"
DB_HOST = "paykube-db.cluster-abc.eu-west-1.rds.amazonaws.com"
SECRET_VALUES = [API_KEY, API_KEY_2, WHSEC_1, WHSEC_2, DB_PASSWORD, DB_PASSWORD_2]
# Not a secret (the database names it in its own "access denied" errors, which SQLAlchemy's
# pool logs at DEBUG), but paykube's own log lines must not carry it either.
DB_USER_VALUES = [DB_USER]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _contains_secret(text: str) -> list[str]:
    return [v for v in SECRET_VALUES if v in text]


def assert_clean(text: str) -> None:
    found = _contains_secret(text)
    assert not found, f"secret value leaked: {len(found)} value(s)"


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "paykube", "sqlalchemy", "pymysql"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert any(r.name.startswith("botocore") for r in records), "expected botocore DEBUG records"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        parts = [formatter.format(record), str(record.msg), repr(record.args),
                 record.exc_text or "", repr(vars(record))]
        for part in parts:
            assert not _contains_secret(part), f"secret value leaked by {record.name}"
            if record.name.startswith("paykube"):
                assert not [v for v in DB_USER_VALUES if v in part], record.name


def _session(moto: MotoServer) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=moto.access_key_id,
                                 aws_secret_access_key=moto.secret_access_key,
                                 region_name=moto.region)


@pytest.fixture
def admin(moto_server: MotoServer) -> SecretsManagerClient:
    """A separate client, as the platform team's tooling (or the rotation lambda)."""
    return _session(moto_server).client("secretsmanager", endpoint_url=moto_server.endpoint_url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def source(moto_server: MotoServer, clock: Clock) -> SecretsManagerSource:
    client = make_client(moto_server.region, moto_server.endpoint_url,
                         session=_session(moto_server))
    return SecretsManagerSource(client, ttl=300.0, error_ttl=5.0, clock=clock)


def _name(prefix: str) -> str:
    return f"paykube/test/{prefix}-{uuid.uuid4().hex[:8]}"


def _create(admin: SecretsManagerClient, prefix: str, value: str | dict[str, Any]) -> str:
    name = _name(prefix)
    text = value if isinstance(value, str) else json.dumps(value)
    admin.create_secret(Name=name, SecretString=text)
    return name


def _rds(password: str = DB_PASSWORD, **extra: Any) -> dict[str, Any]:
    return {"engine": "mysql", "host": DB_HOST, "port": 3306, "username": DB_USER,
            "password": password, "dbname": "paykube", "dbInstanceIdentifier": "paykube-db",
            **extra}


def _credentials_error(exc: pytest.ExceptionInfo[CredentialsError], secret_id: str) -> str:
    message = str(exc.value)
    assert secret_id in message
    assert_clean(message)
    assert_clean(repr(exc.value))
    return message


# --- startup ---------------------------------------------------------------------------

def test_startup_reads_stripe_and_rds_secrets(admin: SecretsManagerClient,
                                              source: SecretsManagerSource) -> None:
    stripe_id = _create(admin, "stripe", {"apiKey": API_KEY, "webhookSecrets": [WHSEC_1, WHSEC_2]})
    db_id = _create(admin, "db", _rds())

    stripe = source.stripe_credentials(stripe_id, require_webhook_secrets=True)
    assert stripe.api_key.get() == API_KEY
    assert [s.get() for s in stripe.webhook_secrets] == [WHSEC_1, WHSEC_2]
    assert stripe.version
    assert_clean(repr(stripe))

    db = source.database_credentials(db_id)
    assert (db.username, db.password.get(), db.host, db.port, db.dbname, db.engine) == (
        DB_USER, DB_PASSWORD, DB_HOST, 3306, "paykube", "mysql")
    url = db.sqlalchemy_url()
    assert url.drivername == "mysql+pymysql"
    assert url.password == DB_PASSWORD
    assert DB_PASSWORD in url.render_as_string(hide_password=False)
    assert DB_PASSWORD not in repr(url)
    assert DB_PASSWORD not in str(url)
    assert DB_PASSWORD not in repr(db)


def test_webhook_secrets_as_comma_string_and_optional(admin: SecretsManagerClient,
                                                      source: SecretsManagerSource) -> None:
    both = _create(admin, "stripe", {"apiKey": API_KEY, "webhookSecrets": f"{WHSEC_1}, {WHSEC_2}"})
    assert [s.get() for s in source.stripe_credentials(both).webhook_secrets] == [WHSEC_1, WHSEC_2]
    key_only = _create(admin, "stripe", {"apiKey": API_KEY})
    assert source.stripe_credentials(key_only).webhook_secrets == ()
    hooks_only = _create(admin, "stripe", {"webhookSecrets": [WHSEC_1]})
    creds = source.stripe_credentials(hooks_only, require_api_key=False,
                                      require_webhook_secrets=True)
    assert not creds.api_key
    assert [s.get() for s in creds.webhook_secrets] == [WHSEC_1]


def test_rds_managed_secret_takes_the_rest_from_defaults(admin: SecretsManagerClient,
                                                         source: SecretsManagerSource) -> None:
    db_id = _create(admin, "rds-managed", {"username": DB_USER, "password": DB_PASSWORD})
    db = source.database_credentials(db_id, host="db.internal", port=3307, dbname="reports")
    assert (db.host, db.port, db.dbname, db.engine) == ("db.internal", 3307, "reports", "mysql")
    assert db.sqlalchemy_url().render_as_string(hide_password=False) == (
        f"mysql+pymysql://{DB_USER}:{DB_PASSWORD}@db.internal:3307/reports")
    # Values in the secret win over defaults; a string port is accepted.
    full = _create(admin, "db", _rds(port="3308"))
    assert source.database_credentials(full, host="ignored", port=1).port == 3308
    assert source.database_credentials(full, host="ignored").host == DB_HOST

    with pytest.raises(CredentialsError) as exc:
        source.database_credentials(db_id)
    assert "'host'" in _credentials_error(exc, db_id)


async def test_async_wrappers(admin: SecretsManagerClient, source: SecretsManagerSource) -> None:
    stripe_id = _create(admin, "stripe", {"apiKey": API_KEY})
    db_id = _create(admin, "db", _rds())
    assert (await source.astripe_credentials(stripe_id)).api_key.get() == API_KEY
    assert (await source.astripe_credentials(stripe_id)).api_key.get() == API_KEY  # cached
    assert (await source.adatabase_credentials(db_id)).password.get() == DB_PASSWORD
    assert await check(lambda: source.astripe_credentials(stripe_id)) == Readiness.ready()


# --- rotation ----------------------------------------------------------------------------

def test_rotation_is_picked_up_after_the_ttl(admin: SecretsManagerClient,
                                             source: SecretsManagerSource, clock: Clock) -> None:
    stripe_id = _create(admin, "stripe", {"apiKey": API_KEY, "webhookSecrets": [WHSEC_1]})
    db_id = _create(admin, "db", _rds())
    first = source.stripe_credentials(stripe_id)
    first_db = source.database_credentials(db_id)

    admin.put_secret_value(SecretId=stripe_id, SecretString=json.dumps(
        {"apiKey": API_KEY_2, "webhookSecrets": [WHSEC_2, WHSEC_1]}))
    admin.put_secret_value(SecretId=db_id, SecretString=json.dumps(_rds(DB_PASSWORD_2)))

    clock.advance(299)
    assert source.stripe_credentials(stripe_id).api_key.get() == API_KEY  # still cached
    assert source.database_credentials(db_id).password.get() == DB_PASSWORD

    clock.advance(2)
    rotated = source.stripe_credentials(stripe_id)
    assert rotated.api_key.get() == API_KEY_2
    assert [s.get() for s in rotated.webhook_secrets] == [WHSEC_2, WHSEC_1]
    assert rotated.version != first.version
    rotated_db = source.database_credentials(db_id)
    assert rotated_db.password.get() == DB_PASSWORD_2
    assert rotated_db.version != first_db.version


def test_invalidate_forces_a_fresh_read(admin: SecretsManagerClient,
                                        source: SecretsManagerSource) -> None:
    db_id = _create(admin, "db", _rds())
    assert source.database_credentials(db_id).password.get() == DB_PASSWORD
    admin.put_secret_value(SecretId=db_id, SecretString=json.dumps(_rds(DB_PASSWORD_2)))
    assert source.database_credentials(db_id).password.get() == DB_PASSWORD
    source.invalidate(db_id)
    assert source.database_credentials(db_id).password.get() == DB_PASSWORD_2


def test_pending_stage_is_readable_during_rotation(admin: SecretsManagerClient,
                                                   source: SecretsManagerSource) -> None:
    db_id = _create(admin, "db", _rds())
    admin.put_secret_value(SecretId=db_id, SecretString=json.dumps(_rds(DB_PASSWORD_2)),
                           VersionStages=[PENDING])
    assert source.database_credentials(db_id).password.get() == DB_PASSWORD
    assert source.database_credentials(db_id, stage=PENDING).password.get() == DB_PASSWORD_2


# --- errors ------------------------------------------------------------------------------

def test_missing_secret(source: SecretsManagerSource, caplog: pytest.LogCaptureFixture,
                        clock: Clock, admin: SecretsManagerClient) -> None:
    secret_id = _name("absent")
    with pytest.raises(CredentialsError) as exc:
        source.stripe_credentials(secret_id)
    assert exc.value.code is ErrorCode.CREDENTIALS_MISSING
    assert not exc.value.retryable
    assert "not found" in _credentials_error(exc, secret_id)

    # One WARNING line, not one per attempt; the failure is remembered for error_ttl.
    with pytest.raises(CredentialsError):
        source.stripe_credentials(secret_id)
    warnings = [r for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith("paykube")]
    assert len(warnings) == 1
    assert secret_id in warnings[0].getMessage()

    admin.create_secret(Name=secret_id, SecretString=json.dumps({"apiKey": API_KEY}))
    with pytest.raises(CredentialsError):
        source.stripe_credentials(secret_id)  # still the remembered failure
    clock.advance(6)
    assert source.stripe_credentials(secret_id).api_key.get() == API_KEY
    assert any("readable again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("value", "problem"), [
    (f'{{"apiKey": "{API_KEY}", ', "not valid JSON"),
    (f"apiKey={API_KEY}", "not valid JSON"),
    (json.dumps([API_KEY]), "JSON list, not a JSON object"),
    (json.dumps({"apikey": API_KEY}), "no 'apiKey' field"),
    (json.dumps({"apiKey": ""}), "'apiKey' is empty"),
    (json.dumps({"apiKey": 42}), "'apiKey' must be a string"),
    (json.dumps({"apiKey": API_KEY, "webhookSecrets": {"a": WHSEC_1}}),
     "'webhookSecrets' must be a list of strings or one comma-separated string"),
])
def test_malformed_stripe_secret(admin: SecretsManagerClient, source: SecretsManagerSource,
                                 caplog: pytest.LogCaptureFixture, value: str,
                                 problem: str) -> None:
    secret_id = _create(admin, "bad", value)
    with pytest.raises(CredentialsError) as exc:
        source.stripe_credentials(secret_id)
    assert exc.value.code is ErrorCode.CREDENTIALS_INVALID
    assert problem in _credentials_error(exc, secret_id)
    assert exc.value.__cause__ is None  # no chained JSONDecodeError carrying the document
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and r.name.startswith("paykube")]
    assert [r.getMessage() for r in warnings] == [str(exc.value)]


def test_a_fixed_secret_is_picked_up_after_error_ttl(admin: SecretsManagerClient,
                                                     source: SecretsManagerSource,
                                                     clock: Clock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    secret_id = _create(admin, "bad", json.dumps({"api_key": API_KEY}))
    for _ in range(3):
        with pytest.raises(CredentialsError, match="no 'apiKey' field"):
            source.stripe_credentials(secret_id)
    admin.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"apiKey": API_KEY}))
    clock.advance(6)  # error_ttl, far less than the 300 s ttl
    assert source.stripe_credentials(secret_id).api_key.get() == API_KEY
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("paykube")]
    assert len([m for m in messages if "no 'apiKey' field" in m]) == 1  # one line, not three
    assert any("readable again" in m for m in messages)


@pytest.mark.parametrize(("value", "problem"), [
    ({"username": DB_USER}, "no 'password' field"),
    ({"password": DB_PASSWORD, "host": DB_HOST}, "no 'username' field"),
    (_rds(port="not-a-port"), "'port' must be a number"),
    (_rds(port=70000), "'port' is out of range"),
])
def test_malformed_database_secret(admin: SecretsManagerClient, source: SecretsManagerSource,
                                   value: dict[str, Any], problem: str) -> None:
    secret_id = _create(admin, "bad-db", value)
    with pytest.raises(CredentialsError) as exc:
        source.database_credentials(secret_id)
    assert problem in _credentials_error(exc, secret_id)


def test_binary_secret_is_refused(admin: SecretsManagerClient,
                                  source: SecretsManagerSource) -> None:
    secret_id = _name("binary")
    admin.create_secret(Name=secret_id, SecretBinary=API_KEY.encode())
    with pytest.raises(CredentialsError) as exc:
        source.stripe_credentials(secret_id)
    assert "binary" in _credentials_error(exc, secret_id)


def test_access_denied_and_outage(moto_server: MotoServer, clock: Clock) -> None:
    """AWS errors moto does not produce by itself, through botocore's own Stubber."""
    client = make_client(moto_server.region, moto_server.endpoint_url,
                         session=_session(moto_server))
    source = SecretsManagerSource(client, ttl=60.0, error_ttl=5.0, clock=clock)
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", service_error_code="AccessDeniedException",
                              service_message="User is not authorized", http_status_code=400)
        with pytest.raises(CredentialsError) as exc:
            source.stripe_credentials("denied")
        assert "access denied" in _credentials_error(exc, "denied")
        assert exc.value.code is ErrorCode.CREDENTIALS_INVALID

        # A good read, then an outage after the TTL: the last good value is served.
        stub.add_response("get_secret_value", {
            "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ok-AbCdEf",
            "Name": "ok", "VersionId": "v1" * 16, "SecretString": json.dumps({"apiKey": API_KEY}),
            "VersionStages": ["AWSCURRENT"]})
        assert source.stripe_credentials("ok").api_key.get() == API_KEY
        clock.advance(61)
        stub.add_client_error("get_secret_value", service_error_code="InternalServiceError",
                              http_status_code=500)
        assert source.stripe_credentials("ok").api_key.get() == API_KEY
        clock.advance(1)
        assert source.stripe_credentials("ok").api_key.get() == API_KEY  # no new call yet
        stub.assert_no_pending_responses()


def test_unreachable_endpoint_is_retryable(moto_server: MotoServer, clock: Clock) -> None:
    client = make_client(moto_server.region, f"http://127.0.0.1:{free_port()}",
                         session=_session(moto_server), connect_timeout=1, max_attempts=1)
    source = SecretsManagerSource(client, clock=clock)
    with pytest.raises(SecretsUnavailable) as exc:
        source.stripe_credentials("anything")
    assert exc.value.retryable
    assert "unreachable" in _credentials_error(exc, "anything")


async def test_readiness_reports_the_problem(admin: SecretsManagerClient,
                                             source: SecretsManagerSource) -> None:
    secret_id = _create(admin, "bad", "{not json")
    result = await check(lambda: source.astripe_credentials(secret_id))
    assert not result
    assert result.reason == ErrorCode.CREDENTIALS_INVALID.value
    assert secret_id in result.message
    assert "not valid JSON" in result.message


# --- a rotated database password reconnects ----------------------------------------------

def test_rotated_database_password_reconnects(mariadb: MariaDB, admin: SecretsManagerClient,
                                              source: SecretsManagerSource) -> None:
    user = DB_USER
    # The admin statements bind user and password as hidden parameters, so that the log
    # check below also covers SQLAlchemy's statement logging.
    with mariadb.temporary_user(user, DB_PASSWORD):
        # An RDS-managed secret: only username and password; the rest from settings.
        db_id = _create(admin, "rds-managed", {"username": user, "password": DB_PASSWORD})
        defaults: dict[str, Any] = {"host": mariadb.host, "port": mariadb.port,
                                    "dbname": mariadb.database}
        creds = source.database_credentials(db_id, **defaults)
        engine = sqlalchemy.create_engine(creds.sqlalchemy_url(), poolclass=NullPool,
                                          connect_args={"connect_timeout": 5})
        bind_engine_credentials(engine, source, db_id, **defaults)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1

        # Rotation as the RDS rotation function does it: the database first, then the secret.
        mariadb.set_password(user, DB_PASSWORD_2)
        admin.put_secret_value(SecretId=db_id, SecretString=json.dumps(
            {"username": user, "password": DB_PASSWORD_2}))

        # The cached (old) password is refused once; that invalidates the cache...
        with pytest.raises(sqlalchemy.exc.OperationalError), engine.connect():
            pass
        # ... and the next connection reads the new password, with no TTL wait, no restart.
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
        engine.dispose()


# --- mirror writes wait (never drop) while the database secret is unreadable -------------

def _session_manifest(uid: str, phase: str, rv: int) -> dict[str, Any]:
    return {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
        "metadata": {"uid": uid, "name": f"order-{uid[:8]}", "namespace": "shop",
                     "resourceVersion": str(rv), "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"amount": 1999, "currency": "usd", "successUrl": "https://shop.example/ok",
                 "cancelUrl": "https://shop.example/no"},
        "status": {"phase": phase, "history": [
            {"phase": p, "at": f"2024-05-01T10:0{i}:00Z", "source": "operator"}
            for i, p in enumerate(["Pending", "Open"][: 1 if phase == "Pending" else 2])]},
    }


async def test_mirror_writes_wait_while_the_database_secret_is_unreadable(
    mariadb: MariaDB, admin: SecretsManagerClient, source: SecretsManagerSource,
    clock: Clock,
) -> None:
    user = "pk_mirror_5c1e"
    database = f"sec_{uuid.uuid4().hex[:10]}"
    migrate(mariadb.create_database(database))
    good = {"username": user, "password": DB_PASSWORD, "host": mariadb.host,
            "port": mariadb.port, "dbname": database, "engine": "mariadb"}
    secret_id = _create(admin, "rds-mirror", good)
    engine = make_engine("mysql+pymysql://", hide_parameters=True)
    bind_engine_credentials(engine, source, secret_id)
    writer = MirrorWriter(MirrorStore(engine), initial_backoff=0.05, max_backoff=0.3)
    uids = [str(uuid.uuid4()) for _ in range(5)]
    try:
        with mariadb.temporary_user(user, DB_PASSWORD, grant="ALL", database=database):
            await _writes_wait_for_the_secret(admin, secret_id, good, writer, engine, uids,
                                              clock)
    finally:
        await writer.aclose()
        engine.dispose()


async def _writes_wait_for_the_secret(
        admin: SecretsManagerClient, secret_id: str, good: dict[str, Any],
        writer: MirrorWriter, engine: sqlalchemy.Engine, uids: list[str], clock: Clock,
) -> None:
    writer.start()
    for uid in uids:
        await writer.record(_session_manifest(uid, "Pending", 10))
    assert await writer.flush(30)

    # Malformed, then deleted: each new connection fails with a CredentialsError that
    # SQLAlchemy does not wrap. The writes must stay pending, not be dropped.
    admin.put_secret_value(SecretId=secret_id, SecretString="{not json")
    clock.advance(301)  # past the TTL: the next connection reads the secret again
    engine.dispose()  # no pooled connection to hide the problem
    for uid in uids:
        await writer.record(_session_manifest(uid, "Open", 20))
    await asyncio.sleep(0.6)
    failures = writer.failures
    assert failures >= 1 and writer.dropped == 0
    assert writer.pending_count() == len(uids)
    assert "not valid JSON" in (writer.last_error or "")

    admin.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    clock.advance(6)  # past error_ttl
    await asyncio.sleep(0.6)
    assert writer.failures > failures and writer.dropped == 0
    assert "was not found" in (writer.last_error or "")
    assert writer.running

    # Fixed: the pending writes arrive.
    admin.create_secret(Name=secret_id, SecretString=json.dumps(good))
    clock.advance(6)
    assert await writer.flush(30), f"still pending: {writer.pending_count()}"
    assert writer.dropped == 0
    rows = {r["uid"]: r for r in MirrorStore(engine).rows()}
    assert {uid: rows[uid]["phase"] for uid in uids} == dict.fromkeys(uids, "Open")
