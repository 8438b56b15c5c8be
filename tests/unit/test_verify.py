"""Stripe signature verification, cross-checked against the official stripe SDK."""

from __future__ import annotations

import time

import pytest
import stripe

from paykube.settings import SecretStr
from paykube_webhook.verify import Failure, SignatureError, compute_signature, verify

SECRET = "whsec_test_primary"
OLD = "whsec_test_previous"
BODY = b'{"id":"evt_1","type":"checkout.session.completed"}'
NOW = 1_800_000_000


def header(body: bytes = BODY, secret: str = SECRET, t: int = NOW, extra: str = "") -> str:
    return f"t={t},v1={compute_signature(body, secret, t)}{extra}"


def check(head: str | None, body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,),
          now: float = NOW) -> int:
    return verify(body, head, [SecretStr(s) for s in secrets], tolerance=300, now=now)


def test_valid_signature_returns_timestamp() -> None:
    assert check(header()) == NOW


def test_our_signatures_are_accepted_by_the_stripe_sdk_and_vice_versa() -> None:
    now = int(time.time())
    head = header(t=now)
    event = stripe.Webhook.construct_event(BODY.decode(), head, SECRET)
    assert event["id"] == "evt_1"
    sdk_sig = stripe.WebhookSignature._compute_signature(f"{now}.{BODY.decode()}", SECRET)
    assert verify(BODY, f"t={now},v1={sdk_sig}", [SecretStr(SECRET)], tolerance=300,
                  now=now) == now


@pytest.mark.parametrize(
    ("head", "failure"),
    [
        (None, Failure.MISSING_HEADER),
        ("", Failure.MISSING_HEADER),
        ("garbage", Failure.MALFORMED_HEADER),
        (f"v1={'0' * 64}", Failure.MALFORMED_HEADER),
        (f"t=abc,v1={'0' * 64}", Failure.MALFORMED_HEADER),
        (f"t={NOW},t={NOW},v1={'0' * 64}", Failure.MALFORMED_HEADER),
        (f"t={NOW},v0={'0' * 64}", Failure.NO_V1),
        (f"t={NOW},v1={'0' * 64}", Failure.MISMATCH),
        (f"t={NOW},v1=é€", Failure.MISMATCH),
    ],
)
def test_malformed_headers_are_refused(head: str | None, failure: Failure) -> None:
    with pytest.raises(SignatureError) as caught:
        check(head)
    assert caught.value.failure is failure


def test_wrong_secret_and_tampered_body_are_refused() -> None:
    with pytest.raises(SignatureError, match="no_matching_signature"):
        check(header(secret="whsec_other"))
    with pytest.raises(SignatureError, match="no_matching_signature"):
        check(header(), body=BODY + b" ")


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_stale_and_future_timestamps_are_refused(skew: int) -> None:
    with pytest.raises(SignatureError) as caught:
        check(header(t=NOW + skew))
    assert caught.value.failure is Failure.STALE


def test_tolerance_boundary_is_inclusive() -> None:
    assert check(header(t=NOW - 300)) == NOW - 300


def test_rotation_accepts_old_and_new_secrets() -> None:
    assert check(header(secret=OLD), secrets=(SECRET, OLD)) == NOW
    assert check(header(secret=SECRET), secrets=(SECRET, OLD)) == NOW


def test_any_of_several_v1_values_may_match() -> None:
    head = f"t={NOW},v1={'f' * 64},v1={compute_signature(BODY, SECRET, NOW)},v0=ignored"
    assert check(head) == NOW


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError) as caught:
        check(header(), secrets=())
    assert caught.value.failure is Failure.NO_SECRETS
