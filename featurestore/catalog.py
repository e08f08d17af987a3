"""The catalog: what a project defines, searchable and described (SPEC §6, §8).

One record per object — entity, source, feature view, feature, feature service (request sources, request
feature views and their features among sources, views and features) — with its kind, name,
description, owner, tags, where it is defined (``file:line``), its fingerprints and its lineage (source
-> view -> feature -> service). The CLI (``featurestore list`` / ``describe``), the Python API
(``FeatureStore.list_*`` / ``get_*``) and the web catalog read these records, so they never disagree.

>>> rows = list_objects(repo, "features", tag=("team", "risk"))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from featurestore.errors import RequestError
from featurestore.model import Aggregation, FeatureView, Latest

KINDS = ("entities", "sources", "views", "features", "services")
_SINGULAR = {"entities": "entity", "sources": "source", "views": "feature view", "features": "feature",
             "services": "feature service"}


def _where(repo, obj) -> str:
    file, line = repo.where(obj)
    return f"{file}:{line}"


def _base(repo, kind: str, obj, name: str) -> dict:
    return {"kind": _SINGULAR[kind], "name": name, "description": getattr(obj, "description", "") or "",
            "owner": getattr(obj, "owner", "") or "", "tags": dict(getattr(obj, "tags", ()) or ())}


def _feature_record(repo, view: FeatureView, f) -> dict:
    rec = _base(repo, "features", view, f"{view.name}:{f.name}")
    rec["description"] = getattr(f, "description", "") or ""
    rec["view"] = view.name
    rec["entities"] = [e.name for e in view.entities]
    rec["source"] = view.source.name
    if isinstance(f, Aggregation):
        rec["type"] = "aggregation"
        rec["function"] = f.function
        rec["input"] = f.column
        rec["window_ms"] = f.window_ms
        rec["default"] = f.default
    else:
        assert isinstance(f, Latest)
        rec["type"] = "latest"
        rec["input"] = f.expr
        rec["ttl_ms"] = view.ttl
    where = repo.made_at(f)
    rec["defined_at"] = f"{where[0]}:{where[1]}" if where else _where(repo, view)
    rec["services"] = services_using(repo, view.name, f.name)
    return rec


def _inputs_of(rv) -> List[str]:
    return [s.name for s in rv.request_sources] + [v.name for v, _ in rv.view_inputs]


def _request_source_record(repo, s) -> dict:
    rec = _base(repo, "sources", s, s.name)
    rec.update(kind="request source", timestamp=None, schema=dict(s.schema), defined_at=_where(repo, s), batch=None,
               stream=None, views=[v.name for v in repo.request_views.values()
                                   if s.name in {r.name for r in v.request_sources}])
    return rec


def _request_view_record(repo, v) -> dict:
    rec = _base(repo, "views", v, v.name)
    rec.update(kind="request feature view", entities=[], source=", ".join(_inputs_of(v)), sources=_inputs_of(v),
               features=list(v.feature_names), mode=v.mode, ttl_ms=None, online=True, defined_at=_where(repo, v),
               data_fingerprint=v.data_fingerprint, services=services_using(repo, v.name))
    return rec


def _request_feature_record(repo, v, name: str) -> dict:
    rec = _base(repo, "features", v, f"{v.name}:{name}")
    rec["description"] = ""
    sql = dict(v.features)
    rec.update(view=v.name, entities=[], source=", ".join(_inputs_of(v)), type="request", mode=v.mode,
               input=sql.get(name) or getattr(v.function, "__name__", None),
               defined_at=f"{repo.origin(v).file}:{repo.origin(v).line_of(name)}",
               services=services_using(repo, v.name, name))
    if v.mode != "sql":
        rec["dtype"] = dict(v.schema)[name]
    return rec


def services_using(repo, view: str, feature: Optional[str] = None) -> List[str]:
    """Names of the feature services that read ``view`` (or its ``feature``)."""
    from featurestore.sdk.refs import resolve_features

    out = []
    for name in repo.services:
        try:
            selection = resolve_features(repo, feature_service=name)
        except Exception:  # noqa: BLE001 - a broken service is reported by plan, not here
            continue
        if view in selection and (feature is None or feature in selection[view]):
            out.append(name)
    return out


def records(repo, kind: str) -> List[dict]:
    """Every object of ``kind`` (one of :data:`KINDS`) as a catalog record, in definition order."""
    if kind not in KINDS:
        raise RequestError(f"unknown kind '{kind}': use one of {', '.join(KINDS)}")
    out = []
    if kind == "entities":
        for e in repo.entities.values():
            rec = _base(repo, kind, e, e.name)
            rec.update(join_keys=list(e.join_keys), defined_at=_where(repo, e),
                       views=[v.name for v in repo.views.values() if e.name in {x.name for x in v.entities}])
            out.append(rec)
    elif kind == "sources":
        for s in repo.sources.values():
            rec = _base(repo, kind, s, s.name)
            rec.update(timestamp=s.timestamp, schema=dict(s.schema), defined_at=_where(repo, s),
                       batch=repr(s.batch) if s.batch is not None else None,
                       stream=getattr(s.stream, "topic", None),
                       views=[v.name for v in repo.views.values() if v.source.name == s.name])
            out.append(rec)
        out.extend(_request_source_record(repo, s) for s in repo.request_sources.values())
    elif kind == "views":
        for v in repo.views.values():
            rec = _base(repo, kind, v, v.name)
            rec.update(entities=[e.name for e in v.entities], source=v.source.name, features=list(v.feature_names),
                       ttl_ms=v.ttl, online=v.online, defined_at=_where(repo, v),
                       data_fingerprint=v.data_fingerprint, services=services_using(repo, v.name))
            out.append(rec)
        out.extend(_request_view_record(repo, v) for v in repo.request_views.values())
    elif kind == "features":
        for v in repo.views.values():
            out.extend(_feature_record(repo, v, f) for f in v.features)
        for v in repo.request_views.values():
            out.extend(_request_feature_record(repo, v, name) for name in v.feature_names)
    else:
        from featurestore.sdk.refs import resolve_features

        for svc in repo.services.values():
            rec = _base(repo, kind, svc, svc.name)
            try:
                selection = resolve_features(repo, feature_service=svc.name)
            except Exception:  # noqa: BLE001
                selection = {}
            rec.update(version=svc.version, defined_at=_where(repo, svc), logging=svc.logging.enabled,
                       features=[f"{v}:{f}" for v, names in selection.items() for f in names],
                       views=list(selection))
            out.append(rec)
    return out


def parse_tag(text: str) -> Tuple[str, str]:
    """``"k=v"`` -> ``("k", "v")`` (a bare ``"k"`` matches any value of tag ``k``)."""
    if "=" in text:
        k, v = text.split("=", 1)
        return k.strip(), v.strip()
    return text.strip(), ""


def matches(rec: dict, tag: Optional[Tuple[str, str]] = None, owner: Optional[str] = None,
            query: Optional[str] = None) -> bool:
    if tag is not None:
        k, v = tag
        if k not in rec["tags"] or (v and rec["tags"][k] != v):
            return False
    if owner is not None and rec["owner"].casefold() != owner.strip().casefold():  # Ann@X.com is ann@x.com
        return False
    if query:
        hay = " ".join([rec["name"], rec["description"], rec["owner"],
                        " ".join(f"{k}={v}" for k, v in rec["tags"].items())]).lower()
        if not all(word in hay for word in query.lower().split()):
            return False
    return True


def list_objects(repo, kind: str, tag: Optional[Tuple[str, str]] = None, owner: Optional[str] = None,
                 query: Optional[str] = None) -> List[dict]:
    """Records of ``kind`` filtered by tag (``(key, value)``; empty value: any), owner (the whole owner,
    case-insensitive) and a search text (every word must appear in the name, description, owner or tags as
    ``key=value``, case-insensitive, parts of words too)."""
    return [r for r in records(repo, kind) if matches(r, tag, owner, query)]


def search(repo, query: str, tag: Optional[Tuple[str, str]] = None, owner: Optional[str] = None) -> List[dict]:
    """Records of every kind that match (see :func:`list_objects`)."""
    return [r for kind in KINDS for r in list_objects(repo, kind, tag, owner, query)]


def describe(repo, name: str) -> dict:
    """The record of the object called ``name`` (``view:feature`` for a feature); an unknown name is a
    RequestError listing close names."""
    hits = [r for kind in KINDS for r in records(repo, kind) if r["name"] == name]
    if not hits:
        import difflib

        names = [r["name"] for kind in KINDS for r in records(repo, kind)]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise RequestError(f"nothing called '{name}' in the catalog{hint}")
    if len(hits) == 1:
        return hits[0]
    return {"name": name, "kind": "several", "objects": hits}


def columns_for(kind: str) -> List[str]:
    """The columns a table of ``kind`` shows (the CLI)."""
    extra = {"entities": ["join_keys"], "sources": ["timestamp", "stream"], "views": ["entities", "source"],
             "features": ["type", "input"], "services": ["version", "views"]}[kind]
    return ["name", *extra, "owner", "tags", "description", "defined_at"]


def cell(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(x) for x in value)
    return "" if value is None else str(value)


__all__ = ["KINDS", "records", "list_objects", "search", "describe", "parse_tag", "matches", "services_using",
           "columns_for", "cell"]
