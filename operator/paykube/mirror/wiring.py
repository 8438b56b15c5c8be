"""Build the mirror (engine, store, writer) from settings, with credentials from the
database URL or from an RDS-managed secret in AWS Secrets Manager."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import Engine

from paykube.errors import CredentialsError, ErrorCode
from paykube.mirror.migrate import migrate
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine
from paykube.secrets.engine import bind_connect_params
from paykube.secrets.files import SecretFile
from paykube.settings import Settings

if TYPE_CHECKING:
    from paykube.secrets.aws import SecretsManagerSource

def build_engine(settings: Settings, aws: SecretsManagerSource | None) -> Engine | None:
    """None when no database is configured (the mirror is optional)."""
    if settings.database_url_file:
        engine = make_engine("mysql+pymysql://")
        bind_engine_url_file(engine, SecretFile(Path(settings.database_url_file),
                                                settings.secrets_ttl))
        return engine
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


def bind_engine_url_file(engine: sqlalchemy.Engine, url_file: SecretFile) -> None:
    """Make `engine` connect with the SQLAlchemy URL in `url_file` (user, password, host,
    port, database and driver options), read again after its TTL and whenever the server
    refuses the password: a rotated password needs no restart."""

    def provide(dialect: Any, cparams: dict[str, Any]) -> None:
        try:
            url = sqlalchemy.engine.make_url(url_file.text().get())
        except sqlalchemy.exc.ArgumentError:
            raise CredentialsError(f"the secret file {url_file.path} holds no database URL",
                                   code=ErrorCode.SECRETS_UNAVAILABLE) from None
        _, from_url = dialect.create_connect_args(url)  # driver options of the URL too
        for key in ("user", "passwd", "password", "host", "port", "database", "db"):
            cparams.pop(key, None)
        cparams.update(from_url)

    bind_connect_params(engine, provide, url_file.invalidate, str(url_file.path))
