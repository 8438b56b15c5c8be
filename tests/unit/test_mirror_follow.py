"""Which namespaces the mirror's own watch covers (pure parts), and that the watch task
supervises itself (a scripted client; the writer is not started, so no database)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import sqlalchemy

from paykube.kube.client import KubeClient
from paykube.mirror.follow import follow, selected, watch_scopes
from paykube.mirror.store import MirrorStore, MirrorWriter

Manifest = dict[str, Any]


def test_exact_namespaces_get_one_watch_each() -> None:
    assert watch_scopes(("shop", "billing")) == ("shop", "billing")


def test_globs_or_nothing_mean_one_cluster_wide_watch() -> None:
    assert watch_scopes(()) == (None,)
    assert watch_scopes(("shop", "t-*")) == (None,)


def test_selection_follows_kopf_style_patterns() -> None:
    assert selected("t-1", ("t-*",))
    assert not selected("solo-1", ("t-*",))
    assert selected("anything", ())
    assert not selected("kube-system", ("*", "!kube-*"))
    assert selected("shop", ("*", "!kube-*"))


class ScriptedKube:
    """A client whose watch breaks in a way that is not a PaykubeError (a JSONDecodeError
    on a line cut in the middle), then works; counts the lists."""

    def __init__(self) -> None:
        self.lists = 0
        self.watching = asyncio.Event()

    async def list_sessions_at(self, namespace: str | None) -> tuple[list[Manifest], str]:
        self.lists += 1
        return [_session(f"uid-{self.lists}")], str(100 + self.lists)

    async def watch_sessions(self, namespace: str | None,
                             resource_version: str) -> AsyncIterator[tuple[str, Manifest]]:
        if self.lists == 1:
            json.loads('{"type": "MODIFIED", "object": {"metad')  # raises
        self.watching.set()
        await asyncio.Event().wait()  # a quiet watch
        yield "BOOKMARK", {}


def _session(uid: str) -> Manifest:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "shop",
                         "resourceVersion": "7", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"amount": 100, "currency": "usd"}, "status": {"phase": "Pending"}}


async def test_follow_restarts_after_an_unexpected_error(
        caplog: pytest.LogCaptureFixture) -> None:
    kube = ScriptedKube()
    writer = MirrorWriter(MirrorStore(sqlalchemy.create_engine("sqlite://")))  # not started
    task = asyncio.create_task(follow(cast(KubeClient, kube), writer, "shop", ("shop",),
                                      initial_backoff=0.01))
    try:
        await asyncio.wait_for(kube.watching.wait(), 5)
        assert not task.done()
        assert kube.lists == 2  # listed again after the failure
        assert writer.pending_count() == 2
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "JSONDecodeError" in errors[0].getMessage()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()  # cancellation still ends it
