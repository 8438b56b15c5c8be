"""The reporting mirror: PaymentSession state and transitions in MySQL/MariaDB.

- `schema`: the tables; `migrate.migrate(url)`: Alembic upgrade to head (idempotent);
- `store`: `MirrorStore` (sync, guarded upserts) and `MirrorWriter` (what the operator
  calls: queued, retried, never raising);
- `resync`: rebuild/repair from the cluster (`python -m paykube.mirror.resync`);
- `reporting`: typed queries (totals, history, paginated lists).
"""

from paykube.mirror.migrate import migrate
from paykube.mirror.store import MirrorError, MirrorStore, MirrorWriter, make_engine

__all__ = ["MirrorError", "MirrorStore", "MirrorWriter", "make_engine", "migrate"]
