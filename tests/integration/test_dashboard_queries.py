"""The dashboard's queries on MariaDB with 10,000 sessions: each statement it sends is
EXPLAINed, and none reads the sessions table whole; the window aggregates read only the
covering index of revision 0003. (Timing is the benchmark's job: bench/dashboard_bench.py.)"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from paykube.mirror.migrate import migrate
from paykube.mirror.projection import utcnow
from paykube_dashboard.queries import DashboardQueries, Filters, encode_cursor
from paykube_dashboard.windows import parse_window
from paykube_dev.dashboard_seed import bulk_load
from paykube_dev.services import MariaDB

pytestmark = pytest.mark.integration
DASHBOARD_INDEX = "ix_payment_sessions_dashboard"
ERRORS_INDEX = "ix_payment_sessions_errors"
LEDGER_INDEX = "ix_payment_ledger_totals"


@pytest.fixture(scope="module")
def engine(mariadb: MariaDB) -> Iterator[sqlalchemy.Engine]:
    url = mariadb.create_database(f"dashq_{uuid.uuid4().hex[:8]}")
    migrate(url)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    bulk_load(url, 10_000, span=dt.timedelta(days=60))
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE payment_sessions, payment_session_transitions")
    yield engine
    engine.dispose()


class Recorder:
    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.statements: list[tuple[str, Any]] = []
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._record)
        self.engine = engine

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any,
                context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "EXPLAIN" not in statement:
            self.statements.append((statement, parameters))

    def close(self) -> None:
        sqlalchemy.event.remove(self.engine, "before_cursor_execute", self._record)

    def plans(self, how: str = "EXPLAIN") -> list[tuple[str, list[dict[str, Any]]]]:
        """EXPLAIN each statement, or ANALYZE it (MariaDB runs it and adds r_rows, the
        rows each step really read)."""
        out = []
        with self.engine.connect() as conn:
            for statement, parameters in self.statements:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                cursor.execute(f"{how} {statement}", parameters)
                columns = [c[0] for c in cursor.description]
                out.append((statement, [dict(zip(columns, row, strict=True))
                                        for row in cursor.fetchall()]))
                cursor.close()
        return out


def _explain(engine: sqlalchemy.Engine, call: Any, how: str = "EXPLAIN"
             ) -> list[tuple[str, list[dict[str, Any]]]]:
    recorder = Recorder(engine)
    try:
        call()
    finally:
        recorder.close()
    plans = recorder.plans(how)
    assert plans, "the call sent no SELECT"
    return plans


def _no_full_scan(plans: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for statement, rows in plans:
        for row in rows:
            if row["table"] in ("payment_sessions", "payment_session_transitions",
                                "entered"):
                assert row["type"] != "ALL", (statement, row)
                assert row["key"] is not None, (statement, row)


@pytest.mark.parametrize("window", ["1h", "24h", "30d"])
def test_window_aggregates_read_only_the_covering_index(engine: sqlalchemy.Engine,
                                                        window: str) -> None:
    queries = DashboardQueries(engine)
    w = parse_window(window, None, None, utcnow())
    for call, indexes in ((lambda: queries.overview(w), {DASHBOARD_INDEX}),
                          (lambda: queries.errors(w), {DASHBOARD_INDEX, ERRORS_INDEX})):
        plans = _explain(engine, call)
        _no_full_scan(plans)
        aggregate = plans[0][1][0]
        assert aggregate["key"] in indexes, plans[0]
        assert "Using index" in (aggregate["Extra"] or ""), plans[0]
    # The money that moved: the ledger's covering index, nothing else.
    ledger = [p for p in _explain(engine, lambda: queries.overview(w))
              if "payment_ledger" in p[0]]
    assert len(ledger) == 1, ledger
    assert ledger[0][1][0]["key"] == LEDGER_INDEX, ledger
    assert "Using index" in (ledger[0][1][0]["Extra"] or ""), ledger


def test_attention_lists_use_indexes(engine: sqlalchemy.Engine) -> None:
    queries = DashboardQueries(engine)
    now = utcnow()
    plans = _explain(engine, lambda: queries.attention(
        now, dt.timedelta(hours=1), parse_window("24h", None, None, now)))
    assert len(plans) == 10  # a count and a page for each of the five lists
    _no_full_scan(plans)


@pytest.mark.parametrize("filters", [
    Filters(), Filters(namespace="shop"), Filters(phase="Failed"),
    Filters(provider="razorpay"), Filters(currency="gbp"),
    Filters(created_from=dt.datetime(2020, 1, 1), created_to=dt.datetime(2030, 1, 1)),
    Filters(search="order-0001"), Filters(search="cs_test_nothing"),
], ids=lambda f: ",".join(f"{k}" for k, v in vars(f).items() if v) or "none")
def test_session_lists_use_an_index_and_no_offset(engine: sqlalchemy.Engine,
                                                  filters: Filters) -> None:
    queries = DashboardQueries(engine)
    cursor = encode_cursor(utcnow() - dt.timedelta(days=10), "m")
    for page_cursor in (None, cursor):
        plans = _explain(engine, lambda c=page_cursor: queries.sessions(filters, c, 50))
        _no_full_scan(plans)
        assert all("OFFSET" not in statement.upper() for statement, _ in plans)
    if not filters.search:
        # A later page (here 10 days back) seeks into the index: it reads about as many
        # rows as the first page, not every row above the cursor.
        for page_cursor in (None, cursor):
            analyzed = _explain(engine, lambda c=page_cursor: queries.sessions(filters, c, 50),
                                "ANALYZE")
            step = analyzed[0][1][0]
            assert float(step["r_rows"]) <= 51 * 8, (page_cursor, step)


def test_session_detail_and_facets_use_keys(engine: sqlalchemy.Engine) -> None:
    queries = DashboardQueries(engine)
    with engine.connect() as conn:
        uid = conn.exec_driver_sql("SELECT uid FROM payment_sessions LIMIT 1").scalar_one()
    plans = _explain(engine, lambda: queries.session(uid))
    _no_full_scan(plans)
    assert all(rows[0]["type"] in ("const", "ref") for _, rows in plans), plans
    plans = _explain(engine, queries.facets)
    _no_full_scan(plans)
    assert all("Using index for group-by" in (rows[0]["Extra"] or "") for _, rows in plans)


def test_attention_counts_stop_at_the_cap(engine: sqlalchemy.Engine,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A list with more matches than the cap says "more than" instead of counting them
    all; below the cap the count is exact."""
    from paykube_dashboard import queries as module

    now = utcnow()
    window = parse_window("30d", None, None, now)
    exact = DashboardQueries(engine).attention(now, dt.timedelta(hours=1), window)
    assert exact.expired_open.total > 10 and not exact.expired_open.capped
    with engine.connect() as conn:
        assert exact.expired_open.total == conn.exec_driver_sql(
            "SELECT COUNT(*) FROM payment_sessions WHERE phase = 'Open' AND NOT deleted "
            "AND expires_at < %s", (now,)).scalar_one()
    monkeypatch.setattr(module, "COUNT_CAP", 10)
    capped = DashboardQueries(engine).attention(now, dt.timedelta(hours=1), window)
    assert (capped.expired_open.total, capped.expired_open.capped) == (11, True)
    assert capped.expired_open.rows == exact.expired_open.rows
