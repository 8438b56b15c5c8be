"""The Helm chart installed on the real local API server: install, upgrade and uninstall
(CRDs stay); every rendered object passes server-side dry-run (strict OpenAPI validation)
and applies; a Pod from each Deployment passes PodSecurity `restricted` admission."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from paykube.providers.stripe import SUBSCRIBED_EVENTS
from paykube_dev.kube import ControlPlane
from tests.plugins.chart_fixtures import (
    CHART,
    CI_VALUES,
    CLUSTER_SCOPED,
    GROUP,
    Manifest,
    as_yaml,
    delete_objects,
    ensure_namespaces,
    helm,
    render,
    unique,
    values_id,
)
from tests.plugins.kube_fixtures import refused

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def test_helm_install_upgrade_uninstall_on_the_api_server(
        kube: ControlPlane, chart_crd: Path, service_monitor_crd: None,
        unmanaged_namespace: str) -> None:
    """The real `helm install` path: schema, templates, the CRD already present (Helm skips
    it), every object created; NOTES tell the webhook URL and the event types; an upgrade
    to the Ingress/ServiceMonitor value set; uninstall keeps the CRD."""
    release = unique("helm")
    kubeconfig = ["--kubeconfig", str(kube.kubeconfig), "-n", unmanaged_namespace]
    installed = helm("install", release, str(CHART), *kubeconfig, "--set",
                     "operator.credentialsSecret=stripe-default",
                     "--set", "webhook.service.type=LoadBalancer")
    notes = installed.stdout
    assert "https://<your public host>/webhooks/stripe" in notes
    # The NOTES' command shows the load balancer's public host once it has one (here no
    # cloud controller provisions it, so the test writes the status a controller would).
    (show_host,) = re.findall(r"^\s*kubectl (-n .* -o jsonpath='.*')$", notes, re.MULTILINE)
    kube.kubectl("patch", "service", f"{release}-paykube-webhook", "-n", unmanaged_namespace,
                 "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                     "loadBalancer": {"ingress": [{"hostname": "lb-1.elb.example.com"}]}}}))
    assert kube.kubectl(*shlex.split(show_host)).stdout == "lb-1.elb.example.com\n"
    # Every event type a registered endpoint subscribes to, refunds' included.
    for event in SUBSCRIBED_EVENTS:
        assert event in notes
        assert f'-d "enabled_events[]={event}"' in notes
    assert f"rollout status deploy/{release}-paykube-operator" in notes
    assert "WARNING: no webhook signing secret is configured" in notes
    listed = kube.kubectl("get", "deployments", "-n", unmanaged_namespace, "-o", "name")
    assert sorted(listed.stdout.split()) == [f"deployment.apps/{release}-paykube-operator",
                                             f"deployment.apps/{release}-paykube-webhook"]
    values = CHART / "ci" / "ingress-servicemonitor-values.yaml"
    try:
        upgraded = helm("upgrade", release, str(CHART), *kubeconfig, "-f", str(values),
                        # the value set's credentials Secret lives in another namespace
                        "--set", "operator.credentialsSecret=stripe-default")
        assert "https://payments.example.com/webhooks/stripe" in upgraded.stdout
        kube.kubectl("get", "ingress", f"{release}-paykube-webhook", "-n", unmanaged_namespace)
        kube.kubectl("get", "servicemonitors.monitoring.coreos.com",
                     f"{release}-paykube-webhook", "-n", unmanaged_namespace)
    finally:
        helm("uninstall", release, *kubeconfig, "--wait", "--timeout", "60s")
    assert kube.kubectl("get", "clusterrole", f"{release}-paykube-operator",
                        check=False).returncode != 0
    kube.kubectl("get", "crd", f"paymentsessions.{GROUP}")  # CRDs stay



@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_rendered_objects_are_valid_and_apply(
        kube: ControlPlane, chart_crd: Path, service_monitor_crd: None,
        unmanaged_namespace: str, values: Path | None) -> None:
    docs = render(unique("rel"), unmanaged_namespace, values, include_crds=True)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        f"clusterpaymentproviders.{GROUP}", f"paymentproviders.{GROUP}",
        f"paymentrefunds.{GROUP}", f"paymentsessions.{GROUP}"]
    objects = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    created = ensure_namespaces(kube, objects)
    try:
        # The CRD from the chart, then everything else: validated by the API server's
        # OpenAPI schemas (unknown fields refused), then applied for real.
        kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart", "-f", "-",
                     input=as_yaml(crds))
        dry = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                           input=as_yaml(objects), check=False)
        assert dry.returncode == 0, dry.stderr
        applied = kube.kubectl("apply", "--server-side", "--validate=strict",
                               "--field-manager=paykube-chart-test", "-f", "-",
                               input=as_yaml(objects), check=False)
        assert applied.returncode == 0, applied.stderr
        lines = applied.stdout.strip().splitlines()
        assert len(lines) == len(objects), applied.stdout
        assert all(line.endswith("serverside-applied") for line in lines), applied.stdout
        for doc in objects:
            scope = ([] if doc["kind"] in CLUSTER_SCOPED
                     else ["-n", str(doc["metadata"]["namespace"])])
            api = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
            resource = f"{doc['kind'].lower()}.{api}" if api else doc["kind"].lower()
            kube.kubectl("get", resource, doc["metadata"]["name"], *scope)
        assert_pods_meet_the_restricted_standard(kube, unmanaged_namespace, objects)
    finally:
        delete_objects(kube, objects)
        for name in created:
            kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def assert_pods_meet_the_restricted_standard(kube: ControlPlane, namespace: str,
                                             objects: Sequence[Manifest]) -> None:
    """The API server's PodSecurity admission (on by default) judges a Pod made from each
    Deployment's pod template in a namespace that enforces `restricted`; a deliberately
    privileged variant must be refused, so a broken check cannot pass."""
    kube.kubectl("label", "namespace", namespace, "--overwrite",
                 "pod-security.kubernetes.io/enforce=restricted",
                 "pod-security.kubernetes.io/enforce-version=latest")
    deployments = [d for d in objects if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        template = deployment["spec"]["template"]
        pod: Manifest = {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": unique("psa"), "namespace": namespace,
                                      "labels": template["metadata"]["labels"]},
                         "spec": template["spec"]}
        created = kube.kubectl("create", "--dry-run=server", "-f", "-",
                               input=json.dumps(pod), check=False)
        assert created.returncode == 0, created.stderr
        assert "PodSecurity" not in created.stderr, created.stderr  # no warnings either
        escalating = json.loads(json.dumps(pod))
        # (not `privileged`: this API server refuses that itself, without --allow-privileged)
        escalating["spec"]["containers"][0]["securityContext"].update(
            {"allowPrivilegeEscalation": True, "capabilities": {"add": ["NET_RAW"]}})
        refused(kube.kubectl("create", "--dry-run=server", "-f", "-",
                             input=json.dumps(escalating), check=False),
                'violates PodSecurity "restricted:latest"', "allowPrivilegeEscalation != false",
                "NET_RAW")


