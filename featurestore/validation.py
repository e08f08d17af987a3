"""Check a loaded repo as a whole and return every problem, each naming file, line and object.

SQL expressions (filters, projections, feature expressions) are bound by DuckDB against an empty
table with the source's schema: that proves the columns exist and tells each expression's type.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from featurestore import dtypes
from featurestore.errors import Problem
from featurestore.model import Aggregation, FeatureSelection, FeatureService, FeatureView, Latest
from featurestore.semantics import AGG_FUNCTIONS

if TYPE_CHECKING:
    from featurestore.loader import Repo

DUCKDB_TYPES = {
    dtypes.STRING: "VARCHAR",
    dtypes.INT32: "INTEGER",
    dtypes.INT64: "BIGINT",
    dtypes.FLOAT32: "FLOAT",
    dtypes.FLOAT64: "DOUBLE",
    dtypes.BOOL: "BOOLEAN",
    dtypes.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
}
_FROM_DUCKDB = {
    "VARCHAR": dtypes.STRING,
    "INTEGER": dtypes.INT32,
    "BIGINT": dtypes.INT64,
    "SMALLINT": dtypes.INT32,
    "TINYINT": dtypes.INT32,
    "HUGEINT": dtypes.INT64,
    "FLOAT": dtypes.FLOAT32,
    "DOUBLE": dtypes.FLOAT64,
    "BOOLEAN": dtypes.BOOL,
    "TIMESTAMP WITH TIME ZONE": dtypes.TIMESTAMP,
    "TIMESTAMP": dtypes.TIMESTAMP,
}
_MISSING_COLUMN = re.compile(r'Referenced column "?([^"\s]+)"? not found')


class ExpressionError(Exception):
    pass


class Binder:
    """Types SQL expressions over a set of typed columns, using DuckDB's binder (no data)."""

    def __init__(self, columns: Dict[str, str], source_name: str):
        import duckdb

        self.columns = dict(columns)
        self.source_name = source_name
        self._con = duckdb.connect()

    def _relation(self) -> str:
        cols = ", ".join(f'CAST(NULL AS {DUCKDB_TYPES[t]}) AS "{c}"' for c, t in self.columns.items())
        return f"(SELECT {cols} LIMIT 0)"

    def dtype(self, expr: str) -> str:
        """The canonical type of ``expr``, or ExpressionError with a readable cause."""
        sql = f"SELECT ({expr}) AS __x FROM {self._relation()} AS src"
        try:
            rel = self._con.sql(sql)
            duck_type = str(rel.types[0])
        except Exception as exc:  # duckdb raises several exception classes for parse/bind errors
            raise ExpressionError(self._explain(expr, exc)) from None
        base = duck_type.split("(")[0].upper()
        if base == "DECIMAL":
            return dtypes.FLOAT64
        if base not in _FROM_DUCKDB:
            raise ExpressionError(f"expression {expr!r} has type {duck_type}, which no store can hold")
        return _FROM_DUCKDB[base]

    def _explain(self, expr: str, exc: Exception) -> str:
        text = str(exc)
        missing = _MISSING_COLUMN.search(text)
        if missing:
            col = missing.group(1)
            msg = f"column '{col}' not in source '{self.source_name}'"
            close = difflib.get_close_matches(col, list(self.columns), n=1)
            return msg + (f" (did you mean '{close[0]}'?)" if close else "")
        first = text.strip().splitlines()[0]
        first = re.sub(r"^\w+ Error: ", "", first)
        return f"invalid SQL expression {expr!r}: {first}"


def _problem(repo: "Repo", obj, message: str, name: Optional[str] = None, feature=None) -> Problem:
    origin = next((o for d, o in repo.shadowed if d is obj), None) or repo.origin(obj)
    line = origin.line
    if feature is not None:
        line = origin.line_of(feature.name, getattr(feature, "column", None) or getattr(feature, "expr", ""))
    return Problem(origin.file, line, name or obj.name, message)


def view_columns(view: FeatureView, binder: Binder, problems: List[Problem], repo: "Repo") -> Dict[str, str]:
    """Source columns plus projections, with types; records problems for bad projections.

    Projections see source columns only (they do not chain); features see both.
    """
    columns = dict(view.source.columns)
    for name, expr in view.projections:
        if name in columns:
            problems.append(_problem(repo, view, f"projection '{name}' shadows a column of source '{view.source.name}'"))
            continue
        try:
            columns[name] = binder.dtype(expr)
        except ExpressionError as exc:
            problems.append(_problem(repo, view, f"projection '{name}': {exc}"))
    return columns


def feature_dtype(feature, columns_binder: Binder) -> str:
    """Output type of a feature (raises ExpressionError)."""
    if isinstance(feature, Latest):
        return columns_binder.dtype(feature.expr)
    if feature.column is None:
        return AGG_FUNCTIONS[feature.function].result_dtype(dtypes.INT64)
    return AGG_FUNCTIONS[feature.function].result_dtype(columns_binder.dtype(feature.column))


def _check_view(repo: "Repo", view: FeatureView) -> List[Problem]:
    problems: List[Problem] = []
    source = view.source
    binder = Binder(source.columns, source.name)
    columns = view_columns(view, binder, problems, repo)
    for key in view.join_keys:
        if key not in columns:
            problems.append(_problem(repo, view, f"join key '{key}' not in source '{source.name}'"))
        elif columns[key] not in dtypes.JOIN_KEY_TYPES:
            problems.append(_problem(repo, view, f"join key '{key}' has type {columns[key]}; use string or int64"))
    if view.filter is not None:  # the filter runs first: it sees source columns only
        try:
            kind = binder.dtype(view.filter)
            if kind != dtypes.BOOL:
                problems.append(_problem(repo, view, f"filter {view.filter!r} is {kind}, not a boolean"))
        except ExpressionError as exc:
            problems.append(_problem(repo, view, f"filter: {exc}"))
    binder.columns = dict(columns)
    for feature in view.features:
        label = f"{view.name}.{feature.name}"
        if feature.name in view.join_keys:
            problems.append(_problem(repo, view, f"feature '{feature.name}' has the name of a join key", label, feature))
        try:
            out = feature_dtype(feature, binder)
        except ExpressionError as exc:
            problems.append(_problem(repo, view, str(exc), label, feature))
            continue
        if isinstance(feature, Aggregation) and feature.column is not None:
            spec = AGG_FUNCTIONS[feature.function]
            in_type = binder.dtype(feature.column)
            if spec.numeric_only and in_type not in dtypes.NUMERIC:
                problems.append(_problem(repo, view, f"{feature.function} needs a numeric input; "
                                                     f"'{feature.column}' is {in_type}", label, feature))
                continue
        if isinstance(feature, Aggregation) and feature.default is not None:
            problems.extend(_check_default(repo, view, feature, out, label))
    if view.ttl is not None and not view.latest_features:
        problems.append(_problem(repo, view, "ttl only applies to Latest features, and this view has none"))
    return problems


def _check_default(repo, view, feature: Aggregation, out: str, label: str) -> List[Problem]:
    if AGG_FUNCTIONS[feature.function].empty_value is not None:
        return [_problem(repo, view, f"{feature.function} of an empty window is already 0; remove default=", label, feature)]
    value = feature.default
    ok = {
        dtypes.STRING: isinstance(value, str),
        dtypes.BOOL: isinstance(value, bool),
        dtypes.INT32: isinstance(value, int) and not isinstance(value, bool),
        dtypes.INT64: isinstance(value, int) and not isinstance(value, bool),
        dtypes.FLOAT32: isinstance(value, (int, float)) and not isinstance(value, bool),
        dtypes.FLOAT64: isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(out, False)
    if not ok:
        return [_problem(repo, view, f"default {value!r} does not fit the feature's type {out}", label, feature)]
    return []


def resolve_service_refs(service: FeatureService, views: Dict[str, FeatureView]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(view, feature) pairs a service reads, in order, and the reasons any ref does not resolve."""
    refs: List[Tuple[str, str]] = []
    errors: List[str] = []
    for ref in service.features:
        if isinstance(ref, FeatureView):
            refs.extend((ref.name, f) for f in ref.feature_names)
            continue
        if isinstance(ref, FeatureSelection):
            view_name, names = ref.view.name, ref.names or ref.view.feature_names
        else:
            if ":" not in ref:
                errors.append(f"feature reference {ref!r} is not of the form 'view:feature'")
                continue
            view_name, feat = ref.split(":", 1)
            names = (feat,)
        view = views.get(view_name)
        if view is None:
            close = difflib.get_close_matches(view_name, list(views), n=1)
            errors.append(f"unknown feature view '{view_name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            continue
        for name in names:
            if name not in view.feature_names:
                close = difflib.get_close_matches(name, list(view.feature_names), n=1)
                errors.append(f"feature view '{view_name}' has no feature '{name}'"
                              + (f" (did you mean '{close[0]}'?)" if close else ""))
            else:
                refs.append((view_name, name))
    seen = set()
    for pair in refs:
        if pair in seen:
            errors.append(f"feature '{pair[0]}:{pair[1]}' is listed twice")
        seen.add(pair)
    return refs, errors


def validate(repo: "Repo") -> List[Problem]:
    """Every problem in the repo, in file order."""
    problems: List[Problem] = []
    shadowed_views = [d for d, _ in repo.shadowed if isinstance(d, FeatureView)]
    for view in [*repo.views.values(), *shadowed_views]:
        problems.extend(_check_view(repo, view))
    for service in repo.services.values():
        _, errors = resolve_service_refs(service, repo.views)
        problems.extend(_problem(repo, service, e) for e in errors)
    return sorted(problems, key=lambda p: (p.file, p.line, p.obj, p.message))
