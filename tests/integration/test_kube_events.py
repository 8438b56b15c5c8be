"""Kubernetes Events on the real API server: a repeated Event is aggregated (count and
lastTimestamp), as client-go's recorder does, so an outage cannot flood the namespace."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from paykube.api.types import ObjectRef
from paykube.kube.client import KubeClient
from paykube.kube.config import KubeConfig
from paykube_dev.kube import ControlPlane


def events_of(kube: ControlPlane, namespace: str, name: str) -> list[dict[str, object]]:
    out = kube.kubectl("get", "events", "-n", namespace, "-o", "json",
                       f"--field-selector=involvedObject.name={name}").stdout
    return [{"reason": e["reason"], "message": e["message"], "count": e["count"],
             "first": e["firstTimestamp"], "last": e["lastTimestamp"]}
            for e in json.loads(out)["items"]]


async def test_repeated_events_are_aggregated(kube: ControlPlane, kube_client: KubeClient,
                                              namespace: str) -> None:
    ref = ObjectRef(namespace, f"agg-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    start = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)

    async def record(message: str, minute: int, client: KubeClient = kube_client) -> None:
        await client.create_event(ref, type_="Warning", reason="ProviderUnavailable",
                                  message=message, component="test",
                                  now=start + dt.timedelta(minutes=minute))

    for minute in range(3):
        await record("Stripe answered 500", minute)
    await record("Stripe answered 503", 3)
    events = sorted(events_of(kube, namespace, ref.name), key=lambda e: str(e["message"]))
    assert events == [
        {"reason": "ProviderUnavailable", "message": "Stripe answered 500", "count": 3,
         "first": "2026-11-26T12:00:00Z", "last": "2026-11-26T12:02:00Z"},
        {"reason": "ProviderUnavailable", "message": "Stripe answered 503", "count": 1,
         "first": "2026-11-26T12:03:00Z", "last": "2026-11-26T12:03:00Z"},
    ]

    # A restarted process (no remembered counts) counts on from the existing Event.
    async with KubeClient(KubeConfig.from_file(kube.kubeconfig)) as restarted:
        await record("Stripe answered 500", 4, restarted)
    counts = {e["message"]: e["count"] for e in events_of(kube, namespace, ref.name)}
    assert counts == {"Stripe answered 500": 2, "Stripe answered 503": 1}

    # An Event the API server dropped (they expire) is recorded afresh.
    kube.kubectl("delete", "events", "-n", namespace, "--all")
    await record("Stripe answered 500", 5)
    assert [(e["message"], e["count"]) for e in events_of(kube, namespace, ref.name)] == [
        ("Stripe answered 500", 1)]


async def test_unaggregated_events_stay_separate(kube: ControlPlane, kube_client: KubeClient,
                                                 namespace: str) -> None:
    ref = ObjectRef(namespace, f"sep-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    now = dt.datetime.now(dt.UTC)
    for _ in range(2):
        await kube_client.create_event(ref, type_="Normal", reason="Paid", message="same",
                                       component="test", now=now, aggregate=False)
    assert [e["count"] for e in events_of(kube, namespace, ref.name)] == [1, 1]
