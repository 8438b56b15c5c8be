"""Which verified events may move which object (pure): the account, the session, the
mode, the Connect account and the amount must all be the object's own."""

from __future__ import annotations

import dataclasses

import pytest

from paykube.api.providers import ProviderId, ProviderSpec, selector_admits
from paykube.api.types import PaymentSessionSpec, Phase, ProviderRef, Status
from paykube.binding import Ignored, event_binding
from paykube.lifecycle import SessionSnapshot

SPEC = PaymentSessionSpec(amount=199900, currency="usd", success_url="https://x.example/ok",
                          cancel_url="https://x.example/no",
                          provider_ref=ProviderRef("PaymentProvider", "acct-a"))
A = ProviderId.bound_to("team-a", SPEC.provider_ref)
B = ProviderId("PaymentProvider", "team-b", "acct-b")
STATUS = Status(phase=Phase.OPEN, session_id="cs_test_a", livemode=True)
SESSION = SessionSnapshot("cs_test_a", amount_total=199900, currency="usd")


def check(**changes: object) -> Ignored | None:
    args: dict[str, object] = {"route": A, "bound": A, "spec": SPEC, "status": STATUS,
                               "phase": Phase.PAID, "session": SESSION, "livemode": True,
                               "connect_account": None}
    args |= changes
    return event_binding(**args)  # type: ignore[arg-type]


def test_the_objects_own_event_applies() -> None:
    assert check() is None


@pytest.mark.parametrize(("changes", "reason"), [
    ({"route": B}, Ignored.WRONG_ACCOUNT),
    ({"route": ProviderId.default()}, Ignored.WRONG_ACCOUNT),
    ({"status": Status(phase=Phase.PENDING)}, Ignored.NO_SESSION_YET),
    ({"session": dataclasses.replace(SESSION, session_id="cs_test_b")},
     Ignored.SESSION_MISMATCH),
    ({"livemode": False}, Ignored.LIVEMODE_MISMATCH),
    ({"livemode": None}, Ignored.LIVEMODE_MISMATCH),
    ({"connect_account": "acct_1Other"}, Ignored.CONNECT_ACCOUNT_MISMATCH),
    ({"session": dataclasses.replace(SESSION, amount_total=1)}, Ignored.AMOUNT_MISMATCH),
    ({"session": dataclasses.replace(SESSION, currency="eur")}, Ignored.AMOUNT_MISMATCH),
    ({"session": dataclasses.replace(SESSION, amount_total=None)}, Ignored.AMOUNT_MISMATCH),
], ids=["other-tenant", "default-route", "no-session", "other-session", "test-mode",
        "mode-missing", "connect", "amount", "currency", "amount-missing-before-paid"])
def test_anything_else_is_ignored_with_its_reason(changes: dict[str, object],
                                                  reason: Ignored) -> None:
    assert check(**changes) is reason


def test_an_expiry_without_amounts_is_still_the_objects() -> None:
    bare = dataclasses.replace(SESSION, amount_total=None, currency=None)
    assert check(phase=Phase.EXPIRED, session=bare) is None


def test_connect_events_must_name_the_sessions_account() -> None:
    connected = dataclasses.replace(STATUS, account="acct_1Tenant")
    assert check(status=connected, connect_account="acct_1Tenant") is None
    assert check(status=connected) is Ignored.CONNECT_ACCOUNT_MISMATCH


def test_an_object_without_a_ref_is_bound_to_the_default_account() -> None:
    assert ProviderId.bound_to("team-a", None).is_default
    cluster = ProviderId.bound_to("team-a", ProviderRef("ClusterPaymentProvider", "shared"))
    assert cluster == ProviderId("ClusterPaymentProvider", "", "shared")
    assert ProviderId.bound_to("team-b", SPEC.provider_ref) != A  # same name, other tenant


@pytest.mark.parametrize("provider", [
    ProviderId.default(), ProviderId("ClusterPaymentProvider", "", "shared.eu"),
    ProviderId("PaymentProvider", "team-a", "acct.a")])
def test_route_keys_round_trip(provider: ProviderId) -> None:
    assert ProviderId.from_route_key(provider.route_key) == provider


def test_webhook_paths_name_the_account() -> None:
    assert ProviderId.default().webhook_path() == "/webhooks/stripe"
    assert A.webhook_path() == "/webhooks/stripe/ns/team-a/acct-a"
    assert (ProviderId("ClusterPaymentProvider", "", "shared").webhook_path()
            == "/webhooks/stripe/cluster/shared")


@pytest.mark.parametrize(("selector", "labels", "admitted"), [
    (None, {"team": "a"}, False),
    ({}, {"team": "a"}, False),
    ({"matchLabels": {}}, {"team": "a"}, False),
    ({"matchLabels": {"team": "a"}}, {"team": "a"}, True),
    ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
     {"team": "b"}, True),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]},
     {"team": "a"}, False),
    ({"matchExpressions": [{"key": "pay", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "pay", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "pay", "operator": "Gt"}]}, {"pay": "1"}, False),
])
def test_namespace_selectors(selector: dict[str, object] | None, labels: dict[str, str],
                             admitted: bool) -> None:
    assert selector_admits(selector, labels) is admitted


def test_provider_spec_defaults() -> None:
    spec = ProviderSpec.from_dict({"type": "stripe",
                                   "apiKey": {"secretRef": {"name": "stripe"}},
                                   "signingSecrets": {"aws": {"secretId": "paykube/whsec"}}})
    assert spec.api_key.secret_name == "stripe" and spec.api_key.key == "apiKey"
    assert spec.signing_secrets is not None
    assert spec.signing_secrets.aws_secret_id == "paykube/whsec"
    assert spec.signing_secrets.aws_field == "webhookSecrets"
    assert not spec.register_webhook and spec.connect_account is None
