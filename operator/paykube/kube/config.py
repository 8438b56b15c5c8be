"""Where the API server is and how to authenticate: a kubeconfig file or in-cluster.

The `kubernetes` package reads the kubeconfig (merged KUBECONFIG lists, contexts, exec
credential plugins such as `aws eks get-token`, OIDC and token files, client certificates)
and the in-cluster service account. paykube keeps what it returns in memory: the loader
writes inline certificates and keys to files, so it gets a private directory that is
emptied as soon as each load is read, and removed at exit.

`KubeAuth` holds the current credentials, shared by paykube's client and kopf's login so
that one plugin run serves both. They are fetched again before they expire (an exec
plugin's `expirationTimestamp`; token files once a minute, as client-go reads them) and
when the API server answers 401 to them.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import datetime as dt
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

from paykube.errors import ApiServerUnavailable

IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Token files (in-cluster, `tokenFile`) are rotated by the kubelet or an agent: read again
# once a minute, as client-go does.
TOKEN_FILE_TTL = dt.timedelta(minutes=1)
# An expiring credential is replaced this long before it expires, at most a quarter of its
# lifetime, so that no request carries it past its end (the kubernetes client's 5 minutes).
REFRESH_MARGIN = dt.timedelta(minutes=5)
# Credentials fetched this recently are not fetched again for being due: a plugin that hands
# out already expired tokens must not run once per request. (After a 401 they are: one
# fetch serves every request refused with the same credentials.)
MIN_FETCH_INTERVAL = 1.0


class KubeConfigError(ApiServerUnavailable):
    """The kubeconfig cannot be read, or its credential plugin failed (retryable: a plugin
    calling a cloud API can fail for a moment)."""


@dataclass(frozen=True)
class Credentials:
    """What authenticates one request. Never printed: the repr shows only the kind."""

    authorization: str | None = field(default=None, repr=False)  # the header's value
    client_cert: bytes | None = field(default=None, repr=False)  # PEM
    client_key: bytes | None = field(default=None, repr=False)  # PEM
    # When to fetch again (UTC): before the plugin's expiry, or a token file's next read.
    refresh_at: dt.datetime | None = None
    # When they must be replaced, before their own end (a plugin's expirationTimestamp, a
    # JWT's exp): what kopf is told. A token file is read every minute, but its token
    # lasts an hour: kopf then logs in again once an hour, not every minute.
    renew_before: dt.datetime | None = None

    def __repr__(self) -> str:
        kind = ("token" if self.authorization else "") + (
            "+cert" if self.client_cert else "")
        return f"Credentials({kind or 'anonymous'}, refresh_at={self.refresh_at})"

    @property
    def tls_identity(self) -> tuple[bytes, bytes] | None:
        if self.client_cert and self.client_key:
            return self.client_cert, self.client_key
        return None

    def due(self, now: dt.datetime) -> bool:
        return self.refresh_at is not None and now >= self.refresh_at


Fetch = Callable[[], Credentials]


class KubeAuth:
    """The current credentials of one kubeconfig user; thread-safe (kopf logs in from a
    worker thread, the client fetches in one too: a plugin blocks)."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch, self._clock = fetch, clock
        self._lock = threading.Lock()
        self._current: Credentials | None = None
        self._fetched_at = float("-inf")
        self.fetches = 0  # how many times the source ran (a plugin, a file read)

    @classmethod
    def static(cls, credentials: Credentials | None = None) -> KubeAuth:
        return cls(lambda: credentials or Credentials())

    def fresh(self) -> Credentials | None:
        """The current credentials if they need no fetch (no I/O, no lock)."""
        current = self._current
        if current is None or current.due(_utcnow()):
            return None
        return current

    def current(self) -> Credentials:
        """The credentials to use now, fetched first if none are held or they are due."""
        with self._lock:
            held = self._current
            if held is not None and (not held.due(_utcnow()) or self._recent()):
                return held
            return self._refetch()

    def renew(self, refused: Credentials) -> Credentials:
        """New credentials after the API server refused `refused` (401), or after kopf found
        them expired; those another caller fetched meanwhile are used as they are."""
        with self._lock:
            held = self._current
            if held is not None and held is not refused and not held.due(_utcnow()):
                return held
            return self._refetch()

    def _recent(self) -> bool:
        return self._clock() - self._fetched_at < MIN_FETCH_INTERVAL

    def _refetch(self) -> Credentials:
        self.fetches += 1
        self._fetched_at = self._clock()
        self._current = self._fetch()
        return self._current


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_data: bytes | None = field(default=None, repr=False)  # PEM; None: the system's CAs
    namespace: str = "default"
    insecure: bool = False
    tls_server_name: str | None = None
    auth: KubeAuth = field(default_factory=KubeAuth.static, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"KubeConfig(server={self.server!r}, namespace={self.namespace!r})"

    def ssl_context(self, credentials: Credentials | None = None) -> ssl.SSLContext:
        cadata = self.ca_data.decode("ascii") if self.ca_data else None
        context = ssl.create_default_context(cadata=cadata)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        identity = credentials.tls_identity if credentials else None
        if identity is not None:
            load_cert_chain(context, *identity)
        return context

    @classmethod
    def load(cls, path: str | None = None) -> KubeConfig:
        """KUBECONFIG (or `path`) when set, else the in-cluster service account, else
        ~/.kube/config; a list of files (`a:b`) is merged as kubectl merges it. The first
        credentials are fetched here, so that a broken plugin stops the program at start."""
        path = path or os.environ.get("KUBECONFIG")
        if path:
            return cls.from_file(path)
        if (IN_CLUSTER / "token").exists():
            return cls.in_cluster()
        return cls.from_file(Path.home() / ".kube" / "config")

    @classmethod
    def in_cluster(cls, root: Path = IN_CLUSTER,
                   environ: dict[str, str] | None = None) -> KubeConfig:
        environ = dict(os.environ if environ is None else environ)
        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(root / "token"), cert_filename=str(root / "ca.crt"),
            environ=environ)

        def fetch() -> Credentials:
            configuration = Configuration()
            try:
                loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
            except (ConfigException, OSError) as exc:
                raise KubeConfigError(f"in-cluster service account: {exc}") from None
            return _from_token_file(_authorization(configuration))

        auth = KubeAuth(fetch)
        auth.current()
        namespace_file = root / "namespace"
        try:
            ca_data = (root / "ca.crt").read_bytes()
        except OSError as exc:
            raise KubeConfigError(f"in-cluster service account: {exc}") from None
        return cls(server=_server(environ), ca_data=ca_data,
                   namespace=(namespace_file.read_text().strip()
                              if namespace_file.exists() else "default"),
                   auth=auth)

    @classmethod
    def from_file(cls, path: str | Path, context: str | None = None) -> KubeConfig:
        try:
            merged = KubeConfigMerger(str(path))  # type: ignore[no-untyped-call]
        except Exception as exc:  # YAML's errors, the loader's, the file system's
            raise KubeConfigError(f"kubeconfig {path}: {type(exc).__name__}: {exc}") from None
        if merged.config is None:
            raise KubeConfigError(f"no kubeconfig found at {path}")
        scratch = _scratch_dir()

        def new_loader() -> KubeConfigLoader:
            # A loader per fetch: one keeps the last token when its plugin fails later.
            # They share `merged`, where a refreshed OIDC token is kept.
            return KubeConfigLoader(  # type: ignore[no-untyped-call]
                config_dict=merged.config, active_context=context, config_base_path=None,
                temp_file_path=str(scratch), config_persister=_persister(merged))

        try:
            loader = new_loader()
            user = _user_of(loader, merged)
        except (ConfigException, KeyError, ValueError) as exc:
            raise KubeConfigError(f"kubeconfig {path}: {exc}") from None

        # The cluster part is read once; the user part on every fetch.
        cluster: dict[str, Any] = {}

        def fetch() -> Credentials:
            configuration = Configuration()
            # One load at a time in the process: loaders share the package's file cache.
            with _LOADING:
                try:
                    loading = new_loader()
                    loading.load_and_set(configuration)  # type: ignore[no-untyped-call]
                    cluster.update(_cluster_of(configuration))
                    credentials = _credentials_of(configuration, loading, user)
                except (ConfigException, OSError) as exc:
                    raise KubeConfigError(f"kubeconfig {path}: {exc}") from None
                finally:
                    _empty(scratch)
            if "exec" in user and not (credentials.authorization or credentials.tls_identity):
                # The loader logs the plugin's failure and carries on without credentials.
                command = user["exec"].get("command", "?")
                raise KubeConfigError(
                    f"kubeconfig {path}: the exec plugin {command!r} gave no credentials "
                    "(its error is logged just before)")
            return credentials

        auth = KubeAuth(fetch)
        auth.current()
        context_node = loader.current_context.get("context", {})
        return cls(server=cluster["server"], ca_data=cluster["ca_data"],
                   namespace=context_node.get("namespace") or "default",
                   insecure=cluster["insecure"], tls_server_name=cluster["tls_server_name"],
                   auth=auth)


def load_at_start(program: str, path: str | None = None) -> KubeConfig:
    """`KubeConfig.load` at a program's start: a kubeconfig that cannot be used (a plugin
    that fails, a missing file) ends the program with the reason, not a traceback."""
    try:
        return KubeConfig.load(path)
    except KubeConfigError as exc:
        print(f"{program}: cannot use the kubeconfig: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def load_cert_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Python's ssl loads a client key only from a file: one in a private directory that
    is removed as soon as the key is loaded."""
    with tempfile.TemporaryDirectory(prefix="paykube-tls-") as directory:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        context.load_cert_chain(str(cert_path), str(key_path))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _refresh_point(expires: dt.datetime, now: dt.datetime) -> dt.datetime:
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    margin = min(REFRESH_MARGIN, max(expires - now, dt.timedelta(0)) / 4)
    return expires - margin


def _server(environ: dict[str, str]) -> str:
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeConfigError("in-cluster service account: KUBERNETES_SERVICE_HOST is not set")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _user_of(loader: KubeConfigLoader, merged: KubeConfigMerger) -> dict[str, Any]:
    """The current context's user entry, as plain data (to know which kind it is)."""
    name = loader.current_context["context"].get("user")
    for item in merged.config.value.get("users") or []:
        entry = getattr(item, "value", item)  # the merger wraps each entry
        if entry.get("name") == name:
            return dict(entry.get("user") or {})
    return {}


def _cluster_of(configuration: Configuration) -> dict[str, Any]:
    ca_data = None
    if configuration.ssl_ca_cert:
        ca_data = Path(configuration.ssl_ca_cert).read_bytes()
    return {"server": configuration.host, "ca_data": ca_data,
            "insecure": not configuration.verify_ssl,
            "tls_server_name": configuration.tls_server_name}


def _credentials_of(configuration: Configuration, loader: KubeConfigLoader,
                    user: dict[str, Any]) -> Credentials:
    cert = key = None
    if configuration.cert_file and configuration.key_file:
        cert = Path(configuration.cert_file).read_bytes()
        key = Path(configuration.key_file).read_bytes()
    authorization = _authorization(configuration)
    now = _utcnow()
    expiry = getattr(loader, "expiry", None)  # an exec plugin's expirationTimestamp
    point: dt.datetime | None
    if "exec" in user and isinstance(expiry, dt.datetime):
        point = _refresh_point(expiry, now)
    elif "auth-provider" in user and authorization:
        expires = _jwt_expiry(authorization)
        point = _refresh_point(expires, now) if expires else None
    elif user.get("tokenFile") and not user.get("token"):
        return _from_token_file(authorization)
    else:  # static: nothing to fetch before a 401
        point = None
    return Credentials(authorization=authorization, client_cert=cert, client_key=key,
                       refresh_at=point, renew_before=point)


def _from_token_file(authorization: str | None) -> Credentials:
    now = _utcnow()
    expires = _jwt_expiry(authorization) if authorization else None
    return Credentials(authorization=authorization, refresh_at=now + TOKEN_FILE_TTL,
                       renew_before=_refresh_point(expires, now) if expires else None)


def _authorization(configuration: Configuration) -> str | None:
    header = (configuration.api_key.get("BearerToken")
              or configuration.api_key.get("authorization"))
    if not header:
        return None
    scheme, _, value = str(header).strip().partition(" ")
    if not value:  # a bare token
        return f"Bearer {scheme}"
    return f"{'Bearer' if scheme.lower() == 'bearer' else scheme} {value.strip()}"


def _jwt_expiry(authorization: str) -> dt.datetime | None:
    """The `exp` of a bearer JWT (an OIDC id-token), to fetch again before it ends."""
    parts = authorization.partition(" ")[2].split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC)
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def _persister(merged: KubeConfigMerger) -> Callable[[], None]:
    """A refreshed OIDC token is written back to the kubeconfig (as kubectl does, so that a
    rotated refresh token is not lost); a read-only kubeconfig (a mounted Secret) keeps the
    refreshed token in memory only."""
    def persist() -> None:
        with contextlib.suppress(OSError):
            merged.save_changes()  # type: ignore[no-untyped-call]
    return persist


_LOADING = threading.Lock()
_SCRATCH: list[Path] = []


def _scratch_dir() -> Path:
    """The loader's private directory for inline certificates and keys, emptied after each
    load and removed at exit."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="paykube-kubeconfig-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        entry.unlink(missing_ok=True)
