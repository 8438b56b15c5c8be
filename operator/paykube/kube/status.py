"""Optimistic status writes: read, decide with a pure function, write with the
resourceVersion precondition, and on conflict start over."""

from __future__ import annotations

from collections.abc import Callable

from paykube.api.types import ObjectRef, Status
from paykube.errors import ConflictError
from paykube.kube.client import KubeClient, Manifest, NotFound

Decide = Callable[[Manifest, Status], Status]


def cancel_requested(obj: Manifest) -> bool:
    """Whether we asked the provider to expire the session (spec.cancel or deletion), so
    that an Expired report means Canceled."""
    return bool(obj.get("spec", {}).get("cancel")) or bool(
        obj["metadata"].get("deletionTimestamp"))


def ref_of(obj: Manifest) -> ObjectRef:
    meta = obj["metadata"]
    return ObjectRef(meta["namespace"], meta["name"], meta["uid"])


async def write_status(
    client: KubeClient, ref: ObjectRef, decide: Decide, *, attempts: int = 10,
) -> tuple[Manifest, Status, Status]:
    """Apply `decide(object, current) -> next` until it lands; returns (object, before, after).

    Nothing is written when `next == current`. Raises NotFound when the object is gone or
    was replaced by a different object of the same name (uid mismatch).
    """
    for _ in range(attempts):
        obj = await client.get_session(ref.namespace, ref.name)
        if ref.uid and obj["metadata"]["uid"] != ref.uid:
            raise NotFound(f"{ref.namespace}/{ref.name} now has a different uid")
        current = Status.from_dict(obj.get("status"))
        proposed = decide(obj, current)
        if proposed == current:
            return obj, current, current
        try:
            written = await client.replace_status(
                ref_of(obj), obj["metadata"]["resourceVersion"], proposed.to_dict()
            )
        except ConflictError:
            continue
        return written, current, proposed
    raise ConflictError(f"{ref.namespace}/{ref.name}: gave up after {attempts} conflicts")
