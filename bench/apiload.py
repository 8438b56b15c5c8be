"""Load straight against the API server, without paykube in between: fast concurrent
creates (instead of `kubectl apply`), and the status merge-PATCH ceiling with either HTTP
client (httpx, which KubeClient used until issue 11, and aiohttp, which it uses now), with
the client's CPU."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from paykube.api.types import GROUP, PLURAL, VERSION
from paykube.kube.config import KubeConfig

Manifest = dict[str, Any]
# (method, path, JSON body, extra headers) -> (HTTP status, JSON answer)
Send = Callable[[str, str, Manifest, dict[str, str]], Awaitable[tuple[int, Manifest]]]
MERGE = {"Content-Type": "application/merge-patch+json"}


@dataclass(frozen=True)
class ApiTarget:
    server: str
    ssl: ssl.SSLContext
    headers: dict[str, str]

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiTarget:
        config = KubeConfig.from_file(path)
        credentials = config.auth.current()
        headers = ({"Authorization": credentials.authorization}
                   if credentials.authorization else {})
        return cls(config.server, config.ssl_context(credentials), headers)


def collection(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


class Clients:
    """One HTTP client of the kind asked for, with `connections` pooled connections."""

    def __init__(self, target: ApiTarget, kind: str, connections: int) -> None:
        self.target, self.kind, self.connections = target, kind, connections
        self._httpx: httpx.AsyncClient | None = None
        self._aiohttp: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Send:
        if self.kind == "httpx":
            self._httpx = httpx.AsyncClient(
                base_url=self.target.server, verify=self.target.ssl, timeout=60,
                limits=httpx.Limits(max_connections=self.connections,
                                    max_keepalive_connections=self.connections))
            return self._send_httpx
        if self.kind == "aiohttp":
            self._aiohttp = aiohttp.ClientSession(
                self.target.server, timeout=aiohttp.ClientTimeout(total=60),
                connector=aiohttp.TCPConnector(ssl=self.target.ssl, limit=self.connections))
            return self._send_aiohttp
        raise ValueError(f"unknown client {self.kind!r}")

    async def __aexit__(self, *exc: object) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    async def _send_httpx(self, method: str, path: str, body: Manifest,
                          headers: dict[str, str]) -> tuple[int, Manifest]:
        assert self._httpx is not None
        response = await self._httpx.request(
            method, path, content=json.dumps(body),
            headers={"Content-Type": "application/json", **self.target.headers, **headers})
        return response.status_code, response.json()

    async def _send_aiohttp(self, method: str, path: str, body: Manifest,
                            headers: dict[str, str]) -> tuple[int, Manifest]:
        assert self._aiohttp is not None
        async with self._aiohttp.request(
                method, path, data=json.dumps(body),
                headers={"Content-Type": "application/json", **self.target.headers,
                         **headers}) as response:
            answer: Manifest = await response.json(content_type=None)
            return response.status, answer


async def create_objects(target: ApiTarget, namespace: str, items: list[Manifest], *,
                         concurrency: int = 32, rate: float = 0.0,
                         on_created: Callable[[Manifest], None] | None = None,
                         ) -> list[Manifest]:
    """POST each object, `concurrency` at once (and with `rate`, at most that many per
    second, evenly); returns the created objects in order, and hands each to `on_created`
    as soon as it is created. Raises on any answer but 201: a benchmark on half its
    objects would mislead."""
    created: list[Manifest] = [{} for _ in items]
    queue = iter(enumerate(items))
    started = time.monotonic()
    async with Clients(target, "aiohttp", concurrency) as send:
        async def worker() -> None:
            for index, item in queue:
                if rate > 0:
                    await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
                status, answer = await send("POST", collection(namespace), item, {})
                if status != 201:
                    raise RuntimeError(f"create {item['metadata']['name']}: HTTP {status}: "
                                       f"{answer.get('message', answer)}")
                created[index] = answer
                if on_created is not None:
                    on_created(answer)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return created


async def create_sessions(target: ApiTarget, namespace: str, manifest_list: str, *,
                          concurrency: int = 32, rate: float = 0.0,
                          on_created: Callable[[Manifest], None] | None = None,
                          ) -> list[Manifest]:
    """`create_objects` for a `paykube_dev.manifests.session_list` document."""
    items: list[Manifest] = json.loads(manifest_list)["items"]
    return await create_objects(target, namespace, items, concurrency=concurrency,
                                rate=rate, on_created=on_created)


async def webhook_rest(send: Send, obj: Manifest, serial: int) -> bool:
    """After an event's status write: its Event and the outbox mark's write."""
    meta = obj["metadata"]
    namespace = meta["namespace"]
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": f"{meta['name']}.{serial:x}", "namespace": namespace},
             "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PaymentSession",
                                "name": meta["name"], "namespace": namespace,
                                "uid": meta["uid"]},
             "type": "Normal", "reason": "Paid", "message": "Open -> Paid",
             "source": {"component": "bench"}, "count": 1}
    status, _ = await send("POST", f"/api/v1/namespaces/{namespace}/events", event, {})
    if status != 201:
        return False
    marked = paid_status(f"cs_{meta['uid']}", serial)
    marked["history"][-1]["published"] = True
    body = {"metadata": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
            "status": marked}
    path = f"{collection(namespace)}/{meta['name']}/status"
    status, answer = await send("PATCH", path, body, MERGE)
    if status != 200:
        return False
    meta["resourceVersion"] = answer["metadata"]["resourceVersion"]
    return True


@dataclass(frozen=True)
class PatchRun:
    kind: str
    writes: int
    elapsed: float
    latencies: list[float]
    client_cpu: float
    failures: int

    @property
    def rate(self) -> float:
        return self.writes / self.elapsed

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.client_cpu / self.writes if self.writes else float("nan")


_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def paid_status(session_id: str, serial: int) -> Manifest:
    """A status like the webhook's Paid write; `serial` makes each write a change (the API
    server skips the storage write of a patch that changes nothing)."""
    at = (_EPOCH + dt.timedelta(seconds=serial)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"phase": "Paid", "sessionId": session_id, "amountTotal": 1000, "currency": "usd",
            "history": [{"phase": "Open", "at": "2026-01-01T00:00:00Z", "source": "operator",
                         "published": True},
                        {"phase": "Paid", "at": at, "source": "webhook",
                         "published": False}]}


async def patch_ceiling(target: ApiTarget, objects: list[Manifest], *, kind: str,
                        clients: int, duration: float, as_webhook: bool = False) -> PatchRun:
    """Status merge-PATCHes with the resourceVersion precondition, as the webhook's write
    does, from `clients` concurrent writers for `duration` seconds. Each writer owns its
    share of `objects` and takes each next precondition from its previous answer, so no
    write conflicts unless the server loses one; the last resourceVersion is stored back
    into each object, for the next run. `client_cpu` is this process's CPU over the run:
    only the client and the event loop run here.

    With `as_webhook`, each write is what an applied event cost the API server before the
    PSP's redelivery became the webhook's outbox (with a broker and the session cache): the
    status PATCH, the transition Event (POST) and the PATCH of the outbox mark, one after
    the other; a "write" then counts all three."""
    latencies: list[float] = []
    failures = 0
    serial = 0
    deadline = time.monotonic() + duration
    async with Clients(target, kind, clients) as send:
        async def writer(owned: list[Manifest]) -> None:
            nonlocal failures, serial
            while time.monotonic() < deadline:
                for obj in owned:
                    meta = obj["metadata"]
                    serial += 1
                    body = {"metadata": {"uid": meta["uid"],
                                         "resourceVersion": meta["resourceVersion"]},
                            "status": paid_status(f"cs_{meta['uid']}", serial)}
                    path = f"{collection(meta['namespace'])}/{meta['name']}/status"
                    started = time.perf_counter()
                    status, answer = await send("PATCH", path, body, MERGE)
                    if status != 200:
                        failures += 1
                        return
                    meta["resourceVersion"] = answer["metadata"]["resourceVersion"]
                    if as_webhook and not await webhook_rest(send, obj, serial):
                        failures += 1
                        return
                    latencies.append(time.perf_counter() - started)
                    if time.monotonic() >= deadline:
                        return

        cpu, started = time.process_time(), time.monotonic()
        await asyncio.gather(*(writer(objects[i::clients]) for i in range(clients)))
        elapsed = time.monotonic() - started
        client_cpu = time.process_time() - cpu
    return PatchRun(kind, len(latencies), elapsed, sorted(latencies), client_cpu, failures)
