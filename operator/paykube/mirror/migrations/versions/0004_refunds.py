"""Refunds: payment_refunds, payment_refund_transitions, payment_ledger, and the session's
amount_refunded (docs/refunds.md).

- `payment_refunds`: one row per PaymentRefund uid, written under the same ordering key
  as sessions (a row only moves to a higher `version`), flagged `deleted` like them;
- `payment_refund_transitions`: one row per refund uid and phase reached;
- `payment_ledger`: one signed row per money movement, keyed by (object uid, kind, phase):
  `+amountTotal` when a session is Paid, `-amount` when a refund Succeeds, `+amount` when
  a succeeded refund is later Failed (returned by the bank). Replays add nothing;
  `ix_payment_ledger_totals` covers the dashboard's sums per currency over a time range;
- `payment_sessions.amount_refunded`: `status.amountRefunded`, what the PSP reports
  refunded (refunds made outside paykube included).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                               "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    # An added column at the end of an InnoDB table is instant.
    op.add_column("payment_sessions", sa.Column("amount_refunded", sa.BigInteger(),
                                                nullable=True))
    op.create_table(
        "payment_refunds",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("session_name", sa.String(253), nullable=False),
        sa.Column("session_uid", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("refund_id", sa.String(255), nullable=True),
        sa.Column("payment_id", sa.String(255), nullable=True),
        sa.Column("requested_amount", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("phase_rank", sa.SmallInteger(), nullable=False),
        sa.Column("provider_status", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("error_provider_code", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("outbox_pending", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("outbox_since", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.Column("deleted_while_away", sa.Boolean(), nullable=False,
                  server_default=sa.false()),
        sa.PrimaryKeyConstraint("uid", name="pk_payment_refunds"),
        **_TABLE_ARGS,
    )
    for columns in (["session_uid", "created_at"], ["namespace", "session_name", "created_at"],
                    ["namespace", "name"], ["created_at"], ["refund_id"]):
        op.create_index(f"ix_payment_refunds_{'_'.join(columns)}", "payment_refunds", columns)

    op.create_table(
        "payment_refund_transitions",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("phase_rank", sa.SmallInteger(), nullable=False),
        sa.Column("at", _TS, nullable=True),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("event_id", sa.String(255), nullable=True),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("uid", "phase", name="pk_payment_refund_transitions"),
        **_TABLE_ARGS,
    )
    op.create_index("ix_payment_refund_transitions_at", "payment_refund_transitions", ["at"])

    op.create_table(
        "payment_ledger",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("session_uid", sa.String(64), nullable=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("uid", "kind", "phase", name="pk_payment_ledger"),
        **_TABLE_ARGS,
    )
    op.create_index("ix_payment_ledger_totals", "payment_ledger",
                    ["at", "currency", "kind", "amount"])
    op.create_index("ix_payment_ledger_session_uid", "payment_ledger", ["session_uid"])


def downgrade() -> None:
    op.drop_table("payment_ledger")
    op.drop_table("payment_refund_transitions")
    op.drop_table("payment_refunds")
    op.drop_column("payment_sessions", "amount_refunded")
