"""The provider column, what the dashboard shows beyond the codes, and its indexes.

- `provider`: the PSP account type of a session (`status.provider`); rows written before
  providers existed are Stripe sessions, hence the server default.
- `error_message`, `error_doc_url`, `error_explanation`, `synced`, `synced_reason`: the
  rest of `status.error` and the Synced condition, for the "needs attention" list and the
  session page.
- `outbox_pending`, `outbox_since`: history entries the broker has not confirmed yet.
- `deleted_while_away`: the row was flagged by a relist or resync, not by a deletion the
  operator saw.
- `ix_payment_sessions_dashboard` leads with `created_at` and carries every column the
  window aggregates read (covering: an index range scan, no row lookups); the
  `(column, created_at)` indexes serve filtered lists newest first; the others serve the
  needs-attention queries and the search. The dashboard's tests check each with EXPLAIN.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_TABLE = "payment_sessions"
_INDEXES: list[tuple[str, list[str]]] = [
    ("ix_payment_sessions_dashboard",
     ["created_at", "phase", "currency", "provider", "namespace", "deleted", "synced",
      "amount", "amount_total", "error_code", "error_provider_code"]),
    ("ix_payment_sessions_phase_created_at", ["phase", "created_at"]),
    ("ix_payment_sessions_provider_created_at", ["provider", "created_at"]),
    ("ix_payment_sessions_currency_created_at", ["currency", "created_at"]),
    ("ix_payment_sessions_attention", ["phase", "deleted", "expires_at", "created_at"]),
    ("ix_payment_sessions_name", ["name"]),
    ("ix_payment_sessions_payment_intent_id", ["payment_intent_id"]),
    ("ix_payment_sessions_errors",
     ["error_code", "error_provider_code", "created_at", "currency", "amount"]),
    ("ix_payment_sessions_synced", ["synced"]),
    ("ix_payment_sessions_outbox_since", ["outbox_since"]),
    ("ix_payment_sessions_deleted_while_away_deleted_at", ["deleted_while_away", "deleted_at"]),
]


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("provider", sa.String(32), nullable=False, server_default="stripe"),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_doc_url", sa.String(2048), nullable=True),
        sa.Column("error_explanation", sa.Text(), nullable=True),
        sa.Column("synced", sa.Boolean(), nullable=True),
        sa.Column("synced_reason", sa.String(128), nullable=True),
        sa.Column("outbox_pending", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("outbox_since", _TS, nullable=True),
        sa.Column("deleted_while_away", sa.Boolean(), nullable=False,
                  server_default=sa.false()),
    ]


def upgrade() -> None:
    # Added columns at the end of an InnoDB table are instant (MariaDB 10.3+, MySQL 8.0.12+).
    for column in _columns():
        op.add_column(_TABLE, column)
    for name, columns in _INDEXES:
        op.create_index(name, _TABLE, columns)


def downgrade() -> None:
    for name, _ in reversed(_INDEXES):
        op.drop_index(name, _TABLE)
    for column in reversed(_columns()):
        op.drop_column(_TABLE, column.name)
