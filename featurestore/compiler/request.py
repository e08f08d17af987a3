"""Compile a request feature view: its input columns (names the code sees, types) and its outputs.

Both paths evaluate the compiled form with the same code (:mod:`featurestore.sdk.request_eval`), so the
input naming rule lives here, once:

1. the **join keys** of the views it reads (``user_id``);
2. the **request columns** of its request sources (``amount``);
3. each **feature** it reads as ``view__feature``, and also as plain ``feature`` unless a key, a request
   column or another feature read has that name (then only the full name exists).

A request column named like a join key or like a feature read is an error (the code could not tell
them apart), as are one column with two types and one key with two types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from featurestore.model.request import SQL, RequestFeatureView

KEY, REQUEST, FEATURE = "key", "request", "feature"


@dataclass(frozen=True)
class InputColumn:
    name: str  # as the SQL / the function sees it
    dtype: str
    kind: str  # KEY, REQUEST or FEATURE
    ref: Tuple[str, str]  # KEY: ("", key); REQUEST: (request source, column); FEATURE: (view, feature)


@dataclass(frozen=True)
class CompiledRequestView:
    name: str
    mode: str  # "sql", "row", "python" or "pandas"
    inputs: Tuple[InputColumn, ...]  # distinct names, in the order the code sees them
    outputs: Tuple[Tuple[str, str], ...]  # (feature, dtype) in definition order
    expressions: Tuple[Tuple[str, str], ...]  # SQL mode: (feature, expression)
    function: Optional[Callable]
    function_name: str
    deps: Tuple[Tuple[str, Tuple[str, ...]], ...]  # (view, features read) in source order
    data_fingerprint: str
    sql_inputs: Tuple[str, ...] = ()  # SQL mode: the inputs the expressions refer to (the relation's columns)

    @property
    def output_dtypes(self) -> Dict[str, str]:
        return dict(self.outputs)

    @property
    def request_columns(self) -> Tuple[InputColumn, ...]:
        return tuple(c for c in self.inputs if c.kind == REQUEST)

    @property
    def key_columns(self) -> Tuple[InputColumn, ...]:
        return tuple(c for c in self.inputs if c.kind == KEY)


def input_columns(rv: RequestFeatureView, feature_types: Dict[str, Dict[str, str]],
                  key_types: Dict[str, Dict[str, str]]) -> Tuple[List[InputColumn], List[str]]:
    """(the inputs of ``rv``, problems). ``feature_types[view][feature]`` and ``key_types[view][key]`` give
    the types of the views it reads (every one of them must be there)."""
    problems: List[str] = []
    keys: Dict[str, Tuple[str, str]] = {}  # key -> (dtype, first view)
    for view, _ in rv.view_inputs:
        for key, dtype in key_types[view.name].items():
            seen = keys.setdefault(key, (dtype, view.name))
            if seen[0] != dtype:
                problems.append(f"join key '{key}' is {seen[0]} in view '{seen[1]}' and {dtype} in view '{view.name}'")
    request: Dict[str, Tuple[str, str]] = {}  # column -> (dtype, request source)
    for src in rv.request_sources:
        for col, dtype in src.schema:
            seen = request.setdefault(col, (dtype, src.name))
            if seen[0] != dtype:
                problems.append(f"request column '{col}' is {seen[0]} in request source '{seen[1]}' and {dtype} "
                                f"in '{src.name}'")
    for col, (_, src_name) in request.items():
        if col in keys:
            problems.append(f"request column '{col}' of '{src_name}' has the name of a join key of view "
                            f"'{keys[col][1]}'; rename it")
    read = [(view.name, feat, feature_types[view.name][feat]) for view, names in rv.view_inputs for feat in names]
    short = [f for _, f, _ in read]
    for view, feat, _ in read:
        if feat in request:
            problems.append(f"request column '{feat}' of '{request[feat][1]}' has the name of feature '{view}:{feat}'; "
                            "rename it")
    inputs = [InputColumn(k, dtype, KEY, ("", k)) for k, (dtype, _) in keys.items()]
    inputs += [InputColumn(c, dtype, REQUEST, (src, c)) for c, (dtype, src) in request.items() if c not in keys]
    taken = {c.name for c in inputs}
    for view, feat, dtype in read:
        full = f"{view}__{feat}"
        if full in taken:
            problems.append(f"input '{full}' is both a feature and a request column or key")
            continue
        inputs.append(InputColumn(full, dtype, FEATURE, (view, feat)))
        taken.add(full)
    for view, feat, dtype in read:
        if short.count(feat) == 1 and feat not in taken:
            inputs.append(InputColumn(feat, dtype, FEATURE, (view, feat)))
            taken.add(feat)
    return inputs, problems


def compile_request_view(rv: RequestFeatureView, compiled_views: Dict[str, object]) -> CompiledRequestView:
    """The plan of one validated request view; ``compiled_views[name]`` is the CompiledView of each view it
    reads. SQL output types come from DuckDB's binder over the inputs (as validation found them)."""
    feature_types = {n: cv.feature_dtypes for n, cv in compiled_views.items()}
    key_types = {n: cv.key_types for n, cv in compiled_views.items()}
    inputs, problems = input_columns(rv, feature_types, key_types)
    if problems:  # pragma: no cover - validation reports these first
        raise ValueError(f"request feature view '{rv.name}': {problems[0]}")
    sql_inputs: Tuple[str, ...] = ()
    if rv.mode == SQL:
        from featurestore.validation import referenced_names

        binder = input_binder(rv, inputs)
        outputs = tuple((n, binder.dtype(e)) for n, e in rv.features)
        used = set().union(*(referenced_names(e) for _, e in rv.features))
        sql_inputs = tuple(c.name for c in inputs if c.name.lower() in used)
    else:
        outputs = tuple(rv.schema)
    fn = rv.function
    return CompiledRequestView(
        name=rv.name,
        mode=rv.mode,
        inputs=tuple(inputs),
        outputs=outputs,
        expressions=tuple(rv.features) if rv.mode == SQL else (),
        function=fn,
        function_name=getattr(fn, "__qualname__", "") if fn is not None else "",
        deps=tuple((view.name, tuple(names)) for view, names in rv.view_inputs),
        data_fingerprint=rv.data_fingerprint,
        sql_inputs=sql_inputs,
    )


def input_binder(rv: RequestFeatureView, inputs: List[InputColumn]):
    """A DuckDB binder over the inputs of ``rv`` (types SQL expressions; no data)."""
    from featurestore.validation import Binder

    return Binder({c.name: c.dtype for c in inputs}, rv.name,
                  where=f"among the inputs of request feature view '{rv.name}'")


__all__ = ["CompiledRequestView", "InputColumn", "compile_request_view", "input_binder", "input_columns", "KEY",
           "REQUEST", "FEATURE"]
