"""Build the mirror (engine, store, writer) from settings, with credentials from the
database URL or from an RDS-managed secret in AWS Secrets Manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from paykube.mirror.migrate import migrate
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube.settings import Settings

if TYPE_CHECKING:
    from paykube.secrets.aws import SecretsManagerSource

def build_engine(settings: Settings, aws: SecretsManagerSource | None) -> Engine | None:
    """None when no database is configured (the mirror is optional)."""
    if settings.database_url:
        return make_engine(settings.database_url.get())
    if aws is None or not settings.aws_database_secret_id:
        return None
    from paykube.secrets.aws import bind_engine_credentials

    # Credentials (and, from an RDS secret, the host) are read at every new connection,
    # cached by the source: a rotated password is picked up without a restart.
    engine = make_engine("mysql+pymysql://")
    bind_engine_credentials(
        engine, aws, settings.aws_database_secret_id, host=settings.database_host or None,
        port=settings.database_port, dbname=settings.database_name)
    return engine


def build_writer(engine: Engine) -> MirrorWriter:
    return MirrorWriter(MirrorStore(engine), prepare=lambda: migrate(engine))
