"""The local node (hack/paykube_dev/node) for tests/node: paykube's image built from the
Dockerfile (cached by its inputs), a single-node cluster with that image in its registry,
this machine's services reachable from pods at the bridge's host address, and the chart
installed with Helm the way a user installs it.

Only one node runs on a machine (its bridge, cgroup and chains have fixed names): the
session starts one, after `node_teardown_proof` has started, crashed, restarted and stopped
another to prove what teardown leaves behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube_dev.node import host, images
from paykube_dev.node.cluster import LocalCluster, NodeError, teardown_host
from paykube_dev.services import ActiveMQ, MariaDB, MotoServer
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess, sign_payload
from tests.plugins.chart_fixtures import CHART, helm
from tests.plugins.tcp_proxy import TcpProxy

Manifest = dict[str, Any]
API_KEY = "sk_test_paykube_node"
WEBHOOK_SECRET = "whsec_paykube_node_" + "0" * 8
METRICS_AUTH = ("prometheus", "node-metrics-password")
EVENTS_TOPIC = "/topic/VirtualTopic.paykube.payments"


def fail_clearly(what: str, exc: BaseException) -> None:
    pytest.fail(f"{what}: {exc}", pytrace=False)


# -- the image --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def paykube_image(tmp_path_factory: pytest.TempPathFactory) -> images.BuiltImage:
    """paykube's image from the repository's Dockerfile; rebuilt only when the Dockerfile,
    pyproject.toml or the sources changed (its tag is their hash)."""
    log = tmp_path_factory.mktemp("image") / "build.log"
    try:
        built = images.ensure_paykube(log)
    except images.ImageError as exc:
        fail_clearly("paykube's image could not be built", exc)
    print(f"\nimage {built.name}: {built.size_bytes / 1e6:.0f} MB, "
          f"{'built' if built.built else 'from the cache'} in {built.seconds:.0f}s")
    return built


# -- the node ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeardownProof:
    before: host.HostState
    while_crashed: list[str]
    """What a killed node left (must be something: else the proof proves nothing)."""
    after_stop: list[str]
    after_second_teardown: list[str]
    second_teardown_failures: list[str]
    started_over_leftovers: bool


@pytest.fixture(scope="session")
def node_teardown_proof(tmp_path_factory: pytest.TempPathFactory) -> TeardownProof:
    """A node started and killed without teardown (as a killed test run leaves it), a second
    node started over those leftovers and stopped, then teardown run once more: the machine
    compared with its state before each time. A run killed earlier (a stopped session, a
    CI timeout) may have left a node behind: it is torn down first, else `before` would hold
    those leftovers and the comparison would prove nothing."""
    earlier = teardown_host()
    if earlier:
        pytest.fail("an earlier run's node could not be torn down:\n" + "\n".join(earlier),
                    pytrace=False)
    before = host.HostState.capture()
    crashed = LocalCluster(tmp_path_factory.mktemp("node-crashed"))
    try:
        crashed.start()
    except NodeError as exc:
        crashed.stop()
        fail_clearly("the local node did not start", exc)
    except BaseException:
        crashed.stop()
        raise
    crashed.abandon()
    left = before.differences(host.HostState.capture())
    again = LocalCluster(tmp_path_factory.mktemp("node-again"))
    try:
        again.start()
        started = True
    except NodeError as exc:
        started = False
        print(f"a node did not start over a killed one's leftovers: {exc}")
    finally:
        again.stop()
    after_stop = before.differences(host.HostState.capture())
    failures = teardown_host()
    return TeardownProof(before, left, after_stop,
                         before.differences(host.HostState.capture()), failures, started)


@pytest.fixture(scope="session")
def node(node_teardown_proof: TeardownProof, paykube_image: images.BuiltImage,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    before = host.HostState.capture()
    cluster = LocalCluster(tmp_path_factory.mktemp("node"))
    try:
        cluster.start()
        cluster.push_image(paykube_image)
    except (NodeError, images.ImageError) as exc:
        cluster.stop()
        fail_clearly("the local node did not start", exc)
    except BaseException:  # a timeout or Ctrl-C: still leave nothing behind
        cluster.stop()
        raise
    print("\nnode started: " + ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items()))
    yield cluster
    cluster.stop()
    left = before.differences(host.HostState.capture())
    assert not left, "the session's node left this behind:\n" + "\n".join(left)


# -- this machine's services, as pods see them -------------------------------------------------


@dataclass
class NodeServices:
    """The services, each behind a relay on the bridge's host address (pods cannot reach
    loopback), plus the Stripe emulator of the node tests."""

    host_ip: str
    emulator: EmulatorControl
    emulator_url: str  # as pods reach it
    broker: ActiveMQ
    broker_address: str
    mariadb: MariaDB
    mariadb_address: str
    moto: MotoServer
    moto_url: str

    def database_url(self, database: str) -> str:
        """An application database of its own, by the address pods use."""
        url = self.mariadb.create_database(database)
        return url.replace(f"@{self.mariadb.host}:{self.mariadb.port}/",
                           f"@{self.mariadb_address}/")


@pytest.fixture(scope="session")
def node_services(node: LocalCluster, activemq: ActiveMQ, mariadb: MariaDB,
                  moto_server: MotoServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServices]:
    directory = tmp_path_factory.mktemp("node-services")
    with EmulatorProcess(directory / "emulator.log") as emulator:
        emulator_port = int(emulator.base_url.rsplit(":", 1)[1])
        relays = [TcpProxy(port, host=node.host_ip) for port in
                  (emulator_port, activemq.stomp_port, mariadb.port, moto_server.port)]
        for relay in relays:
            relay.start()
        try:
            yield NodeServices(
                node.host_ip, EmulatorControl(emulator.base_url),
                f"http://{node.host_ip}:{relays[0].port}",
                activemq, f"{node.host_ip}:{relays[1].port}",
                mariadb, f"{node.host_ip}:{relays[2].port}",
                moto_server, f"http://{node.host_ip}:{relays[3].port}")
        finally:
            for relay in relays:
                relay.stop()


# -- Helm and kubectl on the node -------------------------------------------------------------


def helm_on(cluster: LocalCluster, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), check=check, timeout=timeout)


def get_json(cluster: LocalCluster, *args: str) -> Manifest:
    result: Manifest = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


def wait_for(check: Callable[[], Any], *, timeout: float, what: str,
             diagnose: Callable[[], str] = lambda: "", interval: float = 0.5) -> Any:
    """Poll until `check` returns something truthy; fail saying what and why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{diagnose()}")


def pod_diagnosis(cluster: LocalCluster, namespace: str) -> str:
    """What a failing test needs to see: pods, recent events, each container's last logs."""
    parts = [cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout,
             cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
                             check=False).stdout[-4000:]]
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False)
    for pod in pods.stdout.split():
        logs = cluster.kubectl("logs", pod, "-n", namespace, "--all-containers", "--tail=30",
                               check=False)
        parts.append(f"--- {pod} ---\n{logs.stdout[-3000:]}{logs.stderr[-500:]}")
    return "\n".join(parts)


@dataclass
class Release:
    """One Helm release of the chart on the node, with its values and helpers."""

    cluster: LocalCluster
    services: NodeServices
    name: str
    namespace: str
    values: dict[str, Any]
    directory: Path
    database: str = ""
    installed: str = field(default="", repr=False)

    @property
    def fullname(self) -> str:
        return self.name if "paykube" in self.name else f"{self.name}-paykube"

    def deployment(self, component: str) -> str:
        return f"{self.fullname}-{component}"

    def values_file(self, **overrides: Any) -> Path:
        path = self.directory / f"values-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(_merge(self.values, overrides)))
        return path

    def helm(self, *args: str, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return helm_on(self.cluster, *args, "-n", self.namespace, check=check, timeout=timeout)

    def install(self) -> None:
        result = self.helm("install", self.name, str(CHART), "-f", str(self.values_file()),
                           "--wait", "--timeout", "180s", check=False, timeout=240)
        if result.returncode != 0:
            raise AssertionError(f"helm install --wait failed:\n{result.stdout}{result.stderr}"
                                 f"\n{pod_diagnosis(self.cluster, self.namespace)}")
        self.installed = result.stdout

    def upgrade(self, **overrides: Any) -> subprocess.CompletedProcess[str]:
        self.values = _merge(self.values, overrides)
        result = self.helm("upgrade", self.name, str(CHART), "-f", str(self.values_file()),
                           "--wait", "--timeout", "180s", check=False, timeout=240)
        if result.returncode != 0:
            raise AssertionError(f"helm upgrade --wait failed:\n{result.stdout}{result.stderr}"
                                 f"\n{pod_diagnosis(self.cluster, self.namespace)}")
        return result

    def pods(self, component: str) -> list[Manifest]:
        listed = get_json(self.cluster, "pods", "-n", self.namespace, "-l",
                          f"app.kubernetes.io/instance={self.name},"
                          f"app.kubernetes.io/component={component}")
        return list(listed["items"])

    def service_url(self, component: str = "webhook") -> str:
        service = get_json(self.cluster, "service", self.deployment(component), "-n",
                           self.namespace)
        port = service["spec"]["ports"][0]["port"]
        return f"http://{service['spec']['clusterIP']}:{port}"

    def apply_session(self, name: str, **spec: Any) -> Manifest:
        manifest = session_manifest(self.namespace, name, **spec)
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        return self.session(name)

    def session(self, name: str) -> Manifest:
        return get_json(self.cluster, "paymentsession", name, "-n", self.namespace)

    def wait_phase(self, name: str, phase: str, timeout: float = 90) -> Manifest:
        def reached() -> Manifest | None:
            obj = self.session(name)
            return obj if obj.get("status", {}).get("phase") == phase else None

        def diagnose() -> str:
            status = self.session(name).get("status")
            return (f"status: {json.dumps(status, indent=1)}\n"
                    f"{pod_diagnosis(self.cluster, self.namespace)}")
        found: Manifest = wait_for(reached, timeout=timeout, what=f"{name} {phase}",
                                   diagnose=diagnose)
        return found

    def diagnose(self) -> str:
        return pod_diagnosis(self.cluster, self.namespace)


def session_manifest(namespace: str, name: str, **spec: Any) -> Manifest:
    return {"apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"amount": 2500, "currency": "eur", "description": "node test",
                     "successUrl": "https://shop.example/ok",
                     "cancelUrl": "https://shop.example/cart", **spec}}


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def create_secret(cluster: LocalCluster, namespace: str, name: str,
                  data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name,
                                                              "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def release_values(image: images.BuiltImage, services: NodeServices, namespace: str,
                   database_url_key: bool = True) -> dict[str, Any]:
    """The chart's values for this machine: the image by its docker.io name (the node's
    containerd resolves it at the local registry), the services by the addresses the
    relays bind, the secrets in one Secret mounted as files."""
    return {
        "image": {"repository": "paykube", "tag": image.tag},
        "logLevel": "INFO",
        "secrets": {"existingSecret": "paykube-secrets", "ttl": 5,
                    "keys": {"webhookSecrets": "webhookSecrets", "stripeApiKey": "stripeApiKey",
                             "databaseUrl": "databaseUrl" if database_url_key else "",
                             "metricsUsername": "metricsUsername",
                             "metricsPassword": "metricsPassword"}},
        "broker": {"urls": [services.broker_address], "destination": EVENTS_TOPIC},
        "operator": {"namespaces": [namespace], "stripeApiBase": services.emulator_url,
                     "pollMinInterval": 2, "pollMaxInterval": 10, "outboxInterval": 2},
        "webhook": {"autoscaling": {"enabled": False}, "replicas": 2},
        "tests": {"payment": {"enabled": True, "timeout": 60}},
    }


@contextlib.contextmanager
def release_on_node(cluster: LocalCluster, services: NodeServices, image: images.BuiltImage,
                    directory: Path, prefix: str, *, uninstall: bool = True,
                    **overrides: Any) -> Iterator[Release]:
    """A release in a namespace of its own, its operator watching only that namespace."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    database = f"node_{uuid.uuid4().hex[:8]}"
    values = _merge(release_values(image, services, namespace), overrides)
    create_secret(cluster, namespace, "paykube-secrets", {
        "webhookSecrets": WEBHOOK_SECRET, "stripeApiKey": API_KEY,
        "databaseUrl": services.database_url(database),
        "metricsUsername": METRICS_AUTH[0], "metricsPassword": METRICS_AUTH[1]})
    release = Release(cluster, services, f"{prefix}-paykube", namespace, values, directory,
                      database)
    try:
        release.install()
        yield release
    finally:
        if uninstall:
            release.helm("uninstall", release.name, "--wait", "--timeout", "120s",
                         check=False, timeout=180)
        # Finalizers of sessions whose operator is gone would hold the namespace forever.
        listed = cluster.kubectl("get", "paymentsessions", "-n", namespace, "-o", "name",
                                 check=False)
        for name in listed.stdout.split():
            cluster.kubectl("patch", name, "-n", namespace, "--type=merge",
                            "-p", '{"metadata":{"finalizers":null}}', check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# -- signed deliveries ------------------------------------------------------------------------


def completed_event(session: Manifest) -> bytes:
    """checkout.session.completed for a session the operator opened, as Stripe sends it."""
    status, meta = session["status"], session["metadata"]
    event: Manifest = {
        "id": "evt_" + secrets.token_hex(12), "object": "event",
        "type": "checkout.session.completed", "created": int(time.time()),
        "data": {"object": {
            "id": status["sessionId"], "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "amount_total": session["spec"]["amount"],
            "currency": session["spec"]["currency"], "client_reference_id": meta["uid"],
            "metadata": {"paykube_namespace": meta["namespace"], "paykube_name": meta["name"],
                         "paykube_uid": meta["uid"]}}}}
    if status.get("livemode") is not None:
        event["livemode"] = status["livemode"]
    return json.dumps(event).encode()


def signed_headers(payload: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Stripe-Signature": sign_payload(payload, secret, int(time.time()))}


def node_names(pods: Sequence[Manifest]) -> set[str]:
    return {p["spec"].get("nodeName", "") for p in pods}


def pod_memory(pod: Manifest) -> dict[str, int]:
    """A pod's memory from its cgroup (the node's kubelet puts it under /paykube-node):
    `rss` (anonymous memory of its processes) and `usage` (with page cache), bytes."""
    uid = pod["metadata"]["uid"]
    qos = pod["status"].get("qosClass", "BestEffort").lower()
    root = Path("/sys/fs/cgroup/memory/paykube-node/kubepods")
    path = root / f"pod{uid}" if qos == "guaranteed" else root / qos / f"pod{uid}"
    if not path.is_dir():
        path = next(root.rglob(f"pod{uid}"))
    stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
    return {"rss": int(stat["total_rss"]),
            "usage": int((path / "memory.usage_in_bytes").read_text())}

