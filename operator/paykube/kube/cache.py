"""PaymentSessions as a watch last saw them: the base of the webhook's status writes.

With it, an event costs one status write and no GET before it (issue: one read, one
write). A cached object that is stale only costs a 409 and the re-read the writer does
anyway, never a wrong write: every write carries the resourceVersion it was decided on.
An object the cache does not have (yet), or has under another uid, is read as before.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from paykube.api.types import ObjectRef
from paykube.errors import PaykubeError
from paykube.kube.client import KubeClient, Manifest

log = logging.getLogger(__name__)


def _slim(obj: Manifest) -> Manifest:
    """What a write needs (spec, status, identity); managedFields is most of an object's
    size and never read here."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


@dataclass
class SessionCache:
    kube: KubeClient
    max_backoff: float = 30.0
    _objects: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    synced: bool = False

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, ref: ObjectRef) -> Manifest | None:
        obj = self._objects.get((ref.namespace, ref.name))
        if obj is None or (ref.uid and obj["metadata"].get("uid") != ref.uid):
            return None
        return obj

    def remember(self, obj: Manifest) -> None:
        """The answer of our own write: newer than what the watch has delivered so far."""
        meta = obj["metadata"]
        self._objects[(meta["namespace"], meta["name"])] = _slim(obj)

    async def run(self) -> None:
        """List, then watch; on any interruption list again after a backoff. Forever (the
        caller cancels it)."""
        backoff = 0.5
        while True:
            try:
                items, version = await self.kube.list_sessions_at(None)
                self._objects = {(o["metadata"]["namespace"], o["metadata"]["name"]):
                                 _slim(o) for o in items}
                self.synced = True
                backoff = 0.5
                while True:
                    async for event, obj in self.kube.watch_sessions(None, version):
                        if event == "ERROR":
                            raise _Relist
                        version = obj["metadata"].get("resourceVersion", version)
                        if event == "BOOKMARK":
                            continue
                        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                        if event == "DELETED":
                            self._objects.pop(key, None)
                        else:
                            self._objects[key] = _slim(obj)
            except asyncio.CancelledError:
                raise
            except (_Relist, PaykubeError) as exc:
                log.info("session cache relisting: %s", getattr(exc, "message", "410 Gone"))
            except Exception:
                log.exception("session cache watch failed; relisting")
            self.synced = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)


class _Relist(Exception):
    """The watch ended with an ERROR (410 Gone): its resourceVersion is too old."""
