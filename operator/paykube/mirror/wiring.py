"""Build the mirror (engine, store, writer) from settings, with credentials from the
database URL or from an RDS-managed secret in AWS Secrets Manager."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from paykube.mirror.migrate import migrate
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube.secrets.aws import SecretsManagerSource
from paykube.settings import Settings

log = logging.getLogger(__name__)
_MYSQL_ACCESS_DENIED = 1045


def build_engine(settings: Settings, aws: SecretsManagerSource | None) -> Engine | None:
    """None when no database is configured (the mirror is optional)."""
    if settings.database_url:
        return make_engine(settings.database_url.get())
    if aws is None or not settings.aws_database_secret_id:
        return None
    secret_id = settings.aws_database_secret_id

    def connect() -> Any:
        # Read at every new connection (cached by the source): a rotated password is
        # picked up without a restart, and a refused one is re-read at once.
        import pymysql

        creds = aws.database_credentials(
            secret_id, host=settings.database_host or None, port=settings.database_port,
            dbname=settings.database_name)
        try:
            return pymysql.connect(
                host=creds.host, port=creds.port, user=creds.username,
                password=creds.password.get(), database=creds.dbname, charset="utf8mb4",
                connect_timeout=5, read_timeout=30, write_timeout=30)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == _MYSQL_ACCESS_DENIED:
                log.warning("database refused the credentials of AWS secret %r; re-reading",
                            secret_id)
                aws.invalidate(secret_id)
            raise

    return make_engine("mysql+pymysql://", creator=connect, connect_args={})


def build_writer(engine: Engine) -> MirrorWriter:
    return MirrorWriter(MirrorStore(engine), prepare=lambda: migrate(engine))
