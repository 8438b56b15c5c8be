"""Typed read queries over the mirror, for tests and the dashboard.

- `totals()`: counts and amount sums by phase, currency and UTC day of creation, over an
  optional day range (covering index `ix_payment_sessions_totals`, led by the day);
- `history()`: one session's row and its ledger, in the order the phases were reached;
- `list_sessions()`: filtered, newest first, keyset-paginated by (created_at, uid) with an
  opaque cursor (index `created_at`, or `namespace, created_at` for one namespace;
  `namespace, name` for `by_name()`).

Deleted objects stay in reports (a payment happened even if its object is gone) unless
`include_deleted=False`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select

from paykube.api.types import Phase
from paykube.mirror.schema import payment_session_transitions as transitions_table
from paykube.mirror.schema import payment_sessions as sessions_table
from paykube.mirror.store import database_errors

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class Total:
    day: dt.date
    phase: Phase
    currency: str
    count: int
    amount: int  # sum of spec.amount
    amount_total: int  # sum of the provider's amountTotal (0 where not known yet)


@dataclass(frozen=True)
class SessionRow:
    uid: str
    namespace: str
    name: str
    phase: Phase
    amount: int
    currency: str
    description: str | None
    session_id: str | None
    payment_intent_id: str | None
    payment_status: str | None
    amount_total: int | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    metadata: dict[str, str]
    error_code: str | None
    error_provider_code: str | None
    version: int
    deleted: bool
    deleted_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> SessionRow:
        return cls(
            uid=row.uid, namespace=row.namespace, name=row.name, phase=Phase(row.phase),
            amount=int(row.amount), currency=row.currency, description=row.description,
            session_id=row.session_id, payment_intent_id=row.payment_intent_id,
            payment_status=row.payment_status,
            amount_total=int(row.amount_total) if row.amount_total is not None else None,
            expires_at=row.expires_at, created_at=row.created_at, updated_at=row.updated_at,
            metadata=dict(row.metadata_json or {}), error_code=row.error_code,
            error_provider_code=row.error_provider_code, version=int(row.version),
            deleted=bool(row.deleted), deleted_at=row.deleted_at,
        )


@dataclass(frozen=True)
class Transition:
    phase: Phase
    at: dt.datetime | None
    source: str | None
    event_id: str | None
    recorded_at: dt.datetime


@dataclass(frozen=True)
class SessionHistory:
    session: SessionRow
    transitions: tuple[Transition, ...]


@dataclass(frozen=True)
class Page:
    items: tuple[SessionRow, ...]
    next_cursor: str | None  # pass back as `cursor` for the next page; None at the end


class CursorError(ValueError):
    """A cursor that `list_sessions()` did not produce."""


def _encode_cursor(created_at: dt.datetime, uid: str) -> str:
    raw = json.dumps([created_at.isoformat(), uid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, uid = json.loads(raw)
        return dt.datetime.fromisoformat(str(created)), str(uid)
    except (ValueError, TypeError) as exc:
        raise CursorError(f"invalid cursor: {cursor!r}") from exc


def _phases(phase: Phase | str | Iterable[Phase | str] | None) -> list[str] | None:
    if phase is None:
        return None
    if isinstance(phase, str):
        return [Phase(phase).value]
    return [Phase(p).value for p in phase]


class MirrorReports:
    """The reporting queries, over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def totals(self, *, since: dt.date | None = None, until: dt.date | None = None,
               namespace: str | None = None, include_deleted: bool = True) -> list[Total]:
        """Counts and sums per (day, phase, currency) for days in [since, until)."""
        s = sessions_table
        query = (
            select(s.c.created_day, s.c.phase, s.c.currency, func.count().label("n"),
                   func.coalesce(func.sum(s.c.amount), 0).label("amount"),
                   func.coalesce(func.sum(s.c.amount_total), 0).label("amount_total"))
            .group_by(s.c.created_day, s.c.phase, s.c.currency)
            .order_by(s.c.created_day, s.c.phase, s.c.currency)
        )
        if since is not None:
            query = query.where(s.c.created_day >= since)
        if until is not None:
            query = query.where(s.c.created_day < until)
        if namespace is not None:
            query = query.where(s.c.namespace == namespace)
        if not include_deleted:
            query = query.where(s.c.deleted.is_(False))
        with database_errors("mirror report"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Total(day=r.created_day, phase=Phase(r.phase), currency=r.currency,
                      count=int(r.n), amount=int(r.amount), amount_total=int(r.amount_total))
                for r in rows]

    def history(self, uid: str) -> SessionHistory | None:
        """A session's row and ledger (ordered by `at`, then phase rank); None if unknown."""
        s, t = sessions_table, transitions_table
        with database_errors("mirror report"), self.engine.connect() as conn:
            row = conn.execute(select(s).where(s.c.uid == uid)).first()
            if row is None:
                return None
            steps = conn.execute(
                select(t).where(t.c.uid == uid)
                .order_by(t.c.at.is_(None), t.c.at, t.c.phase_rank)).all()
        return SessionHistory(
            session=SessionRow.from_row(row),
            transitions=tuple(Transition(phase=Phase(r.phase), at=r.at, source=r.source,
                                         event_id=r.event_id, recorded_at=r.recorded_at)
                              for r in steps))

    def by_name(self, namespace: str, name: str) -> list[SessionRow]:
        """Every object that had this name (newest first): a name can be reused."""
        s = sessions_table
        query = (select(s).where(s.c.namespace == namespace, s.c.name == name)
                 .order_by(s.c.created_at.desc(), s.c.uid.desc()))
        with database_errors("mirror report"), self.engine.connect() as conn:
            return [SessionRow.from_row(r) for r in conn.execute(query)]

    def list_sessions(
        self, *, namespace: str | None = None,
        phase: Phase | str | Iterable[Phase | str] | None = None,
        currency: str | None = None, created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None, include_deleted: bool = True,
        limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None,
    ) -> Page:
        """Sessions newest first, created in [created_from, created_to) (naive UTC)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE_SIZE)
        s = sessions_table
        conditions: list[ColumnElement[bool]] = []
        if namespace is not None:
            conditions.append(s.c.namespace == namespace)
        phases = _phases(phase)
        if phases is not None:
            conditions.append(s.c.phase.in_(phases))
        if currency is not None:
            conditions.append(s.c.currency == currency)
        if created_from is not None:
            conditions.append(s.c.created_at >= _naive_utc(created_from))
        if created_to is not None:
            conditions.append(s.c.created_at < _naive_utc(created_to))
        if not include_deleted:
            conditions.append(s.c.deleted.is_(False))
        if cursor is not None:
            created, uid = _decode_cursor(cursor)
            conditions.append(or_(s.c.created_at < created,
                                  and_(s.c.created_at == created, s.c.uid < uid)))
        query = (select(s).where(*conditions)
                 .order_by(s.c.created_at.desc(), s.c.uid.desc()).limit(limit + 1))
        with database_errors("mirror report"), self.engine.connect() as conn:
            rows = [SessionRow.from_row(r) for r in conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (_encode_cursor(rows[-1].created_at, rows[-1].uid)
                       if more and rows else None)
        return Page(items=tuple(rows), next_cursor=next_cursor)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)
