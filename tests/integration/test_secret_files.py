"""Secrets from files of a mounted Kubernetes Secret (what the chart renders): the database
URL and the default Stripe key are re-read, so rotating the Secret needs no restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy

from paykube.errors import CredentialsError, ErrorCode
from paykube.mirror.store import MirrorError, database_errors
from paykube.mirror.wiring import build_engine
from paykube.secrets.stripe_secrets import StripeSecrets
from paykube.settings import SecretStr, Settings
from paykube_dev.services import MariaDB

USER = "pk_fileuser_41c2"
PASSWORD, PASSWORD_2 = "File-pa55-SEKRET-1a2b3c", "File-pa55-ROTATED-4d5e6f"


def url(mariadb: MariaDB, password: str) -> str:
    return f"mysql+pymysql://{USER}:{password}@{mariadb.host}:{mariadb.port}/{mariadb.database}"


def select_one(engine: sqlalchemy.Engine) -> int | None:
    with engine.connect() as conn:
        value: int | None = conn.execute(sqlalchemy.text("SELECT 1")).scalar()
        return value


def test_rotated_database_password_in_the_url_file_reconnects(
        mariadb: MariaDB, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url_file = tmp_path / "databaseUrl"
    with mariadb.temporary_user(USER, PASSWORD):
        url_file.write_text(url(mariadb, PASSWORD) + "\n")
        # A TTL far longer than the test: only the refusal makes it read the file again.
        engine = build_engine(Settings(database_url_file=str(url_file), secrets_ttl=3600),
                              None)
        assert engine is not None
        assert select_one(engine) == 1

        # Rotation: the database first, then the Secret (the kubelet rewrites the file).
        mariadb.set_password(USER, PASSWORD_2)
        url_file.write_text(url(mariadb, PASSWORD_2))
        engine.dispose()  # the pool's open connections would hide the change
        with pytest.raises(sqlalchemy.exc.OperationalError):
            select_one(engine)  # the cached password is refused once...
        assert select_one(engine) == 1  # ...and the file is read again: no restart

        engine.dispose()

        # A missing file (a process started before its Secret exists) is a retryable
        # outage for the mirror: the write waits, it is not dropped.
        missing = build_engine(Settings(database_url_file=str(tmp_path / "absent"),
                                        secrets_ttl=3600), None)
        assert missing is not None
        with pytest.raises(MirrorError) as raised, database_errors("write"):
            select_one(missing)
        assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE and raised.value.retryable
        assert "absent" in raised.value.message
    text = caplog.text
    assert PASSWORD not in text and PASSWORD_2 not in text


async def test_default_stripe_key_file_is_re_read(tmp_path: Path) -> None:
    key_file = tmp_path / "stripeApiKey"
    key_file.write_text("sk_test_file_old\n")
    now = [0.0]
    secrets = StripeSecrets(Settings(stripe_api_key_file=str(key_file), secrets_ttl=60), None,
                            clock=lambda: now[0])
    assert await secrets.api_key() == SecretStr("sk_test_file_old")
    key_file.write_text("sk_test_file_new")
    now[0] = 59.0
    assert await secrets.api_key() == SecretStr("sk_test_file_old"), "cached for the TTL"
    now[0] = 60.0
    assert await secrets.api_key() == SecretStr("sk_test_file_new")
    key_file.unlink()
    now[0] = 120.0
    with pytest.raises(CredentialsError) as missing:
        await secrets.api_key()
    assert missing.value.code is ErrorCode.SECRETS_UNAVAILABLE and missing.value.retryable
    assert str(key_file) in missing.value.message and "sk_test" not in missing.value.message
