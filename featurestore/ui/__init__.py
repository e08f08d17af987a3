"""The web catalog served at ``/ui/`` by ``featurestore serve`` (routes: :mod:`featurestore.server_ui`).

Pages are rendered on the server from Jinja2 templates (``templates/``, autoescaped), with inline CSS and
SVG: no build toolchain, no script needed to read them. ``data`` gathers what a page shows (catalog records,
registry history, offline versions, freshness, skew), ``graph`` draws lineage and plots as SVG.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")
_env = None


def render(template: str, **context) -> str:
    """The page ``template`` rendered with ``context`` (HTML-escaped unless marked safe)."""
    global _env
    if _env is None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        _env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _env.filters["ms_time"] = ms_time
        _env.filters["ago"] = ago
    return _env.get_template(template).render(**context)


def ms_time(ms) -> str:
    """Epoch milliseconds as ``2026-11-01 10:00:00 UTC`` ('' for none)."""
    if ms is None:
        return ""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds) -> str:
    """A duration in seconds as ``3d 4h`` / ``12m 5s``."""
    if seconds is None:
        return ""
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{sign}{d}d {h}h"
    if h:
        return f"{sign}{h}h {m}m"
    return f"{sign}{m}m {s % 60}s" if m else f"{sign}{s}s"
