"""The dashboard's reads over the mirror (SQLAlchemy Core, synchronous: the handlers run
them in a thread). Read-only: nothing here writes, and the engine's user has SELECT only.

Window aggregates read `ix_payment_sessions_dashboard` (covering, led by `created_at`);
lists are keyset-paginated by (created_at, uid), newest first, never OFFSET. Revision 0003
adds these indexes; tests/integration/test_dashboard_queries.py checks them with EXPLAIN.
Money movements (payments, refunds) come from `payment_ledger` by when they happened,
through its covering `ix_payment_ledger_totals` (revision 0004); a session's refunds from
`payment_refunds` by the session's uid (or, before a refund was reserved, its name).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
)

from paykube.api.types import Phase
from paykube.mirror.projection import LEDGER_PAYMENT, LEDGER_REFUND
from paykube.mirror.schema import payment_ledger as ledger_table
from paykube.mirror.schema import payment_refunds as refunds_table
from paykube.mirror.schema import payment_session_transitions as transitions_table
from paykube.mirror.schema import payment_sessions as sessions_table
from paykube.mirror.store import database_errors
from paykube_dashboard.windows import Window

PHASES: tuple[str, ...] = tuple(p.value for p in Phase)
ENDED: tuple[str, ...] = tuple(p.value for p in Phase if p.terminal)
_S = sessions_table
_T = transitions_table
_R = refunds_table
_L = ledger_table
DASHBOARD_INDEX = "ix_payment_sessions_dashboard"
LEDGER_INDEX = "ix_payment_ledger_totals"
# A session page lists at most this many of its refunds (the operator records 50 at most).
MAX_REFUNDS_SHOWN = 100


class CursorError(ValueError):
    """A `cursor` parameter that this dashboard did not produce."""


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """Money that moved in a window, in one currency (minor units): what payments brought
    in, what refunds gave back (net of refunds a bank returned), and the difference."""

    received: int = 0
    refunded: int = 0  # >= 0 normally; what was given back

    @property
    def net(self) -> int:
        return self.received - self.refunded


@dataclass(frozen=True)
class Overview:
    window: Window
    by_phase: dict[str, int]
    collected: dict[str, int]  # currency -> sum of amount_total (else amount) of Paid
    series: list[dict[str, int]]  # per bucket: phase -> sessions created in it
    by_provider: dict[str, dict[str, int]]  # provider -> phase -> count
    by_namespace: dict[str, dict[str, int]]  # namespace -> phase -> count (top ones)
    namespaces_total: int
    money: dict[str, Money] = field(default_factory=dict)  # currency -> movements

    @property
    def created(self) -> int:
        return sum(self.by_phase.values())

    @property
    def ended(self) -> int:
        return sum(self.by_phase.get(p, 0) for p in ENDED)

    def ratio(self, phase: str) -> float | None:
        """Share of the ended sessions that ended in `phase`; None when none ended."""
        return self.by_phase.get(phase, 0) / self.ended if self.ended else None


@dataclass(frozen=True)
class SessionSummary:
    uid: str
    namespace: str
    name: str
    phase: str
    provider: str
    amount: int
    currency: str
    created_at: dt.datetime
    deleted: bool
    error_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# An attention list counts at most this many rows (then says "more than"): a count stops
# early instead of reading every matching row of a big mirror.
COUNT_CAP = 1000


@dataclass(frozen=True)
class AttentionList:
    total: int  # at most COUNT_CAP + 1
    rows: list[SessionSummary]

    @property
    def capped(self) -> bool:
        return self.total > COUNT_CAP


@dataclass(frozen=True)
class Attention:
    expired_open: AttentionList
    stuck_processing: AttentionList
    errors: AttentionList
    deleted_away: AttentionList
    outbox: AttentionList


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    phase: str | None = None
    provider: str | None = None
    currency: str | None = None
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    search: str | None = None


@dataclass(frozen=True)
class SessionPage:
    rows: list[SessionSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class Step:
    phase: str
    at: dt.datetime | None
    source: str | None
    event_id: str | None
    recorded_at: dt.datetime


@dataclass(frozen=True)
class RefundSummary:
    uid: str
    name: str
    phase: str
    amount: int | None  # fixed at reservation; None before (spec: requested_amount)
    requested_amount: int | None
    currency: str | None
    refund_id: str | None
    error_code: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool


@dataclass(frozen=True)
class SessionDetail:
    row: dict[str, Any]
    steps: list[Step]
    refunds: list[RefundSummary] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        """What paykube's own refunds of this session gave back and kept given back."""
        return sum(r.amount or 0 for r in self.refunds if r.phase == "Succeeded")


@dataclass(frozen=True)
class ErrorGroup:
    code: str
    provider_code: str | None
    count: int
    amounts: dict[str, int]  # currency -> sum of spec.amount of the affected sessions
    explanation: str | None = None
    doc_url: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Facets:
    namespaces: list[str]
    providers: list[str]
    currencies: list[str]


# -- cursors ---------------------------------------------------------------------------


def encode_cursor(created_at: dt.datetime, uid: str) -> str:
    raw = json.dumps([created_at.isoformat(), uid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, uid = json.loads(raw)
        return dt.datetime.fromisoformat(str(created)), str(uid)
    except (ValueError, TypeError) as exc:
        raise CursorError("this page link is not valid (start again from the first page)") \
            from exc


# -- queries ---------------------------------------------------------------------------


def _in_window(window: Window) -> tuple[ColumnElement[bool], ...]:
    return (_S.c.created_at >= window.start, _S.c.created_at < window.end)


def _summary(row: Any, **extra: Any) -> SessionSummary:
    return SessionSummary(uid=row.uid, namespace=row.namespace, name=row.name,
                          phase=row.phase, provider=row.provider, amount=int(row.amount),
                          currency=row.currency, created_at=row.created_at,
                          deleted=bool(row.deleted), error_code=row.error_code, extra=extra)


_SUMMARY_COLUMNS = (_S.c.uid, _S.c.namespace, _S.c.name, _S.c.phase, _S.c.provider,
                    _S.c.amount, _S.c.currency, _S.c.created_at, _S.c.deleted,
                    _S.c.error_code)


class DashboardQueries:
    def __init__(self, engine: Engine, *, top_namespaces: int = 10) -> None:
        self.engine = engine
        self.top_namespaces = top_namespaces

    def ping(self) -> None:
        with database_errors("dashboard ping"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def overview(self, window: Window) -> Overview:
        groups, series, movements = self.overview_parts(window)
        return self.combine_overview(window, groups(), series(), movements())

    def overview_parts(self, window: Window) -> tuple[Callable[[], list[Any]],
                                                      Callable[[], list[Any]],
                                                      Callable[[], list[Any]]]:
        """Sessions created in the window, by their phase now: two passes over the covering
        index (one grouped by phase/currency/provider/namespace, one by time bucket); and
        the money that moved in the window, from the ledger's covering index. Separate
        calls that the handler runs side by side."""
        paid = func.sum(case((_S.c.phase == Phase.PAID.value,
                              func.coalesce(_S.c.amount_total, _S.c.amount)), else_=0))
        groups = (select(_S.c.phase, _S.c.currency, _S.c.provider, _S.c.namespace,
                         func.count().label("n"), paid.label("paid"))
                  .where(*_in_window(window))
                  .group_by(_S.c.phase, _S.c.currency, _S.c.provider, _S.c.namespace))
        seconds = int(window.bucket.total_seconds())
        bucket = (func.timestampdiff(text("SECOND"), literal(window.start), _S.c.created_at)
                  .op("DIV")(seconds)).label("bucket")
        series = (select(bucket, _S.c.phase, func.count().label("n"))
                  .where(*_in_window(window)).group_by(bucket, _S.c.phase))
        money = (select(_L.c.currency, _L.c.kind, func.sum(_L.c.amount).label("amount"))
                 .where(_L.c.at >= window.start, _L.c.at < window.end)
                 .group_by(_L.c.currency, _L.c.kind)
                 .with_hint(_L, f"FORCE INDEX ({LEDGER_INDEX})"))
        return (lambda: self._all(_covering(groups), "dashboard overview"),
                lambda: self._all(_covering(series), "dashboard overview"),
                lambda: self._all(money, "dashboard overview"))

    def _all(self, query: Select[Any], what: str) -> list[Any]:
        with database_errors(what), self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def combine_overview(self, window: Window, rows: list[Any], buckets: list[Any],
                         movements: Sequence[Any] = ()) -> Overview:
        by_phase: dict[str, int] = {}
        collected: dict[str, int] = {}
        by_provider: dict[str, dict[str, int]] = {}
        by_namespace: dict[str, dict[str, int]] = {}
        for r in rows:
            n = int(r.n)
            by_phase[r.phase] = by_phase.get(r.phase, 0) + n
            if r.phase == Phase.PAID.value:
                collected[r.currency] = collected.get(r.currency, 0) + int(r.paid or 0)
            for key, into in ((r.provider, by_provider), (r.namespace, by_namespace)):
                phases = into.setdefault(key, {})
                phases[r.phase] = phases.get(r.phase, 0) + n
        series: list[dict[str, int]] = [{} for _ in range(window.buckets)]
        for b in buckets:
            index = int(b.bucket)
            if 0 <= index < len(series):
                series[index][b.phase] = series[index].get(b.phase, 0) + int(b.n)
        ranked = sorted(by_namespace.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return Overview(window=window, by_phase=by_phase, collected=collected, series=series,
                        by_provider=dict(sorted(by_provider.items())),
                        by_namespace=dict(ranked[: self.top_namespaces]),
                        namespaces_total=len(by_namespace), money=_money(movements))

    def attention(self, now: dt.datetime, processing_threshold: dt.timedelta,
                  window: Window, limit: int = 50) -> Attention:
        return Attention(*(part() for part in self.attention_parts(
            now, processing_threshold, window, limit)))

    def attention_parts(self, now: dt.datetime, processing_threshold: dt.timedelta,
                        window: Window, limit: int = 50
                        ) -> list[Callable[[], AttentionList]]:
        """The five lists of `Attention`, in its order, as separate calls: the handler
        runs them side by side, each on its own connection."""
        live = _S.c.deleted == false()  # `= false` can use an index, `IS false` cannot
        entered = _T.alias("entered")

        def listing(where: Sequence[ColumnElement[bool]], order: Sequence[Any],
                    extra: Sequence[Any] = ()) -> Callable[[], AttentionList]:
            return lambda: self._listing(where, order=order, limit=limit, extra=extra)

        def stuck() -> AttentionList:
            # Counted by age (created before the threshold) on the attention index, which
            # covers it; the time each shown session entered Processing comes from the
            # ledger's primary key (uid, phase), for the shown page only.
            where = (_S.c.phase == Phase.PROCESSING.value, live,
                     _S.c.created_at < now - processing_threshold)
            joined = _S.outerjoin(entered, and_(entered.c.uid == _S.c.uid,
                                                entered.c.phase == Phase.PROCESSING.value))
            with database_errors("dashboard attention"), self.engine.connect() as conn:
                total = _capped_count(conn, select(literal(1)).select_from(_S)
                                      .where(*where))
                rows = conn.execute(
                    select(*_SUMMARY_COLUMNS, entered.c.at.label("since")).select_from(joined)
                    # expiresAt is creation + expiresAfter: nearly creation order, and
                    # the index's own order (no sort of every Processing row).
                    .where(*where).order_by(_S.c.expires_at, _S.c.created_at).limit(limit)
                ).all()
            return AttentionList(total, [_summary(r, since=r.since) for r in rows])

        return [
            listing((_S.c.phase == Phase.OPEN.value, _S.c.expires_at < now, live),
                    (_S.c.expires_at,), (_S.c.expires_at,)),
            stuck,
            listing((*_in_window(window), live,
                     or_(_S.c.error_code.is_not(None), _S.c.synced.is_(False))),
                    (_S.c.created_at.desc(), _S.c.uid.desc()),
                    (_S.c.synced, _S.c.synced_reason, _S.c.error_message)),
            # `= true`, not `IS true`: only the former can use the index.
            listing((_S.c.deleted_while_away == true(),), (_S.c.deleted_at.desc(),),
                    (_S.c.deleted_at,)),
            listing((_S.c.outbox_since.is_not(None),), (_S.c.outbox_since,),
                    (_S.c.outbox_since, _S.c.outbox_pending)),
        ]

    def _listing(self, where: Sequence[ColumnElement[bool]], *, order: Sequence[Any],
                 limit: int, extra: Sequence[Any] = ()) -> AttentionList:
        with database_errors("dashboard attention"), self.engine.connect() as conn:
            total = _capped_count(conn, select(literal(1)).select_from(_S).where(*where))
            rows = conn.execute(select(*_SUMMARY_COLUMNS, *extra).where(*where)
                                .order_by(*order).limit(limit)).all()
        names = [c.name for c in extra]
        return AttentionList(total, [_summary(r, **{n: getattr(r, n) for n in names})
                                     for r in rows])

    def sessions(self, filters: Filters, cursor: str | None, limit: int) -> SessionPage:
        conditions: list[ColumnElement[bool]] = []
        for column, value in ((_S.c.namespace, filters.namespace), (_S.c.phase, filters.phase),
                              (_S.c.provider, filters.provider),
                              (_S.c.currency, filters.currency)):
            if value:
                conditions.append(column == value)
        if filters.created_from is not None:
            conditions.append(_S.c.created_at >= filters.created_from)
        if filters.created_to is not None:
            conditions.append(_S.c.created_at < filters.created_to)
        if filters.search:
            conditions.append(_search(filters.search))
        if cursor:
            created, uid = decode_cursor(cursor)
            # `created_at <= c` first: a range the index seeks to, so a deep page costs
            # what the first one does (an OR alone would be walked from the newest row).
            conditions += [_S.c.created_at <= created,
                           or_(_S.c.created_at < created, _S.c.uid < uid)]
        query: Select[Any] = (select(*_SUMMARY_COLUMNS).where(*conditions)
                              .order_by(_S.c.created_at.desc(), _S.c.uid.desc())
                              .limit(limit + 1))
        if filters.namespace and not filters.search:
            # MariaDB picks `ref` on the namespace alone for a later page and reads every
            # row of the namespace above the cursor; the hint makes it seek (a range).
            query = query.with_hint(_S, "FORCE INDEX (ix_payment_sessions_namespace_created_at)")
        with database_errors("dashboard sessions"), self.engine.connect() as conn:
            rows = [_summary(r) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].uid) if more else None
        return SessionPage(rows, next_cursor)

    def session(self, uid: str) -> SessionDetail | None:
        with database_errors("dashboard session"), self.engine.connect() as conn:
            row = conn.execute(select(_S).where(_S.c.uid == uid)).mappings().first()
            if row is None:
                return None
            steps = conn.execute(select(_T).where(_T.c.uid == uid)
                                 .order_by(_T.c.at.is_(None), _T.c.at, _T.c.phase_rank)).all()
            # Reserved refunds name the session's uid (a session recreated under the same
            # name is another payment); refused ones only its name.
            refunds = [*conn.execute(
                select(*_REFUND_COLUMNS).where(_R.c.session_uid == uid)
                .order_by(_R.c.created_at, _R.c.uid).limit(MAX_REFUNDS_SHOWN)),
                *conn.execute(
                select(*_REFUND_COLUMNS).where(_R.c.namespace == row["namespace"],
                                               _R.c.session_name == row["name"],
                                               _R.c.session_uid.is_(None))
                .order_by(_R.c.created_at, _R.c.uid).limit(MAX_REFUNDS_SHOWN))]
        refunds.sort(key=lambda r: (r.created_at, r.uid))
        return SessionDetail(dict(row), [Step(s.phase, s.at, s.source, s.event_id,
                                              s.recorded_at) for s in steps],
                             [_refund(r) for r in refunds[:MAX_REFUNDS_SHOWN]])

    def errors(self, window: Window, limit: int = 20) -> list[ErrorGroup]:
        """The most frequent error codes of the sessions created in the window."""
        query = (select(_S.c.error_code, _S.c.error_provider_code, _S.c.currency,
                        func.count().label("n"), func.sum(_S.c.amount).label("amount"))
                 .where(*_in_window(window), _S.c.error_code.is_not(None))
                 .group_by(_S.c.error_code, _S.c.error_provider_code, _S.c.currency))
        with database_errors("dashboard errors"), self.engine.connect() as conn:
            grouped: dict[tuple[str, str | None], dict[str, int]] = {}
            counts: dict[tuple[str, str | None], int] = {}
            for r in conn.execute(_covering(query)):
                key = (r.error_code, r.error_provider_code)
                counts[key] = counts.get(key, 0) + int(r.n)
                amounts = grouped.setdefault(key, {})
                amounts[r.currency] = amounts.get(r.currency, 0) + int(r.amount or 0)
            top = sorted(counts, key=lambda k: (-counts[k], k[0], k[1] or ""))[:limit]
            out = []
            for code, provider_code in top:
                # The error's words from the newest sessions of the window that have them:
                # a few rows read backwards on the errors index (code, created_at), not
                # every session with the code (many never get an explanation).
                recent = conn.execute(
                    _errors_index(
                        select(_S.c.error_explanation, _S.c.error_doc_url, _S.c.error_message)
                        .where(_S.c.error_code == code,
                               _S.c.error_provider_code.is_(None) if provider_code is None
                               else _S.c.error_provider_code == provider_code,
                               *_in_window(window))
                        .order_by(_S.c.created_at.desc()).limit(5))).all()
                example = next((e for e in recent if e.error_explanation),
                               recent[0] if recent else None)
                out.append(ErrorGroup(
                    code, provider_code, counts[(code, provider_code)],
                    dict(sorted(grouped[(code, provider_code)].items())),
                    example.error_explanation if example else None,
                    example.error_doc_url if example else None,
                    example.error_message if example else None))
        return out

    def facets(self) -> Facets:
        """The values the list filters offer (loose index scans: one entry per value)."""
        with database_errors("dashboard facets"), self.engine.connect() as conn:
            values = [sorted(str(v) for v in conn.execute(
                select(column).distinct().order_by(column)).scalars())
                for column in (_S.c.namespace, _S.c.provider, _S.c.currency)]
        return Facets(*values)


_REFUND_COLUMNS = (_R.c.uid, _R.c.name, _R.c.phase, _R.c.amount, _R.c.requested_amount,
                   _R.c.currency, _R.c.refund_id, _R.c.error_code, _R.c.created_at,
                   _R.c.updated_at, _R.c.deleted)


def _refund(r: Any) -> RefundSummary:
    return RefundSummary(
        uid=r.uid, name=r.name, phase=r.phase,
        amount=int(r.amount) if r.amount is not None else None,
        requested_amount=int(r.requested_amount) if r.requested_amount is not None else None,
        currency=r.currency, refund_id=r.refund_id, error_code=r.error_code,
        created_at=r.created_at, updated_at=r.updated_at, deleted=bool(r.deleted))


def _money(movements: Sequence[Any]) -> dict[str, Money]:
    """Ledger sums per (currency, kind) -> per currency: payments in, refunds out."""
    received: dict[str, int] = {}
    refunded: dict[str, int] = {}
    for m in movements:
        amount = int(m.amount or 0)
        if m.kind == LEDGER_PAYMENT:
            received[m.currency] = received.get(m.currency, 0) + amount
        elif m.kind == LEDGER_REFUND:  # negative rows give back, positive ones return
            refunded[m.currency] = refunded.get(m.currency, 0) - amount
    return {c: Money(received.get(c, 0), refunded.get(c, 0))
            for c in sorted(received.keys() | refunded.keys())}


def _capped_count(conn: Any, matching: Select[Any]) -> int:
    """How many rows `matching` selects, counting no further than COUNT_CAP + 1."""
    limited = matching.limit(COUNT_CAP + 1).subquery("matching")
    return int(conn.execute(select(func.count()).select_from(limited)).scalar_one())


def _covering(query: Select[Any]) -> Select[Any]:
    """Window aggregates read the covering index: on a big table the optimizer otherwise
    picks the narrower `created_at` index (a row lookup per session) or, for the errors,
    every error ever (measured at a million rows: several times slower)."""
    return query.with_hint(_S, f"FORCE INDEX ({DASHBOARD_INDEX})")


def _errors_index(query: Select[Any]) -> Select[Any]:
    return query.with_hint(_S, "FORCE INDEX (ix_payment_sessions_errors)")


def _search(term: str) -> ColumnElement[bool]:
    """An exact uid, session id or payment intent id, or the start of a name."""
    term = term.strip()
    prefix = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(_S.c.uid == term, _S.c.session_id == term, _S.c.payment_intent_id == term,
               _S.c.name.like(prefix, escape="\\"))
