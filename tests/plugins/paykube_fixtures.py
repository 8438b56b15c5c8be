"""Fixtures that run paykube itself: the operator and webhook as real subprocesses against
the real control plane and the Stripe emulator (its own process)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from paykube_dev.kube import REPO, ControlPlane
from paykube_dev.programs import Program, start_operator, start_webhook
from paykube_dev.services import ActiveMQ
from paykube_dev.stripe_emulator import EmulatorControl, EmulatorProcess
from tests.plugins.kube_fixtures import create_secret as create_secret_data
from tests.plugins.kube_fixtures import make_namespace

API_KEY = "sk_test_paykube_stack"
METRICS_AUTH = ("prometheus", "metrics-password-for-tests")
EVENTS_TOPIC = "/topic/VirtualTopic.paykube.payments"
EVENTS_QUEUE = "/queue/Consumer.tests.VirtualTopic.paykube.payments"
WEBHOOK_SECRET = "whsec_paykube_stack_secret"
Manifest = dict[str, Any]


@dataclass
class Stack:
    """The running platform plus paykube, with helpers to drive and observe payments."""

    kube: ControlPlane
    emulator: EmulatorControl
    emulator_url: str
    operator: Program
    webhook: Program
    directory: Path
    env: dict[str, str] = field(default_factory=dict)

    def operator_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def apply(self, namespace: str, name: str, **spec: Any) -> Manifest:
        example = yaml.safe_load((REPO / "crds/examples/paymentsession-simple.yaml").read_text())
        manifest = {"apiVersion": example["apiVersion"], "kind": example["kind"],
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {**example["spec"], **spec}}
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        return self.get(namespace, name)

    def get(self, namespace: str, name: str) -> Manifest:
        out = self.kube.kubectl("get", "paymentsession", name, "-n", namespace, "-o", "json")
        result: Manifest = json.loads(out.stdout)
        return result

    def wait_for(self, namespace: str, name: str, check: Callable[[Manifest], bool],
                 *, timeout: float = 60.0, what: str = "condition") -> Manifest:
        deadline = time.monotonic() + timeout
        obj: Manifest = {}
        while time.monotonic() < deadline:
            obj = self.get(namespace, name)
            if check(obj):
                return obj
            time.sleep(0.3)
        raise AssertionError(f"{namespace}/{name}: {what} not reached in {timeout}s; last "
                             f"status: {json.dumps(obj.get('status'), indent=1)}")

    def wait_phase(self, namespace: str, name: str, phase: str,
                   timeout: float = 60.0) -> Manifest:
        return self.wait_for(namespace, name,
                             lambda o: o.get("status", {}).get("phase") == phase,
                             timeout=timeout, what=f"phase {phase}")


@dataclass
class Solo:
    """An operator of its own with its own Stripe emulator, on one `solo-*` namespace."""

    namespace: str
    emulator: EmulatorControl
    emulator_url: str
    operator: Program
    kubeconfig: Path
    env: dict[str, str]

    def restart_operator(self, *, crash: bool = False) -> None:
        """Stop (or SIGKILL, with `crash`) the operator and start it again, same settings."""
        if crash:
            self.operator.kill()
        else:
            self.operator.stop()
        self.operator = start_operator(self.kubeconfig, self.operator.log, self.env)


@contextlib.contextmanager
def solo_operator(stack: Stack, directory: Path, **env: str) -> Iterator[Solo]:
    with solo_operator_as(stack, directory, stack.kube.kubeconfig, **env) as solo:
        yield solo


@contextlib.contextmanager
def solo_operator_as(stack: Stack, directory: Path, kubeconfig: Path,
                     **env: str) -> Iterator[Solo]:
    """A solo operator that authenticates with `kubeconfig`."""
    namespace = make_namespace(stack.kube, "solo")
    with EmulatorProcess(directory / "emulator.log") as emulator:
        settings = stack.operator_env(PAYKUBE_STRIPE_API_BASE=emulator.base_url,
                                      PAYKUBE_NAMESPACES=namespace, **env)
        operator = start_operator(kubeconfig, directory / "operator.log", settings)
        solo = Solo(namespace, EmulatorControl(emulator.base_url), emulator.base_url,
                    operator, kubeconfig, settings)
        try:
            yield solo
        finally:
            solo.operator.stop()
            stack.kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def phase_of(obj: Manifest) -> str | None:
    phase: str | None = obj.get("status", {}).get("phase")
    return phase


def create_secret(kube: ControlPlane, namespace: str, name: str, api_key: str, *,
                  signing_secret: str | None = None) -> dict[str, str]:
    """A PaymentProvider `name` of its own Stripe account: its API key in Secret `name`, its
    signing secret in Secret `name-signing` (apart, as the trust rules want). Returns the
    `spec.providerRef` that names it."""
    create_provider(kube, namespace, name, api_key, signing_secret=signing_secret)
    return provider_ref(name)


def provider_ref(name: str, kind: str = "PaymentProvider") -> dict[str, str]:
    return {"kind": kind, "name": name}


def create_provider(kube: ControlPlane, namespace: str | None, name: str, api_key: str, *,
                    signing_secret: str | None = None, secrets_namespace: str | None = None,
                    **spec: Any) -> None:
    """A PaymentProvider (or, with `namespace` None, a ClusterPaymentProvider whose Secrets
    live in `secrets_namespace`) with its key and signing-secret Secrets."""
    where = namespace or secrets_namespace
    assert where is not None
    create_secret_data(kube, where, name, {"apiKey": api_key})
    create_secret_data(kube, where, f"{name}-signing",
                       {"webhookSecrets": signing_secret or f"whsec_{name}_{uuid.uuid4().hex}"})
    body: Manifest = {
        "apiVersion": "payments.paykube.dev/v1alpha1",
        "kind": "PaymentProvider" if namespace else "ClusterPaymentProvider",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {"type": "stripe", "apiKey": {"secretRef": {"name": name}},
                 "signingSecrets": {"secretRef": {"name": f"{name}-signing"}}, **spec},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(body))


CLUSTER_NAMESPACE = "paykube-system"


def make_cluster_namespace(kube: ControlPlane) -> None:
    """The operator's own namespace: ClusterPaymentProviders' Secrets and the webhook's
    route table live there."""
    kube.kubectl("create", "namespace", CLUSTER_NAMESPACE, check=False)


@pytest.fixture(scope="session")
def stack(kube: ControlPlane, crd_installed: Path, activemq: ActiveMQ,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("stack")
    with EmulatorProcess(directory / "emulator.log") as emulator:
        env = {
            "PAYKUBE_STRIPE_API_BASE": emulator.base_url,
            "PAYKUBE_STRIPE_API_KEY": API_KEY,
            "PAYKUBE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "PAYKUBE_POLL_MIN_INTERVAL": "2",
            "PAYKUBE_POLL_MAX_INTERVAL": "10",
            "PAYKUBE_LOG_LEVEL": "DEBUG",
            # Tests that run their own operator use `solo-*` namespaces, out of its reach.
            "PAYKUBE_NAMESPACES": "t-*",
            "PAYKUBE_METRICS_USERNAME": METRICS_AUTH[0],
            "PAYKUBE_METRICS_PASSWORD": METRICS_AUTH[1],
            "PAYKUBE_BROKER_URLS": f"127.0.0.1:{activemq.stomp_port}",
            "PAYKUBE_BROKER_DESTINATION": EVENTS_TOPIC,
            "PAYKUBE_OUTBOX_INTERVAL": "2",
            "PAYKUBE_CLUSTER_NAMESPACE": CLUSTER_NAMESPACE,
            "PAYKUBE_PROVIDER_RESYNC": "3",
            "PAYKUBE_ROUTES_TTL": "2",
            "PAYKUBE_SECRETS_TTL": "2",
        }
        make_cluster_namespace(kube)
        webhook = start_webhook(kube.kubeconfig, directory / "webhook.log", env)
        # The operator registers providers' endpoints (webhook.register) at this address.
        env["PAYKUBE_WEBHOOK_PUBLIC_URL"] = webhook.url
        operator = start_operator(kube.kubeconfig, directory / "operator.log", env)
        control = EmulatorControl(emulator.base_url)
        # Only the default account's events are delivered: sessions of another account
        # (spec.providerRef) reach their phases through the operator's polling alone.
        control.add_webhook_endpoint(f"{webhook.url}/webhooks/stripe", WEBHOOK_SECRET,
                                     api_key=API_KEY)
        try:
            yield Stack(kube, control, emulator.base_url, operator, webhook, directory, env)
        finally:
            operator.stop()
            webhook.stop()
