"""API calls as the API server counts them (`apiserver_request_total`), not as a client
believes it made them: the figure the status-path benchmarks and tests report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from paykube_dev.kube import ControlPlane

# Requests that are not the per-object work: the watches and lists behind them.
STREAMING = frozenset({"WATCH", "LIST", "CONNECT"})


def request_counts(plane: ControlPlane,
                   resources: Iterable[str] = ("paymentsessions", "events"),
                   ) -> Counter[tuple[str, str, str]]:
    """(verb, resource, subresource) -> requests so far, for `resources`."""
    wanted = set(resources)
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("resource") not in wanted:
                continue
            key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
            counts[key] += int(sample.value)
    return counts


def per_object_calls(before: Counter[tuple[str, str, str]],
                     after: Counter[tuple[str, str, str]], *,
                     created_by_client: int) -> Counter[tuple[str, str, str]]:
    """What happened between the two readings, without the client's own creates of the
    objects and without watches and lists."""
    delta = after - before
    delta[("POST", "paymentsessions", "")] -= created_by_client
    return Counter({k: v for k, v in delta.items() if k[0] not in STREAMING and v > 0})
