"""The chart's configuration runs: the operator's and the webhook's command, env, mounted
secret files and probes are taken from the rendered Deployments and run as processes with
the chart's ServiceAccount tokens (so the rendered RBAC is what the API server enforces),
against a separate Stripe emulator; a payment goes Open -> Paid through a signed webhook
delivery; then part of it is refunded (the operator reserves and creates, the webhook applies
the PSP's refund event) and the refund deleted through the operator's finalizer."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from paykube_dev.kube import ControlPlane
from paykube_dev.proc import free_port, start_process, stop_process, wait_until
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess
from tests.plugins.chart_fixtures import (
    CHART,
    REPO,
    Manifest,
    as_yaml,
    create_session,
    delete_objects,
    mounted_secret_key,
    one,
    render,
    unique,
)
from tests.plugins.kube_fixtures import create_secret, make_namespace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

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
    """A control plane of its own, with the chart's CRDs: an operator that watches the whole
    cluster must not meet the shared cluster's test operator."""
    with ControlPlane.started(tmp_path / "kube") as plane:
        for crd in sorted((CHART / "crds").glob("*.yaml")):
            plane.install_crd(crd)
        yield plane


@pytest.mark.parametrize(("namespaced", "clusterwide"), [
    (True, False), (False, False), (False, True)],
    ids=["namespaced-rbac", "cluster-rbac", "cluster-wide"])
def test_the_charts_configuration_runs_a_payment_to_paid(
        request: pytest.FixtureRequest, chart_crd: Path, tmp_path: Path, namespaced: bool,
        clusterwide: bool) -> None:
    # Default values watch the whole cluster; the other cases watch one namespace.
    kube: ControlPlane = request.getfixturevalue("own_plane" if clusterwide else "kube")
    namespace = make_namespace(kube, "solo-rbac")  # the release's, and the PaymentSessions'
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

        # A refund of part of it, under the same RBAC: the operator reserves it on the
        # session and creates it at the PSP; the PSP's refund.updated reaches the webhook,
        # which moves the PaymentRefund (every delivery stored: 200).
        control.refund_mode("pending")
        kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
            "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentRefund",
            "metadata": {"name": "chart-refund-1"},
            "spec": {"sessionRef": {"name": "chart-order-1"}, "amount": 500,
                     "reason": "requested_by_customer"}}))
        pending = wait_for(status_with(kube, namespace, "paymentrefund", "chart-refund-1",
                                       "refundId"), 60, "a refund id", logs)
        assert pending["status"]["phase"] == "Pending"
        moved = control.refund_transition(pending["status"]["refundId"], "succeeded")
        assert moved["deliveries"], "the emulator delivered no refund webhook"
        assert all(d["status"] == 200 for d in moved["deliveries"]), moved["deliveries"]
        wait_for(status_with(kube, namespace, "paymentrefund", "chart-refund-1", "phase",
                             "Succeeded"), 30, "refund Succeeded", logs)
        session = json.loads(kube.kubectl("get", "paymentsession", "chart-order-1", "-n",
                                          namespace, "-o", "json").stdout)["status"]
        assert [r["name"] for r in session["refunds"]] == ["chart-refund-1"]
        wait_for(status_with(kube, namespace, "paymentsession", "chart-order-1",
                             "amountRefunded", 500), 30, "amountRefunded 500", logs)
        kube.kubectl("delete", "paymentrefund", "chart-refund-1", "-n", namespace,
                     "--timeout=30s")

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


def status_with(kube: ControlPlane, namespace: str, kind: str, name: str, field: str,
                value: object = None) -> Callable[[], Manifest | None]:
    """The object once its status has `field` (equal to `value`, if given)."""
    def check() -> Manifest | None:
        obj: Manifest = json.loads(kube.kubectl("get", kind, name, "-n", namespace,
                                                "-o", "json").stdout)
        got = obj.get("status", {}).get(field)
        return obj if got is not None and (value is None or got == value) else None
    return check


def release_finalizers(kube: ControlPlane, namespace: str) -> None:
    """After a failure the operator is gone: drop its finalizers so the namespace can go."""
    listed = kube.kubectl("get", "paymentsessions,paymentrefunds", "-n", namespace, "-o",
                          "name", check=False)
    for name in listed.stdout.split():
        kube.kubectl("patch", name, "-n", namespace, "--type=merge",
                     "-p", '{"metadata":{"finalizers":null}}', check=False)
