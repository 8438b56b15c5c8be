"""The PaymentSession CRD against a real kube-apiserver.

The API server itself validates PaymentSessions (OpenAPI schema and CEL rules in
crds/paymentsession.yaml): every example in crds/examples/ is accepted, every file in
crds/examples/invalid/ (PaymentSessions and PaymentRefunds) is refused with the message its
`# expect:` line names, the spec is immutable except `cancel`, and `cancel` never goes back
to false. The PaymentRefund's own behaviour: test_crd_refund.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from paykube_dev.kube import ControlPlane
from tests.plugins.kube_fixtures import refused


@pytest.fixture
def namespace(unmanaged_namespace: str) -> str:
    """Objects here must not be touched by the shared test operator."""
    return unmanaged_namespace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
VALID = sorted(EXAMPLES.glob("paymentsession-*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
SIMPLE = EXAMPLES / "paymentsession-simple.yaml"
EXPECT = "# expect:"


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name} must start with '{EXPECT} <message>'"
    return first.removeprefix(EXPECT).strip()


def manifest(path: Path) -> dict[str, object]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def apply(
    kube: ControlPlane, namespace: str, text: str, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        "apply", "--server-side", "--field-manager=test-crd", "-n", namespace, "-f", "-",
        input=text, check=check,
    )


def patch_spec(
    kube: ControlPlane, namespace: str, name: str, spec: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        "patch", "paymentsession", name, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": spec}), check=False,
    )


def test_examples_are_present() -> None:
    assert SIMPLE in VALID
    assert len(VALID) >= 3
    assert len(INVALID) >= 10
    # `kubectl apply -f crds/examples/` creates sessions only; refunds, which need a Paid
    # session, live in crds/examples/refunds/ (test_crd_refund.py).
    assert {manifest(p)["kind"] for p in EXAMPLES.glob("*.yaml")} == {"PaymentSession"}
    assert {manifest(p)["kind"] for p in (EXAMPLES / "refunds").glob("*.yaml")} == {
        "PaymentRefund"}
    assert all(manifest(p)["kind"] == "PaymentSession" for p in VALID)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_example_is_accepted(kube: ControlPlane, namespace: str, path: Path) -> None:
    apply(kube, namespace, path.read_text())
    meta = manifest(path)["metadata"]
    assert isinstance(meta, dict)
    got = kube.kubectl("get", "paymentsession", meta["name"], "-n", namespace, "-o", "json")
    spec = json.loads(got.stdout)["spec"]
    # The defaults the schema declares are applied by the API server.
    assert "provider" not in spec  # the PSP is the type of the referenced account
    assert spec["cancel"] is False
    assert spec["deletionPolicy"] in ("Expire", "Orphan")
    assert spec["expiresAfter"]


PROVIDERS = EXAMPLES / "providers"


@pytest.mark.parametrize("path", sorted(PROVIDERS.glob("*.yaml")), ids=lambda p: p.stem)
def test_provider_example_is_accepted_and_shows_its_columns(
        kube: ControlPlane, namespace: str, path: Path) -> None:
    apply(kube, namespace, path.read_text())
    body = manifest(path)
    meta = body["metadata"]
    assert isinstance(meta, dict)
    kind = str(body["kind"]).lower()
    scope = [] if kind == "clusterpaymentprovider" else ["-n", namespace]
    table = kube.kubectl("get", kind, meta["name"], *scope, "-o", "wide").stdout
    for column in ("TYPE", "READY", "ACCOUNT", "MODE", "WEBHOOK"):
        assert column in table
    if not scope:
        kube.kubectl("delete", kind, meta["name"], "--wait=false")


@pytest.mark.parametrize("path", sorted((PROVIDERS / "invalid").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_invalid_provider_is_refused(kube: ControlPlane, namespace: str, path: Path) -> None:
    refused(apply(kube, namespace, path.read_text(), check=False), expected_message(path))


def test_provider_type_and_connect_account_are_immutable(kube: ControlPlane,
                                                         namespace: str) -> None:
    original = (PROVIDERS / "paymentprovider.yaml").read_text()
    apply(kube, namespace, original)
    connected = original.replace("  type: stripe\n", "  type: stripe\n  connectAccount: acct_1X\n")
    refused(apply(kube, namespace, connected, check=False), "spec.connectAccount is immutable")


def test_provider_ref_is_immutable(kube: ControlPlane, namespace: str) -> None:
    own = (EXAMPLES / "paymentsession-own-account.yaml").read_text()
    apply(kube, namespace, own)
    other = own.replace("name: stripe\n", "name: another-account\n")
    assert other != own
    refused(apply(kube, namespace, other, check=False), "spec.providerRef is immutable")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_is_refused(kube: ControlPlane, namespace: str, path: Path) -> None:
    result = apply(kube, namespace, path.read_text(), check=False)
    refused(result, expected_message(path))


def test_amount_is_immutable(kube: ControlPlane, namespace: str) -> None:
    original = SIMPLE.read_text()
    apply(kube, namespace, original)
    changed = original.replace("amount: 1999", "amount: 2999")
    assert changed != original
    refused(
        apply(kube, namespace, changed, check=False),
        "spec.amount is immutable: create a new PaymentSession to charge a different amount",
    )
    got = kube.kubectl("get", "paysess", "order-1001", "-n", namespace,
                       "-o", "jsonpath={.spec.amount}")
    assert got.stdout == "1999"
    # Re-applying the unchanged manifest is still fine.
    apply(kube, namespace, original)


def test_optional_fields_cannot_be_added_or_removed(kube: ControlPlane, namespace: str) -> None:
    apply(kube, namespace, SIMPLE.read_text())
    refused(
        patch_spec(kube, namespace, "order-1001", {"customerEmail": "jane@example.com"}),
        "spec.customerEmail is immutable",
    )
    refused(
        patch_spec(kube, namespace, "order-1001", {"description": None}),
        "spec.description is immutable",
    )


def test_cancel_can_be_set_but_not_unset(kube: ControlPlane, namespace: str) -> None:
    apply(kube, namespace, SIMPLE.read_text())
    result = patch_spec(kube, namespace, "order-1001", {"cancel": True})
    assert result.returncode == 0, result.stderr
    refused(
        patch_spec(kube, namespace, "order-1001", {"cancel": False}),
        "spec.cancel cannot go back from true to false",
    )
    got = kube.kubectl("get", "paysess", "order-1001", "-n", namespace,
                       "-o", "jsonpath={.spec.cancel}")
    assert got.stdout == "true"


def test_printer_columns(kube: ControlPlane, namespace: str) -> None:
    apply(kube, namespace, SIMPLE.read_text())
    status = {
        "phase": "Open",
        "sessionId": "cs_test_printer",
        "url": "https://checkout.stripe.com/c/pay/cs_test_printer",
        "expiresAt": "2030-01-01T00:00:00Z",
    }
    kube.kubectl(
        "patch", "paymentsession", "order-1001", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )

    narrow = kube.kubectl("get", "paysess", "-n", namespace).stdout.splitlines()
    assert narrow[0].split() == ["NAME", "PHASE", "AMOUNT", "CURRENCY", "SESSION", "AGE"]
    assert narrow[1].split()[:5] == ["order-1001", "Open", "1999", "usd", "cs_test_printer"]

    wide = kube.kubectl("get", "paysess", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "PHASE", "AMOUNT", "REFUNDED", "CURRENCY", "SESSION", "AGE", "URL", "EXPIRES",
        "PROVIDER",
    ]
    row = wide[1].split()
    assert row[-2:] == [status["url"], status["expiresAt"]]


def test_explain_teaches_the_spec(kube: ControlPlane) -> None:
    # The CRD's OpenAPI document is published shortly after the CRD is established.
    deadline = time.monotonic() + 30
    while True:
        result = kube.kubectl("explain", "paymentsession.spec.amount", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    assert "DESCRIPTION:" in result.stdout
    assert "smallest unit" in result.stdout
