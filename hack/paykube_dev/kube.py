"""The local Kubernetes control plane: etcd, kube-apiserver (TLS, RBAC) and
kube-controller-manager, built from Go modules by hack/build-k8s.sh.

    with ControlPlane.started(Path("/tmp/x")) as cp:
        cp.kubectl("get", "ns")
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from paykube_dev.pki import KeyPair, Pki
from paykube_dev.proc import (
    CACHE_DIR,
    free_port,
    port_open,
    start_process,
    stop_process,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def pinned_versions() -> dict[str, str]:
    """The versions pinned in hack/versions.sh (the single source)."""
    pins: dict[str, str] = {}
    for line in (REPO / "hack" / "versions.sh").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @classmethod
    def from_cache(cls) -> Binaries:
        pins = pinned_versions()
        k8s = CACHE_DIR / "bin" / f"kubernetes-{pins['K8S_VERSION']}"
        etcd = CACHE_DIR / "bin" / f"etcd-{pins['ETCD_VERSION']}" / "etcd"
        found = cls(etcd, k8s / "kube-apiserver", k8s / "kube-controller-manager", k8s / "kubectl")
        missing = [str(p) for p in vars(found).values() if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"run hack/build-k8s.sh first; missing: {', '.join(missing)}")
        return found


def _kubeconfig(server: str, ca: Path, client: KeyPair, user: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "paykube-local",
                      "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user,
                   "user": {"client-certificate": str(client.cert),
                            "client-key": str(client.key)}}],
        "contexts": [{"name": "paykube-local",
                      "context": {"cluster": "paykube-local", "user": user}}],
        "current-context": "paykube-local",
    }


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager on loopback."""

    directory: Path
    binaries: Binaries
    apiserver_port: int = 0
    etcd_port: int = 0
    address: str = "127.0.0.1"
    """Where the API server listens and what it advertises (a node's pods reach it there)."""
    for_node: bool = False
    """Serve a real node (hack/paykube_dev/node): Node authorization, NodeRestriction, the
    `kubernetes` Service's endpoints, every controller, a kubelet client cert."""
    kubeconfig: Path = field(init=False)
    ca: Path = field(init=False)
    pki: Pki = field(init=False)
    etcd_client: KeyPair = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @classmethod
    @contextlib.contextmanager
    def started(cls, directory: Path | None = None, *, address: str = "127.0.0.1",
                for_node: bool = False) -> Iterator[ControlPlane]:
        temp = None
        if directory is None:
            temp = tempfile.mkdtemp(prefix="paykube-kube-")
            directory = Path(temp)
        plane = cls(directory, Binaries.from_cache(), address=address, for_node=for_node)
        try:
            plane.start()
            yield plane
        finally:
            plane.stop()
            if temp:
                shutil.rmtree(temp, ignore_errors=True)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        pki = Pki.create(self.directory / "pki")
        self.pki = pki
        self.ca = pki.ca.cert
        # 10.96.0.1: the `kubernetes` Service, which pods use.
        serving = pki.issue("apiserver", "kube-apiserver", server=True,
                            ips=[self.address, "10.96.0.1"])
        admin = pki.issue("admin", "paykube-admin", organization="system:masters")
        # The local controller manager runs every controller under its own identity.
        manager = pki.issue("controller-manager", "system:kube-controller-manager",
                            organization="system:masters")
        sa = pki.service_account_keys()
        # etcd speaks TLS and admits only clients with a cert of our CA: the API server.
        etcd_serving = pki.issue("etcd", "etcd", server=True)
        self.etcd_client = pki.issue("apiserver-etcd-client", "kube-apiserver-etcd-client")
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self._start_etcd(etcd_serving, pki.ca)
        self._start_apiserver(serving, pki.ca, sa)
        self.kubeconfig = self.directory / "kubeconfig"
        self.kubeconfig.write_text(json.dumps(_kubeconfig(self.server, self.ca, admin, "admin")))
        manager_kubeconfig = self.directory / "controller-manager.kubeconfig"
        manager_kubeconfig.write_text(
            json.dumps(_kubeconfig(self.server, self.ca, manager, "controller-manager"))
        )
        self._wait_ready(admin)
        self._start_controller_manager(manager_kubeconfig, sa)

    def _start_etcd(self, serving: KeyPair, ca: KeyPair) -> None:
        log = self.directory / "etcd.log"
        peer = free_port()
        url = f"https://127.0.0.1:{self.etcd_port}"
        proc = start_process(
            [
                self.binaries.etcd, "--name=paykube", f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=paykube=http://127.0.0.1:{peer}",
                f"--cert-file={serving.cert}", f"--key-file={serving.key}",
                f"--trusted-ca-file={ca.cert}", "--client-cert-auth",
                "--unsafe-no-fsync", "--log-level=warn",
                f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
            ],
            log=log,
        )
        self._procs.append(proc)
        wait_until(lambda: port_open(self.etcd_port), timeout=30, what="etcd", proc=proc, log=log)

    def _start_apiserver(self, serving: KeyPair, ca: KeyPair, sa: KeyPair) -> None:
        log = self.directory / "kube-apiserver.log"
        proc = start_process(
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers=https://127.0.0.1:{self.etcd_port}",
                f"--etcd-cafile={ca.cert}", f"--etcd-certfile={self.etcd_client.cert}",
                f"--etcd-keyfile={self.etcd_client.key}",
                f"--bind-address={self.address}", f"--advertise-address={self.address}",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.directory / 'apiserver-certs'}",
                f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-account-issuer={SA_ISSUER}", f"--api-audiences={SA_ISSUER}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--enable-priority-and-fairness=false", "--profiling=false",
                *(self._node_args(ca) if self.for_node else
                  ["--authorization-mode=RBAC", "--endpoint-reconciler-type=none"]),
                "--v=1",
            ],
            log=log,
        )
        self._procs.append(proc)
        self._apiserver = (proc, log)

    def _node_args(self, ca: KeyPair) -> list[str]:
        kubelet_client = self.pki.issue("apiserver-kubelet-client",
                                        "kube-apiserver-kubelet-client",
                                        organization="system:masters")
        return ["--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                "--endpoint-reconciler-type=lease",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={ca.cert}",
                "--kubelet-preferred-address-types=InternalIP"]

    def _wait_ready(self, admin: KeyPair) -> None:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(admin.cert), str(admin.key))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context,
                                            timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        proc, log = self._apiserver
        wait_until(ready, timeout=120, what="kube-apiserver", proc=proc, log=log, interval=0.25)

    def _start_controller_manager(self, kubeconfig: Path, sa: KeyPair) -> None:
        log = self.directory / "kube-controller-manager.log"
        proc = start_process(
            [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={kubeconfig}",
                "--controllers=" + ("*" if self.for_node
                                    else "namespace,garbagecollector,serviceaccount"),
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={self.ca}",
                "--use-service-account-credentials=false",
                "--v=1",
            ],
            log=log,
        )
        self._procs.append(proc)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            stop_process(proc)
        self._procs.clear()

    # -- helpers for tests and the demo ------------------------------------------------------

    def install_crd(self, path: Path = REPO / "crds" / "paymentsession.yaml", *,
                    field_manager: str | None = None) -> Path:
        """Apply a CRD file server-side and wait until the API server serves it."""
        manager = [f"--field-manager={field_manager}"] if field_manager else []
        self.kubectl("apply", "--server-side", *manager, "-f", str(path))
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
        return path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=60, check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount with a TokenRequest token."""
        token = self.kubectl("create", "token", name, "-n", namespace,
                             "--duration=24h").stdout.strip()
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "paykube-local",
                          "cluster": {"server": self.server,
                                      "certificate-authority": str(self.ca)}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "paykube-local", "user": name,
                                                     "namespace": namespace}}],
            "current-context": "sa",
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local control plane until Ctrl-C.")
    parser.add_argument("--dir", type=Path, default=CACHE_DIR / "run" / "kube")
    args = parser.parse_args(argv)
    if args.dir.exists():
        shutil.rmtree(args.dir)
    started = time.monotonic()
    with ControlPlane.started(args.dir) as plane:
        print(f"control plane ready in {time.monotonic() - started:.1f}s")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in plane._procs):
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
