"""Alembic environment of the mirror.

`paykube.mirror.migrate.migrate()` passes an open connection in
`config.attributes["connection"]`; the `alembic` command line (with `-x url=...` or
`sqlalchemy.url`) works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from paykube.mirror.migrate import VERSION_TABLE
from paykube.mirror.schema import metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=metadata, version_table=VERSION_TABLE,
                      compare_type=True, **kwargs)  # type: ignore[arg-type]


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or config.get_main_option("sqlalchemy.url") or ""


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        run_online(shared)
    else:
        engine = create_engine(_url(), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                run_online(conn)
        finally:
            engine.dispose()
