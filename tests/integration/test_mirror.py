"""The MySQL mirror against a real MariaDB: migrations, guarded upserts, the ledger, the
writer through a database outage, and the reporting queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from paykube.api.types import Phase
from paykube.mirror.migrate import VERSION_TABLE, alembic_config, migrate
from paykube.mirror.projection import ordering_key, project, same_row
from paykube.mirror.reporting import MAX_PAGE_SIZE, CursorError, MirrorReports
from paykube.mirror.schema import metadata
from paykube.mirror.store import MirrorStore, MirrorWriter, make_engine, upsert_statement
from paykube_dev.services import MariaDB

pytestmark = pytest.mark.integration

_RV = itertools.count(1000)

# (phase, extra status) per step of a session's life; history grows with each new phase.
PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "paid": [
        ("Pending", {}),
        ("Open", {"sessionId": "cs_{u}", "url": "https://checkout.example/{u}"}),
        ("Open", {"sessionId": "cs_{u}", "paymentIntentId": "pi_{u}"}),
        ("Processing", {"sessionId": "cs_{u}", "paymentIntentId": "pi_{u}",
                        "paymentStatus": "unpaid"}),
        ("Paid", {"sessionId": "cs_{u}", "paymentIntentId": "pi_{u}", "paymentStatus": "paid",
                  "amountTotal": 1999}),
    ],
    "expired": [
        ("Pending", {}),
        ("Open", {"sessionId": "cs_{u}", "expiresAt": "2024-05-02T10:00:00Z"}),
        ("Expired", {"sessionId": "cs_{u}", "expiresAt": "2024-05-02T10:00:00Z"}),
    ],
    "failed": [
        ("Pending", {}),
        ("Pending", {"error": {"code": "ProviderUnavailable", "message": "503",
                               "retryable": True}}),
        ("Failed", {"error": {"code": "ProviderRejected", "message": "too small",
                              "providerCode": "amount_too_small"}}),
    ],
    "canceled": [
        ("Pending", {}),
        ("Open", {"sessionId": "cs_{u}"}),
        ("Canceled", {"sessionId": "cs_{u}"}),
    ],
}


def manifest(uid: str, phase: str, history: list[str], *, rv: int | None = None,
             name: str | None = None, namespace: str = "shop", amount: int = 1999,
             currency: str = "usd", created: str = "2024-05-01T10:00:00Z",
             status: dict[str, Any] | None = None) -> dict[str, Any]:
    status = dict(status or {})
    if "amountTotal" in status:
        status["currency"] = currency
    return {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
        "metadata": {"uid": uid, "name": name or f"order-{uid[:8]}", "namespace": namespace,
                     "resourceVersion": str(rv if rv is not None else next(_RV)),
                     "creationTimestamp": created, "generation": 1},
        "spec": {"amount": amount, "currency": currency, "description": "Annual subscription",
                 "successUrl": "https://shop.example/ok", "cancelUrl": "https://shop.example/no",
                 "metadata": {"order": uid[:8]}},
        "status": {
            "phase": phase,
            "history": [{"phase": p, "at": f"2024-05-01T10:{i:02d}:00Z", "source": "operator"}
                        for i, p in enumerate(history)],
            **status,
        },
    }


def lifecycle(uid: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The successive manifests of one object, with increasing resourceVersions."""
    out: list[dict[str, Any]] = []
    history: list[str] = []
    for phase, extra in PATHS[path]:
        if phase not in history:
            history.append(phase)
        status = {k: v.format(u=uid[:8]) if isinstance(v, str) else v for k, v in extra.items()}
        out.append(manifest(uid, phase, list(history), status=status, **kwargs))
    return out


def new_uid() -> str:
    return str(uuid.uuid4())


def assert_mirrors(store: MirrorStore, latest: dict[str, Any]) -> None:
    """The row equals what `latest` projects to; the ledger has one row per phase."""
    uid = latest["metadata"]["uid"]
    row = store.row(uid)
    assert row is not None, uid
    proj = project(latest)
    assert same_row(row, proj.row), {k: (row[k], proj.row[k]) for k in proj.row
                                     if row[k] != proj.row[k]}
    ledger = store.transitions(uid)
    assert [t["phase"] for t in ledger] == [h["phase"] for h in latest["status"]["history"]]


@pytest.fixture(scope="module")
def db_url(mariadb: MariaDB) -> str:
    url = mariadb.create_database(f"mirror_{uuid.uuid4().hex[:10]}")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> MirrorStore:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM payment_session_transitions"))
        conn.execute(text("DELETE FROM payment_sessions"))
    return MirrorStore(engine)


# -- migrations ----------------------------------------------------------------------------


def test_migrations_upgrade_an_empty_database_idempotently(mariadb: MariaDB) -> None:
    url = mariadb.create_database(f"mig_{uuid.uuid4().hex[:10]}")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
        migrate(url)
        migrate(url)  # again: nothing to do
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        assert tables == {"payment_sessions", "payment_session_transitions",
                          "error_explanations", "payment_refunds",
                          "payment_refund_transitions", "payment_ledger", VERSION_TABLE}
        with engine.connect() as conn:
            query = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 -- constant
            versions = conn.execute(query).all()
            assert [v[0] for v in versions] == ["0004"]
            # The migrations build exactly what schema.py declares.
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
        # Down and up again: the revisions are reversible.
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(sqlalchemy.inspect(engine).get_table_names()) == {VERSION_TABLE}
        migrate(engine)
        assert "payment_sessions" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


async def test_concurrent_migrations_serialise(mariadb: MariaDB) -> None:
    url = mariadb.create_database(f"mig_{uuid.uuid4().hex[:10]}")
    await asyncio.gather(*(asyncio.to_thread(migrate, url) for _ in range(4)))
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        assert "payment_sessions" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


# -- ordering and upserts -------------------------------------------------------------------


def test_ordering_key_is_lexicographic() -> None:
    assert ordering_key(1, 0, 0) > ordering_key(0, 63, 2**52 - 1)
    assert ordering_key(1, 2, 0) > ordering_key(1, 1, 2**52 - 1)
    assert ordering_key(1, 2, 10) > ordering_key(1, 2, 9)
    assert ordering_key(3, 32, 2**52 - 1) < 2**63
    with pytest.raises(ValueError, match="resourceVersion"):
        ordering_key(0, 0, 2**52)


def test_upsert_follows_every_transition_of_several_sessions(store: MirrorStore) -> None:
    sessions = {}
    for path in PATHS:
        uid = new_uid()
        sessions[uid] = lifecycle(uid, path)
    # Interleave the sessions' steps, as the operator would see them.
    for step in range(max(len(ms) for ms in sessions.values())):
        for manifests in sessions.values():
            if step >= len(manifests):
                continue
            assert store.upsert(manifests[step]) is True
            assert_mirrors(store, manifests[step])
            assert store.upsert(manifests[step]) is False  # duplicate: nothing changes
    rows = store.rows()
    assert {r["uid"] for r in rows} == set(sessions)
    paid = next(ms[-1] for ms in sessions.values() if ms[-1]["status"]["phase"] == "Paid")
    row = store.row(paid["metadata"]["uid"])
    assert row is not None
    assert (row["phase"], row["payment_status"], row["amount_total"]) == ("Paid", "paid", 1999)
    failed = next(ms[-1] for ms in sessions.values() if ms[-1]["status"]["phase"] == "Failed")
    row = store.row(failed["metadata"]["uid"])
    assert row is not None
    assert (row["error_code"], row["error_provider_code"]) == ("ProviderRejected",
                                                               "amount_too_small")
    assert row["metadata_json"] == {"order": failed["metadata"]["uid"][:8]}


def test_older_observation_never_overwrites_newer(store: MirrorStore) -> None:
    manifests = lifecycle(new_uid(), "paid")
    assert store.upsert(manifests[-1]) is True
    for older in reversed(manifests[:-1]):
        assert store.upsert(older) is False
        assert_mirrors(store, manifests[-1])


def test_guard_in_sql_ignores_older_rows_and_updates_version_last(
    store: MirrorStore, engine: Engine,
) -> None:
    """The statement itself (without the store's fast path) keeps the newest row."""
    old, _, _, _, new = lifecycle(new_uid(), "paid")
    with engine.begin() as conn:
        conn.execute(upsert_statement(project(new)))
        conn.execute(upsert_statement(project(old)))  # older: must change nothing
    store.add_transitions(new)
    assert_mirrors(store, new)
    other_old, *_, other_new = lifecycle(new_uid(), "expired")
    with engine.begin() as conn:
        conn.execute(upsert_statement(project(other_old)))
        # Newer: every column must follow, not only the ones assigned before `version`.
        conn.execute(upsert_statement(project(other_new)))
    store.add_transitions(other_new)
    assert_mirrors(store, other_new)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_duplicated_and_reordered_observations_leave_the_newest(
    engine: Engine, data: st.DataObject,
) -> None:
    store = MirrorStore(engine)
    paths = data.draw(st.lists(st.sampled_from(sorted(PATHS)), min_size=1, max_size=4),
                      label="paths")
    sessions = [lifecycle(new_uid(), path) for path in paths]
    every = [m for ms in sessions for m in ms]
    duplicates = data.draw(st.lists(st.sampled_from(every), max_size=len(every)),
                           label="duplicates")
    order = data.draw(st.permutations(every + duplicates), label="order")
    for m in order:
        store.upsert(m)
    for manifests in sessions:
        assert_mirrors(store, manifests[-1])


def test_ledger_has_one_row_per_phase_reached(store: MirrorStore) -> None:
    manifests = lifecycle(new_uid(), "paid")
    for m in manifests + manifests[::-1] + manifests:
        store.upsert(m)
    ledger = store.transitions(manifests[0]["metadata"]["uid"])
    assert [t["phase"] for t in ledger] == ["Pending", "Open", "Processing", "Paid"]
    assert all(t["source"] == "operator" and t["at"] is not None for t in ledger)
    # Older observations only carry earlier entries, so the first `at` recorded stays.
    assert ledger[0]["at"] == dt.datetime(2024, 5, 1, 10, 0)


def test_mark_deleted_is_sticky(store: MirrorStore) -> None:
    first, *_, last = lifecycle(new_uid(), "canceled")
    uid = first["metadata"]["uid"]
    store.upsert(first)
    assert store.mark_deleted(uid) is True
    assert store.mark_deleted(uid) is False
    store.upsert(last)  # a late observation updates the row but does not revive it
    row = store.row(uid)
    assert row is not None
    assert (row["phase"], row["deleted"]) == ("Canceled", True)
    assert row["deleted_at"] is not None
    assert store.mark_deleted("no-such-uid") is False


# -- the writer -----------------------------------------------------------------------------


async def test_writer_keeps_the_newest_pending_observation(store: MirrorStore) -> None:
    writer = MirrorWriter(store)  # not started: everything stays pending
    manifests = lifecycle(new_uid(), "paid")
    for m in [manifests[2], manifests[4], manifests[0], manifests[3]]:
        await writer.record(m)
    await writer.record({"metadata": {}})  # unusable: dropped, never raised
    assert writer.pending_count() == 1
    assert writer.dropped == 1
    assert await writer.flush(0.05) is False
    writer.start()
    try:
        assert await writer.flush(10)
    finally:
        await writer.aclose()
    assert writer.pending_count() == 0
    assert writer.written == 1
    assert_mirrors(store, manifests[4])

    # A deletion is written after the object's last pending observation.
    gone = lifecycle(new_uid(), "canceled")
    writer = MirrorWriter(store)
    await writer.record(gone[1])
    await writer.record_deleted(gone[2])
    await writer.record(gone[2])
    writer.start()
    try:
        assert await writer.flush(10)
    finally:
        await writer.aclose()
    row = store.row(gone[0]["metadata"]["uid"])
    assert row is not None
    assert (row["phase"], row["deleted"]) == ("Canceled", True)


async def test_writer_loses_nothing_while_the_database_is_down(
    mariadb: MariaDB, db_url: str,
) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM payment_session_transitions"))
        conn.execute(text("DELETE FROM payment_sessions"))
    store = MirrorStore(engine)
    writer = MirrorWriter(store, initial_backoff=0.05, max_backoff=0.5)
    writer.start()
    paths = ["paid", "expired", "failed", "canceled", "paid"] * 2
    sessions = [lifecycle(new_uid(), p) for p in paths]
    try:
        for manifests in sessions:  # the first step of each, written normally
            await writer.record(manifests[0])
        assert await writer.flush(30)
        assert len(store.rows()) == len(sessions)

        # Every later step, interleaved across sessions, then stale re-observations.
        updates = [m for step in itertools.zip_longest(*[ms[1:] for ms in sessions])
                   for m in step if m is not None]
        stale = itertools.cycle([m for ms in sessions for m in ms[:-1]])
        updates += [next(stale) for _ in range(50 - len(updates))]
        assert len(updates) == 50
        mariadb.stop()
        try:
            slowest = 0.0
            for m in updates:
                began = time.monotonic()
                await writer.record(m)
                slowest = max(slowest, time.monotonic() - began)
                await asyncio.sleep(0.01)  # reconciliation goes on meanwhile
            assert slowest < 0.05, "record() must not wait for the database"
            await asyncio.sleep(1.0)
            assert writer.failures >= 2, "the writer retried while the database was down"
            assert writer.pending_count() == len(sessions)
            assert writer.running
        finally:
            mariadb.start()
        assert await writer.flush(60), f"still pending: {writer.pending_count()}"
        for manifests in sessions:
            assert_mirrors(store, manifests[-1])
        assert writer.dropped == 0
    finally:
        await writer.aclose()
        engine.dispose()


async def test_writer_waits_for_the_schema(mariadb: MariaDB) -> None:
    """Before the migrations ran, writes are retried (not dropped); `prepare` runs them."""
    url = mariadb.create_database(f"late_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url)
    store = MirrorStore(engine)
    manifests = lifecycle(new_uid(), "expired")
    writer = MirrorWriter(store, initial_backoff=0.02, max_backoff=0.1)
    writer.start()
    try:
        await writer.record(manifests[-1])
        assert await writer.flush(0.5) is False
        assert writer.failures >= 1 and writer.dropped == 0
        await asyncio.to_thread(migrate, url)
        assert await writer.flush(10)
        assert_mirrors(store, manifests[-1])
    finally:
        await writer.aclose()
        engine.dispose()

    url = mariadb.create_database(f"late_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url)
    store = MirrorStore(engine)
    writer = MirrorWriter(store, prepare=lambda: migrate(engine))
    writer.start()
    try:
        await writer.record(manifests[-1])
        assert await writer.flush(30)
        assert_mirrors(store, manifests[-1])
    finally:
        await writer.aclose()
        engine.dispose()


# -- reporting ------------------------------------------------------------------------------


def _seed_reports(store: MirrorStore) -> list[dict[str, Any]]:
    """12 sessions over 3 days, 2 currencies and 2 namespaces, in known phases."""
    seeded = []
    plan = [
        # (day, currency, path, amount, namespace)
        (1, "usd", "paid", 1000, "shop"), (1, "usd", "paid", 2000, "shop"),
        (1, "usd", "expired", 500, "shop"), (1, "eur", "paid", 700, "shop"),
        (2, "usd", "paid", 1500, "shop"), (2, "eur", "failed", 100, "billing"),
        (2, "eur", "canceled", 900, "billing"), (2, "usd", "expired", 300, "billing"),
        (3, "usd", "paid", 4000, "billing"), (3, "usd", "paid", 1000, "shop"),
        (3, "eur", "expired", 250, "shop"), (3, "usd", "failed", 50, "shop"),
    ]
    for i, (day, currency, path, amount, namespace) in enumerate(plan):
        created = f"2024-05-0{day}T{10 + i:02d}:00:00Z"
        last = lifecycle(new_uid(), path, amount=amount, currency=currency,
                         namespace=namespace, created=created, name=f"order-{i}")[-1]
        store.upsert(last)
        seeded.append(last)
    return seeded


def test_reporting_totals_by_phase_currency_and_day(store: MirrorStore) -> None:
    _seed_reports(store)
    reports = MirrorReports(store.engine)
    totals = {(t.day.day, t.phase.value, t.currency): (t.count, t.amount)
              for t in reports.totals()}
    assert totals == {
        (1, "Paid", "usd"): (2, 3000), (1, "Expired", "usd"): (1, 500),
        (1, "Paid", "eur"): (1, 700),
        (2, "Paid", "usd"): (1, 1500), (2, "Failed", "eur"): (1, 100),
        (2, "Canceled", "eur"): (1, 900), (2, "Expired", "usd"): (1, 300),
        (3, "Paid", "usd"): (2, 5000), (3, "Expired", "eur"): (1, 250),
        (3, "Failed", "usd"): (1, 50),
    }
    ranged = reports.totals(since=dt.date(2024, 5, 2), until=dt.date(2024, 5, 3))
    assert {t.day for t in ranged} == {dt.date(2024, 5, 2)}
    assert sum(t.count for t in ranged) == 4
    shop = reports.totals(namespace="billing")
    assert sum(t.amount for t in shop) == 100 + 900 + 300 + 4000
    paid_total = sum(t.amount_total for t in reports.totals() if t.phase is Phase.PAID)
    assert paid_total == 1999 * 6  # amountTotal as the provider reported it


def test_reporting_history_is_ordered(store: MirrorStore) -> None:
    manifests = lifecycle(new_uid(), "paid")
    for m in manifests:
        store.upsert(m)
    reports = MirrorReports(store.engine)
    history = reports.history(manifests[0]["metadata"]["uid"])
    assert history is not None
    assert history.session.phase is Phase.PAID
    assert history.session.payment_intent_id == f"pi_{manifests[0]['metadata']['uid'][:8]}"
    assert [t.phase for t in history.transitions] == [
        Phase.PENDING, Phase.OPEN, Phase.PROCESSING, Phase.PAID]
    assert reports.history("unknown") is None
    named = reports.by_name("shop", manifests[0]["metadata"]["name"])
    assert [r.uid for r in named] == [manifests[0]["metadata"]["uid"]]


def test_reporting_list_filters_and_paginates(store: MirrorStore) -> None:
    seeded = _seed_reports(store)
    reports = MirrorReports(store.engine)
    newest_first = sorted(seeded, key=lambda m: m["metadata"]["creationTimestamp"],
                          reverse=True)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = reports.list_sessions(limit=5, cursor=cursor)
        pages += 1
        seen += [r.uid for r in page.items]
        assert len(page.items) <= 5
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == [m["metadata"]["uid"] for m in newest_first]

    usd_paid = reports.list_sessions(phase=Phase.PAID, currency="usd")
    assert len(usd_paid.items) == 5 and usd_paid.next_cursor is None
    assert all(r.phase is Phase.PAID and r.currency == "usd" for r in usd_paid.items)
    terminal_bad = reports.list_sessions(phase=["Failed", Phase.CANCELED], namespace="billing")
    assert {r.phase for r in terminal_bad.items} == {Phase.FAILED, Phase.CANCELED}
    day2 = reports.list_sessions(created_from=dt.datetime(2024, 5, 2, tzinfo=dt.UTC),
                                 created_to=dt.datetime(2024, 5, 3))
    assert len(day2.items) == 4
    assert all(r.created_at.date() == dt.date(2024, 5, 2) for r in day2.items)

    store.mark_deleted(seeded[0]["metadata"]["uid"])
    assert len(reports.list_sessions(include_deleted=False).items) == 11
    assert len(reports.list_sessions(limit=10_000).items) == 12 <= MAX_PAGE_SIZE
    with pytest.raises(ValueError, match="limit"):
        reports.list_sessions(limit=0)
    with pytest.raises(CursorError):
        reports.list_sessions(cursor="not-a-cursor")


# -- indexes match the reporting queries ----------------------------------------------------


_PLAN_ROWS = 6000


def _plan_created(i: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1) + dt.timedelta(minutes=14 * i + 3)


@pytest.fixture(scope="module")
def report_engine(mariadb: MariaDB) -> Iterator[Engine]:
    """A database of its own with enough rows (60 days, 12 namespaces) that the optimizer
    prefers an index that matches over a table scan."""
    url = mariadb.create_database(f"plan_{uuid.uuid4().hex[:10]}")
    migrate(url)
    engine = make_engine(url)
    rows = []
    for i in range(_PLAN_ROWS):
        created = _plan_created(i)
        rows.append({
            "uid": f"{i:08d}-plan", "namespace": f"team-{i % 12}", "name": f"order-{i}",
            "phase": ["Paid", "Expired", "Failed", "Open"][i % 4], "phase_rank": i % 4,
            "amount": 100 + i, "currency": ["usd", "eur", "gbp"][i % 3],
            "created_at": created, "created_day": created.date(), "updated_at": created,
            "version": i, "amount_total": 100 + i if i % 4 == 0 else None,
        })
    with engine.begin() as conn:
        for chunk in range(0, len(rows), 1000):
            conn.execute(metadata.tables["payment_sessions"].insert(), rows[chunk:chunk + 1000])
        conn.execute(text("ANALYZE TABLE payment_sessions"))
    yield engine
    engine.dispose()


def _plans(engine: Engine, run: Any) -> list[dict[str, Any]]:
    """EXPLAIN of every statement `run()` sends (captured as SQLAlchemy sends it)."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    sqlalchemy.event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", capture)
    assert sent, "the report sent no query"
    plans = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            cursor = conn.connection.cursor()
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [d[0] for d in cursor.description]
            plans += [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    return plans


def test_totals_over_a_day_range_use_the_covering_day_index(report_engine: Engine) -> None:
    reports = MirrorReports(report_engine)
    result: list[Any] = []
    plans = _plans(report_engine, lambda: result.extend(
        reports.totals(since=dt.date(2024, 2, 1), until=dt.date(2024, 2, 8))))
    in_range = sum(dt.date(2024, 2, 1) <= _plan_created(i).date() < dt.date(2024, 2, 8)
                   for i in range(_PLAN_ROWS))
    assert sum(t.count for t in result) == in_range > 0  # the report's real query ran
    [plan] = plans
    assert plan["key"] == "ix_payment_sessions_totals", plan
    assert plan["type"] == "range", plan
    assert "Using index" in (plan["Extra"] or ""), plan  # covering: no row lookups
    assert "filesort" not in (plan["Extra"] or ""), plan


def test_namespace_list_uses_the_namespace_created_at_index(report_engine: Engine) -> None:
    reports = MirrorReports(report_engine)
    pages: list[Any] = []
    plans = _plans(report_engine, lambda: pages.append(
        reports.list_sessions(namespace="team-5", limit=20)))
    assert [r.namespace for r in pages[0].items] == ["team-5"] * 20
    [plan] = plans
    assert plan["key"] == "ix_payment_sessions_namespace_created_at", plan
    assert "filesort" not in (plan["Extra"] or ""), plan
    # The next page (keyset cursor) too.
    plans = _plans(report_engine, lambda: reports.list_sessions(
        namespace="team-5", limit=20, cursor=pages[0].next_cursor))
    assert [p["key"] for p in plans] == ["ix_payment_sessions_namespace_created_at"], plans
    assert all("filesort" not in (p["Extra"] or "") for p in plans), plans
