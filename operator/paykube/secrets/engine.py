"""Credentials that a SQLAlchemy engine takes for every new connection from a cached
secret source, and drops when the database refuses them (a rotated password)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy

log = logging.getLogger("paykube.secrets")

_MYSQL_ACCESS_DENIED = 1045


def bind_connect_params(engine: sqlalchemy.Engine,
                        provide: Callable[[Any, dict[str, Any]], None],
                        forget: Callable[[], None], source: str) -> None:
    """`provide(dialect, cparams)` fills every new connection's parameters from the cached
    secret; when the server refuses them (MySQL error 1045), `forget()` drops the cache, so
    the next attempt (the pool's retry, or the next checkout) reads the secret again. The
    pool keeps its working connections."""

    def do_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        provide(dialect, cparams)

    def on_error(context: sqlalchemy.engine.ExceptionContext) -> None:
        args = getattr(context.original_exception, "args", ())
        if args and args[0] == _MYSQL_ACCESS_DENIED:
            log.warning("database refused the credentials of %s; reading them again", source)
            forget()

    sqlalchemy.event.listen(engine, "do_connect", do_connect)
    sqlalchemy.event.listen(engine, "handle_error", on_error)
