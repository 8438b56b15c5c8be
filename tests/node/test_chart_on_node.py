"""The chart installed on the local node with paykube's real image, the way users install
it (`helm install --wait`), its pods talking to this machine's Stripe emulator, ActiveMQ
and MariaDB through the addresses the relays bind on the bridge.

The release of this module is shared; each test leaves it installed and healthy."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from paykube.mirror.store import MirrorStore, make_engine
from paykube_dev.manifests import session_list
from paykube_dev.node import images
from paykube_dev.node.cluster import LocalCluster
from paykube_dev.node.config import NODE_NAME
from tests.plugins.node_fixtures import (
    API_KEY,
    EVENTS_TOPIC,
    METRICS_AUTH,
    WEBHOOK_SECRET,
    Manifest,
    NodeServices,
    Release,
    completed_event,
    create_secret,
    get_json,
    pod_memory,
    release_on_node,
    signed_headers,
    wait_for,
)
from tests.plugins.stomp_helpers import subscriber


@pytest.fixture(scope="module")
def release(node: LocalCluster, node_services: NodeServices,
            paykube_image: images.BuiltImage,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with release_on_node(node, node_services, paykube_image,
                         tmp_path_factory.mktemp("release"), "pk") as installed:
        node_services.emulator.add_webhook_endpoint(
            f"{installed.service_url()}/webhooks/stripe", WEBHOOK_SECRET, api_key=API_KEY)
        yield installed


# Building the image and starting nodes count towards the first test's time: generous
# bounds, each wait inside has its own.
pytestmark = pytest.mark.timeout(1800)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def ready_pods(release: Release, component: str) -> list[Manifest]:
    return [p for p in release.pods(component)
            if p.get("metadata", {}).get("deletionTimestamp") is None
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", []))]


# -- install, helm test, a payment ------------------------------------------------------------


def test_helm_install_runs_the_image_on_the_node(release: Release,
                                                 paykube_image: images.BuiltImage) -> None:
    """Both Deployments' pods run the built image on the node; their memory at rest (from
    the pods' cgroups) is printed beside the chart's limits."""
    time.sleep(5)  # at rest: past startup
    for component, count in (("operator", 1), ("webhook", 2)):
        pods = ready_pods(release, component)
        assert len(pods) == count, release.diagnose()
        limit = release.values.get(component, {}).get("resources", {}).get("limits", {})
        for pod in pods:
            assert pod["spec"]["nodeName"] == NODE_NAME
            (status,) = pod["status"]["containerStatuses"]
            assert status["image"].endswith(f"paykube:{paykube_image.tag}")
            assert status["restartCount"] == 0, release.diagnose()
            memory = pod_memory(pod)
            print(f"\n{pod['metadata']['name']}: memory at rest rss "
                  f"{memory['rss'] / 2**20:.0f} MiB, usage {memory['usage'] / 2**20:.0f} MiB"
                  f" (limit {limit.get('memory', 'per chart default')})")
            assert memory["rss"] > 10 * 2**20, "the cgroup read is not the pod's"


def test_helm_test_drives_a_payment_through_the_webhook_service(release: Release) -> None:
    result = release.helm("test", release.name, "--logs", "--timeout", "150s", check=False,
                          timeout=200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n{release.diagnose()}"
    assert "paykube helm test passed" in output
    assert "Paid through the webhook" in output


def test_a_payment_applied_with_kubectl_is_paid_published_and_mirrored(
        release: Release, node_services: NodeServices) -> None:
    with subscriber(node_services.broker, EVENTS_TOPIC) as events:
        release.apply_session("order-node-1")
        opened = release.wait_phase("order-node-1", "Open")
        uid = opened["metadata"]["uid"]
        # Stripe's delivery: the emulator signs checkout.session.completed and posts it to
        # the webhook Service's ClusterIP (kube-proxy's rules take it to a pod).
        paid = node_services.emulator.pay(opened["status"]["sessionId"])
        assert [d["status"] for d in paid["deliveries"]] == [200], paid["deliveries"]
        obj = release.wait_phase("order-node-1", "Paid", timeout=30)
        sources = {h["phase"]: h["source"] for h in obj["status"]["history"]}
        assert sources["Paid"] == "webhook"
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while f"{uid}/paid" not in seen and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                body = json.loads(events.get(timeout=1).body)
                seen[body["id"]] = body
        assert f"{uid}/open" in seen and f"{uid}/paid" in seen, \
            f"CloudEvents seen: {sorted(seen)}\n{release.diagnose()}"
        assert seen[f"{uid}/paid"]["type"] == "dev.paykube.paymentsession.paid"
    store = MirrorStore(make_engine(node_services.mariadb.url_for(release.database)))
    row = wait_for(lambda: (r := store.row(uid)) and r["phase"] == "Paid" and r,
                   timeout=30, what="the mirror row Paid")
    assert row["amount"] == 2500
    assert [t["phase"] for t in store.transitions(uid)][-1] == "Paid"


# -- what only a real node shows --------------------------------------------------------------


def test_restricted_security_context_really_runs(release: Release) -> None:
    """In the running containers: uid/gid 10001, a read-only root, a writable /tmp, no
    capabilities, no privilege escalation (kubectl exec into each pod)."""
    script = ("import os, json, pathlib\n"
              "out = {'uid': os.getuid(), 'gid': os.getgid()}\n"
              "for path in ('/x', '/opt/paykube/x', '/tmp/x'):\n"
              "    try:\n"
              "        pathlib.Path(path).write_text('x'); out[path] = 'written'\n"
              "    except OSError as exc:\n"
              "        out[path] = exc.strerror\n"
              "status = pathlib.Path('/proc/self/status').read_text().splitlines()\n"
              "out.update(l.split(':\\t') for l in status if l.startswith(('Cap', 'NoNewPrivs')))\n"
              "print(json.dumps(out))\n")
    for component in ("operator", "webhook"):
        pod = ready_pods(release, component)[0]["metadata"]["name"]
        result = release.cluster.kubectl("exec", pod, "-n", release.namespace, "--",
                                         "python", "-c", script)
        seen = json.loads(result.stdout)
        assert (seen["uid"], seen["gid"]) == (10001, 10001), seen
        assert seen["/x"] == "Read-only file system", seen
        assert seen["/opt/paykube/x"] == "Read-only file system", seen
        assert seen["/tmp/x"] == "written", seen
        assert seen["CapEff"].strip("\t 0") == "", seen
        assert seen["CapPrm"].strip("\t 0") == "", seen
        assert seen["NoNewPrivs"].strip() == "1", seen


def test_probes_and_readyz_gate_traffic(release: Release, node: LocalCluster) -> None:
    """Pods that cannot reach the API server go unready (/readyz), the Service stops
    sending them deliveries, and they come back when it answers again; no restarts."""
    url = f"{release.service_url()}/webhooks/stripe"
    unsigned = b'{"id": "evt_gate", "type": "checkout.session.completed"}'
    headers = {"Content-Type": "application/json"}
    assert post(url, unsigned, headers) == 400  # served (and refused: unsigned)
    restarts = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
                for c in ("webhook", "operator") for p in release.pods(c)}
    with node.cut_api_server_from_pods():
        wait_for(lambda: not ready_pods(release, "webhook") and
                 not ready_pods(release, "operator"), timeout=60,
                 what="every pod unready while the API server does not answer",
                 diagnose=release.diagnose)
        endpoints = get_json(node, "endpointslices", "-n", release.namespace, "-l",
                             f"kubernetes.io/service-name={release.deployment('webhook')}")
        ready = [e for s in endpoints["items"] for e in s.get("endpoints") or []
                 if e.get("conditions", {}).get("ready")]
        assert ready == []
        try:
            status: int | str = post(url, unsigned, headers, timeout=5)
        except OSError as exc:  # kube-proxy rejects: the Service has no ready endpoint
            status = type(exc).__name__
        assert status != 400, "an unready webhook still received a delivery"
    wait_for(lambda: len(ready_pods(release, "webhook")) == 2 and ready_pods(release,
                                                                             "operator"),
             timeout=90, what="pods ready again", diagnose=release.diagnose)
    wait_for(lambda: _answers(url, unsigned, headers) == 400, timeout=30,
             what="the Service routing again")
    after = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
             for c in ("webhook", "operator") for p in release.pods(c)}
    assert after == restarts, "readiness, not liveness, must take them out"


def _answers(url: str, body: bytes, headers: dict[str, str]) -> int | None:
    try:
        return post(url, body, headers, timeout=5)
    except OSError:
        return None


def test_secret_files_rotate_without_restart(release: Release,
                                             node_services: NodeServices) -> None:
    """A new webhook signing secret in the Secret: the kubelet updates the mounted file,
    the webhook re-reads it after secrets.ttl, and deliveries signed with the new secret
    are accepted; no pod restarted."""
    pods = {p["metadata"]["uid"] for p in release.pods("webhook")}
    new_secret = "whsec_rotated_" + "1" * 12
    release.apply_session("order-rotation")
    opened = release.wait_phase("order-rotation", "Open")
    payload = completed_event(opened)
    url = f"{release.service_url()}/webhooks/stripe"
    assert post(url, payload, signed_headers(payload, new_secret)) == 400
    create_secret(release.cluster, release.namespace, "paykube-secrets", {
        "webhookSecrets": f"{new_secret}\n{WEBHOOK_SECRET}", "stripeApiKey": API_KEY,
        "databaseUrl": node_services.database_url(release.database),
        "metricsUsername": METRICS_AUTH[0], "metricsPassword": METRICS_AUTH[1]})

    def accepted() -> bool:
        # Two pods behind the Service: accepted by both, several times in a row.
        return all(post(url, payload, signed_headers(payload, new_secret)) == 200
                   for _ in range(6))
    wait_for(accepted, timeout=90, what="deliveries signed with the rotated secret accepted",
             diagnose=release.diagnose, interval=2)
    release.wait_phase("order-rotation", "Paid", timeout=10)
    assert {p["metadata"]["uid"] for p in release.pods("webhook")} == pods
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0
               for p in release.pods("webhook"))


def test_the_operator_is_one_replica_replaced_by_recreate(release: Release) -> None:
    """Never two operators at once: a rollout stops the old pod before the new one
    starts (watched every 0.2 s), and reconciling goes on afterwards."""
    deployment = get_json(release.cluster, "deployment", release.deployment("operator"),
                          "-n", release.namespace)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    old = {p["metadata"]["uid"] for p in release.pods("operator")}
    release.cluster.kubectl("rollout", "restart", f"deployment/{release.deployment('operator')}",
                            "-n", release.namespace)
    most_running = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = release.pods("operator")
        running = [p for p in pods if p["status"].get("phase") in ("Running", "Pending")
                   and any(s.get("state", {}).get("running")
                           for s in p["status"].get("containerStatuses", []))]
        most_running = max(most_running, len(running))
        new_ready = [p for p in ready_pods(release, "operator")
                     if p["metadata"]["uid"] not in old]
        if new_ready and len(pods) == 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the operator rollout did not finish\n{release.diagnose()}")
    assert most_running == 1, "two operator containers ran at the same time"
    release.apply_session("order-after-recreate")
    release.wait_phase("order-after-recreate", "Open")


def test_helm_upgrade_rolls_the_webhook_without_a_refused_delivery(
        release: Release, node_services: NodeServices) -> None:
    """Signed deliveries at a steady rate while `helm upgrade` changes the webhook's pod
    template (a rolling update of both pods): every one answered 200, none refused, and
    every session they pay is Paid."""
    names = [f"upgrade-{i:05d}" for i in range(40)]  # session_list's names
    release.cluster.kubectl("apply", "-f", "-",
                            input=session_list(release.namespace, len(names), "upgrade"))
    opened = [release.wait_phase(name, "Open") for name in names]
    payloads = [completed_event(obj) for obj in opened]
    url = f"{release.service_url()}/webhooks/stripe"
    outcomes: list[int | str] = []
    stop = threading.Event()
    old_pods = {p["metadata"]["uid"] for p in release.pods("webhook")}

    def deliver() -> None:
        index = 0
        while not stop.is_set() or index < len(payloads):
            payload = payloads[index % len(payloads)]
            try:
                outcomes.append(post(url, payload, signed_headers(payload)))
            except OSError as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")
            index += 1
            time.sleep(0.1)

    sender = threading.Thread(target=deliver, daemon=True)
    sender.start()
    try:
        time.sleep(1)
        release.upgrade(webhook={"podAnnotations": {"paykube.dev/upgraded": "yes"}},
                        logLevel="DEBUG")
        wait_for(lambda: not {p["metadata"]["uid"] for p in release.pods("webhook")}
                 & old_pods and len(ready_pods(release, "webhook")) == 2, timeout=120,
                 what="the webhook rolled", diagnose=release.diagnose)
        time.sleep(2)
    finally:
        stop.set()
        sender.join(timeout=60)
    refused = [o for o in outcomes if o != 200]
    assert len(outcomes) >= len(payloads), outcomes
    assert refused == [], f"{len(refused)} of {len(outcomes)} deliveries not 200: {refused[:10]}"
    for name in names:
        release.wait_phase(name, "Paid", timeout=30)


def test_deleting_the_operator_pod_during_100_creations_makes_100_sessions(
        release: Release, node_services: NodeServices) -> None:
    """The operator pod is deleted while 100 PaymentSessions are being created: the work
    is finished (by the replacement, or by the old pod within its grace period when it is
    fast), the replacement resumes every object, and the provider holds exactly one session
    per object (the idempotency key survives the pod)."""
    namespace = release.namespace
    manifest = json.loads(session_list(namespace, 100, "crash"))
    first, rest = manifest["items"][:30], manifest["items"][30:]
    release.cluster.kubectl("apply", "-f", "-", input=json.dumps({**manifest, "items": first}))
    wait_for(lambda: sum(1 for obj in get_json(release.cluster, "paymentsessions", "-n",
                                               namespace)["items"]
                         if obj["metadata"]["name"].startswith("crash-")
                         and obj.get("status", {}).get("sessionId")) >= 5,
             timeout=60, what="the first sessions opening")
    (pod,) = release.pods("operator")
    release.cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace,
                            "--wait=false")
    release.cluster.kubectl("apply", "-f", "-", input=json.dumps({**manifest, "items": rest}))
    names = [item["metadata"]["name"] for item in manifest["items"]]

    def all_open() -> bool:
        listed = get_json(release.cluster, "paymentsessions", "-n", namespace)["items"]
        phases = {o["metadata"]["name"]: o.get("status", {}).get("phase") for o in listed}
        return all(phases.get(n) == "Open" for n in names)
    wait_for(all_open, timeout=240, what="100 sessions Open", diagnose=release.diagnose,
             interval=2)
    deleted = pod["metadata"]["uid"]

    def replaced() -> bool:
        # The deleted pod may still be terminating when the work is already done.
        return (deleted not in {p["metadata"]["uid"] for p in release.pods("operator")}
                and len(ready_pods(release, "operator")) == 1)
    wait_for(replaced, timeout=120, what="the deleted operator pod replaced",
             diagnose=release.diagnose, interval=1)
    # The replacement resumed all 100 (one reconcile each on start): still no second
    # session anywhere.
    time.sleep(5)
    listed = get_json(release.cluster, "paymentsessions", "-n", namespace)["items"]
    uids = {o["metadata"]["uid"] for o in listed if o["metadata"]["name"] in names}
    sessions = node_services.emulator.sessions()
    made = [s for s in sessions if s.get("client_reference_id") in uids]
    assert len(made) == 100, f"{len(made)} provider sessions for 100 objects"
    assert {s["id"] for s in made} == {o["status"]["sessionId"] for o in listed
                                       if o["metadata"]["name"] in names}


def test_helm_uninstall_keeps_the_crds_and_the_payment_sessions(
        node: LocalCluster, node_services: NodeServices, paykube_image: images.BuiltImage,
        tmp_path: Path) -> None:
    """A release of its own whose credentials come from AWS Secrets Manager (moto, through
    its relay): a payment to Paid, then `helm uninstall`: the objects and CRDs stay, the
    operator and webhook go."""
    moto = node_services.moto
    secret_id = f"paykube/node/{tmp_path.name}"
    client = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url,
                          region_name=moto.region, aws_access_key_id=moto.access_key_id,
                          aws_secret_access_key=moto.secret_access_key)
    # The API key and the signing secrets apart (each component's IAM role reads its own).
    client.create_secret(Name=f"{secret_id}/key", SecretString=json.dumps({"apiKey": API_KEY}))
    client.create_secret(Name=f"{secret_id}/signing",
                         SecretString=json.dumps({"webhookSecrets": [WEBHOOK_SECRET]}))
    aws = {"source": "aws", "existingSecret": "", "keys": {
        "webhookSecrets": "", "stripeApiKey": "", "databaseUrl": "", "metricsUsername": "",
        "metricsPassword": ""},
        "aws": {"region": moto.region, "endpointUrl": node_services.moto_url,
                "stripeSecretId": f"{secret_id}/key",
                "webhookSecretId": f"{secret_id}/signing"}}
    credentials = [{"name": "AWS_ACCESS_KEY_ID", "value": moto.access_key_id},
                   {"name": "AWS_SECRET_ACCESS_KEY", "value": moto.secret_access_key}]
    with release_on_node(node, node_services, paykube_image, tmp_path, "pku", uninstall=False,
                         secrets=aws, tests={"payment": {"enabled": False}},
                         operator={"extraEnv": credentials},
                         webhook={"extraEnv": credentials, "replicas": 1}) as installed:
        installed.apply_session("kept-1")
        opened = installed.wait_phase("kept-1", "Open")
        payload = completed_event(opened)
        url = f"{installed.service_url()}/webhooks/stripe"
        assert post(url, payload, signed_headers(payload)) == 200
        installed.wait_phase("kept-1", "Paid", timeout=30)
        installed.helm("uninstall", installed.name, "--wait", "--timeout", "120s",
                       timeout=180)
        wait_for(lambda: not installed.pods("operator") and not installed.pods("webhook"),
                 timeout=90, what="the release's pods gone", diagnose=installed.diagnose)
        crds = node.kubectl("get", "crds", "-o", "name").stdout.split()
        assert "customresourcedefinition.apiextensions.k8s.io/" \
               "paymentsessions.payments.paykube.dev" in crds
        kept = installed.session("kept-1")
        assert kept["status"]["phase"] == "Paid"
        assert kept["metadata"].get("deletionTimestamp") is None
