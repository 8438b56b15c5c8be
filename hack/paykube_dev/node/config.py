"""The node's configuration files, as pure functions of its layout (no I/O here)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from paykube_dev.node.host import BRIDGE, CGROUP

NODE_NAME = "paykube-node"
POD_SUBNET = ipaddress.ip_network("10.244.0.0/24")
SERVICE_SUBNET = "10.96.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# Registries whose names image references use; containerd resolves all of them at the
# local registry and nowhere else.
MIRRORED = ("docker.io", "registry.k8s.io")


@dataclass(frozen=True)
class Layout:
    """Where one node instance keeps its files, and its addresses."""

    directory: Path

    @property
    def host_ip(self) -> str:
        """The bridge's address on this machine: the API server, kubelet, CoreDNS and the
        relays to this machine's services listen here, since pods cannot reach loopback."""
        return str(POD_SUBNET.network_address + 1)

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.directory / "containerd" / "certs.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.directory / "kubelet"


def containerd_toml(layout: Layout, runc: str = "/usr/sbin/runc") -> str:
    """containerd 1.6 (Debian): everything under the node's directory, the CRI with runc
    and cgroupfs, and no OOM score below its own (it lacks CAP_SYS_RESOURCE here)."""
    root = layout.directory / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
# opt would install into /opt/containerd; the others need kernels or tools not used here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{root / 'containerd.ttrpc.sock'}"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{layout.cni_conf_dir}"
  [{cri}.registry]
    config_path = "{layout.registry_hosts_dir}"
"""


def hosts_toml(registry: str) -> str:
    """A registry name resolved at the local registry only: `server` too, so that a miss
    never falls back to the internet."""
    return f"""server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
"""


def cni_conflist(layout: Layout) -> str:
    """The bridge plugin on the node's own bridge; no masquerading (nothing leaves this
    machine), host-local addresses kept in the node's directory."""
    return json.dumps({
        "cniVersion": "1.0.0", "name": "paykube",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(layout.directory / "cni" / "ipam"),
                     "ranges": [[{"subnet": str(POD_SUBNET), "gateway": layout.host_ip}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }, indent=2)


def kubelet_config(layout: Layout, *, port: int, healthz_port: int, ca: Path,
                   cert: Path, key: Path) -> dict[str, object]:
    """The kubelet on a cgroup v1 (hybrid) machine, with the cgroupfs driver, its cgroups
    under /paykube-node (one tree that teardown removes), and what this machine needs:
    cgroup v1 allowed, no OOM score of its own, no swap check."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{CGROUP}",
        "oomScoreAdj": 0, "failSwapOn": False, "protectKernelDefaults": False,
        "address": layout.host_ip, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert), "tlsPrivateKeyFile": str(key),
        "clusterDNS": [layout.host_ip], "clusterDomain": CLUSTER_DOMAIN,
        # No host resolver inside pods: names resolve in the cluster or not at all.
        "resolvConf": "",
        "podCIDR": str(POD_SUBNET), "maxPods": 60,
        "serializeImagePulls": False,
        # Mounted Secrets follow a change within seconds rather than a minute.
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "shutdownGracePeriod": "0s",
    }


def corefile(layout: Layout, *, kubeconfig: Path, ready_port: int) -> str:
    """Cluster names only: no `forward`, so a name outside the cluster never leaves."""
    return f""".:53 {{
    bind {layout.host_ip}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} paykube-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    ready 127.0.0.1:{ready_port}
    cache 5
}}
"""


# What CoreDNS reads from the API server (the rules of the upstream `system:coredns` role).
COREDNS_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "paykube:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "paykube:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "paykube:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "paykube:coredns"}
"""
