"""Inline SVG: the lineage graph (one column per kind, links to each object's page) and line plots."""

from __future__ import annotations

from html import escape
from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.ui.data import COLUMNS, Graph, url

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 190, 24, 70, 10, 12
FILL = {"entity": "#f3e8fd", "source": "#fff4d6", "view": "#dcebfb", "feature": "#eef1f5", "service": "#e3f4e6"}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]


def _clip(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def lineage_svg(g: Graph, element_id: str = "lineage") -> str:
    """The graph left to right: entities/sources, views, features, services; each node links to its page."""
    if not g.nodes:
        return '<p class="muted">nothing to draw</p>'
    cols = [c for c in COLUMNS if any(k == c for k, _ in g.nodes)]
    pos: Dict[Tuple[str, str], Tuple[float, float]] = {}
    heights = []
    for ci, col in enumerate(cols):
        members = [n for n in g.nodes if n[0] == col]
        for ri, n in enumerate(members):
            pos[n] = (PAD + ci * (NODE_W + COL_GAP), PAD + 18 + ri * (NODE_H + ROW_GAP))
        heights.append(len(members))
    width = PAD * 2 + len(cols) * NODE_W + (len(cols) - 1) * COL_GAP
    height = PAD * 2 + 18 + max(heights) * (NODE_H + ROW_GAP)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{element_id}" class="lineage" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="lineage">']
    for ci, col in enumerate(cols):
        out.append(f'<text x="{PAD + ci * (NODE_W + COL_GAP)}" y="{PAD + 6}" font-size="11" fill="#69727d">'
                   f'{escape(col)}s</text>')
    for a, b in g.edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        x1, y1, x2, y2 = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<path class="edge" data-from="{escape(a[0])}:{escape(a[1])}" data-to="{escape(b[0])}:'
                   f'{escape(b[1])}" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
                   'fill="none" stroke="#8a99ab" stroke-width="1.3"/>')
    for n, label in g.nodes.items():
        x, y = pos[n]
        focus = n == g.focus
        stroke = ' stroke="#16324f" stroke-width="2.5"' if focus else ' stroke="#9aa7b6"'
        out.append(f'<a href="{escape(url(*n))}" class="node" data-kind="{escape(n[0])}" data-name="{escape(n[1])}">'
                   f'<title>{escape(n[0])} {escape(n[1])}</title>'
                   f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5" fill="{FILL[n[0]]}"{stroke}/>'
                   f'<text x="{x + 8}" y="{y + 16}" font-size="12" fill="#1d2329">{escape(_clip(label))}</text></a>')
    out.append("</svg>")
    return "".join(out)


def line_plot(series: Dict[str, Sequence[Tuple[float, float]]], element_id: str, y_label: str = "",
              x_format=None, y_format=None, width: int = 720, height: int = 220,
              y_max: Optional[float] = None, threshold: Optional[float] = None) -> str:
    """A small line plot of named series of (x, y) points (one colour each, a legend on the right)."""
    points = [p for s in series.values() for p in s]
    if not points:
        return '<p class="muted">no data yet</p>'
    left, right, top, bottom = 60, 190, 12, 30
    xs = [p[0] for p in points]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    ymax = y_max if y_max is not None else max(max(p[1] for p in points), threshold or 0) or 1.0
    yf = y_format or (lambda v: f"{v:.3g}")
    xf = x_format or (lambda v: f"{v:.3g}")

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return height - bottom - min(y, ymax) / ymax * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{element_id}" class="plot" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(y_label)}">',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
           f'<text x="4" y="{top + 8}" font-size="10">{escape(yf(ymax))}</text>',
           f'<text x="4" y="{height - bottom}" font-size="10">{escape(yf(0))}</text>',
           f'<text x="{left}" y="{height - 8}" font-size="10">{escape(xf(x0))}</text>',
           f'<text x="{width - right - 150}" y="{height - 8}" font-size="10">{escape(xf(x1))}</text>',
           f'<text x="{left + 6}" y="{top + 8}" font-size="10" fill="#69727d">{escape(y_label)}</text>']
    if threshold is not None:
        out.append(f'<line x1="{left}" y1="{sy(threshold):.1f}" x2="{width - right}" y2="{sy(threshold):.1f}" '
                   'stroke="#b3261e" stroke-dasharray="4 3"/>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-name="{escape(name)}" fill="none" stroke="{color}" '
                   f'stroke-width="2" points="{coords}"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        out.append(f'<text x="{width - right + 8}" y="{top + 10 + 13 * i}" font-size="11" fill="{color}">'
                   f'{escape(_clip(name, 30))}</text>')
    out.append("</svg>")
    return "".join(out)


def bars(values: List[Tuple[str, float, float]], element_id: str, width: int = 360, height: int = 140) -> str:
    """Paired bars per bin (training vs served share), for a drift histogram."""
    if not values:
        return '<p class="muted">no data</p>'
    top, bottom = 8, 22
    ymax = max(max(a, b) for _, a, b in values) or 1.0
    bw = (width - 20) / len(values)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{element_id}" class="plot" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">']
    for i, (label, a, b) in enumerate(values):
        x = 10 + i * bw
        for j, (v, color, side) in enumerate(((a, "#1f77b4", "training"), (b, "#ff7f0e", "served"))):
            h = v / ymax * (height - top - bottom)
            out.append(f'<rect class="bar {side}" data-bin="{escape(label)}" data-share="{v!r}" '
                       f'x="{x + j * bw / 2 + 1:.1f}" y="{height - bottom - h:.1f}" width="{bw / 2 - 2:.1f}" '
                       f'height="{h:.1f}" fill="{color}"><title>{escape(label)} ({side}): {v:.1%}</title></rect>')
    out.append(f'<text x="10" y="{height - 6}" font-size="10" fill="#1f77b4">training</text>'
               f'<text x="70" y="{height - 6}" font-size="10" fill="#ff7f0e">served</text></svg>')
    return "".join(out)


__all__ = ["lineage_svg", "line_plot", "bars"]
