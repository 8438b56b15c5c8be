"""The Helm chart under test: rendering it with the real helm binary, applying what it
renders to the real local API server, and the fixture that applies its copy of the CRD.

Shared by the tests/integration/test_chart_*.py modules."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube_dev.kube import ControlPlane, pinned_versions
from paykube_dev.proc import CACHE_DIR

Manifest = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "paykube"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
EXAMPLES = REPO / "crds" / "examples"
GROUP = "payments.paykube.dev"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


PINS = pinned_versions()
HELM = CACHE_DIR / "bin" / f"helm-{PINS['HELM_VERSION']}" / "helm"
# A helm built with `go install` does not know which Kubernetes it was built against (it
# then assumes v1.20, below the chart's kubeVersion); tell it the version we run.
KUBE_VERSION = PINS["K8S_VERSION"]


# -- helpers ------------------------------------------------------------------------------


def helm(*args: str, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm is missing at {HELM}: run hack/build-k8s.sh tools (hack/setup.sh)")
    # Helm's own state stays in the cache, never in the user's ~/.config or ~/.cache.
    env = {**os.environ, "HELM_CACHE_HOME": str(CACHE_DIR / "helm" / "cache"),
           "HELM_CONFIG_HOME": str(CACHE_DIR / "helm" / "config"),
           "HELM_DATA_HOME": str(CACHE_DIR / "helm" / "data")}
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=timeout,
                            check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {shlex.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def values_args(values: Path | None, sets: Sequence[str] = ()) -> list[str]:
    args = ["--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return args


def render(release: str, namespace: str, values: Path | None = None, sets: Sequence[str] = (),
           *, include_crds: bool = False) -> list[Manifest]:
    args = ["template", release, str(CHART), "-n", namespace, *values_args(values, sets)]
    if include_crds:
        args.append("--include-crds")
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    assert all(isinstance(d, dict) and d.get("kind") for d in docs)
    return docs


def as_yaml(docs: Sequence[Manifest]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def one(docs: Sequence[Manifest], kind: str, component: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind
             and d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"expected one {kind} for {component}, got {len(found)}"
    return found[0]


def values_id(path: Path | None) -> str:
    return "default" if path is None else path.stem


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def ensure_namespaces(kube: ControlPlane, docs: Sequence[Manifest]) -> list[str]:
    """Create the namespaces that rendered objects live in (e.g. team namespaces of the
    namespaced-RBAC value set); return the ones this call created."""
    created = []
    for ns in sorted({d["metadata"].get("namespace") for d in docs} - {None}):
        deadline = time.monotonic() + 60
        while True:  # a namespace still terminating from an earlier test must go first
            got = kube.kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}",
                               check=False)
            if got.returncode != 0:
                kube.kubectl("create", "namespace", ns)
                created.append(ns)
                break
            if got.stdout == "Active":
                break
            assert time.monotonic() < deadline, f"namespace {ns} stays {got.stdout}"
            time.sleep(0.5)
    return created


def delete_objects(kube: ControlPlane, docs: Sequence[Manifest]) -> None:
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                 input=as_yaml([d for d in docs if d["kind"] != "CustomResourceDefinition"]),
                 check=False)


@pytest.fixture(scope="session")
def chart_crd(kube: ControlPlane, crd_installed: Path) -> Path:
    """The chart's own copy of the CRD, applied (it is identical to crds/, so this changes
    nothing in the shared cluster, but the objects below are validated by *this* file)."""
    path = CHART / "crds" / crd_installed.name
    return kube.install_crd(path, field_manager="paykube-chart")


# A stand-in for the Prometheus Operator's ServiceMonitor CRD (which cannot be downloaded
# here): it types the fields the chart uses with the same shapes as the real CRD, so an
# unknown or misspelt field is still refused by strict validation.
_SECRET_KEY_SELECTOR = {"type": "object", "required": ["key"],
                        "properties": {"name": {"type": "string"}, "key": {"type": "string"},
                                       "optional": {"type": "boolean"}}}
SERVICE_MONITOR_CRD: Manifest = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com", "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                  "plural": "servicemonitors", "singular": "servicemonitor"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "required": ["selector", "endpoints"], "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {"type": "object",
                                 "x-kubernetes-preserve-unknown-fields": True},
                    "namespaceSelector": {"type": "object", "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}}}},
                    "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "scheme": {"type": "string", "enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},  # noqa: E501
                        "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},  # noqa: E501
                        "basicAuth": {"type": "object", "properties": {
                            "username": _SECRET_KEY_SELECTOR,
                            "password": _SECRET_KEY_SELECTOR}},
                    }}}}}}}}}],
    },
}


@pytest.fixture(scope="session")
def service_monitor_crd(kube: ControlPlane) -> Iterator[None]:
    kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart-test", "-f", "-",
                 input=json.dumps(SERVICE_MONITOR_CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 "crd/servicemonitors.monitoring.coreos.com")
    yield
    kube.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false",
                 check=False)


# -- the chart's CRDs ----------------------------------------------------------------------




def event_for(namespace: str, session: Manifest) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": "rbac-probe.", "namespace": namespace},
        "involvedObject": {"apiVersion": f"{GROUP}/v1alpha1", "kind": "PaymentSession",
                           "name": session["metadata"]["name"], "namespace": namespace,
                           "uid": session["metadata"]["uid"]},
        "type": "Normal", "reason": "RbacProbe", "message": "chart RBAC test",
        "source": {"component": "paykube-chart-test"},
    })


def create_session(kube: ControlPlane, namespace: str, name: str) -> Manifest:
    example = yaml.safe_load((EXAMPLES / "paymentsession-simple.yaml").read_text())
    example["metadata"] = {"name": name, "namespace": namespace}
    kube.kubectl("apply", "-f", "-", input=json.dumps(example))
    got = kube.kubectl("get", "paymentsession", name, "-n", namespace, "-o", "json")
    obj: Manifest = json.loads(got.stdout)
    return obj


def mounted_secret_key(pod: Manifest, container: Manifest, path: str) -> tuple[str, str]:
    """(Secret name, key) behind a file path in a mounted Secret volume of the container."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        prefix = mount["mountPath"].rstrip("/") + "/"
        if secret is None or not path.startswith(prefix):
            continue
        assert "subPath" not in mount, "a subPath mount is never updated by the kubelet"
        for item in secret["items"]:
            if item["path"] == path.removeprefix(prefix):
                return secret["secretName"], item["key"]
    raise AssertionError(f"{path} is in no mounted Secret item")
