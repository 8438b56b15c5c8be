"""The webhook's delivery path on the real API server and ActiveMQ: an applied event is one
status write (its entry stored marked published) and a publish before the answer; the PSP's
redelivery is the outbox when the process dies in between; a broker that does not confirm
in time gets the phase back to the operator's outbox; Kubernetes Events keep to a budget."""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from paykube_dev.proc import wait_until
from paykube_dev.programs import Program, start_webhook
from paykube_dev.services import ActiveMQ
from tests.integration.test_webhook import counter, events_for, managed_session, scrape, signed
from tests.plugins.paykube_fixtures import EVENTS_QUEUE, WEBHOOK_SECRET, Stack
from tests.plugins.stomp_helpers import Subscriber, subscriber
from tests.plugins.tcp_proxy import TcpProxy

Manifest = dict[str, Any]


@contextmanager
def broker_proxy(activemq: ActiveMQ) -> Iterator[TcpProxy]:
    proxy = TcpProxy(activemq.stomp_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.resume()
        proxy.stop()


def webhook_via(proxy: TcpProxy, stack: Stack, log: Path, **env: str) -> Program:
    """A webhook whose broker connection runs through `proxy`, once it is connected."""
    webhook = start_webhook(stack.kube.kubeconfig, log, {
        **stack.env, "PAYKUBE_BROKER_URLS": f"127.0.0.1:{proxy.port}", **env})
    wait_until(lambda: httpx.get(f"{webhook.url}/readyz", timeout=10).json()["broker"]
               == "connected", timeout=30, what="broker connected", proc=webhook.proc,
               log=webhook.log)
    return webhook


def paid_events(sub: Subscriber, uid: str, wait: float) -> list[str]:
    """The ids of the Paid CloudEvents about `uid` that arrive within `wait` seconds."""
    found: list[str] = []
    deadline = time.monotonic() + wait
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            body = json.loads(sub.get(remaining).body)
        except queue.Empty:
            break
        if body["id"] == f"{uid}/paid":
            found.append(body["id"])
    return found


def paid_entry(stack: Stack, namespace: str, name: str) -> dict[str, Any] | None:
    history = stack.get(namespace, name).get("status", {}).get("history", [])
    return next((h for h in history if h["phase"] == "Paid"), None)


def test_a_crash_between_write_and_publish_is_healed_by_the_psps_redelivery(
        stack: Stack, activemq: ActiveMQ, unmanaged_namespace: str, tmp_path: Path) -> None:
    """The webhook stores Paid (marked published), its SEND is held, and it is killed: the
    PSP got no 2xx, the bus nothing. The PSP's next delivery, to a new process, publishes
    the Paid event exactly once and changes nothing else."""
    managed = managed_session(stack, unmanaged_namespace, "crash-before-publish")
    (event_id,) = events_for(stack, managed, "paid")
    body = stack.emulator.event_payload(event_id)
    with subscriber(activemq, EVENTS_QUEUE) as sub, broker_proxy(activemq) as proxy:
        first = webhook_via(proxy, stack, tmp_path / "first.log")
        answers: list[object] = []

        def send() -> None:
            try:
                answers.append(httpx.post(f"{first.url}/webhooks/stripe", content=body,
                                          headers=signed(body), timeout=30).status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        try:
            proxy.pause()  # the broker gets nothing from now on
            sender = threading.Thread(target=send)
            sender.start()
            wait_until(lambda: (paid_entry(stack, managed.namespace, managed.name) or {}
                                ).get("published") is True,
                       timeout=30, what="Paid stored, marked published", proc=first.proc,
                       log=first.log)
            first.proc.kill()  # kill -9 while its SEND waits in the proxy
            first.proc.wait(10)
            sender.join(30)
        finally:
            first.stop()
        assert answers and answers[0] != 200, f"the PSP got no 2xx: {answers}"
        proxy.stop()  # the held SEND dies with the connection
        proxy.resume()
        assert paid_events(sub, managed.uid, wait=2.0) == [], "nothing reached the bus"
        stored = stack.get(managed.namespace, managed.name)

        proxy.start()
        second = webhook_via(proxy, stack, tmp_path / "second.log")
        try:
            url = f"{second.url}/webhooks/stripe"
            answer = stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1]
            assert answer["status"] == 200
            assert paid_events(sub, managed.uid, wait=5.0) == [f"{managed.uid}/paid"]
            # A replay to the process that saw the broker confirm it sends nothing more.
            again = stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1]
            assert again["status"] == 200
            assert paid_events(sub, managed.uid, wait=2.0) == []
        finally:
            second.stop()
        after = stack.get(managed.namespace, managed.name)
        assert after["status"] == stored["status"], "the redelivery wrote nothing"


def test_a_broker_that_does_not_confirm_in_time_leaves_the_phase_to_the_outbox(
        stack: Stack, activemq: ActiveMQ, unmanaged_namespace: str, tmp_path: Path) -> None:
    managed = managed_session(stack, unmanaged_namespace, "slow-broker")
    (event_id,) = events_for(stack, managed, "paid")
    with broker_proxy(activemq) as proxy:
        webhook = webhook_via(proxy, stack, tmp_path / "webhook.log")
        try:
            proxy.pause()  # connected, but no receipt comes back
            url = f"{webhook.url}/webhooks/stripe"
            answer = stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1]
            assert answer["status"] == 200, "stored: the PSP need not retry"
            entry = paid_entry(stack, managed.namespace, managed.name)
            assert entry is not None and entry["published"] is False, \
                "given back to the operator's outbox"
        finally:
            proxy.resume()
            webhook.stop()


def test_kubernetes_events_over_the_budget_are_skipped_and_counted(
        stack: Stack, unmanaged_namespace: str, tmp_path: Path) -> None:
    managed = managed_session(stack, unmanaged_namespace, "no-event-budget")
    (event_id,) = events_for(stack, managed, "paid")
    webhook = start_webhook(stack.kube.kubeconfig, tmp_path / "webhook.log",
                            {**stack.env, "PAYKUBE_WEBHOOK_EVENT_RATE": "0"})
    try:
        url = f"{webhook.url}/webhooks/stripe"
        assert stack.emulator.deliver(event_id, url=url, secret=WEBHOOK_SECRET)[-1][
            "status"] == 200
        assert stack.get(managed.namespace, managed.name)["status"]["phase"] == "Paid"
        view = dataclasses.replace(stack, webhook=webhook)
        wait_until(lambda: counter(scrape(view), "paykube_webhook_kube_events",
                                   outcome="skipped") == 1, timeout=10,
                   what="skipped Event counted", proc=webhook.proc, log=webhook.log)
        assert counter(scrape(view), "paykube_webhook_kube_events", outcome="written") == 0
        events = json.loads(stack.kube.kubectl(
            "get", "events", "-n", managed.namespace, "-o", "json",
            "--field-selector", f"involvedObject.uid={managed.uid}").stdout)["items"]
        assert [e for e in events if e["reason"] == "Paid"] == []
    finally:
        webhook.stop()


def test_a_refused_event_never_republishes_the_sessions_stored_phase(
        stack: Stack, activemq: ActiveMQ, unmanaged_namespace: str, tmp_path: Path) -> None:
    """A signed event that names a Paid session but fails its binding (here another
    session id; another tenant's event takes the same path) reaches a process that has not
    seen the Paid event confirmed: it is refused and sends nothing. The genuine event's
    redelivery to that process does republish: the refusal is what stopped it."""
    managed = managed_session(stack, unmanaged_namespace, "refused-no-republish")
    (event_id,) = events_for(stack, managed, "paid")
    with subscriber(activemq, EVENTS_QUEUE) as sub:
        assert stack.emulator.deliver(event_id, url=f"{stack.webhook.url}/webhooks/stripe",
                                      secret=WEBHOOK_SECRET)[-1]["status"] == 200
        assert paid_events(sub, managed.uid, wait=10.0) == [f"{managed.uid}/paid"]
        entry = paid_entry(stack, managed.namespace, managed.name)
        assert entry is not None and entry["published"] is True
        fresh = start_webhook(stack.kube.kubeconfig, tmp_path / "fresh.log", stack.env)
        try:
            wait_until(lambda: httpx.get(f"{fresh.url}/readyz", timeout=10).json()["broker"]
                       == "connected", timeout=30, what="broker connected",
                       proc=fresh.proc, log=fresh.log)
            forged = json.loads(stack.emulator.event_payload(event_id))
            forged["id"] = "evt_forged_session"
            forged["data"]["object"]["id"] = "cs_test_forged"
            body = json.dumps(forged).encode()
            answer = httpx.post(f"{fresh.url}/webhooks/stripe", content=body,
                                headers=signed(body), timeout=30)
            assert (answer.status_code, answer.json()["outcome"]) == (
                200, "ignored_session_mismatch")
            assert paid_events(sub, managed.uid, wait=2.0) == []
            again = stack.emulator.deliver(event_id, url=f"{fresh.url}/webhooks/stripe",
                                           secret=WEBHOOK_SECRET)[-1]
            assert again["status"] == 200
            assert paid_events(sub, managed.uid, wait=5.0) == [f"{managed.uid}/paid"]
        finally:
            fresh.stop()
