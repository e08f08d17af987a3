"""What a catalog page shows about one object, gathered from the catalog records, the loader's origins, the
registry, the offline tables, the online store, the stream's counters and the recorded verify runs. Every
list is already filtered to what the caller may read (``can``: (kind, name) -> bool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from featurestore.registry import object_key, read_registry

KIND_OF_RECORD = {"entity": "entity", "source": "source", "feature view": "view", "feature": "feature",
                  "feature service": "service", "request source": "source", "request feature view": "view"}
REGISTRY_KIND = {"entity": "entity", "source": "source", "view": "feature view", "service": "feature service"}
CONTEXT_LINES = 2


def page_kind(rec: dict) -> str:
    return KIND_OF_RECORD[rec["kind"]]


def url(kind: str, name: str) -> str:
    from urllib.parse import quote

    return f"/ui/{kind}/{quote(name, safe=':')}"


@dataclass
class Definition:
    file: str
    start: int  # first line shown
    lines: List[Tuple[int, str, bool]]  # (number, text, part of the definition)


def definition(store, rec: dict) -> Optional[Definition]:
    """The source text of the definition (the whole statement; a feature: its view's, the feature's line
    marked), with a couple of lines around it."""
    repo = store.repo
    kind = page_kind(rec)
    obj = _object(repo, kind, rec)
    if obj is None:
        return None
    origin = repo.origin(obj)
    path = Path(origin.path) if origin.path else (store.repo_path / origin.file)
    try:
        text = path.read_text().splitlines()
    except OSError:
        return None
    first, last = origin.line, max(origin.end_line, origin.line)
    marked = range(first, last + 1)
    if kind == "feature" and hasattr(obj, "feature"):  # a request view's outputs have no line of their own
        where = repo.made_at(obj.feature(rec["name"].split(":", 1)[1]))
        if where is not None:
            marked = range(where[1], where[1] + 1)
    taken = _other_definitions(repo, origin)
    lo, hi = first, last
    while lo > max(1, first - CONTEXT_LINES) and lo - 1 not in taken:
        lo -= 1
    while hi < min(len(text), last + CONTEXT_LINES) and hi + 1 not in taken:
        hi += 1
    return Definition(origin.file, lo, [(i, text[i - 1], i in marked) for i in range(lo, hi + 1)])


def _other_definitions(repo, origin) -> set:
    """Lines of the file of ``origin`` that belong to other definitions: a page's context lines stop there, so
    a page never shows a line of an object the caller may not read (SPEC §8)."""
    own = (origin.line, max(origin.end_line, origin.line))
    taken: set = set()
    for other in repo.origins.values():
        span = (other.line, max(other.end_line, other.line))
        if other.file != origin.file or span[0] <= own[0] and span[1] >= own[1]:  # itself, or an inline parent
            continue
        taken.update(range(span[0], span[1] + 1))
    return taken


def pools(repo) -> Dict[str, dict]:
    """Objects by page kind; request sources and request views are sources and views of the catalog."""
    return {"entity": repo.entities, "source": {**repo.sources, **repo.request_sources},
            "view": {**repo.views, **repo.request_views}, "service": repo.services}


def _object(repo, kind: str, rec: dict):
    if kind == "feature":
        return pools(repo)["view"].get(rec["view"])
    return pools(repo)[kind].get(rec["name"])


def fingerprint_history(store, rec: dict) -> dict:
    """The object's fingerprints now, as applied, and every apply that changed it (newest first)."""
    kind = page_kind(rec)
    if kind == "feature":
        kind, name = "view", rec["view"]
    else:
        name = rec["name"]
    obj = _object(store.repo, kind, {"name": name, "view": name})
    registry = read_registry(store.config.registry_path, store.config.project)
    rkind = getattr(obj, "KIND", None) or REGISTRY_KIND[kind]  # a request view is a "request feature view"
    applied = registry.objects.get(object_key(rkind, name))
    history = [{"applied_at": h["applied_at"], **c} for h in registry.history for c in h.get("changes", [])
               if c.get("kind") == rkind and c.get("name") == name]
    return {"object": f"{kind} {name}", "data": obj.data_fingerprint if obj else None,
            "meta": obj.meta_fingerprint if obj else None,
            "applied_data": applied.get("data_fingerprint") if applied else None,
            "applied_meta": applied.get("meta_fingerprint") if applied else None,
            "history": list(reversed(history))}


# -- lineage ----------------------------------------------------------------------------------------------------
COLUMNS = ("entity", "source", "view", "feature", "service")


@dataclass
class Graph:
    nodes: Dict[Tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> label
    edges: List[Tuple[Tuple[str, str], Tuple[str, str]]] = field(default_factory=list)
    focus: Optional[Tuple[str, str]] = None

    def add(self, a: Tuple[str, str], b: Tuple[str, str]) -> None:
        for n in (a, b):
            self.nodes.setdefault(n, n[1].split(":", 1)[1] if n[0] == "feature" else n[1])
        if (a, b) not in self.edges:
            self.edges.append((a, b))


def lineage(store, rec: dict, can: Callable[[str, str], bool], features: bool = True) -> Graph:
    """Source -> view -> feature -> service around the object of ``rec`` (entities -> views for an entity),
    keeping only what the caller may read."""
    from featurestore.catalog import services_using
    from featurestore.sdk.refs import resolve_features

    repo = store.repo
    kind = page_kind(rec)
    g = Graph(focus=(kind, rec["name"]))

    def selection(service: str) -> Dict[str, List[str]]:
        try:
            return resolve_features(repo, feature_service=service)
        except Exception:  # noqa: BLE001 - a broken service is plan's to report
            return {}

    def view_chain(view: str, only: Optional[List[str]] = None, services: Optional[List[str]] = None) -> None:
        if view in repo.request_views:  # its request sources and the views it reads feed it
            rv = repo.request_views[view]
            g.nodes.setdefault(("view", view), view)
            for s in rv.request_sources:
                if can("source", s.name):
                    g.add(("source", s.name), ("view", view))
            for inp, _ in rv.view_inputs:
                if can("view", inp.name):
                    g.add(("view", inp.name), ("view", view))
        else:
            v = repo.views[view]
            if can("source", v.source.name):
                g.add(("source", v.source.name), ("view", view))
            else:
                g.nodes.setdefault(("view", view), view)
            for e in v.entities if kind == "entity" else ():
                if can("entity", e.name):
                    g.add(("entity", e.name), ("view", view))
        v = pools(repo)["view"][view]
        names = only if only is not None else list(v.feature_names)
        for f in names if features else ():
            g.add(("view", view), ("feature", f"{view}:{f}"))
        for s in services if services is not None else services_using(repo, view):
            if not can("service", s):
                continue
            used = selection(s).get(view, [])
            if features:
                for f in (x for x in names if x in used):
                    g.add(("feature", f"{view}:{f}"), ("service", s))
            else:
                g.add(("view", view), ("service", s))

    g.nodes.setdefault(g.focus, rec["name"].split(":", 1)[-1])
    if kind == "service":
        for view, names in selection(rec["name"]).items():
            if can("view", view):
                view_chain(view, names, [rec["name"]])
    elif kind in ("view", "feature"):
        view = rec["name"] if kind == "view" else rec["view"]
        only = None if kind == "view" else [rec["name"].split(":", 1)[1]]
        view_chain(view, only)
    else:  # entity, source: the views over it
        for view in rec.get("views", []):
            if can("view", view):
                view_chain(view, [] if not features else None)
    return g


def project_lineage(store, can: Callable[[str, str], bool]) -> Graph:
    """Every source -> view -> service of the project (features left out: the overview stays readable)."""
    g = Graph()
    for view in [*store.repo.views, *store.repo.request_views]:
        if can("view", view):
            lineage_of = lineage(store, {"kind": "feature view", "name": view}, can, features=False)
            for a, b in lineage_of.edges:
                g.add(a, b)
            g.nodes.setdefault(("view", view), view)
    return g


__all__ = ["pools", "definition", "fingerprint_history", "lineage", "project_lineage", "Graph", "url", "page_kind"]
