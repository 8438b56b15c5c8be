"""The local node on this machine: it starts over a killed node's leftovers, its teardown
leaves nothing behind, the VM's own sysctls are never written, DNS answers cluster names
only, and nothing a pod sends leaves the machine."""

from __future__ import annotations

import json
import subprocess

import pytest

from paykube_dev.kube import pinned_versions
from paykube_dev.node import host
from paykube_dev.node.cluster import LocalCluster
from paykube_dev.node.config import NODE_NAME
from tests.plugins.node_fixtures import TeardownProof, wait_for

# Building the image and starting nodes count towards the first test's time: generous
# bounds, each wait inside has its own.
pytestmark = pytest.mark.timeout(1800)


def test_teardown_leaves_nothing_behind(node_teardown_proof: TeardownProof) -> None:
    proof = node_teardown_proof
    # A killed node leaves the bridge, chains, cgroups and sysctls: else the rest is empty
    # by accident, not by teardown.
    left = "\n".join(proof.while_crashed)
    for trace in (host.BRIDGE, host.GUARD_CHAIN, f"/{host.CGROUP}", "net/ipv4/ip_forward=1"):
        assert trace in left, f"a killed node should leave {trace}:\n{left}"
    assert proof.started_over_leftovers, "a node must start over a killed one's leftovers"
    assert proof.after_stop == [], "teardown left:\n" + "\n".join(proof.after_stop)
    assert proof.second_teardown_failures == []
    assert proof.after_second_teardown == []


def test_the_vms_sysctls_are_never_written(node: LocalCluster,
                                           node_teardown_proof: TeardownProof) -> None:
    """The kubelet's kernel tunables hold its values inside the node's mount namespace and
    the VM's own values outside it."""
    before = dict(line.split("=", 1) for line in node_teardown_proof.before.sysctls)
    holder = node.namespace_pid
    for name, wanted in host.KUBELET_SYSCTLS.items():
        assert host.read_sysctl(name) == before[name], name
        inside = subprocess.run(["nsenter", f"--mount=/proc/{holder}/ns/mnt", "cat",
                                 str(host.sysctl_path(name))], capture_output=True,
                                text=True, check=True).stdout.strip()
        assert inside == wanted, name


def test_the_node_is_ready_with_the_pinned_kubelet(node: LocalCluster) -> None:
    got = json.loads(node.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    info = got["status"]["nodeInfo"]
    assert info["kubeletVersion"] == pinned_versions()["K8S_VERSION"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    addresses = {a["type"]: a["address"] for a in got["status"]["addresses"]}
    assert addresses["InternalIP"] == node.host_ip


def test_pods_resolve_cluster_names_and_cannot_leave_the_machine(node: LocalCluster) -> None:
    """A pod resolves the `kubernetes` Service through CoreDNS and reaches the API server
    through it; a name outside the cluster does not resolve, and a connection to an address
    beyond this machine is dropped by the node's guard (its counter moves)."""
    namespace = "node-net-check"
    node.kubectl("create", "namespace", namespace)
    drops = host.guard_drops()
    script = "\n".join([
        "import socket, json",
        "out = {'kubernetes': socket.gethostbyname('kubernetes.default.svc.cluster.local')}",
        "try:",
        "    socket.gethostbyname('pypi.org'); out['outside'] = 'resolved'",
        "except OSError as exc:",
        "    out['outside'] = 'unresolved'",
        "s = socket.socket(); s.settimeout(3)",
        "try:",
        "    s.connect(('198.51.100.7', 443)); out['beyond'] = 'connected'",
        "except OSError as exc:",
        "    out['beyond'] = type(exc).__name__",
        "s = socket.create_connection((out['kubernetes'], 443), timeout=5); s.close()",
        "out['api'] = 'reached'",
        "print(json.dumps(out))",
    ])
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "net-check", "namespace": namespace},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "check", "image": node.image_reference,
               "command": ["python", "-c", script],
               "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                   "allowPrivilegeEscalation": False}}]}}
    try:
        node.kubectl("apply", "-f", "-", input=json.dumps(pod))

        def finished() -> bool:
            return node.kubectl("get", "pod", "net-check", "-n", namespace, "-o",
                                "jsonpath={.status.phase}").stdout in ("Succeeded", "Failed")
        wait_for(finished, timeout=90, what="the check pod finishing",
                 diagnose=lambda: node.kubectl("describe", "pod", "net-check", "-n",
                                               namespace, check=False).stdout)
        logs = node.kubectl("logs", "net-check", "-n", namespace).stdout
        result = json.loads(logs.strip().splitlines()[-1])
        assert result["kubernetes"] == "10.96.0.1"
        assert result["api"] == "reached"
        assert result["outside"] == "unresolved"
        assert result["beyond"] in ("TimeoutError", "timeout"), result
        assert host.guard_drops() > drops, "the guard dropped nothing"
    finally:
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
