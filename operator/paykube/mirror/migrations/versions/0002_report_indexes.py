"""Indexes that match the reporting queries.

`totals()` filters a range of `created_day` and groups by (day, phase, currency): the old
index led with `phase`, so a day range could not use it. The new one leads with the day
and carries every column the report reads (covering: no row lookups). `list_sessions()`
of one namespace is ordered by `created_at` (then uid, which InnoDB appends): the new
(namespace, created_at) index returns it in order, with no filesort.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_payment_sessions_totals", "payment_sessions",
                    ["created_day", "phase", "currency", "deleted", "amount", "amount_total"])
    op.create_index("ix_payment_sessions_namespace_created_at", "payment_sessions",
                    ["namespace", "created_at"])
    op.drop_index("ix_payment_sessions_phase_currency_created_day", "payment_sessions")


def downgrade() -> None:
    op.create_index("ix_payment_sessions_phase_currency_created_day", "payment_sessions",
                    ["phase", "currency", "created_day"])
    op.drop_index("ix_payment_sessions_namespace_created_at", "payment_sessions")
    op.drop_index("ix_payment_sessions_totals", "payment_sessions")
