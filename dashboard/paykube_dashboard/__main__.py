"""`paykube-dashboard`: serve the transaction-monitoring pages over the mirror."""

from __future__ import annotations

import sys
from typing import Any

import sqlalchemy
from aiohttp import web

from paykube import logs
from paykube.mirror.wiring import build_engine
from paykube.secrets.stripe_secrets import build_aws_source
from paykube_dashboard.app import DashboardService, create_app
from paykube_dashboard.queries import DashboardQueries
from paykube_dashboard.settings import DashboardSettings


def read_only(engine: sqlalchemy.Engine) -> None:
    """Every connection's transactions are read-only: a second lock beside the database
    user's SELECT-only grant (the chart's documented setup), should the user have more."""

    def on_connect(dbapi_connection: Any, _: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")

    sqlalchemy.event.listen(engine, "connect", on_connect)


def build_app(settings: DashboardSettings) -> web.Application:
    engine = build_engine(settings.core, build_aws_source(settings.core))
    if engine is None:
        raise SystemExit("paykube-dashboard needs the mirror: set PAYKUBE_DATABASE_URL, "
                         "PAYKUBE_DATABASE_URL_FILE or PAYKUBE_AWS_DATABASE_SECRET_ID")
    read_only(engine)
    app = create_app(DashboardService(settings, DashboardQueries(engine)))

    async def close(_: web.Application) -> None:
        engine.dispose()

    app.on_cleanup.append(close)
    return app


def main() -> int:
    settings = DashboardSettings.from_env()
    logs.configure(settings.core.log_level)
    web.run_app(build_app(settings), host=settings.host, port=settings.port,
                shutdown_timeout=10, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
