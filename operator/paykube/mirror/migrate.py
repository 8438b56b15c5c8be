"""Run the mirror's Alembic migrations programmatically (`migrate(url)`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from paykube.errors import ErrorCode
from paykube.mirror.store import MirrorError, database_errors

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "paykube_mirror_version"
_LOCK = "paykube_mirror_migrate"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(url: str | Engine, *, lock_timeout: int = 60) -> None:
    """Upgrade the database at `url` to the newest revision (idempotent).

    Replicas starting together serialise on a named lock (`GET_LOCK`), so only one of
    them creates the tables. Raises `MirrorError` when the database is unavailable.
    """
    engine = (sqlalchemy.create_engine(url, poolclass=NullPool) if isinstance(url, str)
              else url)
    config = alembic_config()
    try:
        with database_errors("mirror migration"), engine.connect() as conn:
            got = conn.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                               {"name": _LOCK, "timeout": lock_timeout}).scalar()
            if got != 1:
                raise MirrorError("timed out waiting for the migration lock",
                                  code=ErrorCode.DATABASE_UNAVAILABLE)
            try:
                conn.commit()
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK})
                conn.commit()
    finally:
        if isinstance(url, str):
            engine.dispose()
