"""Feed the mirror from its own watches of PaymentSessions and PaymentRefunds.

Its own list+watch, not kopf's handler queue: under a burst of new objects kopf's
per-object work delays its events, and the mirror should not wait for reconciliation.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from paykube.errors import PaykubeError
from paykube.kube.client import KubeClient
from paykube.mirror.projection import KINDS, REFUND, SESSION
from paykube.mirror.store import MirrorWriter, Sweep

__all__ = ["KINDS", "follow", "selected", "watch_scopes"]

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


def _api(kube: KubeClient, kind: str) -> tuple[
        Callable[[str | None], Awaitable[tuple[list[dict[str, Any]], str]]],
        Callable[[str | None, str], AsyncIterator[tuple[str, dict[str, Any]]]]]:
    if kind == REFUND:
        return kube.list_refunds_at, kube.watch_refunds
    if kind == SESSION:
        return kube.list_sessions_at, kube.watch_sessions
    raise ValueError(f"unknown object kind {kind!r}")


async def follow(kube: KubeClient, writer: MirrorWriter, scope: str | None,
                 patterns: tuple[str, ...], *, max_backoff: float = 30.0,
                 initial_backoff: float = 0.5, kind: str = SESSION) -> None:
    """List, record everything, then watch and record every change; forever. `kind`:
    PaymentSessions (`SESSION`) or PaymentRefunds (`REFUND`), one task each.

    Supervises itself: whatever interrupts the watch (an API error, but also a bug or a
    watch line cut in the middle) is logged and followed, after a backoff, by a fresh list.
    Each list also flags the rows of objects deleted while nobody watched. Only
    cancellation ends it.
    """
    list_at, watch = _api(kube, kind)
    backoff = initial_backoff
    while True:
        try:
            items, version = await list_at(scope)
            listed: set[str] = set()
            for item in items:
                if selected(item["metadata"]["namespace"], patterns):
                    listed.add(str(item["metadata"].get("uid")))
                    await writer.record(item, kind)
            if version.isdigit():  # etcd's revisions; another store's are not comparable
                await writer.record_listed(Sweep(
                    scope, frozenset(listed), int(version),
                    lambda namespace: selected(namespace, patterns), kind))
            backoff = initial_backoff
            while True:
                async for event, obj in watch(scope, version):
                    if event == "ERROR":
                        raise _Relist
                    version = obj["metadata"].get("resourceVersion", version)
                    if event == "BOOKMARK" or not selected(obj["metadata"]["namespace"],
                                                           patterns):
                        continue
                    if event == "DELETED":
                        await writer.record_deleted(obj, kind)
                    else:
                        await writer.record(obj, kind)
        except _Relist:
            continue
        except PaykubeError as exc:
            log.warning("mirror watch interrupted, retrying",
                        extra={"code": exc.code.value, "delay": round(backoff, 1),
                               "kind": kind})
        except Exception as exc:
            # Not one of ours (a JSONDecodeError on a cut line, a bug): without this the
            # task would end and the mirror stop following, silently.
            log.error("mirror watch failed unexpectedly, restarting it: %s",
                      type(exc).__name__, exc_info=True,
                      extra={"delay": round(backoff, 1)})
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
        backoff = min(max_backoff, backoff * 2)


class _Relist(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""
