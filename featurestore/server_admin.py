"""The catalog as JSON, and ``apply``, on ``featurestore serve``.

``GET /catalog``
    ``?q=words&kind=views&tag=team=risk&owner=...``: catalog records (:mod:`featurestore.catalog`) of every
    kind, or one, that the caller may read (``read_metadata``); references to objects it may not read are
    left out of each record.
``GET /catalog/{name}``
    One record (``view:feature`` for a feature); 404 when there is no such object *or* the caller may not
    read it (so a name's existence is not revealed).
``POST /apply``
    Re-read the definitions on the server's disk and record them in the registry (``featurestore apply``);
    the server serves the new definitions from then on. Needs ``apply`` on the project.
"""

# no "from __future__ import annotations": FastAPI resolves the parameter types from the annotations

from typing import Optional

from featurestore import access, catalog
from featurestore.errors import FeatureStoreError


def visible_records(store, request, kind: Optional[str] = None, query: Optional[str] = None,
                    tag: Optional[str] = None, owner: Optional[str] = None):
    """The catalog records the caller may read, filtered like ``featurestore list``."""
    from featurestore import server_auth

    gate = server_auth.gate_of(request)
    tag_kv = catalog.parse_tag(tag) if tag else None
    kinds = [kind] if kind else list(catalog.KINDS)
    rows = [r for k in kinds for r in catalog.list_objects(store.repo, k, tag_kv, owner, query)]
    return access.filter_records(store.repo, gate.policy, server_auth.principal_of(request), rows)


def visible_record(store, request, name: str) -> Optional[dict]:
    """The record of ``name`` if it exists and the caller may read it (several objects may share a name)."""
    from featurestore import server_auth

    gate = server_auth.gate_of(request)
    hits = [r for k in catalog.KINDS for r in catalog.records(store.repo, k) if r["name"] == name]
    hits = access.filter_records(store.repo, gate.policy, server_auth.principal_of(request), hits)
    return hits or None


def add_routes(app, store) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from featurestore import server_auth

    @app.get("/catalog", responses={400: {"description": "unknown kind"}})
    def catalog_list(request: Request, q: Optional[str] = None, kind: Optional[str] = None,
                     tag: Optional[str] = None, owner: Optional[str] = None):
        try:
            return {"objects": visible_records(store, request, kind, q, tag, owner)}
        except FeatureStoreError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/catalog/{name}", responses={404: {"description": "no such object, or not visible to the caller"}})
    def catalog_describe(name: str, request: Request):
        hits = visible_record(store, request, name)
        if hits is None:
            return JSONResponse({"detail": f"nothing called '{name}' in the catalog"}, status_code=404)
        return hits[0] if len(hits) == 1 else {"name": name, "kind": "several", "objects": hits}

    @app.post("/apply", responses={400: {"description": "the definitions have problems"},
                                   403: {"description": "the principal may not apply"},
                                   413: {"description": "body too large (every route counts the body)"}})
    def apply(request: Request):
        server_auth.require_project(request, "apply")
        try:
            plan = store.apply()
        except FeatureStoreError as exc:
            return JSONResponse({"detail": str(exc).replace("\n", "; ")}, status_code=400)
        gate = server_auth.gate_of(request)
        if gate.policy_file is not None:
            gate.policy_file.repo = store.repo  # names in grants are checked against the new definitions
        return {"applied": plan.has_changes,
                "changes": [{"action": c.action, "kind": c.kind, "name": c.name, "fields": list(c.fields)}
                            for c in plan.changes if c.action != "unchanged"],
                "stages": [{"step": s.kind, "target": s.target, "why": s.reason} for s in plan.stages]}


__all__ = ["add_routes", "visible_records", "visible_record"]
