"""Charts as SVG drawn on the server: stacked bars over time and stacked horizontal bars per
key. Pure functions returning markup; every text is escaped, colours come from the
stylesheet (classes `phase-<name>`, no inline style, so the CSP needs no 'unsafe-inline'),
and every bar carries a <title> with its numbers. The pages show the same numbers as a
table beside each chart; a chart with nothing to show is not drawn (the page says so)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
_LEFT, _BOTTOM, _TOP = 44, 28, 8


def _class(phase: str) -> str:
    return "phase-" + "".join(c for c in phase.lower() if c.isalnum())


def _nice_max(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def time_series(title: str, labels: Sequence[str], series: Sequence[Mapping[str, int]],
                phases: Sequence[str]) -> Markup:
    """Stacked bars, one per bucket (`labels[i]` names bucket i), one segment per phase."""
    top = _nice_max(max((sum(b.values()) for b in series), default=0) or 1)
    plot_w, plot_h = WIDTH - _LEFT - 4, HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(1, len(series))
    bar = max(1.0, slot * 0.8)
    parts = [_axis(top, plot_h)]
    for i, bucket in enumerate(series):
        x = _LEFT + i * slot + (slot - bar) / 2
        y: float = _TOP + plot_h
        for phase in phases:
            n = bucket.get(phase, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect class="{_class(phase)}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{escape(labels[i])}: {n} {escape(phase)}</title>'
                "</rect>")
    step = max(1, len(labels) // 6)
    for i in range(0, len(labels), step):
        x = _LEFT + i * slot + slot / 2
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 10}" '
                     f'text-anchor="middle">{escape(labels[i])}</text>')
    return _svg(title, "".join(parts), HEIGHT)


def bar_breakdown(title: str, rows: Mapping[str, Mapping[str, int]],
                  phases: Sequence[str]) -> Markup:
    """One horizontal stacked bar per key (provider, namespace), segments per phase."""
    row_h, label_w = 26, 160
    height = _TOP + row_h * max(1, len(rows)) + 4
    top = max((sum(v.values()) for v in rows.values()), default=0) or 1
    plot_w = WIDTH - label_w - 60
    parts = []
    for i, (key, counts) in enumerate(rows.items()):
        y = _TOP + i * row_h
        total = sum(counts.values())
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + 17}" '
                     f'text-anchor="end">{escape(_short(key))}</text>')
        x = float(label_w)
        for phase in phases:
            n = counts.get(phase, 0)
            if not n:
                continue
            w = plot_w * n / top
            parts.append(
                f'<rect class="{_class(phase)}" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" '
                f'height="{row_h - 8}"><title>{escape(key)}: {n} {escape(phase)}</title>'
                "</rect>")
            x += w
        parts.append(f'<text class="value" x="{x + 6:.1f}" y="{y + 17}">{total}</text>')
    return _svg(title, "".join(parts), height)


def _axis(top: int, plot_h: float) -> str:
    lines = []
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        value = top * fraction
        label = f"{value:g}"
        lines.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"></line>'
                     f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{label}</text>')
    return "".join(lines)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _svg(title: str, body: str, height: int) -> Markup:
    return Markup(  # noqa: S704 -- every interpolated text above went through escape()
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>{body}</svg>')
