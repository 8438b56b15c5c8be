"""The chart's RBAC, proven not read: the rendered Roles are applied and each
ServiceAccount is checked by impersonation (`kubectl auth can-i --as=...`) and by real calls
with its own token, for allowed and denied operations, in cluster-wide and namespaced
mode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from paykube.api.refunds import RefundStatus
from paykube.api.types import RefundPhase
from paykube_dev.kube import ControlPlane
from tests.plugins.chart_fixtures import (
    CHART,
    EXAMPLES,
    GROUP,
    RBAC_KINDS,
    as_yaml,
    create_session,
    delete_objects,
    event_for,
    one,
    render,
    unique,
)
from tests.plugins.kube_fixtures import create_secret, make_namespace

REFUND_EXAMPLE = EXAMPLES / "refunds" / "paymentrefund-partial.yaml"
# The dashboard reads the mirror only: its ServiceAccount has no rights (and no token).
DASHBOARD_ON = ["dashboard.enabled=true", "secrets.existingSecret=paykube-secrets",
                "dashboard.keys.username=dash-user", "dashboard.keys.password=dash-password",
                "dashboard.keys.databaseUrl=dash-db-url"]

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

# -- RBAC, proven with impersonation and real tokens --------------------------------------


class Identity:
    """A ServiceAccount of the chart: `can` asks the API server by impersonation, `run`
    makes a real call with the ServiceAccount's own token."""

    def __init__(self, kube: ControlPlane, namespace: str, name: str, directory: Path) -> None:
        self.kube = kube
        self.user = f"system:serviceaccount:{namespace}:{name}"
        self.kubeconfig = kube.service_account_kubeconfig(namespace, name,
                                                          directory / f"{name}.kubeconfig")

    def can(self, verb: str, resource: str, namespace: str | None,
            subresource: str | None = None, name: str | None = None) -> bool:
        args = ["auth", "can-i", verb, f"{resource}/{name}" if name else resource,
                f"--as={self.user}"]
        args += ["-n", namespace] if namespace else []
        args += [f"--subresource={subresource}"] if subresource else []
        result = self.kube.kubectl(*args, check=False)
        assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
        return result.stdout.strip() == "yes"

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl(*args, input=input, check=False, kubeconfig=self.kubeconfig)

    def allowed(self, *args: str, input: str | None = None) -> None:
        result = self.run(*args, input=input)
        assert result.returncode == 0, f"{self.user} should be allowed {args}:\n{result.stderr}"

    def forbidden(self, *args: str, input: str | None = None) -> None:
        result = self.run(*args, input=input)
        assert result.returncode != 0, f"{self.user} should be refused {args}:\n{result.stdout}"
        assert "forbidden" in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-rbac", "namespaced-rbac"])
def test_rbac_allows_what_each_program_needs_and_nothing_more(
        kube: ControlPlane, chart_crd: Path, tmp_path: Path, namespaced: bool) -> None:
    release_ns, team_ns, other_ns = (make_namespace(kube, "solo-rbac") for _ in range(3))
    release = unique("rbac")
    sets = [f"operator.namespaces={{{team_ns}}}", "operator.credentialsSecret=stripe-default",
            *DASHBOARD_ON]
    if namespaced:
        sets.append("rbac.namespaced=true")
    docs = [d for d in render(release, release_ns, sets=sets) if d["kind"] in RBAC_KINDS]
    kinds = {d["kind"] for d in docs}
    # Secrets through Roles in either mode; when namespaced, the only ClusterRole is the
    # operator's for ClusterPaymentProviders and namespace labels (kopf's scanning is off).
    assert kinds == {"ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                     "ClusterRoleBinding"}
    if namespaced:
        cluster_roles = [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"]
        assert len(cluster_roles) == 1 and cluster_roles[0].endswith("-cluster-providers")
    try:
        kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart-test", "-f", "-",
                     input=as_yaml(docs))
        for ns, secret in ((release_ns, "stripe-default"), (release_ns, "unrelated"),
                           (team_ns, "team-stripe"), (other_ns, "other-stripe")):
            create_secret(kube, ns, secret, {"apiKey": "sk_test_rbac"})
        team_session = create_session(kube, team_ns, "rbac-probe")
        other_session = create_session(kube, other_ns, "rbac-probe")
        for ns in (team_ns, other_ns):
            kube.kubectl("apply", "-n", ns, "-f", "-", input=refund_probe())
        operator = Identity(kube, release_ns, one(docs, "ServiceAccount", "operator")[
            "metadata"]["name"], tmp_path)
        webhook = Identity(kube, release_ns, one(docs, "ServiceAccount", "webhook")[
            "metadata"]["name"], tmp_path)
        paysess = f"paymentsessions.{GROUP}"
        annotate = json.dumps({"metadata": {"annotations": {"paykube.dev/rbac-test": "1"}}})
        status = json.dumps({"status": {"phase": "Pending"}})
        watch = f"/apis/{GROUP}/v1alpha1/namespaces/{team_ns}/paymentsessions?watch=1&timeoutSeconds=1"  # noqa: E501

        # The operator: watch and patch PaymentSessions and their status, create Events,
        # get (not list) Secrets, read the default credentials Secret.
        for verb in ("get", "list", "watch", "patch"):
            assert operator.can(verb, paysess, team_ns), verb
        assert operator.can("patch", paysess, team_ns, "status")
        assert operator.can("create", "events", team_ns)
        assert operator.can("patch", "events", team_ns)  # aggregation of repeats
        assert operator.can("get", "secrets", team_ns, name="team-stripe")
        assert operator.can("get", "secrets", release_ns, name="stripe-default")
        operator.allowed("get", "paymentsessions", "-n", team_ns)
        operator.allowed("get", "--raw", watch)
        operator.allowed("patch", "paymentsession", "rbac-probe", "-n", team_ns,
                         "--type=merge", "-p", annotate)
        operator.allowed("patch", "paymentsession", "rbac-probe", "-n", team_ns,
                         "--subresource=status", "--type=merge", "-p", status)
        operator.allowed("create", "-f", "-", input=event_for(team_ns, team_session))
        operator.allowed("get", "secret", "team-stripe", "-n", team_ns)
        operator.allowed("get", "secret", "stripe-default", "-n", release_ns)
        # ... and nothing cluster-admin-like.
        for verb in ("list", "watch", "create", "update", "delete"):
            assert not operator.can(verb, "secrets", team_ns), verb
        assert not operator.can("delete", paysess, team_ns)
        assert not operator.can("create", paysess, team_ns)
        assert not operator.can("delete", "pods", team_ns)
        assert not operator.can("create", "customresourcedefinitions.apiextensions.k8s.io",
                                None)
        assert not operator.can("create", "clusterrolebindings.rbac.authorization.k8s.io",
                                None)
        assert not operator.can("get", "configmaps", team_ns)
        operator.forbidden("get", "secrets", "-n", team_ns)
        operator.forbidden("delete", "pod", "any-pod", "-n", team_ns)
        operator.forbidden("delete", "paymentsession", "rbac-probe", "-n", team_ns)
        operator.forbidden("create", "--dry-run=server", "-f", str(CHART / "crds" /
                                                                   "paymentsession.yaml"))
        # Secrets: in the watched namespace (PaymentProviders'), in its own namespace
        # (ClusterPaymentProviders' and those it owns: the route table, registered
        # endpoints' secrets), never listed, and nowhere else (exact namespace names).
        assert not operator.can("get", "secrets", other_ns, name="other-stripe")
        assert not operator.can("get", "secrets", "kube-system")
        operator.forbidden("get", "secret", "other-stripe", "-n", other_ns)
        for verb in ("get", "create", "patch", "delete"):
            assert operator.can(verb, "secrets", release_ns, name="paykube-routes"), verb
        for verb in ("list", "watch"):
            assert not operator.can(verb, "secrets", release_ns), verb
        # Provider accounts: PaymentProviders where it watches, ClusterPaymentProviders
        # and namespace labels (get) cluster-wide, status patches; never create or delete.
        payprov = f"paymentproviders.{GROUP}"
        cluster_payprov = f"clusterpaymentproviders.{GROUP}"
        for verb in ("get", "list", "watch", "patch"):
            assert operator.can(verb, payprov, team_ns), verb
            assert operator.can(verb, cluster_payprov, None), verb
        assert operator.can("patch", payprov, team_ns, "status")
        assert operator.can("patch", cluster_payprov, None, "status")
        assert operator.can("get", "namespaces", None, name=team_ns)
        for verb in ("create", "delete"):
            assert not operator.can(verb, payprov, team_ns), verb
            assert not operator.can(verb, cluster_payprov, None), verb
        if namespaced:
            # PaymentSessions only in the watched namespace.
            assert not operator.can("list", paysess, None)
            assert not operator.can("patch", paysess, other_ns)
            operator.forbidden("get", "paymentsessions", "-n", other_ns)
            operator.forbidden("patch", "paymentsession", "rbac-probe", "-n", other_ns,
                               "--subresource=status", "--type=merge", "-p", status)
            operator.forbidden("create", "-f", "-", input=event_for(other_ns, other_session))
        else:
            assert operator.can("list", paysess, None)
            operator.allowed("get", "paymentsessions", "-A")
        # Exact namespace names: kopf's scanning is off, so no cluster observation at all.
        crds = "customresourcedefinitions.apiextensions.k8s.io"
        for verb in ("list", "watch"):
            assert not operator.can(verb, crds, None), verb
            assert not operator.can(verb, "namespaces", None), verb
        operator.forbidden("get", "namespaces")
        for verb in ("create", "update", "patch", "delete"):
            assert not operator.can(verb, crds, None), verb
            assert not operator.can(verb, "namespaces", None), verb

        # The webhook: get PaymentSessions, patch their status, create Events (it records
        # each Stripe delivery it applies on the object: paykube_webhook.app); no more.
        assert webhook.can("get", paysess, team_ns)
        assert webhook.can("patch", paysess, team_ns, "status")
        assert webhook.can("create", "events", team_ns)
        assert not webhook.can("patch", "events", team_ns)
        webhook.allowed("get", "paymentsession", "rbac-probe", "-n", team_ns)
        webhook.allowed("patch", "paymentsession", "rbac-probe", "-n", team_ns,
                        "--subresource=status", "--type=merge", "-p", status)
        webhook.allowed("create", "-f", "-", input=event_for(team_ns, team_session))
        for verb in ("list", "watch", "patch", "update", "delete", "create"):
            assert not webhook.can(verb, paysess, team_ns), verb
        for verb in ("get", "list"):
            assert not webhook.can(verb, "secrets", team_ns), verb
            assert not webhook.can(verb, "secrets", release_ns), verb
        webhook.forbidden("get", "secrets", "-n", team_ns)
        webhook.forbidden("get", "secret", "stripe-default", "-n", release_ns)
        webhook.forbidden("get", "secret", "team-stripe", "-n", team_ns)
        # Signing secrets only: the one route-table Secret, by name; no provider objects.
        routes = next(d for d in docs if d["kind"] == "Role"
                      and d["metadata"]["name"].endswith("-routes"))["rules"][0]
        assert routes["verbs"] == ["get"] and len(routes["resourceNames"]) == 1
        assert webhook.can("get", "secrets", release_ns, name=routes["resourceNames"][0])
        for verb in ("get", "list"):
            assert not webhook.can(verb, f"paymentproviders.{GROUP}", team_ns), verb
            assert not webhook.can(verb, f"clusterpaymentproviders.{GROUP}", None), verb
        webhook.forbidden("get", "paymentsessions", "-n", team_ns)
        webhook.forbidden("delete", "paymentsession", "rbac-probe", "-n", team_ns)
        webhook.forbidden("patch", "paymentsession", "rbac-probe", "-n", team_ns,
                          "--type=merge", "-p", json.dumps({"spec": {"cancel": True}}))
        webhook.forbidden("get", "--raw", watch)
        if namespaced:
            assert not webhook.can("get", paysess, other_ns)
            webhook.forbidden("get", "paymentsession", "rbac-probe", "-n", other_ns)

        spec = json.loads(kube.kubectl("get", "paymentsession", "rbac-probe", "-n", team_ns,
                                       "-o", "json").stdout)["spec"]
        assert spec["cancel"] is False, "the webhook's spec patch must not have landed"

        dashboard = Identity(kube, release_ns, one(docs, "ServiceAccount", "dashboard")[
            "metadata"]["name"], tmp_path)
        check_refunds(operator, webhook, dashboard, team_ns, other_ns, namespaced)
    finally:
        delete_objects(kube, docs)
        for ns in (release_ns, team_ns, other_ns):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)




def refund_probe() -> str:
    """A PaymentRefund named rbac-probe for the session rbac-probe."""
    refund = yaml.safe_load(REFUND_EXAMPLE.read_text())
    refund["metadata"] = {"name": "rbac-probe"}
    refund["spec"]["sessionRef"]["name"] = "rbac-probe"
    return json.dumps(refund)


def check_refunds(operator: Identity, webhook: Identity, dashboard: Identity, team_ns: str,
                  other_ns: str, namespaced: bool) -> None:
    """PaymentRefunds: the operator follows them (watch, finalizer, status) and reserves
    their amounts on sessions' status; the webhook reads one and moves its status; only
    users create or delete them (a compromised program cannot originate a refund); the
    dashboard has no API rights at all."""
    payref = f"paymentrefunds.{GROUP}"
    refund_status = json.dumps({"status": RefundStatus(
        phase=RefundPhase.PENDING, amount=500, currency="usd").to_dict()})
    finalizer = json.dumps({"metadata": {"finalizers": ["payments.paykube.dev/refund"]}})
    no_finalizer = json.dumps({"metadata": {"finalizers": None}})
    watch = f"/apis/{GROUP}/v1alpha1/namespaces/{team_ns}/paymentrefunds?watch=1&timeoutSeconds=1"
    create = ("create", "--dry-run=server", "-n", team_ns, "-f", "-")

    # The operator.
    for verb in ("get", "list", "watch", "patch"):
        assert operator.can(verb, payref, team_ns), verb
    for verb in ("get", "patch"):
        assert operator.can(verb, payref, team_ns, "status"), verb
    for verb in ("create", "delete", "deletecollection", "update"):
        assert not operator.can(verb, payref, team_ns), verb
    assert not operator.can("update", payref, team_ns, "status")
    operator.allowed("get", "paymentrefunds", "-n", team_ns)
    operator.allowed("get", "--raw", watch)
    operator.allowed("get", "paymentrefunds", "-n", team_ns,
                     "--field-selector", "spec.sessionRef.name=rbac-probe")
    operator.allowed("patch", "paymentrefund", "rbac-probe", "-n", team_ns, "--type=merge",
                     "-p", finalizer)
    operator.allowed("patch", "paymentrefund", "rbac-probe", "-n", team_ns,
                     "--subresource=status", "--type=merge", "-p", refund_status)
    reservation = json.dumps({"status": {"refunds": [
        {"name": "rbac-probe", "uid": "rbac-probe-uid", "amount": 500, "phase": "Pending"}]}})
    operator.allowed("patch", "paymentsession", "rbac-probe", "-n", team_ns,
                     "--subresource=status", "--type=merge", "-p", reservation)
    operator.forbidden(*create, input=refund_probe())
    operator.forbidden("delete", "paymentrefund", "rbac-probe", "-n", team_ns)

    # The webhook: one refund by name and its status; it cannot drop the operator's
    # finalizer, change the spec, list, create or delete.
    assert webhook.can("get", payref, team_ns)
    assert webhook.can("patch", payref, team_ns, "status")
    for verb in ("list", "watch", "patch", "update", "delete", "deletecollection", "create"):
        assert not webhook.can(verb, payref, team_ns), verb
    assert not webhook.can("update", payref, team_ns, "status")
    webhook.allowed("get", "paymentrefund", "rbac-probe", "-n", team_ns)
    webhook.allowed("patch", "paymentrefund", "rbac-probe", "-n", team_ns,
                    "--subresource=status", "--type=merge", "-p", refund_status)
    webhook.forbidden("get", "paymentrefunds", "-n", team_ns)
    webhook.forbidden("get", "--raw", watch)
    webhook.forbidden(*create, input=refund_probe())
    webhook.forbidden("delete", "paymentrefund", "rbac-probe", "-n", team_ns)
    webhook.forbidden("patch", "paymentrefund", "rbac-probe", "-n", team_ns, "--type=merge",
                      "-p", no_finalizer)
    webhook.forbidden("patch", "paymentrefund", "rbac-probe", "-n", team_ns, "--type=merge",
                      "-p", json.dumps({"spec": {"amount": 1}}))
    got = json.loads(operator.run("get", "paymentrefund", "rbac-probe", "-n", team_ns,
                                  "-o", "json").stdout)
    assert got["metadata"]["finalizers"] == ["payments.paykube.dev/refund"]
    assert got["spec"]["amount"] == 500
    operator.allowed("patch", "paymentrefund", "rbac-probe", "-n", team_ns, "--type=merge",
                     "-p", no_finalizer)

    if namespaced:
        assert not operator.can("list", payref, None)
        for who in (operator, webhook):
            assert not who.can("get", payref, other_ns)
            who.forbidden("get", "paymentrefund", "rbac-probe", "-n", other_ns)
            who.forbidden("patch", "paymentrefund", "rbac-probe", "-n", other_ns,
                          "--subresource=status", "--type=merge", "-p", refund_status)
    else:
        assert operator.can("list", payref, None)
        operator.allowed("get", "paymentrefunds", "-A")

    # The dashboard: nothing.
    for ns in (team_ns, other_ns):
        for resource in (payref, f"paymentsessions.{GROUP}", "secrets"):
            for verb in ("get", "list", "watch", "create", "patch", "delete"):
                assert not dashboard.can(verb, resource, ns), (verb, resource)
    dashboard.forbidden("get", "paymentrefunds", "-n", team_ns)
    dashboard.forbidden("get", "paymentrefund", "rbac-probe", "-n", team_ns)
