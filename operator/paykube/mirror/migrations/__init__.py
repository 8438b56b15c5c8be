"""Alembic migrations of the mirror schema; run them with `paykube.mirror.migrate`."""
