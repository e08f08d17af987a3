"""Request feature views in ``get_historical_features`` and ``get_online_features``: a step after the lookup.

When a selection names request feature views, :func:`plan` splits it into the base features to look
up (what was asked for, plus every feature a request view reads, fetched even if not asked for) and the
request views to compute. Then:

* **offline** (:func:`historical`): the point-in-time join computes the base features for every row of the
  entity frame (``get_historical_features`` itself, over the join keys and the timestamp), then each request
  view is evaluated once over the whole frame, its request data taken from the frame's columns;
* **online** (:func:`online`): one lookup of the base features, then each request view is evaluated over
  the request's rows, its request data taken from ``request_data=`` (or the entity rows, as Feast passes
  it).

Both evaluate with :func:`featurestore.sdk.request_eval.evaluate` over an input table built the same way
(every column of its declared type), so a row gets the same value. Online, a row whose inputs include a
refused value (the online store could not answer exactly) gets ``REFUSED`` for the request view's
features too, never a value computed from a gap; the other statuses are ``PRESENT`` and ``NULL_VALUE``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa

from featurestore import dtypes as t
from featurestore.compiler.request import FEATURE, KEY, REQUEST, CompiledRequestView, InputColumn
from featurestore.errors import RequestError
from featurestore.sdk import request_data as rd
from featurestore.sdk.request_eval import evaluate, input_table


@dataclass(frozen=True)
class RequestPlan:
    base: "OrderedDict[str, List[str]]"  # feature view -> features to look up (requested and read)
    request: Tuple[Tuple[CompiledRequestView, Tuple[str, ...]], ...]  # request view, its requested features
    request_columns: Tuple[InputColumn, ...]  # every request column any of them reads (first declaration)
    key_types: Dict[str, str]  # join keys of the base views
    feature_types: Dict[Tuple[str, str], str]  # (view, feature) -> type of every base feature

    @property
    def base_refs(self) -> List[str]:
        return [f"{v}:{f}" for v, names in self.base.items() for f in names]


def compiled_request(store, name: str) -> CompiledRequestView:
    """The compiled request view ``name`` of the store's loaded repo (cached per definition)."""
    from featurestore.compiler.request import compile_request_view

    rv = store.repo.request_views[name]
    cache = store.repo.__dict__.setdefault("_compiled_request", {})
    hit = cache.get(name)
    if hit is None or hit[0] is not rv:
        deps = {view.name: store.compiled(view.name) for view, _ in rv.view_inputs}
        hit = cache[name] = (rv, compile_request_view(rv, deps))
    return hit[1]


def plan(store, selection: Dict[str, List[str]]) -> Optional[RequestPlan]:
    """The request plan of a resolved selection, or None when it names no request view (cached)."""
    repo = store.repo
    if not repo.request_views or not any(v in repo.request_views for v in selection):
        return None
    cache = repo.__dict__.setdefault("_request_plans", {})
    key = tuple((v, tuple(names)) for v, names in selection.items())
    hit = cache.get(key)
    if hit is not None:
        return hit
    base: "OrderedDict[str, List[str]]" = OrderedDict()
    request = []
    columns: Dict[str, InputColumn] = {}
    for view, names in selection.items():
        if view not in repo.request_views:
            base.setdefault(view, []).extend(n for n in names if n not in base.get(view, ()))
            continue
        crv = compiled_request(store, view)
        request.append((crv, tuple(names)))
        for dep, feats in crv.deps:
            have = base.setdefault(dep, [])
            have.extend(f for f in feats if f not in have)
        for col in crv.request_columns:
            seen = columns.setdefault(col.name, col)
            if seen.dtype != col.dtype:
                raise RequestError(f"request column '{col.name}' is {seen.dtype} in request source '{seen.ref[0]}' and "
                                   f"{col.dtype} in '{col.ref[0]}'; one request cannot carry both")
    key_types: Dict[str, str] = {}
    feature_types: Dict[Tuple[str, str], str] = {}
    for view, names in base.items():
        cv = store.compiled(view)
        for k, dtype in cv.key_types.items():
            key_types.setdefault(k, dtype)
        feature_types.update({(view, f): cv.feature_dtypes[f] for f in names})
    out = RequestPlan(base, tuple(request), tuple(columns.values()), key_types, feature_types)
    if len(cache) < 10_000:
        cache[key] = out
    return out


def _inputs(crv: CompiledRequestView, keys: Dict[str, pa.Array], request: Dict[str, pa.Array],
            features: Dict[Tuple[str, str], pa.Array]) -> pa.Table:
    cols = {}
    for col in crv.inputs:
        if col.kind == KEY:
            cols[col.name] = keys[col.ref[1]]
        elif col.kind == REQUEST:
            cols[col.name] = request[col.name]
        else:
            cols[col.name] = features[col.ref]
    return input_table(crv, cols)


# -- offline -----------------------------------------------------------------------------------------
def historical(store, entity_df, selection, columns: Dict[Tuple[str, str], str], timestamp_column=None,
               save_as=None, filter_by_created_timestamp=False):
    """``get_historical_features`` of a selection with request views (module docstring)."""
    import pandas as pd

    from featurestore.sdk.historical import pick_timestamp_column
    from featurestore.sdk.inputs import key_column

    from featurestore.sdk import request_sets

    rplan = plan(store, selection)
    if not isinstance(entity_df, pd.DataFrame):
        raise RequestError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
    if len(entity_df) == 0:
        raise RequestError("entity_df is empty: give at least one row")
    if save_as is not None:
        request_sets.check_new(store, save_as)
    clash = [c for c in columns.values() if c in entity_df.columns]
    if clash:
        raise RequestError(f"entity_df already has column(s) {clash} that the features would produce")
    df = entity_df.reset_index(drop=True)
    request = {}
    for col in rplan.request_columns:
        if col.name not in df.columns:
            raise RequestError(f"entity_df has no column '{col.name}' (request data of request source "
                               f"'{col.ref[0]}', read by {_readers(rplan, col.name)})")
        request[col.name] = rd.request_column(df[col.name], col.dtype, "entity_df", col.name)
    features: Dict[Tuple[str, str], pa.Array] = {}
    keys: Dict[str, pa.Array] = {}
    base_set = ts_col = None
    if rplan.base:
        ts_col = pick_timestamp_column(df, timestamp_column)
        missing = [k for k in rplan.key_types if k not in df.columns]
        if missing:
            raise RequestError(f"entity_df has no column '{missing[0]}' (join key of the features read)")
        base_df = df[[*rplan.key_types, ts_col]]
        base_set = f"{save_as}.base" if save_as is not None else None
        base = store.get_historical_features(base_df, features=rplan.base_refs, full_feature_names=True,
                                             timestamp_column=ts_col, save_as=base_set,
                                             filter_by_created_timestamp=filter_by_created_timestamp).to_arrow()
        for view, names in rplan.base.items():
            for f in names:
                features[(view, f)] = base.column(f"{view}__{f}").combine_chunks()
        keys = {k: key_column(df[k], dtype, "entity_df", k) for k, dtype in rplan.key_types.items()}
    outputs: Dict[Tuple[str, str], pa.Array] = {}
    for crv, names in rplan.request:
        got = evaluate_frame(crv, features, keys, request)
        for n in names:
            outputs[(crv.name, n)] = got[n]
    json_refs = {ref for ref, dtype in rplan.feature_types.items() if dtype == t.JSON}
    json_refs |= {(crv.name, n) for crv, _ in rplan.request for n, dtype in crv.outputs if dtype == t.JSON}
    frame = assemble(df, columns, {**features, **outputs}, json_refs)
    if save_as is not None:
        frame.manifest = request_sets.save(store, save_as, base_set, entity_df, frame, rplan, columns,
                                           ts_col if rplan.base else None)
    return frame


def assemble(df, columns: Dict[Tuple[str, str], str], values: Dict[Tuple[str, str], pa.Array], json_refs=()):
    """The training frame: ``df`` (index reset) and one column per feature, in ``columns`` order; the
    features ``json_refs`` (JSON values) are Python values in pandas, their text in ``to_arrow()``."""
    from featurestore.sdk.json_values import decode_frame

    import pandas as pd

    from featurestore.sdk.historical import TrainingFrame, features_to_pandas

    arrays = [values[ref] for ref in columns]
    feats = pa.table(arrays, names=list(columns.values())) if arrays else pa.table({})
    frame = TrainingFrame(pd.concat([df, features_to_pandas(feats)], axis=1))
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    for name, col in zip(feats.column_names, feats.columns):
        arrow = arrow.append_column(name, col)
    frame._arrow = arrow
    decode_frame(frame, [col for ref, col in columns.items() if ref in json_refs])
    return frame


def _readers(rplan: RequestPlan, column: str) -> str:
    names = [crv.name for crv, _ in rplan.request if any(c.name == column for c in crv.request_columns)]
    label = "request feature view " if len(names) == 1 else "request feature views "
    return label + ", ".join(f"'{n}'" for n in names)


def evaluate_frame(crv: CompiledRequestView, features: Dict[Tuple[str, str], pa.Array], keys: Dict[str, pa.Array],
                   request: Dict[str, pa.Array]) -> Dict[str, pa.Array]:
    """Evaluate ``crv`` over whole columns (what :func:`historical` does per view; saved sets replay it)."""
    return evaluate(crv, _inputs(crv, keys, request, features))


def explain(store, name: str) -> Dict[str, str]:
    """What a request view runs after the lookup, as text (``plan --explain``)."""
    from featurestore.sdk.request_eval import select_sql

    crv = compiled_request(store, name)
    inputs = ", ".join(f"{c.name} {c.dtype}" for c in crv.inputs)
    if crv.mode == "sql":
        return {"request-time (DuckDB)": f"-- inputs: {inputs}\n" + select_sql(crv, "<request inputs>")}
    outputs = ", ".join(f"{n} {d}" for n, d in crv.outputs)
    return {"request-time (Python)": f"-- function {crv.function_name}, mode {crv.mode}\n-- inputs: {inputs}\n"
                                     f"-- outputs: {outputs}"}


# -- online ------------------------------------------------------------------------------------------
def online(store, selection, entity_rows, request_data, request_time, columns: Dict[Tuple[str, str], str]):
    """``get_online_features`` of a selection with request views (module docstring). Returns the response
    and the request data served (``{column: [typed value per row]}``), for the log."""
    from featurestore import online as ol
    from featurestore.sdk.inputs import entity_rows as check_rows
    from featurestore.sdk.online_lookup import lookup
    from featurestore.sdk.timeutil import now_ms, to_epoch_ms

    rplan = plan(store, selection)
    rows = check_rows(entity_rows) if entity_rows is not None else []
    given = rd.rows_to_columns(request_data, None)
    n = len(rows) if rows else len(next(iter(given.values()), []))
    if n == 0:
        raise RequestError("no entity rows and no request data given")
    given = rd.rows_to_columns(request_data, n)
    values: Dict[str, List[Any]] = {}
    for col in rplan.request_columns:
        in_rows = rows and any(col.name in r for r in rows)
        if col.name in given and in_rows:
            raise RequestError(f"request column '{col.name}' is given both in request_data and in the entity rows")
        if col.name in given:
            raw = given[col.name]
        elif in_rows:
            missing = next((i for i, r in enumerate(rows) if col.name not in r), None)
            if missing is not None:
                raise RequestError(f"entity row {missing} has no request column '{col.name}' (other rows have it)")
            raw = [r[col.name] for r in rows]
        else:
            raise RequestError(f"request data has no column '{col.name}' (request source '{col.ref[0]}', read by "
                               f"{_readers(rplan, col.name)}); pass request_data={{'{col.name}': [...]}}")
        values[col.name] = [rd.value(v, col.dtype, f"request data row {i}", col.name) for i, v in enumerate(raw)]
    request = {c: pa.array(v, type=t.arrow_type(col.dtype)) for col in rplan.request_columns
               for c, v in [(col.name, values[col.name])]}

    if rplan.base:
        if not rows:
            raise RequestError("entity rows are needed: the request features read features of "
                               + ", ".join(f"'{v}'" for v in rplan.base))
        base = lookup(store, rows, features=rplan.base_refs, request_time=request_time, full_feature_names=True)
        q = base.request_time_ms
        data, statuses, refusals = base.to_dict(), base.statuses(), list(base.refusals)
        times = getattr(base, "event_times", {}) or {}
    else:
        q = now_ms() if request_time is None else to_epoch_ms(request_time, "request_time")
        data, statuses, refusals, times = {}, {}, [], {}
    keys_out = {k: data[k] for k in rplan.key_types if k in data}
    features = {(v, f): pa.array(data[f"{v}__{f}"], type=t.arrow_type(dtype))
                for (v, f), dtype in rplan.feature_types.items()}
    keys = {k: pa.array(vals, type=t.arrow_type(rplan.key_types[k])) for k, vals in keys_out.items()}

    out_values: Dict[Tuple[str, str], List[Any]] = {}
    out_status: Dict[Tuple[str, str], List[str]] = {}
    for crv, names in rplan.request:
        refused = [any(statuses[f"{v}__{f}"][i] == ol.REFUSED for v, feats in crv.deps for f in feats)
                   for i in range(n)]
        keep = [i for i in range(n) if not refused[i]]
        table = _inputs(crv, keys, request, features)
        if len(keep) < n:
            table = table.take(pa.array(keep, pa.int64()))
        got = evaluate(crv, table)
        for name in names:
            vals: List[Any] = [None] * n
            sts = [ol.REFUSED] * n
            for i, v in zip(keep, got[name].to_pylist()):
                vals[i] = v
                sts[i] = ol.PRESENT if v is not None else ol.NULL_VALUE
            out_values[(crv.name, name)] = vals
            out_status[(crv.name, name)] = sts
    clash = sorted(set(columns.values()) & set(keys_out))
    if clash:
        raise RequestError(f"feature column(s) {clash} would overwrite the join key column(s) of the response; "
                           "pass full_feature_names=True")
    result: Dict[str, List[Any]] = dict(keys_out)
    result_status: Dict[str, List[str]] = {}
    result_times: Dict[str, List[Any]] = {}  # a request feature has no event: computed at the request
    for (v, f), col in columns.items():
        if (v, f) in out_values:
            result[col], result_status[col] = out_values[(v, f)], out_status[(v, f)]
            result_times[col] = [None] * n
        else:
            result[col], result_status[col] = data[f"{v}__{f}"], statuses[f"{v}__{f}"]
            result_times[col] = times.get(f"{v}__{f}", [None] * n)
    return ol.OnlineResponse(result, None, q, result_status, refusals, result_times), values


__all__ = ["RequestPlan", "assemble", "compiled_request", "evaluate_frame", "explain", "historical", "online",
           "plan"]
