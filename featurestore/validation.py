"""Check a loaded repo as a whole and return every problem, each naming file, line and object.

SQL expressions (filters, projections, feature expressions) must each be exactly one row-level scalar
expression: DuckDB's parser reads ``SELECT <expr>`` and anything else (``a) OR (b``, ``x; DROP ...``,
``a, b``, a clause, a subquery, a window function, an aggregate, a ``--`` comment) is refused, since the
engines paste the text into larger statements. They are then bound by DuckDB against an empty table with
the source's schema: that proves the columns exist and tells each expression's type.

Parts the constructors already reported (see :mod:`featurestore.model.checks`) are skipped, so one
mistake is reported once.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import struct
import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

from featurestore import dtypes
from featurestore.errors import Problem
from featurestore.model import Aggregation, FeatureSelection, FeatureService, FeatureView, Latest, RequestFeatureView
from featurestore.model.checks import problems_of
from featurestore.semantics import AGG_FUNCTIONS

if TYPE_CHECKING:
    from featurestore.loader import Repo

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

    def __init__(self, columns: Dict[str, str], source_name: str, where: Optional[str] = None):
        import duckdb

        self.columns = dict(columns)
        self.source_name = source_name
        self.where = where or f"in source '{source_name}'"  # completes "column 'x' not ..."
        self._con = duckdb.connect()

    def _relation(self) -> str:
        cols = ", ".join(f'CAST(NULL AS {dtypes.DUCKDB_TYPES[t]}) AS "{c}"' for c, t in self.columns.items())
        return f"(SELECT {cols} LIMIT 0)"

    def dtype(self, expr: str) -> str:
        """The canonical type of ``expr``, or ExpressionError with a readable cause."""
        wrong = expression_error(expr)
        if wrong:
            raise ExpressionError(wrong)
        if self.columns.get(expr.strip()) == dtypes.JSON:  # JSON text: VARCHAR to DuckDB, a JSON value to us
            return dtypes.JSON
        # The WHERE clause refuses aggregates: a feature input is a value of one row.
        sql = f"SELECT ({expr}) AS __x FROM {self._relation()} AS src WHERE ({expr}) IS NULL"
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
            msg = f"column '{col}' not {self.where}"
            close = difflib.get_close_matches(col, list(self.columns), n=1)
            return msg + (f" (did you mean '{close[0]}'?)" if close else "")
        first = text.strip().splitlines()[0]
        first = re.sub(r"^\w+ Error: ", "", first)
        if "cannot contain aggregates" in first:
            return f"{expr!r}: aggregate functions are not allowed in a row expression; use Aggregation(...)"
        return f"invalid SQL expression {expr!r}: {first}"


_PARSED: Dict[str, Optional[str]] = {}
_PARSER_LOCK = threading.Lock()
_PARSER: list = []  # [connection, the parsed "SELECT 1" without its select list]


def expression_error(expr: str) -> Optional[str]:
    """Why ``expr`` is not exactly one scalar SQL expression (DuckDB's parser), or None when it is."""
    if expr in _PARSED:
        return _PARSED[expr]
    import duckdb

    with _PARSER_LOCK:
        if not _PARSER:
            con = duckdb.connect()
            _PARSER.extend([con, _select_node(con, "1")[1]])
        con, baseline = _PARSER
        why = _expression_error(con, baseline, expr)
    if len(_PARSED) < 100_000:
        _PARSED[expr] = why
    return why


def _select_node(con, expr: str):
    """(error or None, the SELECT node without its select list, the select list) of ``SELECT expr``."""
    data = json.loads(con.execute("SELECT json_serialize_sql(?)", ["SELECT " + expr]).fetchone()[0])
    if data.get("error"):
        return data.get("error_message") or "does not parse", None, None
    statements = data["statements"]
    if len(statements) != 1:
        return "several statements", None, None
    node = dict(statements[0]["node"])
    select_list = node.pop("select_list")
    return None, node, select_list


def _expression_error(con, baseline: dict, expr: str) -> Optional[str]:
    import duckdb

    one = f"{expr!r} must be exactly one SQL expression"
    try:
        duckdb.tokenize(expr)
    except Exception as exc:  # noqa: BLE001 - an untokenizable string is reported like a parse error
        return f"{one}: {str(exc).splitlines()[0]}"
    if _line_comment(expr):
        return f"{one}: a '--' comment would hide the rest of the statement it is compiled into"
    error, node, select_list = _select_node(con, expr)
    if error == "several statements" or (error and "Only SELECT statements" in error):
        return f"{one}, not several statements"
    if error:
        return f"{one}: {error}"
    if node != baseline or len(select_list) != 1:
        return f"{one}: it parses as a list or a query clause (FROM, WHERE, GROUP BY, ORDER BY, LIMIT ...)"
    item = select_list[0]
    if item.get("alias"):
        return f"{one}, without AS"
    if item.get("class") == "STAR":
        return f"{one}; '*' is not a value"
    classes = set(_classes(item))
    if "SUBQUERY" in classes:
        return f"{expr!r}: subqueries are not supported in a definition's SQL"
    if "WINDOW" in classes:
        return f"{expr!r}: window functions (OVER) are not supported; use Aggregation(...) with a window"
    return None


def _line_comment(expr: str) -> bool:
    """Whether ``expr`` holds a ``--`` comment (not a ``--`` inside a string, a quoted name or a ``/* */``
    comment), by DuckDB's own lexer whatever its release (DuckDB 2 reports comments as tokens, 1.x drops
    them): a ``--`` at ``p`` starts a comment exactly when ``expr[:p]`` ends outside any literal or comment,
    i.e. when a name appended there lexes as a token of its own."""
    import duckdb

    p = expr.find("--")
    while p >= 0:
        try:
            if any(pos == p + 1 for pos, _ in duckdb.tokenize(expr[:p] + " x")):
                return True
        except Exception:  # noqa: BLE001 - an unterminated literal before p: the '--' is inside it
            pass
        p = expr.find("--", p + 1)
    return False


def referenced_names(expr: str) -> Set[str]:
    """Lower-cased names an expression refers to (every part of each column reference; DuckDB matches
    names case-insensitively). A superset: lambda parameters and struct fields are in it too."""
    import duckdb

    with _PARSER_LOCK:
        if not _PARSER:
            con = duckdb.connect()
            _PARSER.extend([con, _select_node(con, "1")[1]])
        _, _, select_list = _select_node(_PARSER[0], expr)
    names: Set[str] = set()
    stack = [select_list]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class") == "COLUMN_REF":
                names.update(str(n).lower() for n in item.get("column_names", ()))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _classes(node) -> List[str]:
    out: List[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("class"), str):
                out.append(item["class"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _problem(repo: "Repo", obj, message: str, name: Optional[str] = None, feature=None) -> Problem:
    origin = next((o for d, o in repo.shadowed if d is obj), None) or repo.origin(obj)
    file, line = origin.file, origin.line
    if feature is not None:
        made = repo.made_at(feature)
        if made is not None:  # the line of the feature's constructor call
            file, line = made
        else:
            line = origin.line_of(feature.name, getattr(feature, "column", None) or getattr(feature, "expr", ""))
    return Problem(file, line, name or obj.name, message)


def view_columns(view: FeatureView, binder: Binder, problems: List[Problem], repo: "Repo",
                 broken: Optional[Set[str]] = None) -> Dict[str, str]:
    """Source columns plus projections, with types; records problems for bad projections (their names,
    lower-cased, into ``broken``: what reads them is checked once they are fixed, not told they are missing).

    Projections see source columns only (they do not chain); features see both.
    """
    columns = dict(view.source.columns)
    for name, expr in view.projections:
        if name in columns:
            problems.append(_problem(repo, view,
                                     f"projection '{name}' shadows a column of source '{view.source.name}'"))
            continue
        try:
            columns[name] = binder.dtype(expr)
        except ExpressionError as exc:
            problems.append(_problem(repo, view, f"projection '{name}': {exc}"))
            if broken is not None:
                broken.add(name.lower())
    return columns


def _reads_any(expr: Optional[str], names: Set[str]) -> bool:
    """Whether ``expr`` refers to one of ``names`` (lower-cased); an expression that does not parse: no."""
    if not expr or not names:
        return False
    try:
        return bool(referenced_names(expr) & names)
    except Exception:  # noqa: BLE001 - its own problem is reported when it is checked
        return False


def feature_dtype(feature, columns_binder: Binder) -> str:
    """Output type of a feature (raises ExpressionError)."""
    if isinstance(feature, Latest):
        return columns_binder.dtype(feature.expr)
    if feature.column is None:
        return AGG_FUNCTIONS[feature.function].result_dtype(dtypes.INT64)
    return AGG_FUNCTIONS[feature.function].result_dtype(columns_binder.dtype(feature.column))


def _check_view(repo: "Repo", view: FeatureView) -> Tuple[List[Problem], Set[str]]:
    """Problems of one view, and the names of its features that have one (constructor or here)."""
    problems: List[Problem] = []
    bad = {f.name for f in view.features if problems_of(f)}
    checked = [f for f in view.features if not problems_of(f)]
    for feature in checked:
        if feature.name in view.join_keys:
            problems.append(_problem(repo, view, f"feature '{feature.name}' has the name of a join key",
                                     f"{view.name}.{feature.name}", feature))
    if view.ttl is not None and not view.latest_features:
        problems.append(_problem(repo, view, "ttl only applies to Latest features, and this view has none"))
    source = view.source
    if source is None or not source.schema:  # reported by the constructors; checked once it is fixed
        return problems, bad | {f.name for f in checked}
    binder = Binder(source.columns, source.name)
    unusable: Set[str] = set()  # projections with a problem
    columns = view_columns(view, binder, problems, repo, unusable)
    for key in view.join_keys:
        if key.lower() in unusable:
            continue
        if key not in columns:
            problems.append(_problem(repo, view, f"join key '{key}' not in source '{source.name}'"))
        elif columns[key] not in dtypes.JOIN_KEY_TYPES:
            problems.append(_problem(repo, view,
                                     f"join key '{key}' has type {columns[key]}; use string, int64 or int32"))
    if view.filter is not None:  # the filter runs first: it sees source columns only
        try:
            kind = binder.dtype(view.filter)
            if kind != dtypes.BOOL:
                problems.append(_problem(repo, view, f"filter {view.filter!r} is {kind}, not a boolean"))
        except ExpressionError as exc:
            problems.append(_problem(repo, view, f"filter: {exc}"))
    binder.columns = dict(columns)
    for feature in checked:
        if _reads_any(getattr(feature, "expr", None) or getattr(feature, "column", None), unusable):
            bad.add(feature.name)  # its projection's problem is reported; checked once that is fixed
            continue
        label = f"{view.name}.{feature.name}"
        found = _check_feature(repo, view, feature, binder, label)
        if found:
            bad.add(feature.name)
            problems.extend(found)
    return problems, bad


def _check_feature(repo: "Repo", view: FeatureView, feature, binder: Binder, label: str) -> List[Problem]:
    try:
        out = feature_dtype(feature, binder)
    except ExpressionError as exc:
        return [_problem(repo, view, str(exc), label, feature)]
    if isinstance(feature, Aggregation) and feature.column is not None:
        spec = AGG_FUNCTIONS[feature.function]
        in_type = binder.dtype(feature.column)
        if in_type == dtypes.JSON:
            return [_problem(repo, view, f"{feature.function} over '{feature.column}', a JSON value (map, struct, "
                                         "array), is not supported; only a latest feature reads one", label, feature)]
        if spec.numeric_only and in_type not in dtypes.NUMERIC:
            return [_problem(repo, view, f"{feature.function} needs a numeric input; "
                                         f"'{feature.column}' is {in_type}", label, feature)]
    if isinstance(feature, Aggregation) and feature.default is not None:
        return _check_default(repo, view, feature, out, label)
    return []


def _check_default(repo, view, feature: Aggregation, out: str, label: str) -> List[Problem]:
    if AGG_FUNCTIONS[feature.function].empty_value is not None:
        return [_problem(repo, view, f"{feature.function} of an empty window is already 0; remove default=", label,
                         feature)]
    value = feature.default
    ok = {
        dtypes.STRING: isinstance(value, str),
        dtypes.BOOL: isinstance(value, bool),
        dtypes.INT32: isinstance(value, int) and not isinstance(value, bool),
        dtypes.INT64: isinstance(value, int) and not isinstance(value, bool),
        dtypes.FLOAT32: isinstance(value, (int, float)) and not isinstance(value, bool),
        dtypes.FLOAT64: isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(out, False)
    if not ok or not _default_in_range(value, out):
        return [_problem(repo, view, f"default {value!r} does not fit the feature's type {out}", label, feature)]
    return []


_INT_RANGES = {dtypes.INT32: (-2**31, 2**31 - 1), dtypes.INT64: (-2**63, 2**63 - 1)}


def _default_in_range(value, dtype: str) -> bool:
    """Whether ``CAST(default AS <dtype>)`` holds the value (a default is cast to the feature's type, and a cast
    out of range fails the query): an integer within its type, a finite number that stays finite as a
    float64 and, for float32, as a float32 (rounded as the cast rounds)."""
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]
        return lo <= value <= hi
    if dtype not in (dtypes.FLOAT32, dtypes.FLOAT64) or (isinstance(value, float) and not math.isfinite(value)):
        return True
    try:
        as_float = float(value)  # an int beyond the double range raises
        return dtype == dtypes.FLOAT64 or math.isfinite(struct.unpack("f", struct.pack("f", as_float))[0])
    except OverflowError:  # struct: far beyond the float32 range (just beyond, it rounds to inf)
        return False


def resolve_service_refs(service: FeatureService, views: Dict[str, FeatureView],
                         incomplete: Set[str] = frozenset()) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(view, feature) pairs a service reads, in order, and the reasons any ref does not resolve.
    ``views``: feature views and request feature views by name (one namespace).

    A missing feature of a view in ``incomplete`` (one whose features have problems of their own) is
    not reported again."""
    refs: List[Tuple[str, str]] = []
    errors: List[str] = []
    for ref in service.features:
        if isinstance(ref, (FeatureView, RequestFeatureView)):
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
                if view_name in incomplete:
                    continue
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


def streaming_problems(repo: "Repo", view: FeatureView, skip: Set[str] = frozenset()) -> List[Problem]:
    """What the streaming job cannot run in ``view`` (a view whose source has a stream face), leaving out
    the features in ``skip`` (they have problems already)."""
    from featurestore.engines.flink.exprs import check_view

    if skip:
        view = copy.copy(view)
        object.__setattr__(view, "features", tuple(f for f in view.features if f.name not in skip))
        if not view.features:
            return []
    problems: List[Problem] = []
    for feature_name, message in check_view(view):
        if feature_name is None:
            problems.append(_problem(repo, view, f"streaming: {message}"))
        else:
            feature = next(f for f in view.features if f.name == feature_name)
            problems.append(_problem(repo, view, f"streaming: feature '{feature_name}': {message}",
                                     f"{view.name}.{feature_name}", feature))
    return problems


def batch_face_problems(repo: "Repo", repo_root) -> List[Problem]:
    """Declared columns that none of a source's batch-face files holds (``duckdb_batch.check_declared_columns``:
    what a backfill would refuse), one problem per source; faces without files yet are not checked."""
    from featurestore.engines.duckdb_batch import check_file_columns, parquet_files, source_keys
    from featurestore.errors import FeatureStoreError
    from featurestore.model import ParquetFiles

    problems: List[Problem] = []
    for source in {id(v.source): v.source for v in repo.views.values() if v.source is not None}.values():
        if not isinstance(source.batch, ParquetFiles) or problems_of(source) or not source.schema:
            continue
        try:
            files = parquet_files(source.batch, repo_root)
            if files:
                check_file_columns(source, files, source_keys(repo, source))
        except FeatureStoreError as exc:
            problems.append(_problem(repo, source, str(exc)))
    return problems


def partition_column_problems(repo: "Repo") -> List[Problem]:
    """A column a view's offline table would store (its source's columns, its projections) named as the offline
    layout's partition folders (``date=YYYY-MM-DD/``): no write of the table could take it (docs/offline-store.md),
    so it is said at plan, once per source or view, not after a backfill's work."""
    from featurestore.stores.offline_files import PARTITION_COLUMN

    why = (f"is named like the offline store's partition folders ({PARTITION_COLUMN}=YYYY-MM-DD/), so no offline "
           f"table can hold it; rename it")
    problems: List[Problem] = []
    sources = {}
    for view in repo.views.values():
        if view.source is not None and not problems_of(view.source) and PARTITION_COLUMN in view.source.columns:
            sources.setdefault(id(view.source), view.source)
        if any(name == PARTITION_COLUMN for name, _ in view.projections):
            problems.append(_problem(repo, view, f"projection '{PARTITION_COLUMN}' {why}"))
    for source in sources.values():
        problems.append(_problem(repo, source, f"column '{PARTITION_COLUMN}' (read by its views) {why}"))
    return problems


def validate(repo: "Repo", streaming: bool = False) -> List[Problem]:
    """Every problem in the repo, in file order (``streaming``: also what the streaming job cannot run)."""
    from featurestore.request_validation import validate_request_views

    problems: List[Problem] = []
    incomplete: Set[str] = set()
    broken: Set[str] = set()  # views with any problem: request views reading them are checked once fixed
    shadowed_views = [d for d, _ in repo.shadowed if isinstance(d, FeatureView)]
    for view in [*repo.views.values(), *shadowed_views]:
        found, bad = _check_view(repo, view)
        problems.extend(found)
        if (bad or problems_of(view)) and repo.views.get(view.name) is view:
            incomplete.add(view.name)
        if found or bad or problems_of(view) or view.source is None or problems_of(view.source) \
                or not view.source.schema:
            broken.add(view.name)
        view_level = [p for p in found if p.obj == view.name]
        if streaming and not problems_of(view) and not view_level and view.source is not None \
                and not problems_of(view.source):
            problems.extend(streaming_problems(repo, view, bad))
    problems.extend(partition_column_problems(repo))
    found, incomplete_request = validate_request_views(repo, broken)
    problems.extend(found)
    for service in repo.services.values():
        _, errors = resolve_service_refs(service, {**repo.views, **repo.request_views}, incomplete | incomplete_request)
        problems.extend(_problem(repo, service, e) for e in errors)
    return sorted(problems, key=lambda p: (p.file, p.line, p.obj, p.message))
