"""Charts drawn on the server as inline SVG, from plain values: no JavaScript, no CDN.

Each chart is one ``<svg role="img">`` labelled by its ``<title>`` and ``<desc>`` (read out
by screen readers), with its axis labels, ticks and legend as real ``<text>``, so it reads
without JavaScript and keeps its labels when printed. Colours are presentation attributes
(no ``style``, nothing the dashboard's CSP has to allow) and every series also has its own
dash pattern, so the lines stay apart in black and white. Every point and bar carries a
``<title>`` with its exact value (a tooltip on hover, read by screen readers).

Values are integers (minor units of money, counts); ``fmt`` turns one into its label
(``Money(v, "usd").format()``, ``str``). Pure functions: same input, same SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = ["PALETTE", "Series", "bar_chart", "line_chart", "nice_ticks"]

# Dark enough for a 3:1 contrast on white (WCAG non-text contrast), distinct in print by dash.
PALETTE: tuple[str, ...] = ("#1f4e9c", "#b3361e", "#1d6b3a", "#6a3d9a", "#8a5a00", "#00607a")
_DASHES: tuple[str, ...] = ("", "6 3", "2 3", "8 3 2 3", "4 4", "1 2")
_TEXT = "#1a1a1a"
_GRID = "#c8c8c8"
_MAX_X_LABELS = 8
_ML, _MR, _MT, _MB = 72, 16, 16, 40  # margins: left (y labels), right, top, bottom (x labels)


@dataclass(frozen=True)
class Series:
    """One line: ``name`` for the legend, one value per x label."""

    name: str
    values: Sequence[int]


def nice_ticks(top: int, most: int = 5) -> list[int]:
    """Tick values from 0 to at least ``top``, a 1/2/5 x 10^k step, at most ``most`` + 1.

    >>> nice_ticks(0)
    [0, 1]
    >>> nice_ticks(930)
    [0, 200, 400, 600, 800, 1000]
    """
    if top <= 0:
        return [0, 1]
    step = 1
    while True:
        for m in (1, 2, 5):
            s = step * m
            if -(-top // s) <= most:
                n = -(-top // s)
                return [s * i for i in range(n + 1)]
        step *= 10


def _id(base: str) -> str:
    """An id fragment safe in an attribute: letters, digits and dashes."""
    clean = "".join(c if c.isalnum() else "-" for c in base.lower()).strip("-")
    return clean or "chart"


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    t, d = f"{chart_id}-title", f"{chart_id}-desc"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" role="img" '
        f'aria-labelledby="{t} {d}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" font-family="sans-serif" font-size="12">',
        f'<title id="{t}">{escape(title)}</title>',
        f'<desc id="{d}">{escape(desc)}</desc>',
    ]


def _y_axis(
    ticks: list[int], fmt: Callable[[int], str], width: int, y_of: Callable[[int], float]
) -> list[str]:
    out = ['<g class="y-axis">']
    for v in ticks:
        y = y_of(v)
        out.append(
            f'<line x1="{_ML}" y1="{y:.1f}" x2="{width - _MR}" y2="{y:.1f}" stroke="{_GRID}" '
            'stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_TEXT}">'
            f"{escape(fmt(v))}</text>"
        )
    out.append("</g>")
    return out


def _x_label_indexes(n: int) -> list[int]:
    """Which of ``n`` x labels to print: all up to 8, else evenly spaced with the last."""
    if n <= _MAX_X_LABELS:
        return list(range(n))
    step = -(-(n - 1) // (_MAX_X_LABELS - 1))
    picked = list(range(0, n, step))
    if picked[-1] != n - 1:
        if n - 1 - picked[-1] < step / 2:
            picked[-1] = n - 1
        else:
            picked.append(n - 1)
    return picked


def _finish(out: list[str]) -> Markup:
    """The parts as one SVG: every text and attribute value in them went through escape()."""
    out.append("</svg>")
    return Markup("\n".join(out))  # noqa: S704 (each part escaped where it was made)


def _empty(out: list[str], width: int, height: int) -> Markup:
    out.append(
        f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
        f'fill="{_TEXT}">No data for this period</text>'
    )
    return _finish(out)


def line_chart(
    *,
    title: str,
    desc: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[int], str] = str,
    width: int = 640,
    height: int = 260,
    chart_id: str | None = None,
) -> Markup:
    """A line per series over ``x_labels`` (one value per label), y from 0, with a legend.

    Raises ``ValueError`` when a series has not one value per label."""
    for s in series:
        if len(s.values) != len(x_labels):
            raise ValueError(
                f"series {s.name!r} has {len(s.values)} values for {len(x_labels)} labels"
            )
    cid = _id(chart_id or title)
    legend_h = 20 * len(series)
    total_h = height + legend_h
    out = _open(cid, title, desc, width, total_h)
    if not x_labels or not series:
        return _empty(out, width, total_h)
    top = max((max(s.values, default=0) for s in series), default=0)
    ticks = nice_ticks(top)
    plot_w, plot_h = width - _ML - _MR, height - _MT - _MB

    def y_of(v: int) -> float:
        return _MT + plot_h - plot_h * v / ticks[-1]

    def x_of(i: int) -> float:
        return _ML + (plot_w * i / (len(x_labels) - 1) if len(x_labels) > 1 else plot_w / 2)

    out += _y_axis(ticks, fmt, width, y_of)
    out.append('<g class="x-axis">')
    out.append(
        f'<line x1="{_ML}" y1="{_MT + plot_h}" x2="{width - _MR}" y2="{_MT + plot_h}" '
        f'stroke="{_TEXT}" stroke-width="1"/>'
    )
    for i in _x_label_indexes(len(x_labels)):
        out.append(
            f'<text x="{x_of(i):.1f}" y="{_MT + plot_h + 18}" text-anchor="middle" '
            f'fill="{_TEXT}">{escape(x_labels[i])}</text>'
        )
    out.append("</g>")
    for n, s in enumerate(series):
        colour, dash = PALETTE[n % len(PALETTE)], _DASHES[n % len(_DASHES)]
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(s.values))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="series" data-series="{escape(s.name)}">')
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
            f'points="{points}"/>'
        )
        for i, v in enumerate(s.values):
            out.append(
                f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(s.name)}, {escape(x_labels[i])}: {escape(fmt(v))}</title>"
                "</circle>"
            )
        out.append("</g>")
    out.append('<g class="legend">')
    for n, s in enumerate(series):
        colour, dash = PALETTE[n % len(PALETTE)], _DASHES[n % len(_DASHES)]
        y = height + 20 * n + 4
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{_ML}" y1="{y}" x2="{_ML + 28}" y2="{y}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/>'
        )
        out.append(f'<text x="{_ML + 36}" y="{y + 4}" fill="{_TEXT}">{escape(s.name)}</text>')
    out.append("</g>")
    return _finish(out)


def bar_chart(
    *,
    title: str,
    desc: str,
    bars: Sequence[tuple[str, int]],
    fmt: Callable[[int], str] = str,
    width: int = 640,
    bar_height: int = 22,
    label_width: int = 180,
    chart_id: str | None = None,
) -> Markup:
    """Horizontal bars, one per ``(label, value)`` in the order given, each with its value
    printed at its end (so nothing depends on reading a scale)."""
    cid = _id(chart_id or title)
    gap = 8
    height = _MT + len(bars) * (bar_height + gap) + 8 if bars else 80
    out = _open(cid, title, desc, width, height)
    if not bars:
        return _empty(out, width, height)
    top = max(v for _, v in bars)
    room = width - label_width - _MR - 90  # space kept for the value printed after the bar
    for i, (label, value) in enumerate(bars):
        y = _MT + i * (bar_height + gap)
        w = room * value / top if top > 0 else 0
        colour = PALETTE[0]
        out.append(f'<g class="bar" data-label="{escape(label)}">')
        out.append(
            f'<text x="{label_width - 8}" y="{y + bar_height / 2 + 4:.1f}" text-anchor="end" '
            f'fill="{_TEXT}">{escape(label)}</text>'
        )
        out.append(
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar_height}" '
            f'fill="{colour}"><title>{escape(label)}: {escape(fmt(value))}</title></rect>'
        )
        out.append(
            f'<text x="{label_width + w + 6:.1f}" y="{y + bar_height / 2 + 4:.1f}" '
            f'fill="{_TEXT}">{escape(fmt(value))}</text>'
        )
        out.append("</g>")
    return _finish(out)
