"""Feature references: ``"view:feature"`` strings, feature services, and what they resolve to."""

from __future__ import annotations

import difflib
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

from featurestore.errors import RequestError
from featurestore.loader import Repo
from featurestore.model import FeatureService
from featurestore.validation import resolve_service_refs


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def resolve_features(
    repo: Repo,
    features: Optional[Sequence[str]] = None,
    feature_service: Optional[Union[str, FeatureService]] = None,
) -> "OrderedDict[str, List[str]]":
    """View name -> requested feature names, in request order. Exactly one of the two arguments.

    Cached per loaded repo (lookups resolve the same references on every request); treat the result
    as read-only."""
    cache = repo.__dict__.setdefault("_resolved_refs", {})
    try:
        key = (tuple(features) if isinstance(features, (list, tuple)) else features,
               getattr(feature_service, "name", feature_service))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in cache:
        return cache[key]
    out = _resolve_features(repo, features, feature_service)
    if key is not None and len(cache) < 10_000:
        cache[key] = out
    return out


def service_as_features(features, feature_service):
    """``(features, feature_service)`` with a feature service passed as ``features=`` moved to
    ``feature_service=`` (Feast's ``get_online_features(features=store.get_feature_service(...))``)."""
    if feature_service is None and features is not None and not isinstance(features, (str, list, tuple)) \
            and isinstance(getattr(features, "name", None), str) and hasattr(features, "features"):
        return None, features
    return features, feature_service


def _resolve_features(repo, features, feature_service) -> "OrderedDict[str, List[str]]":
    if (features is None) == (feature_service is None):
        raise RequestError("give exactly one of features=[...] or feature_service=...")
    pairs: List[Tuple[str, str]] = []
    if feature_service is not None:
        name = feature_service.name if isinstance(feature_service, FeatureService) else feature_service
        if name not in repo.services:
            raise RequestError(f"unknown feature service '{name}'{_suggest(str(name), repo.services)}")
        pairs, errors = resolve_service_refs(repo.services[name], {**repo.views, **repo.request_views})
        if errors:
            raise RequestError(f"feature service '{name}': {errors[0]}")
    else:
        if isinstance(features, str):
            features = [features]
        if not features:
            raise RequestError("features=[...] is empty; name at least one 'view:feature'")
        for ref in features:
            if not isinstance(ref, str) or ":" not in ref:
                raise RequestError(f"feature reference {ref!r} is not of the form 'view:feature'")
            view_name, feat = ref.split(":", 1)
            view = repo.feature_view(view_name)
            if view is None:
                known = [*repo.views, *repo.request_views]
                raise RequestError(f"unknown feature view '{view_name}' in '{ref}'{_suggest(view_name, known)}")
            if feat == "*":
                pairs.extend((view_name, f) for f in view.feature_names)
                continue
            if feat not in view.feature_names:
                raise RequestError(
                    f"feature view '{view_name}' has no feature '{feat}'{_suggest(feat, view.feature_names)}"
                )
            pairs.append((view_name, feat))
    out: "OrderedDict[str, List[str]]" = OrderedDict()
    for view_name, feat in pairs:
        names = out.setdefault(view_name, [])
        if feat in names:
            raise RequestError(f"feature '{view_name}:{feat}' is requested twice")
        names.append(feat)
    return out


def output_names(selection: Dict[str, List[str]], full_feature_names: bool) -> Dict[Tuple[str, str], str]:
    """Output column of each (view, feature): ``feature`` or ``view__feature``; clashes are errors."""
    names: Dict[Tuple[str, str], str] = {}
    seen: Dict[str, Tuple[str, str]] = {}
    for view, feats in selection.items():
        for f in feats:
            col = f"{view}__{f}" if full_feature_names else f
            if col in seen:
                other = seen[col]
                raise RequestError(
                    f"features '{other[0]}:{other[1]}' and '{view}:{f}' would both be column '{col}'; "
                    "pass full_feature_names=True"
                )
            seen[col] = (view, f)
            names[(view, f)] = col
    return names


def feast_column_order(repo: Repo, selection: Dict[str, List[str]], full_feature_names: bool,
                       columns: Sequence[str]) -> List[str]:
    """``columns`` of an answer to ``selection`` in the order Feast (0.67) gives them to its users, for the
    answers a Feast client reads (Feast's HTTP shape, Feast's remote offline client); our own API keeps the
    request order. Feast groups the features by view: every column that is no feature first (join keys,
    the entity DataFrame's columns) in its order, then the feature views in the order of their first
    reference (a service: its projections' order), then the on-demand (request) views likewise. Within a
    view Feast's training frame keeps the request order and its online answer a Python set's order (which
    changes from one process to the next): both get the request order here."""
    names = output_names(selection, full_feature_names)
    features = [names[(v, f)] for v, feats in selection.items() if v not in repo.request_views for f in feats]
    features += [names[(v, f)] for v, feats in selection.items() if v in repo.request_views for f in feats]
    present = set(columns)
    wanted = [c for c in features if c in present]
    rest = set(wanted)
    return [c for c in columns if c not in rest] + wanted
