"""Feed the mirror from its own watch of PaymentSessions.

Its own list+watch, not kopf's handler queue: under a burst of new objects kopf's
per-object work delays its events, and the mirror should not wait for reconciliation.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random

from paykube.errors import PaykubeError
from paykube.kube.client import KubeClient
from paykube.mirror.store import MirrorWriter

log = logging.getLogger(__name__)


def watch_scopes(namespaces: tuple[str, ...]) -> tuple[str | None, ...]:
    """One watch per exact namespace; one cluster-wide watch when any is a glob (or none
    is given)."""
    if not namespaces or any(c in n for n in namespaces for c in "*?[!"):
        return (None,)
    return namespaces


def selected(namespace: str, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return True
    included = [p for p in patterns if not p.startswith("!")]
    excluded = [p[1:] for p in patterns if p.startswith("!")]
    return (not included or any(fnmatch.fnmatchcase(namespace, p) for p in included)) and \
        not any(fnmatch.fnmatchcase(namespace, p) for p in excluded)


async def follow(kube: KubeClient, writer: MirrorWriter, scope: str | None,
                 patterns: tuple[str, ...], *, max_backoff: float = 30.0) -> None:
    """List, record everything, then watch and record every change; forever."""
    backoff = 0.5
    while True:
        try:
            items, version = await kube.list_sessions_at(scope)
            for item in items:
                if selected(item["metadata"]["namespace"], patterns):
                    await writer.record(item)
            backoff = 0.5
            while True:
                async for kind, obj in kube.watch_sessions(scope, version):
                    if kind == "ERROR":
                        raise _Relist
                    version = obj["metadata"].get("resourceVersion", version)
                    if kind == "BOOKMARK" or not selected(obj["metadata"]["namespace"],
                                                          patterns):
                        continue
                    if kind == "DELETED":
                        await writer.record_deleted(obj)
                    else:
                        await writer.record(obj)
        except _Relist:
            continue
        except PaykubeError as exc:
            log.warning("mirror watch interrupted, retrying",
                        extra={"code": exc.code.value, "delay": round(backoff, 1)})
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(max_backoff, backoff * 2)


class _Relist(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""
