"""Tables of the reporting mirror (SQLAlchemy 2 Core).

`payment_sessions` holds the current state of each PaymentSession (one row per uid);
`payment_session_transitions` is the append-only ledger (one row per uid and phase reached);
`error_explanations` caches plain-words explanations of provider errors per
(provider, code, param). Refunds (revision 0004, docs/refunds.md): `payment_refunds` (one
row per PaymentRefund uid, version-keyed like sessions), `payment_refund_transitions` (one
row per refund uid and phase reached) and `payment_ledger` (one signed row per money
movement: a payment, a refund, a refund returned by the bank).

The migrations in `paykube/mirror/migrations/versions` create exactly these tables (a test
compares them); change both together, through a new revision.

Portability (MariaDB 10.11 and MySQL 8 / RDS): only these constructs are used:

- column types VARCHAR, BIGINT, SMALLINT, BOOL (TINYINT(1)), TEXT, DATE, DATETIME(6), JSON
  (MariaDB stores JSON as LONGTEXT with a JSON_VALID check; MySQL 8 natively);
- named primary keys, unique constraints and plain secondary indexes (index prefixes stay
  under InnoDB's 3072-byte limit with utf8mb4);
- `INSERT ... ON DUPLICATE KEY UPDATE` with `VALUES(col)` (SQLAlchemy renders the
  `AS new` row alias instead on MySQL >= 8.0.20, where `VALUES()` is deprecated), and
  `CASE WHEN` in the assignments, which both servers evaluate left to right;
- `GET_LOCK`/`RELEASE_LOCK` around migrations.

No generated columns, CHECK constraints, partial or functional indexes, sequences,
`RETURNING` or window functions. Checked here against MariaDB 10.11 only (the integration
tests); MySQL 8 is untested in this repository.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Microsecond timestamps, always naive UTC (the server runs with time_zone +00:00).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

payment_sessions = Table(
    "payment_sessions",
    metadata,
    Column("uid", String(64), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("name", String(253), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("phase_rank", SmallInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("description", String(500), nullable=True),
    Column("session_id", String(255), nullable=True),
    Column("payment_intent_id", String(255), nullable=True),
    Column("payment_status", String(64), nullable=True),
    Column("amount_total", BigInteger, nullable=True),
    Column("expires_at", Timestamp, nullable=True),
    # metadata.creationTimestamp of the object, and its UTC day (for daily reports).
    Column("created_at", Timestamp, nullable=False),
    Column("created_day", Date, nullable=False),
    # When the mirror last changed this row (wall clock of the writer; not an ordering key).
    Column("updated_at", Timestamp, nullable=False),
    Column("metadata_json", JSON, nullable=True),
    Column("error_code", String(128), nullable=True),
    Column("error_provider_code", String(128), nullable=True),
    # The ordering key (see paykube.mirror.projection.ordering_key): a row only ever moves
    # to a higher version.
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("deleted_at", Timestamp, nullable=True),
    # The PSP account type (status.provider; 'stripe' before providers were objects).
    Column("provider", String(32), nullable=False, server_default="stripe"),
    # status.error beyond its codes, and the Synced condition (None: no condition yet).
    Column("error_message", Text, nullable=True),
    Column("error_doc_url", String(2048), nullable=True),
    Column("error_explanation", Text, nullable=True),
    Column("synced", Boolean, nullable=True),
    Column("synced_reason", String(128), nullable=True),
    # The outbox: history entries the broker has not confirmed, and the oldest one's time.
    Column("outbox_pending", SmallInteger, nullable=False, server_default="0"),
    Column("outbox_since", Timestamp, nullable=True),
    # Flagged by a relist or resync (the object vanished while nobody watched), not by an
    # observed deletion.
    Column("deleted_while_away", Boolean, nullable=False, server_default=false()),
    # status.amountRefunded: what the PSP reports refunded (revision 0004).
    Column("amount_refunded", BigInteger, nullable=True),
    PrimaryKeyConstraint("uid"),
    # Totals over a day range, grouped by day, phase and currency: covering (reporting
    # `totals()` reads nothing else), so no row lookups.
    Index("ix_payment_sessions_totals", "created_day", "phase", "currency", "deleted",
          "amount", "amount_total"),
    # Lists filtered by a created range, newest first (InnoDB appends the uid); the same
    # within one namespace.
    Index(None, "created_at"),
    Index(None, "namespace", "created_at"),
    Index(None, "namespace", "name"),
    Index(None, "session_id"),
    # The dashboard (revision 0003): its window aggregates read only this index (covering);
    # lists filtered by one column walk (column, created_at) newest first.
    Index("ix_payment_sessions_dashboard", "created_at", "phase", "currency", "provider",
          "namespace", "deleted", "synced", "amount", "amount_total", "error_code",
          "error_provider_code"),
    Index(None, "phase", "created_at"),
    Index(None, "provider", "created_at"),
    Index(None, "currency", "created_at"),
    # Needs attention: open past expiry, long in Processing (covering for the counts).
    Index("ix_payment_sessions_attention", "phase", "deleted", "expires_at", "created_at"),
    Index(None, "name"),
    Index(None, "payment_intent_id"),
    # The errors page: covering for its per-code counts and amounts.
    Index("ix_payment_sessions_errors", "error_code", "error_provider_code", "created_at",
          "currency", "amount"),
    Index(None, "synced"),
    Index(None, "outbox_since"),
    Index(None, "deleted_while_away", "deleted_at"),
)

payment_session_transitions = Table(
    "payment_session_transitions",
    metadata,
    Column("uid", String(64), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("phase_rank", SmallInteger, nullable=False),
    Column("at", Timestamp, nullable=True),
    Column("source", String(16), nullable=True),
    Column("event_id", String(255), nullable=True),
    Column("recorded_at", Timestamp, nullable=False),
    # Unique per uid and phase; clustered so that a session's history is contiguous.
    PrimaryKeyConstraint("uid", "phase"),
    Index(None, "at"),
)

error_explanations = Table(
    "error_explanations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("code", String(128), nullable=False),
    # '' when the error names no parameter (NULLs would not be unique).
    Column("param", String(255), nullable=False, server_default=""),
    Column("explanation", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("provider", "code", "param"),
)

payment_refunds = Table(
    "payment_refunds",
    metadata,
    Column("uid", String(64), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("name", String(253), nullable=False),
    # spec.sessionRef.name, and the session's uid once the refund was reserved on it.
    Column("session_name", String(253), nullable=False),
    Column("session_uid", String(64), nullable=True),
    Column("provider", String(32), nullable=True),
    Column("refund_id", String(255), nullable=True),
    Column("payment_id", String(255), nullable=True),
    # spec.amount (None: the whole rest), and status.amount fixed at reservation.
    Column("requested_amount", BigInteger, nullable=True),
    Column("amount", BigInteger, nullable=True),
    Column("currency", String(16), nullable=True),
    Column("reason", String(32), nullable=True),
    Column("phase", String(16), nullable=False),
    Column("phase_rank", SmallInteger, nullable=False),
    Column("provider_status", String(64), nullable=True),
    Column("failure_reason", String(64), nullable=True),
    Column("error_code", String(128), nullable=True),
    Column("error_provider_code", String(128), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("outbox_pending", SmallInteger, nullable=False, server_default="0"),
    Column("outbox_since", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # The ordering key, as for sessions (paykube.mirror.projection.refund_rank).
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("deleted_at", Timestamp, nullable=True),
    Column("deleted_while_away", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("uid"),
    # A session's refunds: by uid once reserved, by name before (a refused refund).
    Index(None, "session_uid", "created_at"),
    Index(None, "namespace", "session_name", "created_at"),
    Index(None, "namespace", "name"),
    Index(None, "created_at"),
    Index(None, "refund_id"),
)

payment_refund_transitions = Table(
    "payment_refund_transitions",
    metadata,
    Column("uid", String(64), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("phase_rank", SmallInteger, nullable=False),
    Column("at", Timestamp, nullable=True),
    Column("source", String(16), nullable=True),
    Column("event_id", String(255), nullable=True),
    Column("recorded_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("uid", "phase"),
    Index(None, "at"),
)

payment_ledger = Table(
    "payment_ledger",
    metadata,
    # The object that moved the money (a PaymentSession or a PaymentRefund) and the phase
    # that did: one row per (uid, kind, phase), so a replayed observation adds nothing.
    Column("uid", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # payment | refund
    Column("phase", String(16), nullable=False),
    Column("session_uid", String(64), nullable=True),
    Column("namespace", String(63), nullable=False),
    Column("name", String(253), nullable=False),
    Column("provider", String(32), nullable=True),
    # Signed, in the currency's minor unit: + received, - given back.
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    # When the money moved (the phase's history time; else when the mirror first saw it).
    Column("at", Timestamp, nullable=False),
    Column("recorded_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("uid", "kind", "phase"),
    # Sums over a time range per currency and kind: covering.
    Index("ix_payment_ledger_totals", "at", "currency", "kind", "amount"),
    Index(None, "session_uid"),
)
