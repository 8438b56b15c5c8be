"""Cached error explanations in MySQL (`error_explanations`), shared by every replica."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import Engine, select
from sqlalchemy.dialects.mysql import insert

from paykube.mirror.schema import error_explanations


class MySQLExplanationStore:
    """An `ExplanationStore` (paykube.explain) over the mirror's database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def get(self, key: tuple[str, str, str]) -> str | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: tuple[str, str, str], explanation: str) -> None:
        await asyncio.to_thread(self._put, key, explanation)

    def _get(self, key: tuple[str, str, str]) -> str | None:
        provider, code, param = key
        table = error_explanations
        with self._engine.connect() as conn:
            value = conn.execute(
                select(table.c.explanation).where(
                    table.c.provider == provider, table.c.code == code, table.c.param == param)
            ).scalar_one_or_none()
        return str(value) if value is not None else None

    def _put(self, key: tuple[str, str, str], explanation: str) -> None:
        provider, code, param = key
        statement = insert(error_explanations).values(
            provider=provider, code=code, param=param, explanation=explanation,
            created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        )
        statement = statement.on_duplicate_key_update(explanation=statement.inserted.explanation)
        with self._engine.begin() as conn:
            conn.execute(statement)
