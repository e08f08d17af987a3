"""The drift section of a catalog page: the last recorded drift report (``featurestore monitor --drift``) of
each service, its features' PSI, summaries and histograms. Value statistics are data, not metadata: shown
only to who may ``read_offline`` the views they come from (the drift breaches of the monitor page too)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional


def value_access(store, request) -> Callable[[str, str], Optional[str]]:
    """``view_of(service, feature)``: the view a feature of a service comes from when the caller may read its
    values (``read_offline`` on the view), else None."""
    from featurestore import access, server_auth
    from featurestore.sdk.refs import resolve_features

    principal = server_auth.principal_of(request)
    policy = server_auth.gate_of(request).policy
    columns: Dict[str, Dict[str, str]] = {}

    def view_of(service: str, feature: str) -> Optional[str]:
        if service not in columns:
            try:
                selection = resolve_features(store.repo, feature_service=service)
            except Exception:  # noqa: BLE001 - a service gone since the report: nothing to show
                selection = {}
            columns[service] = {f: v for v, names in selection.items() for f in names}
        view = columns[service].get(feature)
        if view is None:
            return None
        if principal is not None and not policy.allows(principal, "read_offline", access.view_obj(store.repo, view)):
            return None
        return view

    return view_of


def for_page(store, request, rec: dict, services) -> Optional[List[dict]]:
    from featurestore import drift
    from featurestore.ui import graph
    from featurestore.ui.data import page_kind

    kind = page_kind(rec)  # view (a request view too), feature or service
    view_of = value_access(store, request)
    out = []
    for service in services:
        report = drift.last_report(store, service)
        if report is None:
            continue
        feats = []
        for name, d in report.features.items():
            view = view_of(service, name)
            if view is None:
                continue
            if kind == "view" and view != rec["name"] or kind == "feature" and rec["name"] != f"{view}:{name}":
                continue
            feats.append({"name": name, "view": view, "psi": d.psi, "training": d.training, "served": d.served,
                          "plot": graph.bars(d.bins, f"drift-{service}-{name}", width=240, height=90)})
        if feats:
            out.append({"service": service, "training_set": report.training_set, "at": report.at,
                        "since": report.since_ms,
                        "served_rows": report.served_rows, "training_rows": report.training_rows, "features": feats,
                        "limit": store.config.monitor.max_psi})
    return out or None


__all__ = ["for_page", "value_access"]
