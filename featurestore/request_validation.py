"""Check the request feature views of a loaded repo; every problem names file, line and object.

What is checked (constructor mistakes were reported by :mod:`featurestore.model.request` already):

* the name is not also a feature view's (``name:feature`` references would be ambiguous);
* ``view.select(...)`` names features the view has;
* the inputs (:func:`featurestore.compiler.request.input_columns`): no request column named like a join
  key or a feature read, no column or key with two types;
* SQL features: each is exactly one scalar expression, bound by DuckDB over the inputs (unknown columns
  with a suggestion, types);
* a function takes one argument;
* no output is named like a join key of the views read (the response carries the join keys).

A request view reading a view or request source that has problems of its own is checked once those are
fixed (a mistake is reported once).
"""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Dict, List, Set, Tuple

from featurestore.errors import Problem
from featurestore.model import FeatureView, RequestFeatureView
from featurestore.model.checks import problems_of
from featurestore.model.request import SQL

if TYPE_CHECKING:
    from featurestore.loader import Repo


def _where(repo: "Repo", rv: RequestFeatureView, feature: str = "") -> Tuple[str, int]:
    origin = next((o for d, o in repo.shadowed if d is rv), None) or repo.origin(rv)
    return origin.file, (origin.line_of(feature) if feature else origin.line)


def validate_request_views(repo: "Repo", broken_views: Set[str]) -> Tuple[List[Problem], Set[str]]:
    """(every problem of the repo's request views, the names of those that have one). ``broken_views``:
    feature views with problems of their own (request views reading them are checked once they are fixed)."""
    problems: List[Problem] = []
    incomplete: Set[str] = set()
    compiled: Dict[str, object] = {}
    shadowed = [d for d, _ in repo.shadowed if isinstance(d, RequestFeatureView)]
    for rv in [*repo.request_views.values(), *shadowed]:
        found = _check(repo, rv, broken_views, compiled)
        problems.extend(found)
        if (found or problems_of(rv)) and repo.request_views.get(rv.name) is rv:
            incomplete.add(rv.name)
    return problems, incomplete


def _check(repo: "Repo", rv: RequestFeatureView, broken_views: Set[str], compiled: Dict[str, object]) -> List[Problem]:
    from featurestore.compiler.ir import compile_view
    from featurestore.compiler.request import input_binder, input_columns
    from featurestore.validation import ExpressionError

    def problem(message: str, feature: str = "") -> Problem:
        file, line = _where(repo, rv, feature)
        return Problem(file, line, f"{rv.name}.{feature}" if feature else rv.name, message)

    out: List[Problem] = []
    if rv.name in repo.views:
        o = repo.origin(repo.views[rv.name])
        out.append(problem(f"a feature view is also named '{rv.name}' ({o.file}:{o.line}); references "
                           f"'{rv.name}:feature' would be ambiguous"))
    if problems_of(rv):
        return out
    blocked = False
    for src in rv.request_sources:
        blocked |= bool(problems_of(src)) or not src.schema
    for view, names in rv.view_inputs:
        if not isinstance(view, FeatureView) or view.name in broken_views or problems_of(view):
            blocked = True
            continue
        for n in names:
            if n not in view.feature_names:
                close = difflib.get_close_matches(n, list(view.feature_names), n=1)
                out.append(problem(f"feature view '{view.name}' has no feature '{n}'"
                                   + (f" (did you mean '{close[0]}'?)" if close else "")))
    if blocked or out:
        return out
    for view, _ in rv.view_inputs:
        if view.name not in compiled:
            compiled[view.name] = compile_view(view)
    feature_types = {v.name: compiled[v.name].feature_dtypes for v, _ in rv.view_inputs}
    key_types = {v.name: compiled[v.name].key_types for v, _ in rv.view_inputs}
    inputs, found = input_columns(rv, feature_types, key_types)
    out.extend(problem(m) for m in found)
    if found:
        return out
    keys = {c.name for c in inputs if c.kind == "key"}
    for name in rv.feature_names:
        if name in keys:
            out.append(problem(f"feature '{name}' has the name of a join key of the views it reads", name))
    if rv.mode == SQL:
        binder = input_binder(rv, inputs)
        for name, expr in rv.features:
            try:
                binder.dtype(expr)
            except ExpressionError as exc:
                out.append(problem(str(exc), name))
    elif rv.function is not None:
        out.extend(problem(m) for m in _signature_problems(rv))
    return out


def _signature_problems(rv: RequestFeatureView) -> List[str]:
    fn = rv.function
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        what = {"row": "a dict (one row)", "python": "a dict of lists (the columns)",
                "pandas": "a pandas DataFrame", "arrow": "a pyarrow Table"}[rv.mode]
        return [f"function '{getattr(fn, '__name__', '?')}' must take one argument, {what}"]
    except ValueError:  # pragma: no cover - a builtin without a signature
        return []
    return []


__all__ = ["validate_request_views"]
