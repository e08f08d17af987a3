"""The catalog's pages (routes under ``/ui/``): overview, search, one page per object, monitor.

    /ui/                       every object by kind, and the project's lineage (source -> view -> service)
    /ui/search?q=...           name, description, owner and tags (``team=risk``) of every kind
    /ui/{kind}/{name}          entity, source, view, feature (``view:feature``), service
    /ui/monitor                freshness of every view, the stream, skew of every service, breaches
"""

# no "from __future__ import annotations": FastAPI resolves the parameter types from the annotations

import time
from typing import List, Optional

from featurestore import access, catalog

KINDS = {"entity": "entities", "source": "sources", "view": "views", "feature": "features", "service": "services"}


def visibility(store, request):
    """``can(kind, name)``: whether the caller may read that object's metadata (a feature: its view)."""
    from featurestore import server_auth

    principal = server_auth.principal_of(request)
    policy = server_auth.gate_of(request).policy
    repo = store.repo
    from featurestore.ui.data import pools

    objs = pools(repo)
    make = {"entity": (objs["entity"], access.entity_obj), "source": (objs["source"], access.source_obj),
            "view": (objs["view"], access.view_obj), "service": (objs["service"], access.service_obj)}
    cache = {}

    def can(kind: str, name: str) -> bool:
        if kind == "feature":
            kind, name = "view", name.split(":", 1)[0]
        key = (kind, name)
        if key not in cache:
            pool, obj = make[kind]
            cache[key] = name in pool and (principal is None or policy.allows(principal, "read_metadata",
                                                                             obj(repo, name)))
        return cache[key]

    return can


def add_routes(app, store) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse

    from featurestore import monitoring, server_admin, server_auth, ui, verify
    from featurestore.ui import data, graph

    project = store.config.project

    def page(request, template: str, status: int = 200, **context) -> HTMLResponse:
        who = server_auth.principal_of(request)
        return HTMLResponse(ui.render(template, project=project, principal=who.name if who else None,
                                      url=data.url, **context), status_code=status)

    def now_ms() -> int:
        return int(time.time() * 1000)

    @app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request):
        rows = server_admin.visible_records(store, request)
        by_kind = {k: [r for r in rows if data.page_kind(r) == k] for k in KINDS if k != "feature"}
        g = data.project_lineage(store, visibility(store, request))
        return page(request, "index.html", title="catalog", by_kind=by_kind, features=sum(
            1 for r in rows if r["kind"] == "feature"), lineage=graph.lineage_svg(g))

    @app.get("/ui/search", response_class=HTMLResponse, include_in_schema=False)
    def search(request: Request, q: str = ""):
        rows = server_admin.visible_records(store, request, query=q) if q.strip() else []
        return page(request, "search.html", title=f"search {q}", query=q, rows=rows, page_kind=data.page_kind)

    @app.get("/ui/monitor", response_class=HTMLResponse, include_in_schema=False)
    def monitor(request: Request):
        can = visibility(store, request)
        views = [n for n in store.repo.views if can("view", n)]
        services = [s for s in store.repo.services if can("service", s)]
        from featurestore import drift
        from featurestore.ui.drift_section import value_access

        stream = monitoring.stream_state(store)
        shown = {("view", n) for n in views} | {("service", s) for s in services}
        reports = [r for r in (drift.last_report(store, s) for s in services) if r is not None]
        view_of = value_access(store, request)
        breaches = [b for b in monitoring.breaches(store, stream=stream, drift_reports=reports)
                    if _breach_visible(b, store, can, view_of)]
        drifts = []  # per service, its last report over the features whose values the caller may read
        for r in reports:
            psis = {f: d.psi for f, d in r.features.items() if view_of(r.feature_service, f) is not None}
            if psis:
                known = [p for p in psis.values() if p is not None]
                drifts.append({"service": r.feature_service, "training_set": r.training_set, "at": r.at,
                               "since": r.since_ms, "served_rows": r.served_rows, "features": len(psis),
                               "max_psi": max(known) if known else None,
                               "over": sorted(f for f, p in psis.items() if p is not None
                                              and p > store.config.monitor.max_psi)})
        skew = {s: verify.runs(store, s, last=1) for s in services}
        return page(request, "monitor.html", title="monitor", now=now_ms(),
                    fresh=monitoring.freshness(store, views), stream=_stream_view(stream, store, can),
                    skew={s: (r[0] if r else None) for s, r in skew.items()}, skew_rate=verify.skew_rate,
                    breaches=breaches, shown=shown, drifts=drifts, max_psi=store.config.monitor.max_psi)

    @app.get("/ui/{kind}/{name}", response_class=HTMLResponse, include_in_schema=False)
    def obj(kind: str, name: str, request: Request):
        hits = server_admin.visible_record(store, request, name) if kind in KINDS else None
        rec = next((r for r in hits or [] if data.page_kind(r) == kind), None)
        if rec is None:  # no such object, or not one the caller may read: the same answer
            return page(request, "missing.html", status=404, title="not found", kind=kind, name=name)
        can = visibility(store, request)
        view = rec["name"] if kind == "view" else rec.get("view")
        hidden = not all(can(k, n) for k, n in _named_by_definition(store, kind, rec))
        # a definition names what it is built on (a service its views, a view its source and entities): not
        # shown when the caller may not read one of them
        context = dict(rec=rec, kind=kind, now=now_ms(), definition=None if hidden else data.definition(store, rec),
                       definition_hidden=hidden,
                       fingerprints=data.fingerprint_history(store, rec),
                       lineage=graph.lineage_svg(data.lineage(store, rec, can,
                                                              features=kind not in ("entity", "source"))),
                       versions=[], fresh={}, stream=None, skew={}, drift=None)
        if view is not None and view in store.repo.views:
            context["versions"] = monitoring.offline_versions(store, view)
        views = [view] if view else [v for v in rec.get("views", []) if can("view", v)]
        views = [v for v in views if v in store.repo.views]  # request views store nothing: no freshness
        if kind in ("view", "feature", "source", "service"):
            context["fresh"] = monitoring.freshness(store, views)
            if any(store.repo.views[v].source.stream is not None for v in views):
                context["stream"] = _stream_view(monitoring.stream_state(store), store, can)
        services = [rec["name"]] if kind == "service" else [s for s in rec.get("services", []) if can("service", s)]
        feature = rec["name"].split(":", 1)[1] if kind == "feature" else None
        context["skew"] = {s: _skew_plot(verify.runs(store, s), s, feature, store.config.monitor.max_skew_rate,
                                         _readable_columns(store, s, can))
                           for s in services}
        if kind in ("service", "view", "feature"):
            from featurestore.ui import drift_section

            context["drift"] = drift_section.for_page(store, request, rec, services)
        return page(request, "object.html", title=f"{kind} {name}", **context)


def _breach_visible(breach, store, can, view_of) -> bool:
    """A breach is shown to who may read its subject (a source's dead letters: the source; the stream's lag or
    trouble: any streamed view; drift,
    computed from values: who may read_offline the feature's view)."""
    if breach.kind == "freshness":
        return can("view", breach.subject)
    if breach.kind == "drift":
        service, _, feature = breach.subject.partition(":")
        return can("service", service) and view_of(service, feature) is not None
    if breach.kind == "skew":
        return can("service", breach.subject.split(":", 1)[0])
    if breach.kind == "dead_letters":  # of a source: it names the source
        return can("source", breach.subject)
    return any(can("view", v) for v, d in store.repo.views.items() if d.source.stream is not None)


def _stream_view(stream, store, can):
    """The stream state with only the topics of views the caller may read and the sources it may read."""
    if stream is None:
        return None
    views = [v for v, d in store.repo.views.items() if d.source.stream is not None and can("view", v)]
    if not views:
        return None
    sources = {store.repo.views[v].source.name for v in views} & {s for s in stream.sources if can("source", s)}
    topics = {store.repo.views[v].source.stream.topic for v in views}
    return {"job": stream.job, "problems": stream.problems,
            "sources": {s: dict(m, rate=stream.dead_letter_rate(s)) for s, m in stream.sources.items() if s in sources},
            "lag": {t: lag for t, lag in stream.lag.items() if t in topics}}


def _named_by_definition(store, kind: str, rec: dict) -> List[tuple]:
    """(kind, name) of the objects the definition text of ``rec``'s object names."""
    repo = store.repo
    if kind == "service":
        return [("view", v) for v in _service_views(store, rec["name"])]
    view = rec["name"] if kind == "view" else rec.get("view") if kind == "feature" else None
    if view in repo.views:
        v = repo.views[view]
        return [("source", v.source.name)] + [("entity", e.name) for e in v.entities]
    if view in repo.request_views:
        rv = repo.request_views[view]
        return [("source", s.name) for s in rv.request_sources] + [("view", i.name) for i, _ in rv.view_inputs]
    return []


def _service_views(store, service: str) -> List[str]:
    from featurestore.sdk.refs import resolve_features

    try:
        return list(resolve_features(store.repo, feature_service=service))
    except Exception:  # noqa: BLE001 - a broken service is plan's to report
        return []


def _readable_columns(store, service: str, can) -> set:
    """The output columns of ``service`` whose views the caller may read (the others' names stay hidden)."""
    from featurestore.sdk.refs import output_names, resolve_features

    try:
        names = output_names(resolve_features(store.repo, feature_service=service), False)
    except Exception:  # noqa: BLE001 - a broken service is plan's to report
        return set()
    return {column for (view, _), column in names.items() if can("view", view)}


def _skew_plot(runs, service: str, feature: Optional[str], limit: float, readable: set) -> dict:
    """The skew history of a service (or of one feature in it): the last run's rates and a plot over runs,
    over the ``readable`` feature columns only (a feature of a view the caller may not read is left out)."""
    from featurestore import ui, verify
    from featurestore.ui import graph

    if not runs:
        return {"runs": 0, "last": None, "plot": ""}
    feats = [feature] if feature else list(runs[-1]["features"])
    feats = [f for f in feats if f in runs[-1]["features"] and f in readable]
    series = {f: [(r["at"], verify.skew_rate(r, f)) for r in runs if f in r["features"]] for f in feats}
    last = {f: dict(runs[-1]["features"][f], rate=verify.skew_rate(runs[-1], f)) for f in feats}
    plot = graph.line_plot(series, f"skew-{service}", "skew rate per verify run",
                           x_format=lambda ms: ui.ms_time(ms), y_format=lambda v: f"{v:.1%}",
                           y_max=max([0.01, limit] + [y for s in series.values() for _, y in s]), threshold=limit)
    return {"runs": len(runs), "last": last, "at": runs[-1]["at"], "rows": runs[-1]["rows"], "plot": plot}


__all__ = ["add_routes", "visibility", "catalog"]
