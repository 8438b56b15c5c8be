"""Writes to the reporting mirror: a synchronous store, and the operator's async writer.

`MirrorStore.upsert` is idempotent and order-insensitive: the row carries the ordering key
of the observation it was written from (`version`, see `projection.ordering_key`) and the
upsert only replaces the row's columns when the incoming key is higher, in one
`INSERT ... ON DUPLICATE KEY UPDATE` whose assignments all test the key and update
`version` last (both servers evaluate the assignments left to right, each seeing the
columns already assigned). The transitions table gets each history entry once (a no-op
update on its (uid, phase) key), and `payment_ledger` each money movement once (its
(uid, kind, phase) key). PaymentRefunds (`kind=REFUND`) are written the same way to their
own tables (`payment_refunds`, `payment_refund_transitions`).

`MirrorWriter` is what reconciliation calls: `record()` only remembers the newest pending
observation per uid and returns; a background task writes them in batches and, while the
database is unavailable, retries with exponential backoff and jitter until written. What
is still pending when the process ends is lost, and `paykube.mirror.resync` repairs it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import ColumnElement, Connection, Engine, Table, case, select, update
from sqlalchemy.dialects.mysql import Insert
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from paykube.errors import CredentialsError, ErrorCode, PaykubeError
from paykube.mirror.projection import (
    REFUND,
    SESSION,
    ManifestError,
    Projection,
    manifest_uid,
    project_as,
    resource_version_of,
    utcnow,
)
from paykube.mirror.schema import payment_ledger as ledger_table
from paykube.mirror.schema import payment_refund_transitions, payment_refunds
from paykube.mirror.schema import payment_session_transitions as transitions_table
from paykube.mirror.schema import payment_sessions as sessions_table

# Per object kind: its rows, and its transitions.
_TABLES: dict[str, tuple[Table, Table]] = {
    SESSION: (sessions_table, transitions_table),
    REFUND: (payment_refunds, payment_refund_transitions),
}


def _tables(kind: str) -> tuple[Table, Table]:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}") from None

log = logging.getLogger(__name__)


class MirrorError(PaykubeError):
    """A mirror write failed; `code` is DATABASE_UNAVAILABLE when retrying may help."""

    code = ErrorCode.DATABASE_UNAVAILABLE


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine suited to the mirror: pooled, pinged before use (so a restarted server
    is reconnected to transparently), with short connect and I/O timeouts."""
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
    }
    options.update(kwargs)
    return sqlalchemy.create_engine(url, **options)


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Translate driver errors into `MirrorError` (without SQL parameters in the message).

    A `CredentialsError` comes from the engine's `do_connect` hook (credentials from AWS
    Secrets Manager, `secrets.aws.bind_engine_credentials`); SQLAlchemy only wraps DBAPI
    errors, so it arrives here as is. A secret that is missing, malformed or unreachable
    is fixed outside the process and the cache re-reads it: the write must wait, not be
    dropped.
    """
    try:
        yield
    except CredentialsError as exc:
        raise MirrorError(f"{what}: database credentials unavailable: {exc.message}",
                          code=ErrorCode.DATABASE_UNAVAILABLE) from exc
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        raise MirrorError(f"{what}: database unavailable: {_reason(exc)}",
                          code=ErrorCode.DATABASE_UNAVAILABLE) from exc
    except DBAPIError as exc:
        if _error_number(exc) in _NOT_READY:
            raise MirrorError(f"{what}: mirror schema not ready: {_reason(exc)}",
                              code=ErrorCode.DATABASE_UNAVAILABLE) from exc
        raise MirrorError(f"{what}: rejected by the database: {_reason(exc)}",
                          code=ErrorCode.PAYLOAD_INVALID) from exc


# Unknown database, no such table, unknown column: not migrated (yet); retrying helps once
# the migrations ran, while dropping the write would lose it.
_NOT_READY = frozenset({1049, 1146, 1054})


def _error_number(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig)[:300]}"


@dataclass(frozen=True)
class Sweep:
    """What a full list showed: every object of `kind` in `namespace` (None: all
    namespaces) that `covers` selects, as of `resource_version`."""

    namespace: str | None
    listed: frozenset[str]
    resource_version: int
    covers: Callable[[str], bool] = lambda namespace: True
    kind: str = SESSION


@dataclass(frozen=True)
class MirrorOp:
    """One pending change for a uid: the newest observation, and/or its deletion."""

    uid: str
    projection: Projection | None = None
    deleted: bool = False
    away: bool = False  # the deletion was inferred from a relist, not observed
    kind: str = SESSION

    def __post_init__(self) -> None:
        if self.projection is not None and self.projection.kind != self.kind:
            object.__setattr__(self, "kind", self.projection.kind)


_NEWER = "newer"  # only a higher ordering key replaces the row (normal writes)
_NOT_OLDER = "not_older"  # an equal key replaces it too (repairs a corrupted row)


def upsert_statement(projections: Projection | Sequence[Projection],
                     mode: str = _NEWER) -> Insert:
    """`INSERT ... ON DUPLICATE KEY UPDATE` of rows, each guarded by its ordering key.

    Every assignment is `col = CASE WHEN <incoming wins> THEN VALUES(col) ELSE col END`
    and `version` is assigned last, since each assignment sees the ones before it.
    """
    if isinstance(projections, Projection):
        projections = [projections]
    table, _ = _tables(projections[0].kind)
    if any(p.kind != projections[0].kind for p in projections):
        raise ValueError("one statement writes one kind of object")
    now = utcnow()
    rows = [{**p.row, "updated_at": now} for p in projections]
    stmt = mysql_insert(table).values(rows)
    incoming = stmt.inserted.version
    stored = table.c.version
    wins = incoming > stored if mode == _NEWER else incoming >= stored
    assignments: list[tuple[str, Any]] = [
        (name, case((wins, stmt.inserted[name]), else_=table.c[name]))
        for name in rows[0] if name not in ("uid", "version")
    ]
    assignments.append(("version", case((wins, incoming), else_=stored)))
    return stmt.on_duplicate_key_update(assignments)


def _flag_deleted(conn: Connection, *where: ColumnElement[bool], away: bool = False,
                  table: Table = sessions_table) -> int:
    """Flag the rows matching `where` deleted (once: flagged rows keep their time);
    `away`: found absent by a relist or resync rather than seen deleted."""
    now = utcnow()
    return int(conn.execute(
        update(table).where(*where, table.c.deleted.is_(False))
        .values(deleted=True, deleted_at=now, updated_at=now, deleted_while_away=away)
    ).rowcount)


def _add_ledger(conn: Connection, projections: Sequence[Projection]) -> int:
    """Insert the money movements of `projections`; a movement already recorded keeps its
    row (the key is (uid, kind, phase): a replay adds nothing, a first write wins)."""
    now = utcnow()
    rows = [{**entry, "recorded_at": now} for p in projections for entry in p.ledger]
    if not rows:
        return 0
    result = conn.execute(mysql_insert(ledger_table).values(rows)
                          .on_duplicate_key_update(uid=ledger_table.c.uid))
    # Affected rows (CLIENT_FOUND_ROWS): 1 per inserted row and per row found unchanged;
    # the statement cannot tell them apart, so this is an upper bound.
    return int(result.rowcount)


class MirrorStore:
    """Synchronous, thread-safe access to the mirror tables through one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes -------------------------------------------------------------------------

    def upsert(self, manifest: dict[str, Any], kind: str = SESSION) -> bool:
        """Mirror one observation; True when the object's row changed.

        An observation older than (or as old as) the row leaves it alone; its history
        entries and money movements are still added when missing. Raises `MirrorError`
        (DATABASE_UNAVAILABLE: retry) or `ManifestError` (the manifest is unusable).
        """
        proj = project_as(manifest, kind)
        with database_errors("mirror upsert"), self.engine.begin() as conn:
            changed = self._write_row(conn, proj, _NEWER)
            self._add_transitions(conn, proj)
            _add_ledger(conn, [proj])
        return changed

    def apply(self, ops: Sequence[MirrorOp]) -> int:
        """Apply the writer's batch (one op per uid) in one transaction and a handful of
        statements; returns how many ops found something to write."""
        if not ops:
            return 0
        with database_errors("mirror batch"), self.engine.begin() as conn:
            done = 0
            for kind in _TABLES:
                of_kind = [op for op in ops if op.kind == kind]
                if of_kind:
                    done += self._apply_kind(conn, kind, of_kind)
            _add_ledger(conn, [op.projection for op in ops if op.projection is not None])
        return done

    def _apply_kind(self, conn: Connection, kind: str, ops: Sequence[MirrorOp]) -> int:
        uids = [op.uid for op in ops]
        s, t = _tables(kind)
        versions: dict[str, int] = dict(
            conn.execute(select(s.c.uid, s.c.version).where(s.c.uid.in_(uids))).all())
        known: dict[str, set[str]] = {}
        for uid, phase in conn.execute(select(t.c.uid, t.c.phase).where(t.c.uid.in_(uids))):
            known.setdefault(uid, set()).add(phase)
        newer = [op.projection for op in ops if op.projection is not None
                 and op.projection.version > versions.get(op.uid, -1)]
        if newer:
            conn.execute(upsert_statement(newer))
        now = utcnow()
        missing = [{**tr, "recorded_at": now} for op in ops if op.projection is not None
                   for tr in op.projection.transitions
                   if tr["phase"] not in known.get(op.uid, ())]
        if missing:
            conn.execute(mysql_insert(t).values(missing)
                         .on_duplicate_key_update(uid=t.c.uid))
        deleted = [op.uid for op in ops if op.deleted and not op.away]
        if deleted:
            _flag_deleted(conn, s.c.uid.in_(deleted), table=s)
        gone = [op.uid for op in ops if op.deleted and op.away]
        if gone:
            _flag_deleted(conn, s.c.uid.in_(gone), away=True, table=s)
        return len(newer) + len(deleted) + len(gone)

    def repair(self, manifest: dict[str, Any], *, expected_version: int | None = None,
               revive: bool = False, kind: str = SESSION) -> bool:
        """Rewrite the row from `manifest` even if the row claims the same ordering key;
        `revive` clears `deleted`. For resync.

        `expected_version`: the row's own key is not trusted (it claims an observation
        newer than the object itself): rewrite it whatever key it claims, but only while
        it still holds `expected_version`, the key resync read. A writer that stored a
        newer observation since then keeps it (one guarded UPDATE, so no race window).
        """
        proj = project_as(manifest, kind)
        if expected_version is not None:
            return self._replace_row(proj, expected_version, revive=revive)
        table, _ = _tables(kind)
        with database_errors("mirror repair"), self.engine.begin() as conn:
            changed = self._write_row(conn, proj, _NOT_OLDER)
            if revive:
                result = conn.execute(
                    update(table)
                    .where(table.c.uid == proj.uid, table.c.deleted.is_(True))
                    .values(deleted=False, deleted_at=None, updated_at=utcnow()))
                changed = changed or result.rowcount > 0
        return changed

    def _replace_row(self, proj: Projection, expected_version: int, *, revive: bool) -> bool:
        s, _ = _tables(proj.kind)
        now = utcnow()
        values: dict[str, Any] = {k: v for k, v in proj.row.items() if k != "uid"}
        values["updated_at"] = now
        if revive:
            values.update(deleted=False, deleted_at=None)
        with database_errors("mirror repair"), self.engine.begin() as conn:
            result = conn.execute(update(s).where(s.c.uid == proj.uid,
                                                  s.c.version == expected_version)
                                  .values(values))
        return result.rowcount > 0

    def add_transitions(self, manifest: dict[str, Any], kind: str = SESSION) -> int:
        """Add the manifest's missing transitions (and money movements); how many
        transitions were added."""
        proj = project_as(manifest, kind)
        with database_errors("mirror transitions"), self.engine.begin() as conn:
            _add_ledger(conn, [proj])
            return self._add_transitions(conn, proj)

    def add_ledger(self, manifest: dict[str, Any], kind: str = SESSION) -> None:
        """Add the manifest's missing money movements (idempotent)."""
        proj = project_as(manifest, kind)
        with database_errors("mirror ledger"), self.engine.begin() as conn:
            _add_ledger(conn, [proj])

    def mark_absent_deleted(self, sweep: Sweep) -> int:
        """Flag the rows that a full list at `sweep.resource_version` shows are gone: in
        the list's scope, not listed, and last observed at or before the list (a row
        written from a later observation belongs to an object created since). Each row
        is flagged only while it still holds the key read here. Returns how many."""
        s, _ = _tables(sweep.kind)
        query = select(s.c.uid, s.c.namespace, s.c.version).where(s.c.deleted.is_(False))
        if sweep.namespace is not None:
            query = query.where(s.c.namespace == sweep.namespace)
        with database_errors("mirror sweep"), self.engine.begin() as conn:
            gone = [(uid, version) for uid, namespace, version in conn.execute(query)
                    if uid not in sweep.listed and sweep.covers(namespace)
                    and resource_version_of(int(version)) <= sweep.resource_version]
            flagged = 0
            for uid, version in gone:
                flagged += _flag_deleted(conn, s.c.uid == uid, s.c.version == version,
                                         away=True, table=s)
        return flagged

    def mark_deleted(self, uid: str, *, away: bool = False, kind: str = SESSION) -> bool:
        """Flag the row of a deleted object (kept for reporting); True if it changed.
        `away`: resync found the object gone, nobody saw it deleted."""
        table, _ = _tables(kind)
        with database_errors("mirror delete"), self.engine.begin() as conn:
            return bool(_flag_deleted(conn, table.c.uid == uid, away=away, table=table))

    def _write_row(self, conn: Connection, proj: Projection, mode: str) -> bool:
        table, _ = _tables(proj.kind)
        current = conn.execute(
            select(table.c.version).where(table.c.uid == proj.uid)
        ).scalar_one_or_none()
        if current is not None and mode == _NEWER and current >= proj.version:
            return False  # fast path; the statement below guards against races anyway
        if current is not None and mode == _NOT_OLDER and current > proj.version:
            return False
        result = conn.execute(upsert_statement(proj, mode))
        # Affected rows (the dialect sets CLIENT_FOUND_ROWS): 1 inserted or unchanged,
        # 2 updated.
        return result.rowcount == 2 or (result.rowcount == 1 and current is None)

    def _add_transitions(self, conn: Connection, proj: Projection) -> int:
        if not proj.transitions:
            return 0
        _, table = _tables(proj.kind)
        existing = set(conn.execute(
            select(table.c.phase).where(table.c.uid == proj.uid)
        ).scalars())
        now = utcnow()
        missing = [{**t, "recorded_at": now} for t in proj.transitions
                   if t["phase"] not in existing]
        if not missing:
            return 0
        stmt = mysql_insert(table).values(missing)
        # A concurrent writer may have added the same phase: keep its row (append-only).
        conn.execute(stmt.on_duplicate_key_update(uid=table.c.uid))
        return len(missing)

    # -- reads --------------------------------------------------------------------------

    def rows(self, *, include_deleted: bool = True, kind: str = SESSION
             ) -> list[dict[str, Any]]:
        """Every row of the kind's table (`payment_sessions`) as a dict, ordered by uid."""
        table, _ = _tables(kind)
        query = select(table).order_by(table.c.uid)
        if not include_deleted:
            query = query.where(table.c.deleted.is_(False))
        with database_errors("mirror read"), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def row(self, uid: str, kind: str = SESSION) -> dict[str, Any] | None:
        table, _ = _tables(kind)
        query = select(table).where(table.c.uid == uid)
        with database_errors("mirror read"), self.engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        return dict(found) if found is not None else None

    def transitions(self, uid: str | None = None, kind: str = SESSION
                    ) -> list[dict[str, Any]]:
        """Transitions (of one uid, or all), ordered by uid, then phase rank."""
        _, t = _tables(kind)
        query = select(t).order_by(t.c.uid, t.c.phase_rank, t.c.at)
        if uid is not None:
            query = query.where(t.c.uid == uid)
        with database_errors("mirror read"), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def transition_phases(self, kind: str = SESSION) -> dict[str, set[str]]:
        """The phases in the transitions table, per uid."""
        _, t = _tables(kind)
        out: dict[str, set[str]] = {}
        with database_errors("mirror read"), self.engine.connect() as conn:
            for uid, phase in conn.execute(select(t.c.uid, t.c.phase)):
                out.setdefault(uid, set()).add(phase)
        return out

    def ledger(self, *, uid: str | None = None, session_uid: str | None = None
               ) -> list[dict[str, Any]]:
        """Money movements (of one object, of one session, or all), oldest first."""
        g = ledger_table
        query = select(g).order_by(g.c.at, g.c.uid, g.c.kind, g.c.phase)
        if uid is not None:
            query = query.where(g.c.uid == uid)
        if session_uid is not None:
            query = query.where(g.c.session_uid == session_uid)
        with database_errors("mirror read"), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


def _retry_later(exc: PaykubeError) -> bool:
    """The database (or the secret holding its credentials) is unavailable for now."""
    # A CredentialsError raised outside `database_errors` waits for the secret's fix too.
    return isinstance(exc, CredentialsError) or exc.code is ErrorCode.DATABASE_UNAVAILABLE


@dataclass
class _Pending:
    op: MirrorOp
    seq: int


class MirrorWriter:
    """Asynchronous, never-failing front of `MirrorStore` for reconciliation.

    Call `start()` once inside the event loop and `aclose()` at shutdown.
    """

    def __init__(self, store: MirrorStore, *, batch_size: int = 200,
                 initial_backoff: float = 0.1, max_backoff: float = 30.0,
                 prepare: Callable[[], None] | None = None,
                 rng: random.Random | None = None) -> None:
        """`prepare` (e.g. `lambda: migrate(engine)`) runs in a thread before the first
        write, and is retried with the same backoff until it succeeds."""
        self._store = store
        self._prepare = prepare
        self._batch_size = batch_size
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._rng = rng or random.Random()
        self._pending: dict[str, _Pending] = {}
        self._sweeps: dict[tuple[str, str | None], Sweep] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.marked_absent = 0
        self.last_error: str | None = None

    # -- what the operator calls ---------------------------------------------------------

    async def record(self, manifest: dict[str, Any], kind: str = SESSION) -> None:
        """Queue an observation of a PaymentSession (or, with `kind=REFUND`, of a
        PaymentRefund); returns at once and never raises.

        Per uid only the newest pending observation (by ordering key) is kept.
        """
        try:
            proj = project_as(manifest, kind)
        except ManifestError as exc:
            self.dropped += 1
            log.warning("mirror: ignoring an unusable manifest: %s", exc)
            return
        except Exception:
            self.dropped += 1
            log.exception("mirror: could not project a manifest")
            return
        current = self._pending.get(proj.uid)
        if current is None:
            self._put(MirrorOp(proj.uid, proj))
        elif current.op.projection is None or proj.version > current.op.projection.version:
            self._put(MirrorOp(proj.uid, proj, current.op.deleted, current.op.away))

    async def record_deleted(self, uid_or_manifest: str | dict[str, Any],
                             kind: str = SESSION) -> None:
        """Queue the deletion of an object (after its last pending observation)."""
        try:
            uid = (uid_or_manifest if isinstance(uid_or_manifest, str)
                   else manifest_uid(uid_or_manifest))
        except ManifestError as exc:
            log.warning("mirror: ignoring a deletion without uid: %s", exc)
            return
        current = self._pending.get(uid)
        self._put(MirrorOp(uid, current.op.projection if current else None, deleted=True,
                           kind=kind))

    async def record_listed(self, sweep: Sweep) -> None:
        """After a (re)list: objects of its scope that are neither listed nor newer than
        the list were deleted while nobody watched; flag their rows once the pending
        observations are written. Never raises."""
        for uid, pending in list(self._pending.items()):
            proj = pending.op.projection
            if (proj is not None and proj.kind == sweep.kind and not pending.op.deleted
                    and uid not in sweep.listed
                    and (sweep.namespace is None or proj.row["namespace"] == sweep.namespace)
                    and sweep.covers(proj.row["namespace"])
                    and resource_version_of(proj.version) <= sweep.resource_version):
                self._put(MirrorOp(uid, proj, deleted=True, away=True))
        self._sweeps[(sweep.kind, sweep.namespace)] = sweep
        self._idle.clear()
        self._wake.set()

    def _put(self, op: MirrorOp) -> None:
        self._seq += 1
        self._pending[op.uid] = _Pending(op, self._seq)
        self._idle.clear()
        self._wake.set()

    # -- introspection, tests ------------------------------------------------------------

    def pending_count(self) -> int:
        """Observations recorded and not yet written (including a batch in flight)."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 -- the tests' API
        """Wait until everything recorded so far is written; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mirror-writer")

    async def aclose(self, grace: float = 2.0) -> None:
        """Give pending writes up to `grace` seconds, then stop the background task."""
        if self._task is None:
            return
        if self._pending and not self._task.done():
            await self.flush(grace)
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._pending:
            log.warning("mirror: %d observations not written at shutdown (resync repairs "
                        "them)", len(self._pending))

    # -- background task -----------------------------------------------------------------

    async def _run(self) -> None:
        while self._prepare is not None:
            try:
                await asyncio.to_thread(self._prepare)
            except Exception as exc:
                self._unavailable(MirrorError(f"mirror preparation failed: {exc}"))
                await asyncio.sleep(self._next_backoff())
            else:
                self._prepare = None
                self._attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._sweeps:
                if self._pending:
                    batch = [(uid, p.seq, p.op) for uid, p in
                             list(self._pending.items())[: self._batch_size]]
                    retry = await self._write([op for _, _, op in batch], batch)
                else:  # sweeps after the observations they must not overtake
                    retry = await self._sweep(next(iter(self._sweeps.values())))
                if retry:
                    await asyncio.sleep(self._next_backoff())
            self._idle.set()

    async def _sweep(self, sweep: Sweep) -> bool:
        """Apply one sweep; True when the database is unavailable (back off, retry)."""
        try:
            flagged = await asyncio.to_thread(self._store.mark_absent_deleted, sweep)
        except Exception as exc:
            if isinstance(exc, PaykubeError) and _retry_later(exc):
                self._unavailable(exc)
                return True
            log.error("mirror: could not flag the rows of objects deleted while the watch "
                      "was away (resync repairs them): %s", exc)
            flagged = 0
        if self._sweeps.get((sweep.kind, sweep.namespace)) is sweep:
            del self._sweeps[(sweep.kind, sweep.namespace)]
        if flagged:
            log.info("mirror: flagged %d rows of objects deleted while the watch was away",
                     flagged)
        self.marked_absent += flagged
        return False

    async def _write(self, ops: list[MirrorOp],
                     batch: list[tuple[str, int, MirrorOp]]) -> bool:
        """Write one batch; True when the database is unavailable (back off, retry)."""
        try:
            await asyncio.to_thread(self._store.apply, ops)
        except Exception as exc:
            if isinstance(exc, PaykubeError) and _retry_later(exc):
                self._unavailable(exc)
                return True
            if len(batch) > 1:  # isolate the culprit, write the others
                for item in batch:
                    if await self._write([item[2]], [item]):
                        return True
                return False
            if not isinstance(exc, PaykubeError):
                log.exception("mirror: unexpected error writing uid %s", batch[0][0])
            self._drop(batch, exc)
            return False
        self._done(batch)
        return False

    def _done(self, batch: list[tuple[str, int, MirrorOp]]) -> None:
        if self._attempt:
            log.info("mirror: database available again after %d failed attempts",
                     self._attempt)
        self._attempt = 0
        self.written += len(batch)
        self._forget(batch)

    def _drop(self, batch: list[tuple[str, int, MirrorOp]], exc: Exception) -> None:
        self.dropped += len(batch)
        self.last_error = str(exc)
        log.error("mirror: dropping the observation of uid %s: %s", batch[0][0], exc)
        self._forget(batch)

    def _forget(self, batch: list[tuple[str, int, MirrorOp]]) -> None:
        """Remove written ops, unless a newer one was recorded meanwhile."""
        for uid, seq, _ in batch:
            pending = self._pending.get(uid)
            if pending is not None and pending.seq == seq:
                del self._pending[uid]

    def _unavailable(self, exc: PaykubeError) -> None:
        self.failures += 1
        self.last_error = exc.message
        level = logging.WARNING if self._attempt == 0 else logging.DEBUG
        log.log(level, "mirror: %s; %d observations pending, retrying with backoff",
                exc.message, len(self._pending))
        self._attempt += 1

    def _next_backoff(self) -> float:
        """Exponential backoff with jitter: uniform in [cap/2, cap]."""
        cap = min(self._max_backoff, self._initial_backoff * 2.0 ** min(self._attempt - 1, 30))
        return cap / 2 + self._rng.random() * cap / 2
