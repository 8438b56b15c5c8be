"""The chart's optional dashboard (templates/dashboard.yaml), rendered by the real helm: off
by default; when on, a restricted pod with probes, Basic-auth and database secrets as
mounted files, no API access, a Service, a NetworkPolicy, an optional Ingress; every
PAYKUBE_DASHBOARD_* setting comes from exactly one value; the API server accepts it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube_dev.kube import ControlPlane
from tests.plugins.chart_fixtures import (
    CHART,
    REPO,
    Manifest,
    as_yaml,
    helm,
    mounted_secret_key,
    one,
    render,
    values_args,
)

pytestmark = pytest.mark.integration

ON = ["dashboard.enabled=true", "secrets.existingSecret=paykube-secrets",
      "dashboard.keys.username=dash-user", "dashboard.keys.password=dash-password",
      "dashboard.keys.databaseUrl=dash-db-url"]


def _pod(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", "dashboard")["spec"]["template"]["spec"]
    return spec


def _env(docs: list[Manifest]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _pod(docs)["containers"][0]["env"]}


def test_off_by_default() -> None:
    docs = render("pk", "paykube")
    assert not [d for d in docs
                if d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                == "dashboard"]


def test_enabled_renders_a_restricted_read_only_pod() -> None:
    docs = render("pk", "paykube", sets=ON)
    pod = _pod(docs)
    container = pod["containers"][0]
    assert container["command"] == ["paykube-dashboard"]
    assert pod["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", "dashboard")["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Credentials are files of the Secret (re-read: rotation without restart), never env.
    env = _env(docs)
    for name, key in (("PAYKUBE_DASHBOARD_USERNAME_FILE", "dash-user"),
                      ("PAYKUBE_DASHBOARD_PASSWORD_FILE", "dash-password"),
                      ("PAYKUBE_DATABASE_URL_FILE", "dash-db-url")):
        assert mounted_secret_key(pod, container, env[name]) == ("paykube-secrets", key)
    assert not any("secretKeyRef" in str(e) for e in container["env"])
    # No role is bound to the dashboard's ServiceAccount: it reads the mirror only.
    account = one(docs, "ServiceAccount", "dashboard")["metadata"]["name"]
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert account not in [s.get("name") for s in binding.get("subjects", [])]
    service = one(docs, "Service", "dashboard")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    policy = one(docs, "NetworkPolicy", "dashboard")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert not [d for d in docs if d["kind"] == "Ingress"]


def test_ingress_and_network_policy_peers() -> None:
    docs = render("pk", "paykube", sets=[
        *ON, "dashboard.ingress.enabled=true", "dashboard.ingress.host=pay.example.com",
        "dashboard.ingress.className=nginx",
        "dashboard.from[0].namespaceSelector.matchLabels.team=ops"])
    ingress = one(docs, "Ingress", "dashboard")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "pay.example.com"
    assert rule["http"]["paths"][0]["path"] == "/"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == \
        one(docs, "Service", "dashboard")["metadata"]["name"]
    assert one(docs, "NetworkPolicy", "dashboard")["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "ops"}}}]


def test_the_rds_secret_instead_of_a_url() -> None:
    docs = render("pk", "paykube", sets=[
        "dashboard.enabled=true", "secrets.existingSecret=s", "dashboard.keys.username=u",
        "dashboard.keys.password=p", "dashboard.database.awsSecretId=rds/dashboard-ro",
        "dashboard.database.host=db.example", "secrets.aws.region=eu-west-1",
        "dashboard.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:x"])
    env = _env(docs)
    assert (env["PAYKUBE_SECRETS_SOURCE"], env["PAYKUBE_AWS_DATABASE_SECRET_ID"],
            env["PAYKUBE_DATABASE_HOST"], env["PAYKUBE_AWS_REGION"]) == (
        "aws", "rds/dashboard-ro", "db.example", "eu-west-1")
    assert "PAYKUBE_DATABASE_URL_FILE" not in env
    assert one(docs, "ServiceAccount", "dashboard")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:x"}


@pytest.mark.parametrize(("sets", "message"), [
    (["dashboard.enabled=true"], "needs dashboard.keys.databaseUrl or"),
    (["dashboard.enabled=true", "dashboard.keys.databaseUrl=u"],
     "need dashboard.existingSecret or secrets.existingSecret"),
    ([*ON, "dashboard.ingress.enabled=true"], "at '/dashboard/ingress/host'"),
    ([*ON, "dashboard.pageSize=0"], "at '/dashboard/pageSize'"),
    ([*ON, "dashboard.colour=blue"], "additional properties 'colour' not allowed"),
])
def test_bad_values_fail_clearly(sets: list[str], message: str) -> None:
    result = helm("template", "pk", str(CHART), *values_args(None, sets), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_every_dashboard_setting_comes_from_one_value(tmp_path: Path) -> None:
    source = (REPO / "dashboard" / "paykube_dashboard" / "settings.py").read_text()
    read = set(re.findall(r'get\("([A-Z_]+)"', source))
    # The env forms of the credentials are for running outside a pod; HOST is fixed.
    expected = read - {"USERNAME", "PASSWORD", "HOST", "FAILED_LOGIN_DELAY",
                       "FAILED_LOGIN_MAX_DELAY"}
    sentinels = {"PORT": ("port", 8099), "PROCESSING_THRESHOLD": ("processingThreshold", 1801),
                 "REFRESH": ("refresh", 17), "PAGE_SIZE": ("pageSize", 33),
                 "CACHE_SECONDS": ("cacheSeconds", 61),
                 "USERNAME_FILE": ("keys.username", "k-user"),
                 "PASSWORD_FILE": ("keys.password", "k-pass")}
    assert expected == sentinels.keys()
    values: dict[str, Any] = {"enabled": True, "keys": {"databaseUrl": "k-db"}}
    for path, value in sentinels.values():
        node = values
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump({"dashboard": values, "secrets": {"existingSecret": "s"}}))
    docs = render("pk", "paykube", file)
    env = _env(docs)
    pod = _pod(docs)
    for name, (path, value) in sentinels.items():
        got = env[f"PAYKUBE_DASHBOARD_{name}"]
        if path.startswith("keys."):
            assert mounted_secret_key(pod, pod["containers"][0], got) == ("s", value)
        else:
            assert got == str(value), name
    assert pod["containers"][0]["ports"][0]["containerPort"] == 8099


def test_helm_lint_and_the_api_server_accept_it(kube: ControlPlane,
                                                unmanaged_namespace: str) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(None, [
        *ON, "dashboard.ingress.enabled=true", "dashboard.ingress.host=pay.example.com"]))
    assert "0 chart(s) failed" in result.stdout, result.stdout
    docs = [d for d in render("pk", unmanaged_namespace, sets=[
        *ON, "dashboard.ingress.enabled=true", "dashboard.ingress.host=pay.example.com"])
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dashboard"]
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "ServiceAccount",
                                         "NetworkPolicy", "Ingress"}
    applied = kube.kubectl("apply", "--dry-run=server", "-n", unmanaged_namespace, "-f", "-",
                           input=as_yaml(docs), check=False)
    assert applied.returncode == 0, applied.stderr
