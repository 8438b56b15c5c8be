"""Which namespaces the mirror's own watch covers (pure parts)."""

from __future__ import annotations

from paykube.mirror.follow import selected, watch_scopes


def test_exact_namespaces_get_one_watch_each() -> None:
    assert watch_scopes(("shop", "billing")) == ("shop", "billing")


def test_globs_or_nothing_mean_one_cluster_wide_watch() -> None:
    assert watch_scopes(()) == (None,)
    assert watch_scopes(("shop", "t-*")) == (None,)


def test_selection_follows_kopf_style_patterns() -> None:
    assert selected("t-1", ("t-*",))
    assert not selected("solo-1", ("t-*",))
    assert selected("anything", ())
    assert not selected("kube-system", ("*", "!kube-*"))
    assert selected("shop", ("*", "!kube-*"))
