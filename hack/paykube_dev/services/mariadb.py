"""A private MariaDB server (Debian package `mariadb-server`) in its own data directory.

`mariadb-install-db` initialises the directory once; `mariadbd --no-defaults` then serves it
on a loopback port, so neither /etc/mysql nor the system service is ever involved. After
each start the database and the application user are (re)provisioned idempotently.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube_dev.proc import free_port
from paykube_dev.services._base import LOOPBACK, Service, find_program, log_tail, new_base_dir

# InnoDB sized for tests; passed to both mariadb-install-db and mariadbd.
_INNODB_OPTS = ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M"]

# Close to Amazon RDS for MySQL 8 defaults: utf8mb4, UTC, MySQL 8's sql_mode.
SERVER_OPTS = [
    *_INNODB_OPTS,
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--default-time-zone=+00:00",
    "--sql-mode=ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
    "--max-connections=200",
    "--skip-name-resolve",
    "--performance-schema=OFF",
]

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def _program(*names: str) -> str:
    found = find_program(*names)
    if found is None:
        raise RuntimeError(f"{names[0]} not found; run hack/install-services.sh")
    return found


def _check_name(name: str) -> str:
    """Identifiers are spliced into SQL: letters, digits and underscores only."""
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"unsafe MySQL identifier {name!r}")
    return name


def _as_root() -> list[str]:
    """mariadbd refuses to run as root unless told to."""
    return ["--user=root"] if os.geteuid() == 0 else []


@dataclass(kw_only=True, eq=False)
class MariaDB(Service):
    """A private MariaDB on `host:port`, with database `database` owned by `user`."""

    what = "MariaDB"

    port: int
    socket: Path
    password: str = field(repr=False)
    database: str = "paykube"
    user: str = "paykube"
    host: str = LOOPBACK

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database as the application user."""
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL for root (no password, loopback only), no default database."""
        return f"mysql+pymysql://root@{self.host}:{self.port}/"

    def url_for(self, database: str) -> str:
        return (f"mysql+pymysql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{database}")

    def engine(self, *, admin: bool = False) -> sqlalchemy.Engine:
        """An engine without pooling (so that stop/start leaves no stale connections)."""
        return sqlalchemy.create_engine(self.admin_url if admin else self.url, poolclass=NullPool,
                                        connect_args={"connect_timeout": 5})

    def create_database(self, name: str) -> str:
        """Create database `name` (if missing) for the application user; returns its URL."""
        _check_name(name)
        engine = self.engine(admin=True)
        try:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
                conn.execute(sqlalchemy.text(f"CREATE USER IF NOT EXISTS '{self.user}'@'%' "
                                             "IDENTIFIED BY :pw"), {"pw": self.password})
                conn.execute(sqlalchemy.text(f"ALTER USER '{self.user}'@'%' IDENTIFIED BY :pw"),
                             {"pw": self.password})
                conn.execute(sqlalchemy.text(
                    f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'%'"))
        finally:
            engine.dispose()
        return self.url_for(name)

    @contextlib.contextmanager
    def temporary_user(self, user: str, password: str, *, grant: str = "SELECT",
                       database: str | None = None) -> Iterator[None]:
        """A database user with `grant` on `database` (default: the application database),
        dropped afterwards. User and password travel as hidden bound parameters, so no
        statement log shows them."""
        _check_name(database or self.database)
        admin = sqlalchemy.create_engine(self.admin_url, poolclass=NullPool,
                                         hide_parameters=True)
        try:
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text(
                    "CREATE OR REPLACE USER :user@'%' IDENTIFIED BY :pw"),
                    {"user": user, "pw": password})
                conn.execute(sqlalchemy.text(
                    f"GRANT {grant} ON `{database or self.database}`.* TO :user@'%'"),
                    {"user": user})
            yield
        finally:
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text("DROP USER IF EXISTS :user@'%'"), {"user": user})
            admin.dispose()

    def set_password(self, user: str, password: str) -> None:
        """Rotate `user`'s password, as an RDS rotation function does (the database first)."""
        admin = sqlalchemy.create_engine(self.admin_url, poolclass=NullPool,
                                         hide_parameters=True)
        try:
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text("ALTER USER :user@'%' IDENTIFIED BY :pw"),
                             {"user": user, "pw": password})
        finally:
            admin.dispose()

    def __post_init__(self) -> None:
        _check_name(self.database)
        _check_name(self.user)

    def _prepare(self) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        self._note("initialising data directory")
        argv = [_program("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                f"--datadir={self.data_dir}", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve", *_as_root(), *_INNODB_OPTS]
        with self.log.open("ab") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.base_dir, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db exited with {result.returncode}"
                               f"{log_tail(self.log)}")

    def ports(self) -> list[int]:
        return [self.port]

    def _argv(self) -> list[str | Path]:
        tmp = self.base_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        return [
            _program("mariadbd", "mysqld"), "--no-defaults", *_as_root(),
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--pid-file={self.base_dir / 'mariadbd.pid'}",
            f"--tmpdir={tmp}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            "--skip-networking=0",
            *SERVER_OPTS,
        ]

    def _ready(self) -> bool:
        engine = sqlalchemy.create_engine(self.admin_url, poolclass=NullPool,
                                          connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except sqlalchemy.exc.OperationalError:
            return False
        finally:
            engine.dispose()

    def _after_ready(self) -> None:
        self.create_database(self.database)


def start_mariadb(base_dir: Path | None = None, *, port: int | None = None,
                  database: str = "paykube", user: str = "paykube",
                  password: str | None = None) -> MariaDB:
    """Start a private MariaDB in `base_dir` (a new temporary directory if None).

    The data directory is initialised on first start; `password` defaults to a random one.
    Use the handle as a context manager, or call `close()`.
    """
    directory, owned = new_base_dir("mariadb", base_dir)
    socket = directory / "mariadbd.sock"
    if len(str(socket)) > _MAX_SOCKET_PATH:
        socket = Path(tempfile.mkdtemp(prefix="paykube-db-")) / "mariadbd.sock"
    server = MariaDB(base_dir=directory, log=directory / "mariadb.log", port=port or free_port(),
                     socket=socket, password=password or secrets.token_hex(12),
                     database=database, user=user, owns_base_dir=owned)
    return server.start()
