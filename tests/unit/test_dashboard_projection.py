"""What the mirror projects for the dashboard (revision 0003): the provider, the rest of
the error, the Synced condition and the outbox."""

from __future__ import annotations

from typing import Any

from paykube.mirror.projection import project


def _manifest(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"uid": "u-1", "name": "order-1", "namespace": "shop",
                         "resourceVersion": "7", "creationTimestamp": "2026-11-01T10:00:00Z"},
            "spec": {"amount": 500, "currency": "eur"}, "status": status}


def test_provider_defaults_to_stripe_and_follows_the_status() -> None:
    assert project(_manifest({"phase": "Open"})).row["provider"] == "stripe"
    assert project(_manifest({"phase": "Open", "provider": "razorpay"})).row["provider"] \
        == "razorpay"
    assert project(_manifest({"phase": "Open", "provider": "x" * 40})).row["provider"] \
        == "x" * 32


def test_error_details_and_synced_condition() -> None:
    row = project(_manifest({
        "phase": "Failed",
        "error": {"code": "ProviderRejected", "message": "amount too small",
                  "providerCode": "amount_too_small", "docUrl": "https://stripe.com/docs/x",
                  "explanation": "Raise spec.amount."},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Failed", "message": "",
                        "lastTransitionTime": "2026-11-01T10:00:01Z"},
                       {"type": "Synced", "status": "False", "reason": "ProviderRejected",
                        "message": "", "lastTransitionTime": "2026-11-01T10:00:01Z"}],
    })).row
    assert (row["error_message"], row["error_doc_url"], row["error_explanation"]) == (
        "amount too small", "https://stripe.com/docs/x", "Raise spec.amount.")
    assert (row["synced"], row["synced_reason"]) == (False, "ProviderRejected")
    clean = project(_manifest({"phase": "Open"})).row
    assert (clean["synced"], clean["error_message"], clean["error_explanation"]) == (
        None, None, None)


def test_outbox_counts_unconfirmed_entries_and_their_oldest_time() -> None:
    row = project(_manifest({"phase": "Open", "history": [
        {"phase": "Pending", "at": "2026-11-01T10:00:00Z", "source": "operator",
         "published": True},
        {"phase": "Open", "at": "2026-11-01T10:00:02Z", "source": "operator",
         "published": False},
    ]})).row
    assert row["outbox_pending"] == 1
    assert row["outbox_since"].isoformat() == "2026-11-01T10:00:02"
    done = project(_manifest({"phase": "Pending", "history": [
        {"phase": "Pending", "at": "2026-11-01T10:00:00Z", "source": "operator",
         "published": True}]})).row
    assert (done["outbox_pending"], done["outbox_since"]) == (0, None)
