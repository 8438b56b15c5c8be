"""Where the API server is and how to authenticate: a kubeconfig file or in-cluster."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token: str | None = None
    token_file: str | None = None
    namespace: str = "default"
    insecure: bool = False

    def __repr__(self) -> str:  # the token is a secret
        return f"KubeConfig(server={self.server!r}, namespace={self.namespace!r})"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert and self.client_key:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def bearer_token(self) -> str | None:
        """The token, re-read from its file each time so projected-token rotation works."""
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token

    @classmethod
    def load(cls, path: str | None = None) -> KubeConfig:
        """KUBECONFIG (or `path`) when set, else the in-cluster service account."""
        path = path or os.environ.get("KUBECONFIG")
        if path:
            return cls.from_file(Path(path.split(os.pathsep)[0]))
        if (_IN_CLUSTER / "token").exists():
            return cls.in_cluster()
        return cls.from_file(Path.home() / ".kube" / "config")

    @classmethod
    def in_cluster(cls) -> KubeConfig:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return cls(
            server=f"https://{host}:{port}", ca_file=str(_IN_CLUSTER / "ca.crt"),
            token_file=str(_IN_CLUSTER / "token"),
            namespace=(_IN_CLUSTER / "namespace").read_text().strip(),
        )

    @classmethod
    def from_file(cls, path: Path) -> KubeConfig:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        context_name = str(doc.get("current-context", ""))
        context = _named(doc.get("contexts", []), context_name)["context"]
        cluster = _named(doc.get("clusters", []), context["cluster"])["cluster"]
        user = _named(doc.get("users", []), context["user"])["user"]
        return cls(
            server=cluster["server"],
            ca_file=_file_or_data(cluster, "certificate-authority"),
            client_cert=_file_or_data(user, "client-certificate"),
            client_key=_file_or_data(user, "client-key"),
            token=user.get("token"),
            token_file=user.get("tokenFile"),
            namespace=context.get("namespace", "default"),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        )


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item.get("name") == name:
            return item
    raise ValueError(f"kubeconfig has no entry named {name!r}")


def _file_or_data(section: dict[str, Any], key: str) -> str | None:
    if section.get(key):
        return str(section[key])
    data = section.get(f"{key}-data")
    if not data:
        return None
    handle, name = tempfile.mkstemp(prefix="paykube-kube-")
    with os.fdopen(handle, "wb") as out:
        out.write(base64.b64decode(data))
    return name
