"""StompPublisher and the outbox against the real ActiveMQ broker (session fixture `activemq`;
`topic` and `publisher` come from tests/plugins/stomp_helpers.py).

Events go to a virtual topic; the test reads them, like a consumer group would, from its
queue `Consumer.it.VirtualTopic.…` with a real stomp.py subscriber. Every wait is bounded.
Tests that stop (or freeze) the broker bring it back in `finally`: the fixture is shared.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import statistics
import time
import uuid

import pytest

from paykube.api.types import HistoryEntry, ObjectRef, Phase, Source, Status
from paykube.events import CloudEvent, build_event, publish_pending
from paykube.events.publisher import BrokerUnavailableError
from paykube.events.relay import build_publisher
from paykube.events.stomp import StompPublisher
from paykube.lifecycle import mark_published, unpublished
from paykube.settings import SecretStr, Settings
from paykube_dev.services import ActiveMQ
from tests.plugins.stomp_helpers import BACKOFF_INITIAL, subscriber

pytestmark = pytest.mark.integration

def session(uid: str | None = None, phases: tuple[Phase, ...] = (Phase.PENDING,)) -> tuple[
        ObjectRef, Status]:
    ref = ObjectRef("shop", f"order-{uuid.uuid4().hex[:6]}", uid or str(uuid.uuid4()))
    history = tuple(HistoryEntry(p, f"2025-03-01T10:00:0{i}Z", Source.OPERATOR)
                    for i, p in enumerate(phases))
    return ref, Status(phase=phases[-1], session_id="cs_test_1", amount_total=4200,
                       currency="eur", history=history)


def event(phase: Phase = Phase.PENDING) -> CloudEvent:
    ref, st = session(phases=(phase,))
    return build_event(ref, st, st.history[0])


async def publish_until_ok(pub: StompPublisher, ev: CloudEvent, deadline: float) -> int:
    """Publish until it succeeds (the broker is back and the backoff window passed);
    returns the number of refused attempts, each of which must have been quick."""
    refused = 0
    while True:
        began = time.monotonic()
        try:
            await pub.publish(ev)
            return refused
        except BrokerUnavailableError:
            assert time.monotonic() - began < 2.5  # one connect attempt at most
            refused += 1
            assert time.monotonic() < deadline, "publisher did not reconnect in time"
            time.sleep(0.1)


async def test_publish_is_received_persistent_with_cloudevents_headers(
        activemq: ActiveMQ, topic: tuple[str, str], publisher: StompPublisher) -> None:
    ref, st = session(phases=(Phase.PENDING, Phase.OPEN))
    first = build_event(ref, st, st.history[1])
    # A second consumer group that selects on the message properties the publisher sets.
    selected = topic[1].replace("Consumer.it.", "Consumer.sel.")
    selector = f"JMSXGroupID = '{ref.uid}' AND ce_type = 'dev.paykube.paymentsession.open'"
    with subscriber(activemq, topic[1]) as sub, \
            subscriber(activemq, selected, selector) as sel:
        began = time.monotonic()
        await publisher.publish(first)  # connects, sends, waits for the receipt
        first_latency = time.monotonic() - began
        assert publisher.connected

        frame = sub.get()
        headers = frame.headers
        assert headers["persistent"] == "true"
        assert headers["content-type"] == "application/cloudevents+json; charset=utf-8"
        assert headers["ce_id"] == f"{ref.uid}/open"
        assert headers["ce_type"] == "dev.paykube.paymentsession.open"
        assert headers["ce_source"] == ref.api_path
        assert headers["ce_subject"] == f"shop/{ref.name}"
        assert headers["ce_time"] == "2025-03-01T10:00:01Z"  # ':' escaped on the wire
        assert headers["ce_specversion"] == "1.0"
        assert "content-length" not in headers or int(headers["content-length"]) > 0
        body = json.loads(frame.body)
        assert body == json.loads(first.to_json())
        assert body["id"] == f"{ref.uid}/open" and body["data"]["phase"] == "Open"

        # Steady-state latency: publish-with-receipt on the open connection.
        latencies = []
        sent = [event() for _ in range(50)]
        for ev in sent:
            began = time.monotonic()
            await publisher.publish(ev)
            latencies.append(time.monotonic() - began)
        assert sub.ids(len(sent)) == [ev.id for ev in sent]  # all, in order
        assert sub.nothing_more()
        assert sel.ids(1) == [first.id]  # selected by group id (uid) and ce_type
        assert sel.nothing_more(0.2)
    p50 = statistics.median(latencies) * 1000
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
    print(f"\npublish with receipt: first (incl. connect) {first_latency * 1000:.1f} ms, "
          f"steady p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(latencies)}")
    assert p50 < 500


async def test_broker_outage_fails_fast_then_reconnects(
        activemq: ActiveMQ, topic: tuple[str, str], publisher: StompPublisher) -> None:
    with subscriber(activemq, topic[1]):  # creates the consumer group's queue
        await publisher.publish(event(Phase.PENDING))
    after_outage = event(Phase.OPEN)
    try:
        activemq.stop()

        began = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as first:
            await publisher.publish(event(Phase.OPEN))
        detect = time.monotonic() - began
        assert detect < 3.0, detect
        assert first.value.retryable and first.value.code == "BrokerUnavailable"
        assert not publisher.connected

        began = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as again:
            await publisher.publish(event(Phase.OPEN))
        refuse = time.monotonic() - began
        assert refuse < 0.1, refuse  # inside the backoff window: no network at all
        assert again.value.retry_after is not None
        assert 0 < again.value.retry_after <= BACKOFF_INITIAL * 1.2
        print(f"\noutage: first publish failed after {detect * 1000:.1f} ms, "
              f"then refused in {refuse * 1000:.2f} ms (retry in {again.value.retry_after:.2f}s)")
    finally:
        activemq.start()  # same port, same data

    began = time.monotonic()
    refused = await publish_until_ok(publisher, after_outage, deadline=began + 30)
    print(f"reconnected {time.monotonic() - began:.2f}s after the broker was back "
          f"({refused} refusals)")
    assert publisher.connected
    # Published while no consumer was connected: kept in the group's persistent queue.
    with subscriber(activemq, topic[1]) as sub:
        frame = sub.get()
        assert frame.headers["ce_id"] == after_outage.id
        assert frame.headers["persistent"] == "true"
        assert sub.nothing_more()


async def test_frozen_broker_times_out_on_the_receipt(
        activemq: ActiveMQ, topic: tuple[str, str], publisher: StompPublisher) -> None:
    """The connection stays up but the broker does not answer (SIGSTOP): the publish fails
    after `receipt_timeout`; once the broker runs again, a re-publish (what the outbox
    does) delivers the event. The first copy may arrive too: a duplicate, never a gap."""
    ev = event(Phase.PAID)
    with subscriber(activemq, topic[1]) as sub:
        await publisher.publish(event(Phase.PENDING))
        assert sub.get().headers["ce_id"].endswith("/pending")
        pid = activemq.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(BrokerUnavailableError, match="no receipt"):
                await publisher.publish(ev)
            waited = time.monotonic() - began
            assert 2.0 <= waited < 3.0, waited  # receipt_timeout=2
            with pytest.raises(BrokerUnavailableError):
                await publisher.publish(ev)
        finally:
            os.kill(pid, signal.SIGCONT)
        print(f"\nfrozen broker: publish failed after {waited * 1000:.0f} ms (receipt timeout)")
        await publish_until_ok(publisher, ev, deadline=time.monotonic() + 30)
        copies = [sub.get().headers["ce_id"]]
        while True:
            try:
                copies.append(sub.get(timeout=1.0).headers["ce_id"])
            except queue.Empty:
                break
        print(f"copies delivered after the freeze: {len(copies)}")
        assert set(copies) == {ev.id} and 1 <= len(copies) <= 2


async def test_publishes_waiting_for_receipts_hold_no_thread(
        activemq: ActiveMQ, publisher: StompPublisher) -> None:
    """Many publishes wait for their receipts at once (the webhook answers only after the
    receipt): each waits on the event loop, not on a worker thread, so all of them are in
    flight together and the loop's few executor threads stay free."""
    await publisher.publish(event())  # connected
    pid = activemq.pid
    assert pid is not None
    waiting = 40
    os.kill(pid, signal.SIGSTOP)  # the connection stays up; no receipt comes back
    try:
        tasks = [asyncio.create_task(publisher.publish(event())) for _ in range(waiting)]
        in_flight = 0
        for _ in range(100):  # bounded: well within the 2 s receipt timeout
            await asyncio.sleep(0.01)
            in_flight = len(publisher._listener._receipts) if publisher._listener else 0
            if in_flight == waiting:
                break
        assert in_flight == waiting, f"only {in_flight} of {waiting} in flight at once"
        assert await asyncio.to_thread(lambda: "free") == "free"
    finally:
        os.kill(pid, signal.SIGCONT)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(o is None or isinstance(o, BrokerUnavailableError) for o in outcomes)


async def test_outbox_publishes_in_order_and_nothing_is_lost_in_an_outage(
        activemq: ActiveMQ, topic: tuple[str, str], publisher: StompPublisher) -> None:
    ref, st = session(phases=(Phase.PENDING, Phase.OPEN, Phase.PROCESSING, Phase.PAID))
    st = mark_published(st, Phase.PENDING)  # already confirmed earlier

    class Counting:
        def __init__(self) -> None:
            self.attempts = 0

        async def publish(self, ev: CloudEvent) -> None:
            self.attempts += 1
            await publisher.publish(ev)

        async def aclose(self) -> None:
            await publisher.aclose()

    counting = Counting()
    with subscriber(activemq, topic[1]):  # creates the consumer group's queue
        pass
    try:
        activemq.stop()
        assert await publish_pending(st, ref, counting) == ()
        assert counting.attempts == 1  # stopped at the first failure, kept the order
        assert len(unpublished(st)) == 3  # nothing recorded: nothing lost
    finally:
        activemq.start()

    deadline = time.monotonic() + 30
    while not (done := await publish_pending(st, ref, counting)):
        assert time.monotonic() < deadline, "outbox did not drain after the broker came back"
        time.sleep(0.2)
    assert done == (Phase.OPEN, Phase.PROCESSING, Phase.PAID)
    for phase in done:
        st = mark_published(st, phase)
    assert unpublished(st) == ()
    assert await publish_pending(st, ref, counting) == ()

    with subscriber(activemq, topic[1]) as sub:
        assert sub.ids(3) == [f"{ref.uid}/open", f"{ref.uid}/processing", f"{ref.uid}/paid"]
        assert sub.nothing_more()


async def test_closed_publisher_refuses(activemq: ActiveMQ, topic: tuple[str, str]) -> None:
    pub = StompPublisher(activemq.host_and_ports, topic[0], connect_timeout=2.0,
                         passcode=SecretStr("hunter2"))  # the test broker ignores it
    await pub.publish(event())
    await pub.aclose()
    assert not pub.connected
    with pytest.raises(BrokerUnavailableError, match="closed"):
        await pub.publish(event())
    assert "hunter2" not in repr(pub)


# --- STOMP over TLS (Amazon MQ serves only stomp+ssl) ------------------------------------

async def test_publishes_over_tls_verifying_the_broker(activemq: ActiveMQ,
                                                       topic: tuple[str, str]) -> None:
    pub = StompPublisher(activemq.ssl_host_and_ports, topic[0], use_ssl=True,
                         ssl_ca_certs=str(activemq.ca_cert), receipt_timeout=5.0,
                         connect_timeout=5.0)
    try:
        with subscriber(activemq, topic[1]) as sub:
            ev = event(Phase.OPEN)
            await pub.publish(ev)
            received = json.loads(sub.get(timeout=10).body)
            assert received["id"] == ev.id
    finally:
        await pub.aclose()


async def test_a_broker_cert_of_an_unknown_ca_is_refused(activemq: ActiveMQ,
                                                         topic: tuple[str, str]) -> None:
    # The system CAs do not know the test broker's CA: the handshake must fail, not fall
    # back to an unverified connection.
    pub = StompPublisher(activemq.ssl_host_and_ports, topic[0], use_ssl=True,
                         receipt_timeout=2.0, connect_timeout=2.0)
    try:
        with pytest.raises(BrokerUnavailableError):
            await pub.publish(event())
    finally:
        await pub.aclose()


async def test_settings_with_a_stomp_ssl_url_publish_over_tls(
        activemq: ActiveMQ, topic: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As configured in a pod: `stomp+ssl://` in PAYKUBE_BROKER_URLS, a private CA trusted
    through OpenSSL's SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(activemq.ca_cert))
    settings = Settings.from_env({
        "PAYKUBE_BROKER_URLS": f"stomp+ssl://{activemq.host}:{activemq.stomp_ssl_port}",
        "PAYKUBE_BROKER_DESTINATION": topic[0]})
    pub = build_publisher(settings)
    try:
        with subscriber(activemq, topic[1]) as sub:
            ev = event(Phase.PAID)
            await pub.publish(ev)
            assert json.loads(sub.get(timeout=10).body)["id"] == ev.id
    finally:
        await pub.aclose()
