"""The Helm chart (charts/paykube) rendered by the real helm binary: its CRDs are
byte-identical to crds/ and accept crds/examples/ on the real API server, `helm lint
--strict` passes for every value set, settings map one to one to values, bad values fail
with the schema's message, and RBAC rules follow the watched namespaces."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube.settings import Settings
from paykube_dev.kube import ControlPlane
from tests.plugins.chart_fixtures import (
    CHART,
    CI_VALUES,
    EXAMPLES,
    REPO,
    Manifest,
    helm,
    mounted_secret_key,
    one,
    render,
    values_args,
    values_id,
)
from tests.plugins.kube_fixtures import refused

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def test_chart_crds_are_identical_to_the_crd_source() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "crds/ has no CRD"
    assert chart.keys() == source.keys(), "run hack/sync-crds.sh"
    for name, text in source.items():
        assert chart[name] == text, f"charts/paykube/crds/{name} is stale: run hack/sync-crds.sh"


def test_chart_crd_accepts_the_examples_and_refuses_the_invalid_ones(
        kube: ControlPlane, chart_crd: Path, unmanaged_namespace: str) -> None:
    valid = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "refunds").glob("*.yaml"))
    invalid = sorted((EXAMPLES / "invalid").glob("*.yaml"))
    assert valid and invalid
    assert {yaml.safe_load(p.read_text())["kind"] for p in valid + invalid} == {
        "PaymentSession", "PaymentRefund"}
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
        and not d["metadata"]["name"].endswith(("-credentials", "-own-secrets", "-routes")))
    assert roles == [("payments-a", "operator"), ("payments-a", "webhook"),
                     ("payments-b", "operator"), ("payments-b", "webhook")]
    # The one ClusterRole of namespaced mode: ClusterPaymentProviders and namespace labels.
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == [
        "pk-paykube-operator-cluster-providers"]
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
        assert env["PAYKUBE_BROKER_TLS"] == "true"
        image = one(docs, "Deployment", component)["spec"]["template"]["spec"][
            "containers"][0]["image"]
        assert image.startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/paykube:")
    assert container_env(docs, "operator")["PAYKUBE_AWS_DATABASE_SECRET_ID"].startswith(
        "arn:aws:secretsmanager:")
    assert "PAYKUBE_AWS_DATABASE_SECRET_ID" not in container_env(docs, "webhook")
    # The API key's secret id only for the operator, the signing secrets' only for the
    # webhook: each IAM role can be limited to its own secret.
    operator, webhook = container_env(docs, "operator"), container_env(docs, "webhook")
    assert operator["PAYKUBE_AWS_STRIPE_SECRET_ID"] == "paykube/stripe-api-key"
    assert "PAYKUBE_AWS_WEBHOOK_SECRET_ID" not in operator
    assert webhook["PAYKUBE_AWS_WEBHOOK_SECRET_ID"] == "paykube/stripe-webhook"
    assert "PAYKUBE_AWS_STRIPE_SECRET_ID" not in webhook


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
    kinds = sorted(d["kind"] for d in docs
                   if "helm.sh/hook" not in d["metadata"].get("annotations", {}))
    assert kinds == sorted([
        "ServiceAccount", "ServiceAccount", "ClusterRole", "ClusterRole",
        "ClusterRoleBinding", "ClusterRoleBinding", "Deployment", "Deployment",
        # The operator's own-namespace Secrets, the webhook's route table.
        "Role", "Role", "RoleBinding", "RoleBinding",
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
    "AWS_WEBHOOK_SECRET_ID": ("secrets.aws.webhookSecretId", "sentinel/whsec",
                              "sentinel/whsec"),
    "EVENTS_INCLUDE_URL": ("broker.includeUrl", True, "true"),
    "PROVIDER_RESYNC": ("operator.providerResync", 59, "59"),
    "WEBHOOK_PUBLIC_URL": ("webhook.publicUrl", "https://hooks.sentinel",
                           "https://hooks.sentinel"),
    "WEBHOOK_READ_TIMEOUT": ("webhook.readTimeout", 7, "7"),
    "WEBHOOK_MAX_READERS": ("webhook.maxReaders", 63, "63"),
    "WEBHOOK_EVENT_RATE": ("webhook.eventRate", 2.5, "2.5"),
    "WEBHOOK_SESSION_CACHE": ("webhook.sessionCache", True, "true"),
    "ROUTES_TTL": ("webhook.routesTtl", 29, "29"),
    # Not values: the operator's namespace is the release's, the route table is named after it.
    "CLUSTER_NAMESPACE": ("<release namespace>", None, "paykube"),
    "ROUTE_TABLE_SECRET": ("<release name>", None, "pk-paykube-webhook-routes"),
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
    "RAZORPAY_API_BASE": ("operator.razorpayApiBase", "https://razorpay.sentinel",
                          "https://razorpay.sentinel"),
    "RAZORPAY_RATE_LIMIT": ("operator.razorpayRateLimit", 31, "31"),
    "RAZORPAY_TIMEOUT": ("operator.razorpayTimeout", 37, "37"),
    "POLL_MIN_INTERVAL": ("operator.pollMinInterval", 11, "11"),
    "POLL_MAX_INTERVAL": ("operator.pollMaxInterval", 297, "297"),
    "RECONCILE_CONCURRENCY": ("operator.reconcileConcurrency", 43, "43"),
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
        ("METRICS_USERNAME_FILE", "metricsUsername"),
        ("METRICS_PASSWORD_FILE", "metricsPassword"),
        ("EXPLAIN_API_KEY_FILE", "explainApiKey"))},
}
# Settings with no chart value: the chart mounts these secrets as files (the *_FILE
# settings, re-read: rotation without restart); the env forms are for running outside a pod.
SETTINGS_WITHOUT_VALUE = {"WEBHOOK_SECRETS", "STRIPE_API_KEY", "DATABASE_URL",
                          "METRICS_USERNAME", "METRICS_PASSWORD", "EXPLAIN_API_KEY"}
# Read only by the operator (never rendered into the webhook, which has no use for them).
OPERATOR_ONLY = {"AWS_DATABASE_SECRET_ID", "DATABASE_URL_FILE", "DATABASE_HOST",
                 "DATABASE_PORT", "DATABASE_NAME", "STRIPE_API_KEY_FILE",
                 "STRIPE_CREDENTIALS_SECRET", "NAMESPACES",
                 "EXPLAIN_API_KEY_FILE", "OPERATOR_HOST", "AWS_STRIPE_SECRET_ID",
                 "PROVIDER_RESYNC", "WEBHOOK_PUBLIC_URL", "RAZORPAY_API_BASE",
                 "RAZORPAY_RATE_LIMIT", "RAZORPAY_TIMEOUT"}


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
    read = {name.removeprefix("PAYKUBE_") for name in Settings.env_names()}
    assert read, "settings.py reads no PAYKUBE_ variables?"
    assert read >= SETTINGS_WITHOUT_VALUE, "stale SETTINGS_WITHOUT_VALUE"
    assert read - SETTINGS_WITHOUT_VALUE == SETTING_SENTINELS.keys()
    from_values = {k: v for k, v in SETTING_SENTINELS.items() if not v[0].startswith("<")}
    # (Booleans have one non-default value: those are told apart by their names only.)
    sentinels = [json.dumps(v) for _, v, _ in from_values.values() if not isinstance(v, bool)]
    assert len(set(sentinels)) == len(sentinels), "sentinels must differ"
    values: Manifest = {"secrets": {"existingSecret": SENTINEL_SECRET}}
    for path, value, _ in from_values.values():
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


# -- RBAC rules by watched namespaces (rendered) -----------------------------------------


def operator_rules(docs: Sequence[Manifest]) -> dict[tuple[str, str, str | None], list[Any]]:
    """The operator's rules by (kind, name, namespace) of their Role or ClusterRole, without
    those every rendering has (its own namespace's Secrets, ClusterPaymentProviders)."""
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): [
                r for r in d["rules"] if r not in PROVIDER_RULES]
            for d in docs if d["kind"] in ("Role", "ClusterRole")
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
            and not d["metadata"]["name"].endswith(("-own-secrets", "-cluster-providers"))}


PROVIDER_RULES = [
    {"apiGroups": ["payments.paykube.dev"], "resources": ["clusterpaymentproviders"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["payments.paykube.dev"], "resources": ["clusterpaymentproviders/status"],
     "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]


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
    (role,) = [d for d in docs if d["kind"] == "Role"
               and d["metadata"]["name"].endswith("-operator-credentials")]
    assert role["metadata"]["namespace"] == "paykube"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": ["stripe"], "verbs": ["get"]}]




@pytest.mark.parametrize("cache", [False, True])
def test_only_the_session_cache_lets_the_webhook_list_and_watch_sessions(cache: bool) -> None:
    """The internet-facing webhook may enumerate PaymentSessions only when
    webhook.sessionCache asks for it."""
    docs = render("pk", "paykube", sets=[f"webhook.sessionCache={str(cache).lower()}"])
    role = next(d for d in docs if d["kind"] == "ClusterRole"
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook")
    listing = [r for r in role["rules"] if "list" in r["verbs"] or "watch" in r["verbs"]]
    expected = [{"apiGroups": ["payments.paykube.dev"], "resources": ["paymentsessions"],
                 "verbs": ["list", "watch"]}]
    assert listing == (expected if cache else [])
    env = container_env(docs, "webhook")
    assert env["PAYKUBE_WEBHOOK_SESSION_CACHE"] == str(cache).lower()
