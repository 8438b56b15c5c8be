"""`StompPublisher`: payment events to ActiveMQ (or Amazon MQ) over STOMP 1.2.

stomp.py is thread-based; each publish sends from a worker thread (`asyncio.to_thread`)
and awaits its receipt on the event loop.

Every event is one SEND frame:
- body: the CloudEvent in structured mode (`application/cloudevents+json`), without a
  `content-length` header, so that ActiveMQ stores it as a JMS TextMessage (what JSON
  consumers expect; JSON never contains a NUL byte, so the frame is unambiguous);
- `persistent:true` and a `receipt`: ActiveMQ sends the RECEIPT once the message is stored,
  and only then does `publish` return;
- `ce_id`, `ce_type`, `ce_source`, `ce_subject`, `ce_time`, `ce_specversion`: copies of the
  event's attributes as message properties (the `ce_` prefix of the CloudEvents Kafka
  binding, valid JMS identifiers), so consumers can route and filter with selectors such as
  `ce_type = 'dev.paykube.paymentsession.paid'` without parsing the body; the body is
  authoritative;
- `JMSXGroupID` the object's uid: on a queue with competing consumers (the
  `Consumer.<name>.VirtualTopic.*` queues of a virtual topic), ActiveMQ message groups hand
  all events of one session to the same consumer, in order.

Failure handling: a publish that cannot get its receipt (connect refused or timed out,
connection lost, ERROR frame, no RECEIPT within `receipt_timeout`) raises
`BrokerUnavailableError` and drops the connection, so the next publish reconnects. Each
publish call makes at most one connection attempt (one pass over `host_and_ports`); after a
failure the publisher refuses at once, without touching the network, until a backoff delay
has passed (exponential, with jitter, capped at `backoff_max`), so callers are never held
for long and a dead broker is not hammered. A publish takes at most about
`2 * connect_timeout + receipt_timeout`. There is no limit on the number of attempts over
time: the outbox must eventually get through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import stomp
from stomp.exception import StompException

from paykube.events.cloudevent import STRUCTURED_CONTENT_TYPE, CloudEvent
from paykube.events.publisher import BrokerUnavailableError
from paykube.settings import SecretStr

log = logging.getLogger(__name__)

DEFAULT_DESTINATION = "/topic/VirtualTopic.paykube.payments"
"""A virtual topic: each consumer group reads its own durable queue
`/queue/Consumer.<group>.VirtualTopic.paykube.payments`."""

_LISTENER = "paykube-publisher"


def destination_for(template: str, event: CloudEvent) -> str:
    """The destination of one event: `{namespace}` in the configured destination becomes
    the object's namespace (a DNS label, so it cannot inject a path), so that broker ACLs
    can give each tenant its own topic."""
    namespace = str(event.data.get("namespace") or "")
    return template.replace("{namespace}", namespace)


class _Receipt:
    """One awaited RECEIPT, finished on the receiver thread, which then calls `notify` so
    that the event loop awaiting it needs no thread of its own."""

    __slots__ = ("error", "notify")

    def __init__(self, notify: Callable[[], None]) -> None:
        self.error: str | None = None
        self.notify = notify

    def finish(self, error: str | None = None) -> None:
        self.error = error
        self.notify()


class _Listener:
    """Frames of one connection (called on stomp.py's receiver thread; duck-typed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receipts: dict[str, _Receipt] = {}
        self.settled = threading.Event()  # CONNECTED, or failure before it
        self.gone = threading.Event()  # the socket is closed
        self.connected = False
        self.lost: str | None = None  # why the connection is unusable

    def expect(self, receipt_id: str, notify: Callable[[], None]) -> _Receipt:
        receipt = _Receipt(notify)
        with self._lock:
            lost = self.lost
            if lost is None:
                self._receipts[receipt_id] = receipt
        if lost is not None:
            receipt.finish(lost)
        return receipt

    def forget(self, receipt_id: str) -> None:
        with self._lock:
            self._receipts.pop(receipt_id, None)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            if self.lost is None:
                self.lost = reason
            receipts, self._receipts = self._receipts, {}
        for receipt in receipts.values():
            receipt.finish(reason)
        self.settled.set()

    # stomp.py callbacks
    def on_connected(self, frame: Any) -> None:
        self.connected = True
        self.settled.set()

    def on_receipt(self, frame: Any) -> None:
        with self._lock:
            receipt = self._receipts.pop(str(frame.headers.get("receipt-id", "")), None)
        if receipt is not None:
            receipt.finish()

    def on_error(self, frame: Any) -> None:
        # Either the connection was refused (bad login) or a frame was; either way the
        # connection is not trusted any more and is dropped by the publisher.
        message = str(frame.headers.get("message", "")).strip() or "ERROR frame"
        self._fail_all(f"broker error: {message}")

    def on_disconnected(self) -> None:
        self._fail_all("connection lost")
        self.gone.set()

    def on_heartbeat_timeout(self) -> None:
        self._fail_all("heartbeat timeout")


class StompPublisher:
    """Publishes CloudEvents to one STOMP destination over one connection; thread-safe."""

    def __init__(
        self,
        host_and_ports: Sequence[tuple[str, int]],
        destination: str = DEFAULT_DESTINATION,
        *,
        login: str | None = None,
        passcode: SecretStr | None = None,
        vhost: str | None = None,
        receipt_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        use_ssl: bool = False,
        ssl_ca_certs: str | None = None,
        heartbeats: tuple[int, int] = (10_000, 10_000),
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`host_and_ports`: tried in order (e.g. the two brokers of an Amazon MQ
        active/standby pair). `use_ssl`: STOMP over TLS (`stomp+ssl://`, as Amazon MQ
        serves it), verifying the server certificate and host name against the system CAs
        or `ssl_ca_certs`. `heartbeats`: STOMP heart-beats in ms (send, receive), which
        also detect a half-open connection."""
        if not host_and_ports:
            raise ValueError("host_and_ports is empty")
        self._hosts = [(str(h), int(p)) for h, p in host_and_ports]
        self._destination = destination
        self._login = login
        self._passcode = passcode
        self._vhost = vhost
        self._receipt_timeout = receipt_timeout
        self._connect_timeout = connect_timeout
        self._use_ssl = use_ssl
        self._ssl_ca_certs = ssl_ca_certs
        self._heartbeats = heartbeats
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_jitter = backoff_jitter
        self._clock = clock

        self._lock = threading.Lock()  # guards everything below; held while connecting
        self._conn: Any = None
        self._listener: _Listener | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return (f"StompPublisher(hosts={self._hosts!r}, destination={self._destination!r}, "
                f"login={self._login!r}, use_ssl={self._use_ssl})")

    @property
    def connected(self) -> bool:
        """Whether a usable connection is open right now (for health reporting)."""
        with self._lock:
            listener = self._listener
            return (self._conn is not None and listener is not None and listener.lost is None
                    and bool(self._conn.is_connected()))

    # -- async API -----------------------------------------------------------------------
    async def publish(self, event: CloudEvent) -> None:
        """Send on a worker thread (connecting may block), then await the receipt on the
        loop: a thread per publish in flight capped the webhook at the default executor's
        few threads times the broker's receipt latency."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[None] = loop.create_future()

        def notify() -> None:  # on stomp.py's receiver thread (or the sending one)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_resolve, arrived)

        conn, listener, receipt_id, receipt = await asyncio.to_thread(
            self._send, event, notify)
        try:
            await asyncio.wait_for(arrived, self._receipt_timeout)
        except TimeoutError:
            listener.forget(receipt_id)
            raise self._failed(conn, f"no receipt within {self._receipt_timeout:g}s") from None
        self._settle(conn, receipt)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # -- blocking API --------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection now unless one is open, honouring the backoff window (so a
        health reporter can keep `connected` current between publishes); raises
        `BrokerUnavailableError`."""
        self._connection()

    def _send(self, event: CloudEvent, notify: Callable[[], None],
              ) -> tuple[Any, _Listener, str, _Receipt]:
        conn, listener = self._connection()
        receipt_id = f"{event.id}#{uuid.uuid4().hex[:12]}"
        receipt = listener.expect(receipt_id, notify)
        # The CloudEvents attributes as `ce_` properties, so consumers can use selectors.
        attributes = {f"ce_{k}": v for k, v in event.to_dict().items()
                      if k not in ("data", "datacontenttype")}
        headers = {"persistent": "true", "receipt": receipt_id,
                   "JMSXGroupID": event.data.get("uid") or event.subject, **attributes}
        try:
            conn.send(destination_for(self._destination, event), event.to_json(),
                      content_type=STRUCTURED_CONTENT_TYPE, headers=headers)
        except (StompException, OSError) as exc:
            listener.forget(receipt_id)
            raise self._failed(conn, f"send failed: {exc!r}") from exc
        return conn, listener, receipt_id, receipt

    def _settle(self, conn: Any, receipt: _Receipt) -> None:
        if receipt.error is not None:
            raise self._failed(conn, receipt.error)
        with self._lock:
            self._failures = 0

    def close(self) -> None:
        """Disconnect (gracefully if the broker answers within a second or two)."""
        with self._lock:
            self._closed = True
            conn, listener = self._conn, self._listener
            self._conn = self._listener = None
        if conn is None or listener is None:
            return
        try:
            if listener.lost is None and conn.is_connected():
                conn.disconnect()  # DISCONNECT with a receipt; stomp.py closes on RECEIPT
                listener.gone.wait(min(2.0, self._receipt_timeout))
        except (StompException, OSError):
            pass
        finally:
            _drop(conn)

    # -- internals -----------------------------------------------------------------------
    def _connection(self) -> tuple[Any, _Listener]:
        stale = None
        try:
            with self._lock:
                if self._closed:
                    raise BrokerUnavailableError("event publisher is closed")
                conn, listener = self._conn, self._listener
                if conn is not None and listener is not None:
                    if listener.lost is None and conn.is_connected():
                        return conn, listener
                    # Lost while idle (e.g. broker restarted): reconnect now, not a failure.
                    stale, self._conn, self._listener = conn, None, None
                wait = self._retry_at - self._clock()
                if wait > 0:
                    raise BrokerUnavailableError(
                        f"broker unavailable; next connection attempt in {wait:.1f}s",
                        retry_after=wait)
                try:
                    conn, listener = self._connect()
                except _ConnectFailed as exc:
                    delay = self._schedule_retry()
                    log.warning("cannot connect to the event broker",
                                extra={"error": str(exc), "retry_after": round(delay, 3)})
                    raise BrokerUnavailableError(
                        f"cannot connect to the broker: {exc}; next attempt in {delay:.1f}s",
                        retry_after=delay) from exc
                self._conn, self._listener = conn, listener
                return conn, listener
        finally:
            if stale is not None:
                _drop(stale)

    def _connect(self) -> tuple[Any, _Listener]:
        """One connection attempt (one pass over the hosts); called with the lock held."""
        conn = stomp.Connection12(
            self._hosts, prefer_localhost=False, try_loopback_connect=False,
            reconnect_attempts_max=1, reconnect_sleep_initial=0.0,
            reconnect_sleep_jitter=0.0, timeout=self._connect_timeout,
            heartbeats=self._heartbeats, vhost=self._vhost, auto_content_length=False,
        )
        if self._use_ssl:
            conn.set_ssl(for_hosts=self._hosts, ca_certs=self._ssl_ca_certs,
                         ssl_version=ssl.PROTOCOL_TLS_CLIENT)
        listener = _Listener()
        conn.set_listener(_LISTENER, listener)
        try:
            conn.connect(username=self._login,
                         passcode=self._passcode.get() if self._passcode else None, wait=False)
        except (StompException, OSError) as exc:
            _drop(conn)
            hosts = ", ".join(f"{h}:{p}" for h, p in self._hosts)
            raise _ConnectFailed(f"no connection to {hosts} ({type(exc).__name__})") from exc
        if not listener.settled.wait(self._connect_timeout) or not listener.connected:
            reason = listener.lost or f"no CONNECTED within {self._connect_timeout:g}s"
            _drop(conn)
            raise _ConnectFailed(reason)
        log.info("connected to the event broker",
                 extra={"broker": conn.transport.current_host_and_port})
        return conn, listener

    def _schedule_retry(self) -> float:
        """Count a failure and open the backoff window; called with the lock held."""
        self._failures += 1
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** (self._failures - 1))
        delay = min(self._backoff_max, base * (1 + self._backoff_jitter * random.random()))
        self._retry_at = self._clock() + delay
        return delay

    def _failed(self, conn: Any, reason: str) -> BrokerUnavailableError:
        """Drop `conn` (if still current), open the backoff window, build the error."""
        with self._lock:
            if self._conn is conn:
                self._conn = self._listener = None
            delay = self._schedule_retry()
        _drop(conn)
        log.warning("event broker unavailable",
                    extra={"error": reason, "retry_after": round(delay, 3)})
        return BrokerUnavailableError(f"broker unavailable: {reason}", retry_after=delay)


class _ConnectFailed(Exception):
    pass


def _drop(conn: Any) -> None:
    """Close the socket without ceremony; stomp.py's threads end with it."""
    try:
        conn.transport.disconnect_socket()
    except (StompException, OSError) as exc:
        log.debug("error while dropping the broker connection: %r", exc)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
