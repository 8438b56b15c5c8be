"""A real stomp.py consumer for tests that check what reached the broker, and the fixtures
(`topic`, `publisher`) of the tests that publish to it with paykube's StompPublisher."""

from __future__ import annotations

import queue
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from paykube.events.stomp import StompPublisher
from paykube_dev.services import ActiveMQ

RECEIVE_TIMEOUT = 10.0
BACKOFF_INITIAL = 1.0  # the `publisher` fixture's first reconnect delay


@pytest.fixture
def topic() -> tuple[str, str]:
    """(where paykube publishes, the queue a consumer group `it` reads): a virtual topic of
    its own per test."""
    name = f"VirtualTopic.paykube.it{uuid.uuid4().hex[:10]}"
    return f"/topic/{name}", f"/queue/Consumer.it.{name}"


@pytest.fixture
async def publisher(activemq: ActiveMQ, topic: tuple[str, str]) -> AsyncIterator[StompPublisher]:
    pub = StompPublisher(activemq.host_and_ports, topic[0], receipt_timeout=2.0,
                         connect_timeout=2.0, backoff_initial=BACKOFF_INITIAL, backoff_max=4.0)
    try:
        yield pub
    finally:
        await pub.aclose()


class Frames:
    """A stomp.py listener (duck-typed) that queues what the broker sends."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[Any] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame)

    def receipt(self, timeout: float = 10) -> str:
        return self.receipts.get(timeout=timeout)

    def message(self, timeout: float = 10) -> Any:
        return self.messages.get(timeout=timeout)


class Subscriber:
    """A stomp.py consumer (duck-typed listener) on one destination, subscribed with a
    receipt so that nothing published afterwards can be missed."""

    def __init__(self, broker: ActiveMQ, destination: str, selector: str | None = None) -> None:
        self.frames = Frames()
        self.conn = broker.connect()
        self.conn.set_listener("subscriber", self.frames)
        receipt = f"sub-{uuid.uuid4().hex}"
        headers = {"receipt": receipt}
        if selector is not None:
            headers["selector"] = selector
        self.conn.subscribe(destination, id="s1", ack="auto", headers=headers)
        assert self.frames.receipt(RECEIVE_TIMEOUT) == receipt

    def get(self, timeout: float = RECEIVE_TIMEOUT) -> Any:
        return self.frames.message(timeout)

    def ids(self, count: int, timeout: float = RECEIVE_TIMEOUT) -> list[str]:
        return [self.get(timeout).headers["ce_id"] for _ in range(count)]

    def nothing_more(self, wait: float = 0.5) -> bool:
        try:
            self.frames.message(wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect()
        assert self.frames.errors.empty(), self.frames.errors.get().headers


@contextmanager
def subscriber(broker: ActiveMQ, destination: str,
               selector: str | None = None) -> Iterator[Subscriber]:
    sub = Subscriber(broker, destination, selector)
    try:
        yield sub
    finally:
        sub.close()


