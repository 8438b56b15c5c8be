"""Where kopf keeps what it has handled, without a write per PaymentSession for it.

kopf records each object's handled spec (its "diff base") in an annotation, which costs a
metadata PATCH, and a watch event, after every create. A PaymentSession does not need it:
its spec is immutable but for `spec.cancel`, and its status already says that the create
was handled (a provider session exists, or the object ended). So for sessions the diff
base is read from the status, and written only where the status cannot say it:

- a created object (Pending with no provider session yet) has none: kopf's create cause;
  so has one whose create handler is still being retried (its progress annotation is
  there), so that kopf carries it to its end as before;
- a handled object's diff base is its spec as it is, without a `cancel: true` that is
  still to be carried out: setting it is then kopf's update cause on `spec.cancel`;
- the record is written as before once a cancel was handled, when a handler failed for
  good (so that the failure is not retried for ever), and for objects that have one.

kopf's `kopf-managed` marker annotation is not written either (it would cost the same
PATCH); paykube's own annotations are left out of every diff base instead, which is what
the marker told kopf to do.

Both records are annotations that anyone who may edit the object can write. One that is
not what kopf writes (not JSON, not an object, a field of the wrong type) is taken as
absent, with a warning: kopf would fail on it at every event of the object, and so stop
handling it (its polls, its outbox, its finalizer).

The diff base is built from the spec, labels and annotations alone: kopf deep-copies the
whole body first (status with its history, managedFields), which was a tenth of the
operator's CPU, and for a session it is built twice per event (read and current), so the
last one is kept for the same body.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from typing import Any, cast

import kopf

from paykube.api.types import GROUP, Phase

PREFIX = "paykube.dev"
KIND = "PaymentSession"
CREATE_HANDLER = "reconcile-create"
_HANDLED_KEPT = 65536  # uids whose create handler succeeded (about 100 bytes each)
# The fields of kopf's progress record, by type (kopf ignores others; None is allowed).
_PROGRESS_FIELDS: dict[str, type] = {
    "started": str, "stopped": str, "delayed": str, "purpose": str, "message": str,
    "retries": int, "success": bool, "failure": bool, "subrefs": list}
_PROGRESS_TIMES = ("started", "stopped", "delayed")

log = logging.getLogger(__name__)


def created(status: Any) -> bool:
    """The status says the create was carried out: a provider session exists, or the
    object left Pending (Failed included)."""
    if not status:
        return False
    phase = status.get("phase")
    return bool(phase) and (phase != Phase.PENDING.value or bool(status.get("sessionId")))


def _is_session(body: Any) -> bool:
    return bool(body.get("kind") == KIND
                and str(body.get("apiVersion", "")).startswith(f"{GROUP}/"))


def _unreadable(what: str, body: Any) -> None:
    metadata = body.get("metadata", {})
    log.warning("ignoring the annotation %s of %s %s/%s: not a record that kopf wrote",
                what, body.get("kind"), metadata.get("namespace"), metadata.get("name"))


def _progress_record(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    for field, kind in _PROGRESS_FIELDS.items():
        value = record.get(field)
        if value is None:
            continue
        if not isinstance(value, kind):
            return False
        if isinstance(value, str) and field in _PROGRESS_TIMES:
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                return False
        if isinstance(value, list) and not all(isinstance(ref, str) for ref in value):
            return False
    return True


class SessionDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def __init__(self) -> None:
        super().__init__(prefix=PREFIX, key="last-handled-configuration")
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._last: tuple[Any, Any] | None = None  # (body, its essence)

    def handled(self, uid: str) -> None:
        """A session's create handler succeeded: its status says so. (A failure leaves the
        record to kopf: a create that failed for good must not be tried again.)

        Remembered, because the watch still delivers the handler's own Pending write after
        it: kopf skips events older than its own last patch, but not older than ours, and
        that Pending would look like a create still to do."""
        self._handled[uid] = None
        while len(self._handled) > _HANDLED_KEPT:
            self._handled.popitem(last=False)

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        fields = [tuple(f.split(".")) if isinstance(f, str) else tuple(f)
                  for f in extra_fields or ()]
        if not all(f and f[0] == "spec" for f in fields):  # status fields: kopf's own way
            return self._build(body, extra_fields)
        if self._last is not None and self._last[0] is body:
            return self._last[1]
        metadata = body.get("metadata", {})
        kept = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        kept["metadata"] = {k: metadata[k] for k in ("labels", "annotations", "ownerReferences")
                            if k in metadata}
        essence = self._build(kopf.Body(cast(Any, kept)), None)
        self._last = (body, essence)
        return essence

    def _build(self, body: Any, extra_fields: Any) -> Any:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in [k for k in annotations if k.startswith(f"{PREFIX}/")]:
            del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def _stored(self, body: Any) -> Any:
        """kopf's record of the handled spec, None without one (or with one it cannot use)."""
        stored: Any
        try:
            stored = super().fetch(body=body)
        except ValueError:  # not JSON
            stored = False
        if stored is None or isinstance(stored, dict):
            return stored
        _unreadable(f"{self.prefix}/{self.key}", body)
        return None

    def fetch(self, *, body: Any) -> Any:
        stored = self._stored(body)
        if stored is not None or not _is_session(body):
            return stored
        metadata = body.get("metadata", {})
        if metadata.get("uid", "") not in self._handled:
            if not created(body.get("status")):
                return None
            if f"{PREFIX}/{CREATE_HANDLER}" in metadata.get("annotations", {}):
                return None  # the create handler has not finished: kopf retries it
        essence = self.build(body=body)
        spec = essence.get("spec")
        if spec and spec.get("cancel"):
            # Still to be carried out, unless a record says otherwise. (A copy: the
            # current essence is the same object.)
            essence = {**essence, "spec": {k: v for k, v in spec.items() if k != "cancel"}}
        return essence

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        handled = body.get("metadata", {}).get("uid", "") in self._handled
        if (_is_session(body) and handled and not essence.get("spec", {}).get("cancel")
                and not self._recorded(body)):
            return  # the status says it; a record already there is kept up to date
        super().store(body=body, patch=patch, essence=essence)

    def _recorded(self, body: Any) -> bool:
        """kopf's record is on the object (its annotation, not decoded again)."""
        annotations = body.get("metadata", {}).get("annotations") or {}
        return any(key in annotations for key in self.make_keys(self.key, body=body))


class ProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations, without the `kopf-managed` marker (see above)."""

    def __init__(self) -> None:
        super().__init__(prefix=PREFIX)

    def _store_marker(self, prefix: str, patch: Any, body: Any) -> None:
        return None

    def fetch(self, *, key: Any, body: Any) -> Any:
        record: Any
        try:
            record = super().fetch(key=key, body=body)
        except ValueError:  # not JSON
            record = False
        if record is None or _progress_record(record):
            return record
        _unreadable(f"{self.prefix}/{key}", body)
        return None  # the handler starts afresh; its next record replaces this one
