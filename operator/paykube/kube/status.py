"""Small facts about a PaymentSession manifest that both writers read (the writes
themselves: `paykube.kube.writer`)."""

from __future__ import annotations

from paykube.api.types import ObjectRef
from paykube.kube.client import Manifest


def cancel_requested(obj: Manifest) -> bool:
    """Whether we asked the provider to expire the session (spec.cancel or deletion), so
    that an Expired report means Canceled."""
    return bool(obj.get("spec", {}).get("cancel")) or bool(
        obj["metadata"].get("deletionTimestamp"))


def ref_of(obj: Manifest) -> ObjectRef:
    meta = obj["metadata"]
    return ObjectRef(meta["namespace"], meta["name"], meta["uid"])
