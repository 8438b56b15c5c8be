"""The local node's configuration files (pure functions): what keeps the node on this
machine and its traffic off the internet."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from paykube_dev.node import config
from paykube_dev.node.config import Layout

LAYOUT = Layout(Path("/tmp/node-x"))


def test_containerd_keeps_everything_in_the_nodes_directory() -> None:
    parsed = tomllib.loads(config.containerd_toml(LAYOUT))
    assert parsed["root"].startswith("/tmp/node-x/") and parsed["state"].startswith("/tmp/node-x/")
    assert parsed["grpc"]["address"] == str(LAYOUT.containerd_socket)
    assert "io.containerd.internal.v1.opt" in parsed["disabled_plugins"]  # no /opt/containerd
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == config.PAUSE_IMAGE
    assert cri["cni"]["conf_dir"] == str(LAYOUT.cni_conf_dir)
    options = cri["containerd"]["runtimes"]["runc"]["options"]
    assert options == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}


def test_registry_names_resolve_only_at_the_local_registry() -> None:
    hosts = tomllib.loads(config.hosts_toml("127.0.0.1:5000"))
    assert hosts["server"] == "http://127.0.0.1:5000"  # no fallback to the real registry
    assert list(hosts["host"]) == ["http://127.0.0.1:5000"]


def test_pod_network_is_a_bridge_without_masquerading() -> None:
    (bridge,) = json.loads(config.cni_conflist(LAYOUT))["plugins"]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"].startswith("/tmp/node-x/")
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]


def test_kubelet_fits_a_cgroup_v1_vm() -> None:
    kubelet = config.kubelet_config(LAYOUT, port=1, healthz_port=2, ca=Path("ca"),
                                    cert=Path("c"), key=Path("k"))
    assert kubelet["failCgroupV1"] is False and kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["cgroupRoot"] == "/paykube-node" and kubelet["oomScoreAdj"] == 0
    assert kubelet["clusterDNS"] == [LAYOUT.host_ip] and kubelet["resolvConf"] == ""
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]


def test_dns_answers_cluster_names_only() -> None:
    corefile = config.corefile(LAYOUT, kubeconfig=Path("kc"), ready_port=3)
    assert f"bind {LAYOUT.host_ip}" in corefile
    assert "forward" not in corefile and "kubernetes cluster.local" in corefile
