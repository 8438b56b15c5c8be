"""A single-node Kubernetes on this machine: the control plane (paykube_dev.kube) plus a
kubelet with containerd, the CNI bridge, kube-proxy, kube-scheduler, CoreDNS and a loopback
registry, started and stopped in one call.

    with LocalCluster.started(Path("/tmp/x")) as cluster:
        cluster.kubectl("get", "nodes")

Needs root. Network rule: the pod network is the bridge `paykube0` with 10.244.0.0/24 and
the network namespaces containerd makes for pods; a guard drops anything forwarded between
it and another interface, so traffic never leaves this machine. Teardown removes everything
that start created (processes, cgroups, mounts, bridge, iptables chains) and puts back the
sysctls it changed. See docs/node.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from paykube_dev.kube import Binaries, ControlPlane, _kubeconfig, pinned_versions
from paykube_dev.node import config, host, images
from paykube_dev.node.config import NODE_NAME, Layout
from paykube_dev.node.registry import Registry, start_registry
from paykube_dev.proc import CACHE_DIR, free_port, start_process, stop_process
from paykube_dev.services._base import find_program, http_status, log_tail

RUN_DIR = CACHE_DIR / "run"
STATE = RUN_DIR / "node-state.json"
LOCK = RUN_DIR / "node.lock"


class NodeError(RuntimeError):
    """The node could not start (or stop); the message says which part and why."""


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    coredns: Path
    containerd: str
    runc: str

    @classmethod
    def find(cls) -> NodeBinaries:
        pins = pinned_versions()
        built = CACHE_DIR / "bin" / f"kubernetes-node-{pins['K8S_VERSION']}"
        coredns = CACHE_DIR / "bin" / f"coredns-{pins['COREDNS_VERSION']}" / "coredns"
        missing = [str(p) for p in (built / "kubelet", built / "kube-scheduler",
                                    built / "kube-proxy", coredns) if not p.exists()]
        if missing:
            raise NodeError(f"run hack/build-k8s.sh node (hack/setup.sh); missing: "
                            f"{', '.join(missing)}")
        tools = {name: find_program(name) for name in
                 ("containerd", "containerd-shim-runc-v2", "runc", "iptables", "ip", "unshare",
                  "nsenter", "buildah", "docker-registry", "catatonit")}
        absent = [name for name, path in tools.items() if path is None]
        if not Path("/usr/lib/cni/bridge").exists():
            absent.append("/usr/lib/cni/bridge (containernetworking-plugins)")
        if absent:
            raise NodeError(f"missing {', '.join(absent)}: run hack/install-services.sh")
        return cls(built / "kubelet", built / "kube-scheduler", built / "kube-proxy", coredns,
                   str(tools["containerd"]), str(tools["runc"]))


def preflight() -> None:
    """What the machine must allow, said before anything is changed."""
    if os.geteuid() != 0:
        raise NodeError("the local node needs root (bridges, iptables, cgroups, mounts)")
    if not any(h.name == "memory" for h in host.hierarchies()) and \
            not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise NodeError("no cgroup hierarchies mounted under /sys/fs/cgroup")
    if host.read_sysctl("net/bridge/bridge-nf-call-iptables") is None:
        raise NodeError("br_netfilter is not available (/proc/sys/net/bridge is missing): "
                        "Services between pods on the bridge need it")


# -- state kept across a crash ---------------------------------------------------------------


def _save_state(state: dict[str, object]) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2))


def _load_state() -> dict[str, object]:
    try:
        loaded: dict[str, object] = json.loads(STATE.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def teardown_host(state: dict[str, object] | None = None) -> list[str]:
    """Remove whatever a node left on this machine, with or without a clean stop: every
    process and cgroup under /paykube-node, the bridge and pod veths, the iptables chains,
    the directories it created; the sysctls back to the values saved at start. Idempotent;
    returns the steps that failed (empty when all is clean)."""
    state = _load_state() if state is None else state
    failed: list[str] = []

    def step(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # every step runs, whatever failed before
            failed.append(f"{what}: {exc}")

    step("cgroups", host.kill_cgroup)
    step("bridge", lambda: host.run("ip", "link", "del", host.BRIDGE, check=False))
    links = state.get("links")
    if isinstance(links, list):
        step("veths", functools.partial(_remove_new_veths, {str(link) for link in links}))
    step("iptables", host.remove_chains)
    tables = state.get("nft_tables")
    if isinstance(tables, list):
        step("nftables", functools.partial(host.remove_new_tables, map(str, tables)))
    sysctls = state.get("sysctls", {})
    if isinstance(sysctls, dict):
        for name, value in sysctls.items():
            step(f"sysctl {name}", functools.partial(host.write_sysctl, name, str(value)))
    created = state.get("created_dirs", [])
    for path in created if isinstance(created, list) else []:
        step(f"rmdir {path}", functools.partial(_rmdir_if_empty, Path(str(path))))
    if not failed:
        STATE.unlink(missing_ok=True)
    return failed


def _remove_new_veths(known: set[str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        extra = [name for name in host._links() if name.startswith("veth") and name not in known]
        if not extra:
            return
        for name in extra:
            host.run("ip", "link", "del", name, check=False)
        if time.monotonic() > deadline:
            raise NodeError(f"veth links stay: {extra}")
        time.sleep(0.2)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()


# -- the cluster ----------------------------------------------------------------------------


@dataclass
class LocalCluster:
    """The control plane and one node, on this machine."""

    directory: Path
    lock_timeout: float = 1200.0
    plane: ControlPlane = field(init=False)
    registry: Registry = field(init=False)
    layout: Layout = field(init=False)
    timings: dict[str, float] = field(default_factory=dict)
    image_reference: str = ""
    """paykube's image as pods name it, once pushed (`push_image`)."""
    _binaries: NodeBinaries = field(init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: IO[str] | None = None
    _started: bool = False

    @classmethod
    @contextlib.contextmanager
    def started(cls, directory: Path, *, lock_timeout: float = 1200.0
                ) -> Iterator[LocalCluster]:
        cluster = cls(directory, lock_timeout=lock_timeout)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def host_ip(self) -> str:
        return self.layout.host_ip

    def kubectl(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, input=input, check=check)

    @property
    def namespace_pid(self) -> int:
        """A process in the node's mount namespace (for nsenter)."""
        return self._procs["namespace"].pid

    def log(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        preflight()
        self._binaries = NodeBinaries.find()
        self._take_lock()
        self._started = True
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.layout = Layout(self.directory)
        failed = teardown_host()  # whatever an earlier, killed run left
        if failed:
            raise NodeError("cannot clean up an earlier node: " + "; ".join(failed))
        state: dict[str, object] = {
                 "sysctls": {n: host.read_sysctl(n) for n in host.NET_SYSCTLS},
                 "links": host._links(), "nft_tables": host.nft_tables(),
                 "created_dirs": []}
        _save_state(state)
        self._network()
        self._timed("control plane", self._control_plane)
        self._timed("registry", self._registry)
        certs = self._certificates()
        self._timed("containerd", lambda: self._runtime(state))
        self._timed("kubelet", lambda: self._kubelet(certs))
        self._timed("kube-proxy, scheduler, CoreDNS", lambda: self._services(certs))
        self._timed("node Ready", self._wait_node_ready)
        self.timings["total"] = time.monotonic() - began

    def _timed(self, what: str, action: Callable[[], None]) -> None:
        began = time.monotonic()
        try:
            action()
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(f"{what}: {exc}") from exc
        self.timings[what] = time.monotonic() - began

    def _take_lock(self) -> None:
        """One node per machine: its names (bridge, cgroup, chains) are fixed."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        handle = LOCK.open("a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    handle.close()
                    raise NodeError(f"another local node runs on this machine ({holder}); "
                                    f"waited {self.lock_timeout:.0f}s") from None
                time.sleep(1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')} in {self.directory}")
        handle.flush()
        self._lock = handle

    def _network(self) -> None:
        ip = self.layout.host_ip
        host.run("ip", "link", "add", host.BRIDGE, "type", "bridge")
        host.run("ip", "addr", "add", f"{ip}/{config.POD_SUBNET.prefixlen}", "dev", host.BRIDGE)
        host.run("ip", "link", "set", host.BRIDGE, "up")
        for name, value in host.NET_SYSCTLS.items():
            host.write_sysctl(name, value)
        host.install_guard(host.BRIDGE)

    def _control_plane(self) -> None:
        self.plane = ControlPlane(self.directory / "kube", Binaries.from_cache(),
                                  address=self.layout.host_ip, for_node=True)
        self.plane.start()

    def _registry(self) -> None:
        self.registry = start_registry(self.directory / "registry")
        images.ensure_pause(self.log("images"))
        images.push(images.PAUSE_IMAGE, f"{self.registry.address}/pause:3.10", self.log("images"))
        for name in config.MIRRORED:
            hosts = self.layout.registry_hosts_dir / name / "hosts.toml"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text(config.hosts_toml(self.registry.address))

    def push_image(self, built: images.BuiltImage) -> str:
        """Push an image to the local registry; the reference pods use (docker.io name)."""
        repository = built.repository.removeprefix("docker.io/")
        images.push(built.name, f"{self.registry.address}/{repository}:{built.tag}",
                    self.log("images"))
        self.image_reference = f"{built.repository}:{built.tag}"
        return self.image_reference

    def _certificates(self) -> dict[str, Path]:
        pki = self.plane.pki
        server, ca = self.plane.server, self.plane.ca
        kubeconfigs = {}
        for name, cn, org in (("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
                              ("kube-proxy", "system:kube-proxy", None),
                              ("kube-scheduler", "system:kube-scheduler", None),
                              ("coredns", "paykube:coredns", None)):
            pair = pki.issue(name, cn, organization=org)
            path = self.directory / f"{name}.kubeconfig"
            path.write_text(json.dumps(_kubeconfig(server, ca, pair, name)))
            kubeconfigs[name] = path
        serving = pki.issue("kubelet-serving", NODE_NAME, server=True, ips=[self.host_ip])
        kubeconfigs["kubelet-cert"] = serving.cert
        kubeconfigs["kubelet-key"] = serving.key
        return kubeconfigs

    def _in_node(self, argv: list[str | Path], holder: int) -> list[str]:
        """A command that joins the node's cgroup and mount namespace, then execs `argv`."""
        join = host.cgroup_join_command(f"{host.CGROUP}/node")
        command = shlex.join(["nsenter", f"--mount=/proc/{holder}/ns/mnt", "--",
                              *map(str, argv)])
        return ["sh", "-c", f"{join} && exec {command}"]

    def _runtime(self, state: dict[str, object]) -> None:
        layout = self.layout
        host.make_cgroup(f"{host.CGROUP}/node")
        sysctl_dir = self.directory / "sysctl"
        mounts = []
        for name, value in host.KUBELET_SYSCTLS.items():
            file = sysctl_dir / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(value + "\n")
            mounts.append(f"mount --bind {shlex.quote(str(file))} "
                          f"{shlex.quote(str(host.sysctl_path(name)))}")
        created = []
        for path in map(Path, host.PRIVATE_DIRS):
            if not path.exists():
                path.mkdir(parents=True)
                created.append(str(path))
            mounts.append(f"mount -t tmpfs -o mode=0755 paykube-node {shlex.quote(str(path))}")
        state["created_dirs"] = created
        _save_state(state)
        ready = self.directory / "namespace.ready"
        script = " && ".join([host.cgroup_join_command(f"{host.CGROUP}/node"), *mounts,
                              f"touch {shlex.quote(str(ready))}", "exec sleep infinity"])
        holder = start_process(["unshare", "--mount", "--propagation", "private", "--",
                                "sh", "-c", script], log=self.log("namespace"))
        self._procs["namespace"] = holder
        self._wait(ready.exists, 10, "the node's mount namespace", "namespace")

        layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (layout.cni_conf_dir / "10-paykube.conflist").write_text(config.cni_conflist(layout))
        toml = self.directory / "containerd.toml"
        toml.write_text(config.containerd_toml(layout, self._binaries.runc))
        self._procs["containerd"] = start_process(
            self._in_node([self._binaries.containerd, "--config", toml], holder.pid),
            log=self.log("containerd"))
        self._wait(layout.containerd_socket.exists, 30, "containerd", "containerd")

    def _kubelet(self, certs: dict[str, Path]) -> None:
        kubelet_config = self.directory / "kubelet.yaml"
        kubelet_config.write_text(yaml.safe_dump(config.kubelet_config(
            self.layout, port=free_port(), healthz_port=(healthz := free_port()),
            ca=self.plane.ca, cert=certs["kubelet-cert"], key=certs["kubelet-key"])))
        self._procs["kubelet"] = start_process(self._in_node([
            self._binaries.kubelet, f"--config={kubelet_config}",
            f"--kubeconfig={certs['kubelet']}", f"--hostname-override={NODE_NAME}",
            f"--root-dir={self.layout.kubelet_dir}",
            f"--cert-dir={self.layout.kubelet_dir / 'pki'}", f"--node-ip={self.host_ip}",
            "--v=1",
        ], self._procs["namespace"].pid), log=self.log("kubelet"))
        self._wait(lambda: http_status(f"http://127.0.0.1:{healthz}/healthz") == 200, 60,
                   "kubelet", "kubelet")

    def _services(self, certs: dict[str, Path]) -> None:
        b = self._binaries
        self._procs["kube-proxy"] = start_process([
            b.kube_proxy, f"--kubeconfig={certs['kube-proxy']}",
            f"--hostname-override={NODE_NAME}", "--proxy-mode=iptables",
            f"--cluster-cidr={config.POD_SUBNET}",
            # No VM-wide conntrack tuning, no route_localnet, NodePorts on the bridge only.
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0", "--iptables-localhost-nodeports=false",
            f"--nodeport-addresses={self.host_ip}/32",
            f"--healthz-bind-address=127.0.0.1:{(proxy_health := free_port())}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}", "--v=1",
        ], log=self.log("kube-proxy"))
        self._procs["kube-scheduler"] = start_process([
            b.kube_scheduler, f"--kubeconfig={certs['kube-scheduler']}",
            f"--authentication-kubeconfig={certs['kube-scheduler']}",
            f"--authorization-kubeconfig={certs['kube-scheduler']}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--v=1",
        ], log=self.log("kube-scheduler"))
        self.kubectl("apply", "-f", "-", input=config.COREDNS_RBAC)
        ready_port = free_port()
        corefile = self.directory / "Corefile"
        corefile.write_text(config.corefile(self.layout, kubeconfig=certs["coredns"],
                                            ready_port=ready_port))
        self._procs["coredns"] = start_process([b.coredns, "-conf", corefile],
                                               log=self.log("coredns"))
        self._wait(lambda: http_status(f"http://127.0.0.1:{proxy_health}/healthz") == 200, 60,
                   "kube-proxy", "kube-proxy")
        self._wait(lambda: http_status(f"http://127.0.0.1:{ready_port}/ready") == 200, 60,
                   "CoreDNS", "coredns")

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            got = self.kubectl("get", "node", NODE_NAME, "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                               check=False)
            return got.stdout == "True"
        self._wait(ready, 120, f"node {NODE_NAME} Ready", "kubelet", also=("containerd",))

    def _wait(self, check: Callable[[], bool], timeout: float, what: str, log: str,
              also: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs.get(log)
        while time.monotonic() < deadline:
            if check():
                return
            if proc is not None and proc.poll() is not None:
                raise NodeError(f"{what}: exited with {proc.returncode}"
                                f"{log_tail(self.log(log))}")
            time.sleep(0.2)
        tails = "".join(log_tail(self.log(name)) for name in (log, *also))
        raise NodeError(f"{what}: not ready after {timeout:.0f}s{tails}")

    @contextlib.contextmanager
    def cut_api_server_from_pods(self) -> Iterator[None]:
        """Pods cannot reach the API server (their packets to it get a TCP reset) until the
        block ends; this machine's own clients (kubelet, controllers, tests) still can."""
        chain = "PAYKUBE-FAULT"
        ipt = ("iptables", "-w", "5")
        host.run(*ipt, "-N", chain)
        host.run(*ipt, "-A", chain, "-i", host.BRIDGE, "-p", "tcp", "--dport",
                 str(self.plane.apiserver_port), "-j", "REJECT", "--reject-with", "tcp-reset")
        host.run(*ipt, "-I", "INPUT", "1", "-j", chain)
        try:
            yield
        finally:
            host.run(*ipt, "-D", "INPUT", "-j", chain, check=False)
            host.run(*ipt, "-F", chain, check=False)
            host.run(*ipt, "-X", chain, check=False)

    # -- stop ---------------------------------------------------------------------------------

    def abandon(self) -> None:
        """What a killed test run leaves: the processes it started die (as their parent
        did), the machine keeps the rest (containers, cgroups, bridge, chains, sysctls)."""
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._procs.clear()
        with contextlib.suppress(AttributeError):
            self.registry.kill()
        with contextlib.suppress(AttributeError):
            self.plane.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._started = False

    def stop(self) -> None:
        """Stop everything and undo every change to the machine; safe to call twice."""
        if not self._started:
            return
        failed: list[str] = []
        for name in ("coredns", "kube-scheduler", "kube-proxy", "kubelet", "containerd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                try:
                    stop_process(proc, timeout=10)
                except Exception as exc:
                    failed.append(f"stop {name}: {exc}")
        failed += teardown_host()
        holder = self._procs.pop("namespace", None)
        if holder is not None:
            with contextlib.suppress(Exception):
                stop_process(holder, timeout=5)
        with contextlib.suppress(AttributeError):
            self.registry.close()
        with contextlib.suppress(AttributeError):
            self.plane.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._started = False
        if failed:
            raise NodeError("teardown incomplete: " + "; ".join(failed))
