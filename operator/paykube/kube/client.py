"""Async Kubernetes API client for exactly what paykube needs.

Status writes go through the status subresource with `metadata.resourceVersion` as a
precondition: the API server answers 409 when someone else wrote first, and the caller
re-reads and re-applies the lifecycle function.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from paykube.api.refunds import REFUND_PLURAL
from paykube.api.types import GROUP, PLURAL, VERSION, ObjectRef
from paykube.errors import ApiRejected, ApiServerUnavailable, ConflictError, PaykubeError
from paykube.kube.config import Credentials, KubeConfig

Manifest = dict[str, Any]
log = logging.getLogger(__name__)


class NotFound(PaykubeError):
    """The object does not exist (any more)."""


# Counts of recently recorded Events, by name, for aggregation (as client-go's correlator
# keeps them): losing them on a restart only restarts a count.
_EVENT_COUNTS_KEPT = 4096


@dataclass(frozen=True)
class ApiResponse:
    """An answer of the API server, read whole."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


JSON = {"Content-Type": "application/json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class KubeClient:
    """The API server over aiohttp's client: in the status-path benchmarks httpx cost about
    five times its CPU per call, the largest share of both programs' CPU (docs/benchmarks.md).
    """

    def __init__(self, config: KubeConfig, *, timeout: float = 10.0,
                 max_connections: int = 16) -> None:
        self._config = config
        self._timeout, self._max_connections = timeout, max_connections
        self._event_counts: OrderedDict[str, int] = OrderedDict()
        # Waiting for a free pooled connection is back-pressure, not an outage. Requests
        # queue on a semaphore, first come first served; the connector itself is unbounded
        # because watches hold a connection for minutes outside the semaphore and must not
        # starve the requests.
        self._slots = asyncio.Semaphore(max_connections)
        # Credentials (an exec plugin's token, a token file) are fetched again in a thread,
        # one fetch at a time, when they are due or after a 401; KubeConfig.load fetched
        # the first ones.
        self._fetching = asyncio.Lock()
        credentials = config.auth.current()
        self._identity = credentials.tls_identity
        self._ssl = config.ssl_context(credentials)
        # Built inside the event loop, on the first request (aiohttp binds a session to it).
        self._http: aiohttp.ClientSession | None = None
        self._retired: aiohttp.ClientSession | None = None
        self._server = config.server.rstrip("/")

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl, limit=0, limit_per_host=0,
                    keepalive_timeout=30.0),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Answers are JSON the callers parse themselves; nothing to negotiate.
                auto_decompress=True, skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "paykube"})
        return self._http

    def _url(self, path: str, params: dict[str, str | int] | None = None) -> URL:
        # The callers quote each path segment; yarl must not quote them again.
        query = f"?{urlencode(params)}" if params else ""
        return URL(f"{self._server}{path}{query}", encoded=True)

    async def aclose(self) -> None:
        if self._retired is not None:
            await self._retired.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _credentials(self, refused: Credentials | None = None) -> Credentials:
        """The credentials for the next request; new ones when `refused` got a 401."""
        held = self._config.auth.fresh() if refused is None else None
        if held is None:
            async with self._fetching:
                auth = self._config.auth
                fetch = auth.current if refused is None else functools.partial(
                    auth.renew, refused)
                held = await asyncio.to_thread(fetch)
        if held.tls_identity != self._identity:
            # A plugin handed out a new client certificate: new connections use it. The old
            # session lives until the next change, so that requests and watches on it end.
            retired, self._retired = self._retired, self._http
            self._ssl, self._identity = self._config.ssl_context(held), held.tls_identity
            self._http = None
            if retired is not None:
                await retired.close()
        return held

    async def _send(self, method: str, path: str, credentials: Credentials,
                    headers: dict[str, str], body: bytes | None) -> ApiResponse:
        try:
            async with self._slots, self._session().request(
                    method, self._url(path), data=body,
                    headers={**headers, **_authorization(credentials)}) as response:
                return ApiResponse(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiServerUnavailable(f"API server unreachable: {type(exc).__name__}") from exc

    async def _request(self, method: str, path: str, *, json_body: object = None,
                       headers: dict[str, str] | None = None) -> ApiResponse:
        body = None if json_body is None else json.dumps(json_body).encode()
        headers = headers or (JSON if body is not None else {})
        credentials = await self._credentials()
        response = await self._send(method, path, credentials, headers, body)
        if response.status_code == 401:
            # Expired early or revoked: fetch new credentials once and send again.
            log.info("the API server refused the credentials (HTTP 401): fetching new ones")
            credentials = await self._credentials(refused=credentials)
            response = await self._send(method, path, credentials, headers, body)
        if response.status_code == 401:
            # Not the object's fault: retryable, as an outage is.
            raise ApiServerUnavailable(
                f"{method} {path}: HTTP 401: the API server refused paykube's credentials")
        if response.status_code == 404:
            raise NotFound(f"{method} {path}: not found")
        if response.status_code == 409:
            raise ConflictError(f"{method} {path}: conflict")
        if response.status_code >= 500 or response.status_code == 429:
            raise ApiServerUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ApiRejected(
                f"{method} {path}: HTTP {response.status_code}: {_message(response)}",
                http_status=response.status_code)
        return response

    async def get_session(self, namespace: str, name: str) -> Manifest:
        path = ObjectRef(namespace, name, "").api_path
        result: Manifest = (await self._request("GET", path)).json()
        return result

    async def list_sessions(self, namespace: str | None = None) -> list[Manifest]:
        return (await self.list_sessions_at(namespace))[0]

    async def list_sessions_at(self, namespace: str | None = None, *, plural: str = PLURAL,
                               ) -> tuple[list[Manifest], str]:
        """All PaymentSessions (or the group's `plural`) and the list's resourceVersion, to
        start a watch from."""
        body = (await self._request("GET", _collection(namespace, plural))).json()
        return body["items"], body["metadata"]["resourceVersion"]

    async def list_refunds_at(self, namespace: str | None = None,
                              ) -> tuple[list[Manifest], str]:
        """All PaymentRefunds and the list's resourceVersion, to start a watch from."""
        return await self.list_sessions_at(namespace, plural=REFUND_PLURAL)

    def watch_refunds(self, namespace: str | None, resource_version: str,
                      *, server_timeout: int = 300) -> AsyncIterator[tuple[str, Manifest]]:
        """`watch_sessions` for PaymentRefunds."""
        return self.watch_sessions(namespace, resource_version, server_timeout=server_timeout,
                                   plural=REFUND_PLURAL)

    async def watch_sessions(self, namespace: str | None, resource_version: str,
                             *, server_timeout: int = 300, plural: str = PLURAL,
                             ) -> AsyncIterator[tuple[str, Manifest]]:
        """(type, object) watch events after `resource_version`, until the server ends the
        watch. A `410 Gone` arrives as an ERROR event: the caller lists again. `plural`:
        another kind of the group (PaymentRefunds: `watch_refunds`)."""
        params: dict[str, str | int] = {
            "watch": "true", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": server_timeout}
        # The server ends the watch after `server_timeout`; silence longer than that is a
        # dead connection.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0,
                                        sock_read=server_timeout + 30.0)
        refused: Credentials | None = None
        try:
            while True:
                credentials = await self._credentials(refused)
                async with self._session().get(
                        self._url(_collection(namespace, plural), params),
                        headers=_authorization(credentials), timeout=timeout) as response:
                    if response.status == 401 and refused is None:
                        log.info("the API server refused the credentials (HTTP 401): "
                                 "fetching new ones")
                        refused = credentials  # once, as for any request
                        continue
                    if response.status >= 400:
                        raise ApiServerUnavailable(f"watch: HTTP {response.status}")
                    # Lines are whole objects, of any length: split the stream ourselves
                    # (aiohttp's readline refuses lines above its buffer's limit).
                    pending = b""
                    async for chunk in response.content.iter_any():
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            if line.strip():
                                event = json.loads(line)
                                yield event["type"], event["object"]
                    if pending.strip():
                        event = json.loads(pending)
                        yield event["type"], event["object"]
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiServerUnavailable(f"watch interrupted: {type(exc).__name__}") from exc

    async def replace_status(
        self, ref: ObjectRef, resource_version: str, status: dict[str, Any]
    ) -> Manifest:
        """Merge-patch the status subresource if the object is still at `resource_version`."""
        body = {"metadata": {"uid": ref.uid, "resourceVersion": resource_version},
                "status": status}
        response = await self._request(
            "PATCH", f"{ref.api_path}/status", json_body=body, headers=MERGE_PATCH)
        result: Manifest = response.json()
        return result

    async def replace_object_status(self, path: str, uid: str, resource_version: str,
                                    status: dict[str, Any]) -> Manifest:
        """`replace_status` for any object by its API path (a PaymentRefund)."""
        body = {"metadata": {"uid": uid, "resourceVersion": resource_version},
                "status": status}
        response = await self._request(
            "PATCH", f"{path}/status", json_body=body, headers=MERGE_PATCH)
        result: Manifest = response.json()
        return result

    async def patch_metadata(self, ref: ObjectRef, resource_version: str,
                             metadata: dict[str, Any]) -> Manifest:
        body = {"metadata": {**metadata, "uid": ref.uid, "resourceVersion": resource_version}}
        response = await self._request(
            "PATCH", ref.api_path, json_body=body, headers=MERGE_PATCH)
        result: Manifest = response.json()
        return result

    async def get_secret(self, namespace: str, name: str) -> dict[str, str]:
        data = (await self._request("GET", _secret_path(namespace, name))).json()
        return {k: base64.b64decode(v).decode() for k, v in (data.get("data") or {}).items()}

    async def put_secret(self, namespace: str, name: str, data: dict[str, str], *,
                         labels: dict[str, str] | None = None,
                         owner: dict[str, Any] | None = None) -> None:
        """Create the Secret, or replace its data when it exists (a Secret paykube owns)."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        metadata: dict[str, Any] = {"name": name, "namespace": namespace,
                                    "labels": labels or {}}
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": metadata, "data": encoded}
        try:
            await self._request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets",
                                json_body=body)
        except ConflictError:
            await self._request("PATCH", _secret_path(namespace, name),
                                json_body={"data": encoded,
                                           "metadata": {"labels": labels or {}}},
                                headers=MERGE_PATCH)

    async def delete_secret(self, namespace: str, name: str) -> None:
        await self._request("DELETE", _secret_path(namespace, name))

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Manifest:
        response = await self._request(
            "PATCH", path, json_body=body, headers=MERGE_PATCH)
        result: Manifest = response.json()
        return result

    async def get_object(self, path: str) -> Manifest:
        """Any object by its API path (the caller quotes the path's segments)."""
        result: Manifest = (await self._request("GET", path)).json()
        return result

    async def patch_object_status(self, path: str, status: dict[str, Any]) -> Manifest:
        """Merge-patch the status subresource of any object (no precondition: the caller
        is its only status writer)."""
        response = await self._request(
            "PATCH", f"{path}/status", json_body={"status": status}, headers=MERGE_PATCH)
        result: Manifest = response.json()
        return result

    async def namespace_labels(self, name: str) -> dict[str, str]:
        data = (await self._request("GET", f"/api/v1/namespaces/{quote(name, safe='')}")).json()
        labels: dict[str, str] = data.get("metadata", {}).get("labels") or {}
        return labels

    async def create_event(
        self, ref: ObjectRef, *, type_: str, reason: str, message: str, component: str,
        now: dt.datetime, aggregate: bool = True, kind: str = "PaymentSession",
    ) -> None:
        """A core/v1 Event on the object, so `kubectl describe` shows what happened.

        With `aggregate`, a repeat of the same type, reason and message (a poll failing on
        every retry during an outage) bumps `count` and `lastTimestamp` of one Event instead
        of adding another.
        """
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = message[:1024]
        if aggregate:
            digest = hashlib.sha256(
                "\0".join((ref.uid, type_, reason, message)).encode()).hexdigest()[:16]
        else:
            digest = uuid.uuid4().hex[:16]
        name = f"{ref.name[:200]}.{digest}"
        events = f"/api/v1/namespaces/{ref.namespace}/events"
        seen = self._event_counts.pop(name, None) if aggregate else None
        if seen is None:
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ref.namespace},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                                   "name": ref.name, "namespace": ref.namespace,
                                   "uid": ref.uid},
                "type": type_, "reason": reason, "message": message,
                "source": {"component": component}, "reportingComponent": component,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            }
            try:
                await self._request("POST", events, json_body=event)
                count = 1
            except ConflictError:  # recorded before our restart: count on from there
                seen = 1
        if seen is not None:
            count = seen + 1
            try:
                await self._request(
                    "PATCH", f"{events}/{name}", json_body={"count": count,
                                                            "lastTimestamp": stamp},
                    headers=MERGE_PATCH)
            except NotFound:  # expired (the API server keeps Events for an hour): start over
                await self.create_event(ref, type_=type_, reason=reason, message=message,
                                        component=component, now=now, kind=kind)
                return
        if aggregate:
            self._event_counts[name] = count
            while len(self._event_counts) > _EVENT_COUNTS_KEPT:
                self._event_counts.popitem(last=False)

    async def check_ready(self) -> None:
        """A readiness probe: raise `ApiServerUnavailable` unless `/readyz` answers 200."""
        if not await self.ready():
            raise ApiServerUnavailable("the API server does not answer")

    async def ready(self) -> bool:
        try:
            response = await self._request("GET", "/readyz")
        except PaykubeError:
            return False
        return response.status_code == 200


def _secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}"


def _authorization(credentials: Credentials) -> dict[str, str]:
    return {"Authorization": credentials.authorization} if credentials.authorization else {}


def _collection(namespace: str | None, plural: str = PLURAL) -> str:
    base = f"/apis/{GROUP}/{VERSION}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def _message(response: ApiResponse) -> str:
    try:
        return str(response.json().get("message", response.text[:200]))
    except ValueError:
        return response.text[:200]
