"""The Helm chart (charts/paykube) with the real helm binary against the real local API server.

- The chart's CRDs are byte-identical to crds/ (the single source; hack/sync-crds.sh).
- `helm lint --strict` and `helm template` pass for the default values and every value set
  in charts/paykube/ci/; bad values fail at install time with the schema's message.
- Every rendered object passes `kubectl apply --dry-run=server` (the API server's own
  OpenAPI validation, strict about unknown fields) and is then applied with
  `kubectl apply --server-side`; the chart's CRD accepts crds/examples/ and refuses
  crds/examples/invalid/. A Pod from each Deployment's template passes the API server's
  PodSecurity admission in a namespace enforcing `restricted` (a privileged variant fails).
- RBAC is proven, not read: the rendered Roles are applied and each ServiceAccount is
  checked by impersonation (`kubectl auth can-i --as=...`) and by real calls with its own
  token, for allowed and denied operations, in cluster-wide and namespaced mode.
- The chart's configuration runs: the operator's and the webhook's command and env are
  taken from the rendered Deployments and run as processes with the chart's ServiceAccount
  tokens (so the rendered RBAC is what the API server enforces), against a separate Stripe
  emulator, and a payment goes Open -> Paid through a signed webhook delivery.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube_dev.kube import ControlPlane, pinned_versions
from paykube_dev.proc import CACHE_DIR, free_port, start_process, stop_process, wait_until
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

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


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm is missing at {HELM}: run hack/build-k8s.sh tools (hack/setup.sh)")
    # Helm's own state stays in the cache, never in the user's ~/.config or ~/.cache.
    env = {**os.environ, "HELM_CACHE_HOME": str(CACHE_DIR / "helm" / "cache"),
           "HELM_CONFIG_HOME": str(CACHE_DIR / "helm" / "config"),
           "HELM_DATA_HOME": str(CACHE_DIR / "helm" / "data")}
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120,
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


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"expected a refusal, got success:\n{output}"
    for fragment in fragments:
        assert fragment in output, f"expected {fragment!r} in:\n{output}"


@pytest.fixture(scope="session")
def chart_crd(kube: ControlPlane, crd_installed: Path) -> Path:
    """The chart's own copy of the CRD, applied (it is identical to crds/, so this changes
    nothing in the shared cluster, but the objects below are validated by *this* file)."""
    path = CHART / "crds" / crd_installed.name
    kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart", "-f", str(path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 f"crd/paymentsessions.{GROUP}")
    return path


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


def test_chart_crds_are_identical_to_the_crd_source() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "crds/ has no CRD"
    assert chart.keys() == source.keys(), "run hack/sync-crds.sh"
    for name, text in source.items():
        assert chart[name] == text, f"charts/paykube/crds/{name} is stale: run hack/sync-crds.sh"


def test_chart_crd_accepts_the_examples_and_refuses_the_invalid_ones(
        kube: ControlPlane, chart_crd: Path, unmanaged_namespace: str) -> None:
    valid = sorted(EXAMPLES.glob("*.yaml"))
    invalid = sorted((EXAMPLES / "invalid").glob("*.yaml"))
    assert valid and invalid
    for path in valid:
        result = kube.kubectl("apply", "--server-side", "--field-manager=chart-test", "-n",
                              unmanaged_namespace, "-f", str(path), check=False)
        assert result.returncode == 0, f"{path.name} refused:\n{result.stderr}"
    for path in invalid:
        expect = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
        result = kube.kubectl("apply", "--dry-run=server", "-n", unmanaged_namespace, "-f",
                              str(path), check=False)
        refused(result, expect)


# -- lint, template, schema -------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_helm_lint_strict(values: Path | None) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def container_env(docs: Sequence[Manifest], component: str) -> dict[str, Any]:
    env = one(docs, "Deployment", component)["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def check_namespaced_rbac(docs: Sequence[Manifest]) -> None:
    roles = sorted((d["metadata"]["namespace"], d["metadata"]["labels"][
        "app.kubernetes.io/component"]) for d in docs if d["kind"] == "Role"
        and not d["metadata"]["name"].endswith("-credentials"))
    assert roles == [("payments-a", "operator"), ("payments-a", "webhook"),
                     ("payments-b", "operator"), ("payments-b", "webhook")]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    credentials = [d for d in docs if d["kind"] == "Role"
                   and d["metadata"]["name"].endswith("-credentials")]
    assert [c["rules"][0]["resourceNames"] for c in credentials] == [["stripe-default"]]
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert one(docs, "Deployment", "webhook")["spec"]["replicas"] == 2


def check_aws_irsa(docs: Sequence[Manifest]) -> None:
    for component in ("operator", "webhook"):
        annotations = one(docs, "ServiceAccount", component)["metadata"].get("annotations", {})
        assert annotations.get("eks.amazonaws.com/role-arn", "").endswith(
            f"role/paykube-{component}")
        env = container_env(docs, component)
        assert env["PAYKUBE_SECRETS_SOURCE"] == "aws"
        assert env["PAYKUBE_AWS_STRIPE_SECRET_ID"] == "paykube/stripe"
        assert env["PAYKUBE_BROKER_TLS"] == "true"
        image = one(docs, "Deployment", component)["spec"]["template"]["spec"][
            "containers"][0]["image"]
        assert image.startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/paykube:")
    assert container_env(docs, "operator")["PAYKUBE_AWS_DATABASE_SECRET_ID"].startswith(
        "arn:aws:secretsmanager:")
    assert "PAYKUBE_AWS_DATABASE_SECRET_ID" not in container_env(docs, "webhook")


def check_ingress_servicemonitor(docs: Sequence[Manifest]) -> None:
    ingress = one(docs, "Ingress", "webhook")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "payments.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == ["/webhooks/stripe"]
    assert ingress["spec"]["tls"][0]["secretName"] == "paykube-webhook-tls"
    for component in ("operator", "webhook"):
        monitor = one(docs, "ServiceMonitor", component)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert one(docs, "NetworkPolicy", component)["spec"]["policyTypes"] == [
            "Ingress", "Egress"]
    assert "basicAuth" in one(docs, "ServiceMonitor", "webhook")["spec"]["endpoints"][0]
    # namespace globs: kopf's scanning rules, and Secrets readable cluster-wide
    rules = one(docs, "ClusterRole", "operator")["rules"]
    assert NAMESPACES_RULE in rules and CRDS_RULE in rules and SECRETS_RULE in rules
    assert one(docs, "HorizontalPodAutoscaler", "webhook")["spec"]["minReplicas"] == 3


CI_CHECKS: dict[str, Callable[[Sequence[Manifest]], None]] = {
    "namespaced-rbac-values": check_namespaced_rbac,
    "aws-irsa-values": check_aws_irsa,
    "ingress-servicemonitor-values": check_ingress_servicemonitor,
}


def test_ci_value_sets_cover_the_options() -> None:
    """Each value set in ci/ renders what it is there to show (and the default renders none
    of those), so a value set that silently stopped mattering fails."""
    assert {p.stem for p in CI_VALUES} == CI_CHECKS.keys(), "a ci/ value set without a check"
    default = render("pk", "paykube")
    for path in CI_VALUES:
        CI_CHECKS[path.stem](render("pk", "paykube", path))
        with pytest.raises((AssertionError, KeyError)):
            CI_CHECKS[path.stem](default)


def test_default_rendering_has_the_expected_shape() -> None:
    docs = render("pk", "paykube")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([
        "ServiceAccount", "ServiceAccount", "ClusterRole", "ClusterRole",
        "ClusterRoleBinding", "ClusterRoleBinding", "Deployment", "Deployment",
        "Service", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "NetworkPolicy",
    ]), "no Ingress or ServiceMonitor unless enabled"
    operator = one(docs, "Deployment", "operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    webhook = one(docs, "Deployment", "webhook")
    assert "replicas" not in webhook["spec"], "the HPA owns the replica count"
    for deployment, command in ((operator, ["paykube-operator"]),
                                (webhook, ["paykube-webhook"])):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == command
        assert container["image"] == "paykube:0.1.0", "one image for both"
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
    assert webhook["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
        "httpGet"]["path"] == "/readyz"


# Every value behind a PAYKUBE_* setting with a sentinel unlike every other value (and the
# default), and what the variable must then carry: a value or a key of secrets.existingSecret.
SENTINEL_SECRET = "sentinel-secret"
SETTING_SENTINELS: dict[str, tuple[str, Any, str]] = {
    "LOG_LEVEL": ("logLevel", "ERROR", "ERROR"),
    "SECRETS_SOURCE": ("secrets.source", "aws", "aws"),
    "SECRETS_TTL": ("secrets.ttl", 301, "301"),
    "AWS_REGION": ("secrets.aws.region", "ap-sentinel-7", "ap-sentinel-7"),
    "AWS_ENDPOINT_URL": ("secrets.aws.endpointUrl", "http://aws.sentinel:4566",
                         "http://aws.sentinel:4566"),
    "AWS_STRIPE_SECRET_ID": ("secrets.aws.stripeSecretId", "sentinel/stripe",
                             "sentinel/stripe"),
    "AWS_DATABASE_SECRET_ID": ("secrets.aws.databaseSecretId", "sentinel/rds", "sentinel/rds"),
    "BROKER_URLS": ("broker.urls", ["mq-s1:61613", "mq-s2:61614"], "mq-s1:61613,mq-s2:61614"),
    "BROKER_DESTINATION": ("broker.destination", "/topic/sentinel", "/topic/sentinel"),
    "BROKER_USERNAME": ("broker.username", "sentinel-user", "sentinel-user"),
    "BROKER_TLS": ("broker.tls", True, "true"),
    "NAMESPACES": ("operator.namespaces", ["sentinel-a", "sentinel-b"], "sentinel-a,sentinel-b"),
    "STRIPE_API_BASE": ("operator.stripeApiBase", "https://stripe.sentinel",
                        "https://stripe.sentinel"),
    "STRIPE_CREDENTIALS_SECRET": ("operator.credentialsSecret", "sentinel-ns/sentinel-cred",
                                  "sentinel-ns/sentinel-cred"),
    "STRIPE_RATE_LIMIT": ("operator.rateLimit", 17, "17"),
    "STRIPE_TIMEOUT": ("operator.stripeTimeout", 19, "19"),
    "POLL_MIN_INTERVAL": ("operator.pollMinInterval", 11, "11"),
    "POLL_MAX_INTERVAL": ("operator.pollMaxInterval", 297, "297"),
    "OUTBOX_INTERVAL": ("operator.outboxInterval", 13, "13"),
    "OPERATOR_HOST": ("operator.host", "127.0.0.8", "127.0.0.8"),
    "HEALTH_PORT": ("operator.healthPort", 8181, "8181"),
    "METRICS_PORT": ("operator.metricsPort", 9191, "9191"),
    "DATABASE_HOST": ("operator.database.host", "db.sentinel", "db.sentinel"),
    "DATABASE_PORT": ("operator.database.port", 3307, "3307"),
    "DATABASE_NAME": ("operator.database.name", "sentineldb", "sentineldb"),
    "EXPLAIN_BASE_URL": ("operator.explain.baseUrl", "https://llm.sentinel/v1",
                         "https://llm.sentinel/v1"),
    "EXPLAIN_MODEL": ("operator.explain.model", "sentinel-model", "sentinel-model"),
    "EXPLAIN_TIMEOUT": ("operator.explain.timeout", 4, "4"),
    "EXPLAIN_RETRY": ("operator.explain.retry", 61, "61"),
    "WEBHOOK_HOST": ("webhook.host", "127.0.0.9", "127.0.0.9"),
    "WEBHOOK_PORT": ("webhook.port", 8444, "8444"),
    "WEBHOOK_TOLERANCE": ("webhook.tolerance", 298, "298"),
    "WEBHOOK_MAX_BODY": ("webhook.maxBody", 123457, "123457"),
    **{name: (f"secrets.keys.{key}", f"key-{key}", f"key-{key}") for name, key in (
        ("STRIPE_API_KEY_FILE", "stripeApiKey"), ("WEBHOOK_SECRETS_FILE", "webhookSecrets"),
        ("DATABASE_URL_FILE", "databaseUrl"), ("BROKER_PASSWORD", "brokerPassword"),
        ("METRICS_USERNAME", "metricsUsername"), ("METRICS_PASSWORD", "metricsPassword"),
        ("EXPLAIN_API_KEY", "explainApiKey"))},
}
# Settings with no chart value: the chart mounts these secrets as files (the *_FILE
# settings, re-read: rotation without restart); the env forms are for running outside a pod.
SETTINGS_WITHOUT_VALUE = {"WEBHOOK_SECRETS", "STRIPE_API_KEY", "DATABASE_URL"}
# Read only by the operator (never rendered into the webhook, which has no use for them).
OPERATOR_ONLY = {"AWS_DATABASE_SECRET_ID", "DATABASE_URL_FILE", "DATABASE_HOST",
                 "DATABASE_PORT", "DATABASE_NAME", "STRIPE_API_KEY_FILE",
                 "STRIPE_CREDENTIALS_SECRET", "NAMESPACES",
                 "EXPLAIN_API_KEY", "OPERATOR_HOST"}


INGRESS_NGINX = {"namespaceSelector": {"matchLabels": {
    "kubernetes.io/metadata.name": "ingress-nginx"}}}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


@pytest.mark.parametrize(("webhook_from", "metrics_from"), [
    ([], []), ([INGRESS_NGINX], []), ([], [MONITORING]), ([INGRESS_NGINX], [MONITORING])],
    ids=["open", "webhook-only", "metrics-only", "both"])
def test_network_policies_follow_the_peer_lists(
        tmp_path: Path, webhook_from: list[Manifest], metrics_from: list[Manifest]) -> None:
    """[] means anyone; the webhook's /metrics shares the webhook port, so metricsFrom adds
    peers to it only when webhookFrom restricts it, and never opens it to anyone."""
    values_file = tmp_path / "np.yaml"
    values_file.write_text(yaml.safe_dump({"networkPolicy": {
        "webhookFrom": webhook_from, "metricsFrom": metrics_from}}))
    docs = render("pk", "paykube", values_file)

    def peers(rules: list[Manifest]) -> list[list[Manifest] | None]:
        return [rule.get("from") for rule in rules]

    webhook_rules = one(docs, "NetworkPolicy", "webhook")["spec"]["ingress"]
    assert all(rule["ports"] == [{"port": "http", "protocol": "TCP"}] for rule in webhook_rules)
    if webhook_from:
        assert peers(webhook_rules) == [webhook_from, *([metrics_from] if metrics_from else [])]
    else:
        assert peers(webhook_rules) == [None], "webhookFrom [] = anyone on the webhook port"
    operator_rules = one(docs, "NetworkPolicy", "operator")["spec"]["ingress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in operator_rules] == [
        ["health", "metrics"]]
    assert peers(operator_rules) == [metrics_from or None], "metricsFrom [] = anyone"


def test_settings_map_to_values_one_to_one(tmp_path: Path) -> None:
    """Every PAYKUBE_* variable that paykube.settings reads comes from exactly one value:
    each value gets its own sentinel, and each rendered variable must carry its value's."""
    settings_source = (REPO / "operator" / "paykube" / "settings.py").read_text()
    read = set(re.findall(r'get\("([A-Z_]+)"', settings_source))
    assert read, "settings.py reads no PAYKUBE_ variables?"
    assert read >= SETTINGS_WITHOUT_VALUE, "stale SETTINGS_WITHOUT_VALUE"
    assert read - SETTINGS_WITHOUT_VALUE == SETTING_SENTINELS.keys()
    sentinels = [json.dumps(v) for _, v, _ in SETTING_SENTINELS.values()]
    assert len(set(sentinels)) == len(sentinels), "sentinels must differ"
    values: Manifest = {"secrets": {"existingSecret": SENTINEL_SECRET}}
    for path, value, _ in SETTING_SENTINELS.values():
        *parents, leaf = path.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    values_file = tmp_path / "sentinels.yaml"
    values_file.write_text(yaml.safe_dump(values))
    docs = render("pk", "paykube", values_file)
    seen: set[str] = set()
    for component in ("operator", "webhook"):
        env = one(docs, "Deployment", component)["spec"]["template"]["spec"][
            "containers"][0]["env"]
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), f"{component}: duplicate env {names}"
        for item in env:
            name = item["name"].removeprefix("PAYKUBE_")
            assert name in SETTING_SENTINELS, f"{component}: value for unknown setting {name}"
            path, _, expected = SETTING_SENTINELS[name]
            if path.startswith("secrets.keys.") and "value" in item:  # a mounted file
                pod = one(docs, "Deployment", component)["spec"]["template"]["spec"]
                source = mounted_secret_key(pod, pod["containers"][0], item["value"])
                assert source == (SENTINEL_SECRET, expected), f"{component} {name}: {source}"
            elif path.startswith("secrets.keys."):
                ref = item["valueFrom"]["secretKeyRef"]
                got = (ref["name"], ref["key"])
                assert got == (SENTINEL_SECRET, expected), f"{component} {name}: {got}"
            else:
                assert item["value"] == expected, f"{component} {name} from {path}: {item}"
            if component == "webhook":
                assert name not in OPERATOR_ONLY, f"the webhook gets operator-only {name}"
            seen.add(name)
    assert seen == SETTING_SENTINELS.keys(), f"not rendered: {SETTING_SENTINELS.keys() - seen}"


BAD_VALUES: list[tuple[list[str], str]] = [
    (["webhook.replicas=two"], "at '/webhook/replicas': got string, want integer"),
    (["unknownKey=1"], "additional properties 'unknownKey' not allowed"),
    (["operator.replicas=2"], "at '/operator': additional properties 'replicas' not allowed"),
    (["operator.rateLimit=-5"], "at '/operator/rateLimit'"),
    (["operator.rateLimit=500"], "at '/operator/rateLimit'"),
    (["secrets.source=vault"], "at '/secrets/source': value must be one of 'kubernetes', 'aws'"),
    (["logLevel=verbose"], "at '/logLevel': value must be one of"),
    (["webhook.port=70000"], "at '/webhook/port'"),
    (["image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    (["secrets.source=aws"], "at '/secrets/aws'"),
    (["webhook.ingress.enabled=true"], "at '/webhook/ingress/host'"),
    (["operator.credentialsSecret=Not_A_Name"], "at '/operator/credentialsSecret'"),
    (["rbac.namespaced=true"], "rbac.namespaced=true needs the namespaces to grant access in"),
    (["rbac.namespaced=true", "operator.namespaces={team-*}"],
     'cannot grant Roles in the namespace pattern "team-*"'),
    (["metrics.serviceMonitor.enabled=true"],
     "metrics.serviceMonitor.enabled needs secrets.existingSecret"),
    (["secrets.keys.webhookSecrets=k"],
     "secrets.existingSecret is required when secrets.keys.webhookSecrets is set"),
    # The restricted Pod Security Standard cannot be switched off through the values.
    (["securityContext.runAsNonRoot=false"], "at '/securityContext/runAsNonRoot'"),
    (["securityContext.readOnlyRootFilesystem=false"],
     "at '/securityContext/readOnlyRootFilesystem': value must be true"),
    (["securityContext.allowPrivilegeEscalation=true"],
     "at '/securityContext/allowPrivilegeEscalation': value must be false"),
    (["securityContext.privileged=true"], "at '/securityContext/privileged'"),
    (["securityContext.capabilities.drop={NET_RAW}"], "at '/securityContext/capabilities/drop'"),
    (["securityContext.capabilities.add={SYS_ADMIN}"],
     "at '/securityContext/capabilities/add/0'"),
    (["securityContext.seccompProfile.type=Unconfined"],
     "at '/securityContext/seccompProfile/type'"),
    (["securityContext=null"], "missing property 'securityContext'"),
    (["podSecurityContext=null"], "missing property 'podSecurityContext'"),
    (["podSecurityContext.runAsNonRoot=false"], "at '/podSecurityContext/runAsNonRoot'"),
    (["podSecurityContext.runAsUser=0"], "at '/podSecurityContext/runAsUser'"),
    (["securityContext.runAsUser=0"], "at '/securityContext/runAsUser'"),
    (["operator.namespaces={Team_A}"], "at '/operator/namespaces/0'"),
    (["operator.namespaces={shop.example}"], "at '/operator/namespaces/0'"),
    (["operator.pollMinInterval=400"],
     "operator.pollMinInterval (400) must not exceed operator.pollMaxInterval (300)"),
    (["webhook.resources.requests.cpu=null"],
     "webhook.autoscaling.enabled scales on CPU utilization, a percentage of "
     "webhook.resources.requests.cpu"),
]


@pytest.mark.parametrize(("sets", "message"), BAD_VALUES,
                         ids=[" ".join(s) for s, _ in BAD_VALUES])
def test_bad_values_fail_with_a_clear_message(sets: list[str], message: str) -> None:
    # `helm template` validates exactly as `helm install` does (schema, then templates).
    refused(helm("template", "pk", str(CHART), *values_args(None, sets), check=False), message)
    if message.startswith("at '") or message.startswith("missing property"):
        # Schema errors fail `helm lint` too (a template's `fail` is only INFO there).
        refused(helm("lint", "--strict", str(CHART), *values_args(None, sets), check=False),
                message)


# -- rendered objects on the real API server ----------------------------------------------


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
    for event in ("checkout.session.completed", "checkout.session.expired",
                  "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed"):
        assert event in notes
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
    assert [c["metadata"]["name"] for c in crds] == [f"paymentsessions.{GROUP}"]
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


def make_namespace(kube: ControlPlane, prefix: str = "solo") -> str:
    """A `solo-*` namespace: out of reach of the shared test operator (`t-*`)."""
    name = unique(f"{prefix}-rbac")
    kube.kubectl("create", "namespace", name)
    return name


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


def create_secret(kube: ControlPlane, namespace: str, name: str, data: dict[str, str]) -> None:
    kube.kubectl("create", "secret", "generic", name, "-n", namespace,
                 *[f"--from-literal={k}={v}" for k, v in data.items()])


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-rbac", "namespaced-rbac"])
def test_rbac_allows_what_each_program_needs_and_nothing_more(
        kube: ControlPlane, chart_crd: Path, tmp_path: Path, namespaced: bool) -> None:
    release_ns, team_ns, other_ns = (make_namespace(kube) for _ in range(3))
    release = unique("rbac")
    sets = [f"operator.namespaces={{{team_ns}}}", "operator.credentialsSecret=stripe-default"]
    if namespaced:
        sets.append("rbac.namespaced=true")
    docs = [d for d in render(release, release_ns, sets=sets) if d["kind"] in RBAC_KINDS]
    kinds = {d["kind"] for d in docs}
    # Exact namespace names: no ClusterRole at all when namespaced (kopf's scanning is off,
    # so nothing cluster-level is needed); Secrets through Roles in either mode.
    assert kinds == ({"ServiceAccount", "Role", "RoleBinding"} if namespaced
                     else {"ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                           "ClusterRoleBinding"})
    try:
        kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart-test", "-f", "-",
                     input=as_yaml(docs))
        for ns, secret in ((release_ns, "stripe-default"), (release_ns, "unrelated"),
                           (team_ns, "team-stripe"), (other_ns, "other-stripe")):
            create_secret(kube, ns, secret, {"apiKey": "sk_test_rbac"})
        team_session = create_session(kube, team_ns, "rbac-probe")
        other_session = create_session(kube, other_ns, "rbac-probe")
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
        # Secrets: only in the watched namespace, and only the default credentials Secret
        # elsewhere, in both modes (the namespaces are exact names).
        assert not operator.can("get", "secrets", other_ns, name="other-stripe")
        assert not operator.can("get", "secrets", release_ns, name="unrelated")
        assert not operator.can("get", "secrets", "kube-system")
        operator.forbidden("get", "secret", "other-stripe", "-n", other_ns)
        operator.forbidden("get", "secret", "unrelated", "-n", release_ns)
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
    finally:
        delete_objects(kube, docs)
        for ns in (release_ns, team_ns, other_ns):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def operator_rules(docs: Sequence[Manifest]) -> dict[tuple[str, str, str | None], list[Any]]:
    """The operator's rules by (kind, name, namespace) of their Role or ClusterRole."""
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d["rules"]
            for d in docs if d["kind"] in ("Role", "ClusterRole")
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"}


CRDS_RULE = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "verbs": ["list", "watch"]}
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
SECRETS_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}


@pytest.mark.parametrize(("sets", "observes"), [
    ([], False),
    (["operator.namespaces={shop,billing}"], False),
    (["operator.namespaces={shop,billing}", "rbac.namespaced=true"], False),
    (["operator.namespaces={shop-*,billing}"], True),
    (["operator.namespaces={!kube-*}"], True),
    (["operator.namespaces={shop-?}", "rbac.namespaced=true", "rbac.namespaces={shop-a}"],
     True),
], ids=["cluster-wide", "exact", "exact-namespaced", "glob", "negation", "glob-namespaced"])
def test_kopf_observation_only_for_namespace_globs(sets: list[str], observes: bool) -> None:
    """The operator turns kopf's cluster scanning on only for namespace globs (it then lists
    and watches namespaces and CRDs): read-only rules then, and none otherwise."""
    rules = operator_rules(render("pk", "paykube", sets=sets))
    cluster = [r for (kind, _, _), rs in rules.items() if kind == "ClusterRole" for r in rs]
    assert (CRDS_RULE in cluster) is observes
    assert (NAMESPACES_RULE in cluster) is observes
    everywhere = [r for rs in rules.values() for r in rs]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in everywhere)
    observing = [r for r in everywhere if {"namespaces", "customresourcedefinitions"}
                 & set(r["resources"])]
    assert all(r["verbs"] == ["list", "watch"] for r in observing)
    if "rbac.namespaced=true" in sets:
        # Namespaced mode has a ClusterRole only for the scanning.
        assert [rs for (kind, _, _), rs in rules.items() if kind == "ClusterRole"] == (
            [[CRDS_RULE, NAMESPACES_RULE]] if observes else [])


@pytest.mark.parametrize(("sets", "cluster_wide", "role_namespaces"), [
    ([], True, []),
    (["operator.namespaces={shop-*}"], True, []),
    (["operator.namespaces={shop,billing}"], False, ["billing", "shop"]),
    (["operator.namespaces={shop,billing}", "rbac.namespaced=true"], False,
     ["billing", "shop"]),
    (["rbac.credentialsRefSecrets=false"], False, []),
    (["operator.namespaces={shop}", "rbac.credentialsRefSecrets=false"], False, []),
], ids=["cluster-wide", "glob", "exact", "exact-namespaced", "off", "exact-off"])
def test_secret_reads_follow_the_watched_namespaces(
        sets: list[str], cluster_wide: bool, role_namespaces: list[str]) -> None:
    """spec.credentialsRef Secrets: a cluster-wide get only when the operator watches the
    whole cluster or globs (and credentialsRefSecrets is on); Roles in the watched
    namespaces when they are exact names; never list or watch."""
    rules = operator_rules(render("pk", "paykube", sets=sets))
    cluster = [r for (kind, _, _), rs in rules.items() if kind == "ClusterRole" for r in rs]
    assert (SECRETS_RULE in cluster) is cluster_wide
    in_roles = sorted(str(ns) for (kind, _, ns), rs in rules.items()
                      if kind == "Role" and SECRETS_RULE in rs)
    assert in_roles == role_namespaces
    secrets = [r for rs in rules.values() for r in rs if "secrets" in r["resources"]]
    assert all(r["verbs"] == ["get"] for r in secrets)


def test_secret_reads_can_be_limited_to_the_default_credentials() -> None:
    docs = render("pk", "paykube", sets=["rbac.credentialsRefSecrets=false",
                                         "operator.credentialsSecret=stripe"])
    cluster_rules = one(docs, "ClusterRole", "operator")["rules"]
    assert not any("secrets" in rule["resources"] for rule in cluster_rules)
    role = one(docs, "Role", "operator")
    assert role["metadata"]["namespace"] == "paykube"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": ["stripe"], "verbs": ["get"]}]


# -- the chart's configuration runs ---------------------------------------------------------


API_KEY = "sk_test_paykube_chart"
WEBHOOK_SECRET = "whsec_paykube_chart_test"
METRICS_USER, METRICS_PASSWORD = "prometheus", "chart-metrics-password"


def console_scripts() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project["scripts"]
    return scripts


def local_argv(container: Manifest) -> list[str]:
    """The container's command + args, runnable here.

    In the image, `paykube-operator` and `paykube-webhook` are the console scripts that
    pyproject.toml's [project.scripts] declares (pip writes them into the venv's bin/).
    This repository's checkout may not be pip-installed (and the shared venv may point at
    another checkout), so run exactly what such a console script runs: import the entry
    point `module:function` from this checkout and exit with its return value.
    """
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv, "the container must name its command (one image, two commands)"
    scripts = console_scripts()
    assert argv[0] in scripts, f"{argv[0]} is not a console script of pyproject.toml"
    module, _, function = scripts[argv[0]].partition(":")
    code = f"import sys; from {module} import {function} as main; sys.exit(main())"
    return [sys.executable, "-c", code, *argv[1:]]


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


def resolve_env(kube: ControlPlane, namespace: str, pod: Manifest, container: Manifest,
                files: Path) -> dict[str, str]:
    """The container's env as the kubelet would build it, secretKeyRef read from the API;
    a value that names a file of a mounted Secret points at that file written under `files`."""
    def secret_value(name: str, key: str) -> str:
        secret = json.loads(kube.kubectl("get", "secret", name, "-n", namespace,
                                         "-o", "json").stdout)
        return base64.b64decode(secret["data"][key]).decode()

    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            value = str(item["value"])
            if value.startswith("/var/run/secrets/"):
                local = files / value.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(secret_value(*mounted_secret_key(pod, container, value)))
                value = str(local)
            env[item["name"]] = value
            continue
        ref = item["valueFrom"].get("secretKeyRef")
        assert ref is not None, f"unsupported valueFrom in {item}"
        env[item["name"]] = secret_value(ref["name"], ref["key"])
    return env


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def answers_200(url: str) -> Callable[[], bool]:
    return lambda: http_status(url) == 200


def probe_urls(container: Manifest) -> list[str]:
    """The URLs of the container's httpGet probes, named ports resolved, on loopback."""
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    urls = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container.get(kind, {}).get("httpGet")
        if get is None:
            continue
        port = named[get["port"]] if isinstance(get["port"], str) else get["port"]
        url = f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{get['path']}"
        urls.append(url)
    return sorted(set(urls))


def wait_for(check: Callable[[], Manifest | None], timeout: float, what: str,
             logs: Sequence[Path]) -> Manifest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name} ---\n" + "\n".join(
        p.read_text(errors="replace").splitlines()[-40:]) for p in logs if p.exists())
    raise AssertionError(f"{what} not reached in {timeout}s\n{tails}")


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of its own, with the chart's CRD: an operator that watches the whole
    cluster must not meet the shared cluster's test operator."""
    with ControlPlane.started(tmp_path / "kube") as plane:
        plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "paymentsession.yaml"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      f"crd/paymentsessions.{GROUP}")
        yield plane


@pytest.mark.parametrize(("namespaced", "clusterwide"), [
    (True, False), (False, False), (False, True)],
    ids=["namespaced-rbac", "cluster-rbac", "cluster-wide"])
def test_the_charts_configuration_runs_a_payment_to_paid(
        request: pytest.FixtureRequest, chart_crd: Path, tmp_path: Path, namespaced: bool,
        clusterwide: bool) -> None:
    # Default values watch the whole cluster; the other cases watch one namespace.
    kube: ControlPlane = request.getfixturevalue("own_plane" if clusterwide else "kube")
    namespace = make_namespace(kube)  # the release's, and the PaymentSessions'
    release = unique("run")
    health_port, metrics_port, webhook_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    docs: list[Manifest] = []
    logs = [tmp_path / "operator.log", tmp_path / "webhook.log", tmp_path / "emulator.log"]
    emulator = EmulatorProcess(logs[2])
    try:
        emulator.start()
        values = {
            "logLevel": "DEBUG",
            "secrets": {"existingSecret": "paykube-secrets",
                        "keys": {"webhookSecrets": "webhookSecrets",
                                 "metricsUsername": "metricsUsername",
                                 "metricsPassword": "metricsPassword",
                                 # The default key as a mounted file, or from a Secret the
                                 # operator reads through the API.
                                 "stripeApiKey": "stripeApiKey" if clusterwide else ""}},
            "operator": {"namespaces": [] if clusterwide else [namespace],
                         "stripeApiBase": emulator.base_url,
                         "credentialsSecret": "" if clusterwide else "stripe-default",
                         "pollMinInterval": 2,
                         "pollMaxInterval": 10, "healthPort": health_port, "host": "127.0.0.1",
                         "metricsPort": metrics_port},
            # Loopback only on this machine (in a pod the default 0.0.0.0 is right).
            "webhook": {"port": webhook_port, "host": "127.0.0.1"},
            "rbac": {"namespaced": namespaced},
        }
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        docs = render(release, namespace, values_file)
        create_secret(kube, namespace, "stripe-default", {"apiKey": API_KEY})
        create_secret(kube, namespace, "paykube-secrets", {
            "webhookSecrets": WEBHOOK_SECRET, "stripeApiKey": API_KEY,
            "metricsUsername": METRICS_USER,
            "metricsPassword": METRICS_PASSWORD})
        kube.kubectl("apply", "--server-side", "--field-manager=paykube-chart-test", "-f", "-",
                     input=as_yaml(docs))

        ports = {}
        probes: dict[str, list[str]] = {}
        for component, log in (("webhook", logs[1]), ("operator", logs[0])):
            deployment = one(docs, "Deployment", component)
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            kubeconfig = kube.service_account_kubeconfig(
                namespace, pod["serviceAccountName"], tmp_path / f"{component}.kubeconfig")
            env = {
                # What the image provides besides the rendered env, and the ServiceAccount
                # token (in a pod: the projected token; here: a TokenRequest token).
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(tmp_path),
                "PYTHONDONTWRITEBYTECODE": "1",  # as the Dockerfile's ENV
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "webhook")),
                "KUBECONFIG": str(kubeconfig),
                **resolve_env(kube, namespace, pod, container, tmp_path / component),
            }
            procs.append(start_process(local_argv(container), log=log, env=env))
            ports[component] = {p["name"]: p["containerPort"] for p in container["ports"]}
            probes[component] = probe_urls(container)

        assert ports["operator"] == {"health": health_port, "metrics": metrics_port}
        assert ports["webhook"] == {"http": webhook_port}
        # The kubelet's view: every httpGet probe of the rendered Deployments answers 200
        # (readiness, liveness and startup; which paths and ports is the chart's business).
        assert probes["webhook"] and probes["operator"]
        for component, proc, log in (("webhook", procs[0], logs[1]),
                                     ("operator", procs[1], logs[0])):
            for url in probes[component]:
                wait_until(answers_200(url), timeout=60, what=f"{component} probe {url}",
                           proc=proc, log=log, interval=0.2)
        webhook_url = f"http://127.0.0.1:{webhook_port}"

        control = EmulatorControl(emulator.base_url)
        control.add_webhook_endpoint(f"{webhook_url}/webhooks/stripe", WEBHOOK_SECRET,
                                     api_key=API_KEY)
        created = create_session(kube, namespace, "chart-order-1")

        def phase(wanted: str) -> Callable[[], Manifest | None]:
            def check() -> Manifest | None:
                obj: Manifest = json.loads(kube.kubectl(
                    "get", "paymentsession", "chart-order-1", "-n", namespace, "-o",
                    "json").stdout)
                return obj if obj.get("status", {}).get("phase") == wanted else None
            return check

        opened = wait_for(phase("Open"), 60, "phase Open", logs)
        session_id = opened["status"]["sessionId"]
        assert [s["id"] for s in control.sessions(
            client_reference_id=created["metadata"]["uid"])] == [session_id]

        result = control.pay(session_id)
        assert result["deliveries"], "the emulator delivered no webhook"
        assert all(d["status"] == 200 for d in result["deliveries"]), result["deliveries"]
        paid = wait_for(phase("Paid"), 30, "phase Paid", logs)
        sources = {h["phase"]: h["source"] for h in paid["status"]["history"]}
        assert sources["Paid"] == "webhook", sources

        # The wiring of the rest of the chart's settings.
        assert http_status(f"{webhook_url}/metrics") == 401
        assert http_status(f"{webhook_url}/metrics", (METRICS_USER, METRICS_PASSWORD)) == 200
        assert http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200

        # Deleting goes through the operator's finalizer (a Paid session stays Paid).
        kube.kubectl("delete", "paymentsession", "chart-order-1", "-n", namespace,
                     "--timeout=30s")
        for component, log in (("operator", logs[0]), ("webhook", logs[1])):
            refusals = [line for line in log.read_text(errors="replace").splitlines()
                        if re.search(r"forbidden|HTTP 403|status=403", line, re.IGNORECASE)]
            assert not refusals, f"{component} hit RBAC refusals:\n" + "\n".join(refusals[:5])
    finally:
        for proc in procs:
            stop_process(proc)
        emulator.stop()
        release_finalizers(kube, namespace)
        if docs:
            delete_objects(kube, docs)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def release_finalizers(kube: ControlPlane, namespace: str) -> None:
    """After a failure the operator is gone: drop its finalizers so the namespace can go."""
    listed = kube.kubectl("get", "paymentsessions", "-n", namespace, "-o", "name", check=False)
    for name in listed.stdout.split():
        kube.kubectl("patch", name, "-n", namespace, "--type=merge",
                     "-p", '{"metadata":{"finalizers":null}}', check=False)
