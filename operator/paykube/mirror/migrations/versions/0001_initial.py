"""Initial mirror schema: payment_sessions, payment_session_transitions, error_explanations.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "payment_sessions",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("phase_rank", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("payment_status", sa.String(64), nullable=True),
        sa.Column("amount_total", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_day", sa.Date(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("metadata_json", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("error_provider_code", sa.String(128), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("uid", name="pk_payment_sessions"),
        **_TABLE_ARGS,
    )
    op.create_index("ix_payment_sessions_phase_currency_created_day", "payment_sessions",
                    ["phase", "currency", "created_day"])
    op.create_index("ix_payment_sessions_created_at", "payment_sessions", ["created_at"])
    op.create_index("ix_payment_sessions_namespace_name", "payment_sessions",
                    ["namespace", "name"])
    op.create_index("ix_payment_sessions_session_id", "payment_sessions", ["session_id"])

    op.create_table(
        "payment_session_transitions",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("phase_rank", sa.SmallInteger(), nullable=False),
        sa.Column("at", _TS, nullable=True),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("event_id", sa.String(255), nullable=True),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("uid", "phase", name="pk_payment_session_transitions"),
        **_TABLE_ARGS,
    )
    op.create_index("ix_payment_session_transitions_at", "payment_session_transitions",
                    ["at"])

    op.create_table(
        "error_explanations",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("param", sa.String(255), nullable=False, server_default=""),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_error_explanations"),
        sa.UniqueConstraint("provider", "code", "param",
                            name="uq_error_explanations_provider_code_param"),
        **_TABLE_ARGS,
    )


def downgrade() -> None:
    op.drop_table("error_explanations")
    op.drop_table("payment_session_transitions")
    op.drop_table("payment_sessions")
