"""Training sets from serving logs (SPEC §3.3, §7): labels joined to the feature values that were served.

The join rule (also in docs/log-and-wait.md):

* **By request id and entity.** With a ``request_id`` column, a label matches the row its request
  served *for the label's entity*: the label's join keys (every join key of the service) equal the
  keys of a row that request served. A null key matches a null key here (the label names a served
  row; it does not look an entity up). A request that served the entity in several rows served the
  same values in each (one request time, one entity); the first row is used. Without join-key columns,
  a label matches on its request id alone when that request served one entity; a request that served
  several entities is an error (the label does not say which).
* **By entity and time.** Without a ``request_id`` column, a label matches a served row with the same
  join keys and the same request time (to the millisecond); when several match, the first logged.
* **Each request id once.** A request id logged more than once counts as its last logged lookup
  (:func:`featurestore.serving_log.read_logs`).
* **No log: filled and flagged.** A label without a matching served row (its request id was never
  logged, or that request did not serve its entity) is filled by the point-in-time join
  (``get_historical_features``) at the label's timestamp, or, when the labels have no timestamp
  column, at the time of the logged request it names; its ``_from_log`` is False. A label that can be
  neither matched nor filled is an error naming the row.
* **Features a logged row did not serve** (they joined the service after the lookup was logged) are filled by
  the point-in-time join at that request's time and keys; the row keeps its served values for the others and
  gets ``_from_log`` False (it is not the whole served vector), never a null passed off as served.

Values are exact: served values come back as logged (JSON, decoded to each feature's type), filled
ones through Arrow (never through pandas' float64); join keys are compared in their declared types.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd
import pyarrow as pa

from featurestore import dtypes
from featurestore import serving_log as sl
from featurestore.errors import RequestError
from featurestore.sdk.historical import DEFAULT_TS, check_unique_columns, pick_timestamp_column, request_times_ms
from featurestore.sdk.json_values import decode_list

FILL_TIME = "_fill_time"


def training_set_from_logs(store, labels_df, feature_service, timestamp_column: Optional[str] = None,
                           ship_first: bool = True, full_feature_names: bool = False) -> pd.DataFrame:
    """Labels joined to the feature values that were served for them (rule: module docstring).

    Returns ``labels_df`` (index reset) plus one column per feature of the service (exact Python
    values; named ``view__feature`` with ``full_feature_names``, as ``get_historical_features`` names them,
    whichever names the logged lookups asked for), ``_from_log`` (True: every value is the served one; False:
    filled by the point-in-time join, wholly or, for features the logged row did not serve, in part) and
    ``_definitions`` (the served row's view fingerprints). Rows logged under several definition versions are
    reported (a warning and ``attrs["definition_versions"]``), never merged silently.

    >>> fs.training_set_from_logs(pd.DataFrame({"request_id": [rid], "label": [1]}), "fraud")  # doctest: +SKIP
    """
    from featurestore.sdk.refs import resolve_features

    name = getattr(feature_service, "name", feature_service)
    if not isinstance(labels_df, pd.DataFrame) or labels_df.empty:
        raise RequestError("labels_df must be a non-empty pandas DataFrame")
    check_unique_columns(labels_df, "labels_df")
    selection = resolve_features(store.repo, feature_service=name)
    types = sl.key_types(store, selection)
    keys = list(types)
    served_columns = sl.served_columns(store, selection, full_feature_names)
    by_column = {c: dtype for c, (_, _, dtype) in served_columns.items()}
    columns = list(by_column)
    labels = labels_df.reset_index(drop=True)
    clash = [c for c in columns if c in labels.columns]
    if clash:
        raise RequestError(f"labels_df already has column(s) {clash} that the features would produce")
    by_id = "request_id" in labels.columns
    present = [k for k in keys if k in labels.columns]
    if present and len(present) < len(keys):
        absent = [k for k in keys if k not in present]
        raise RequestError(f"labels_df has join key column(s) {present} but not {absent}: give every join key "
                           f"of '{name}' ({keys}) or none (then rows match by request_id alone)")
    if not by_id and not present:
        raise RequestError(f"labels_df needs a 'request_id' column, or the join keys {keys} and a timestamp")
    ts_col = _time_column(labels, timestamp_column, required=not by_id)
    label_keys = _label_keys(labels, types) if present else None

    if ship_first:
        sl.ship(store)
    logs = sl.read_logs(store, name)
    log_keys = _log_keys(logs, types, name)
    served_rows = logs["features"].tolist()
    request_ids = logs["request_id"].tolist()
    times = _log_times_ms(logs)

    if by_id:
        matched = _match_by_id(labels, label_keys, request_ids, log_keys)
    else:  # without request ids the keys and a timestamp column were required above
        assert ts_col is not None and label_keys is not None
        matched = _match_by_time(labels, ts_col, label_keys, log_keys, times)

    values: Dict[str, List[Any]] = {c: [None] * len(labels) for c in columns}
    defs: List[Optional[str]] = [None] * len(labels)
    fingerprints = logs["fingerprints"].tolist()
    unserved: Dict[Tuple[str, ...], List[Tuple[int, int]]] = {}  # columns a served row lacks -> (label, log row)
    for r, i in enumerate(matched):
        if i is None:
            continue
        served = sl.decode_served(served_rows[i], served_columns)
        for c in columns:
            values[c][r] = served.get(c)
        defs[r] = fingerprints[i]
        lacking = tuple(c for c in columns if c not in served)
        if lacking:  # logged before these features joined the service: it served no value for them
            unserved.setdefault(lacking, []).append((r, i))
    for lacking, pairs in unserved.items():
        filled = _fill_unserved(store, lacking, pairs, served_columns, labels, logs, log_keys, times, types,
                                full_feature_names)
        for c in lacking:
            for (r, _), v in zip(pairs, _decoded(filled.column(c).to_pylist(), by_column[c])):
                values[c][r] = v
    missing = [r for r, i in enumerate(matched) if i is None]
    if missing:
        request_time = dict(zip(request_ids, times))  # one time per request
        filled = _fill(store, name, labels, missing, label_keys, types, ts_col, request_time, by_id,
                       full_feature_names)
        for c in columns:
            for r, v in zip(missing, _decoded(filled.column(c).to_pylist(), by_column[c])):
                values[c][r] = v

    added = {c: pd.Series(values[c], dtype=object) for c in columns}
    partly = {r for pairs in unserved.values() for r, _ in pairs}
    added["_from_log"] = pd.Series([i is not None and r not in partly for r, i in enumerate(matched)], dtype=bool)
    added["_definitions"] = pd.Series(defs, dtype=object)
    # One concat, not a column at a time (pandas warns of a fragmented frame beyond 100 inserts).
    out = pd.concat([labels.drop(columns=[c for c in added if c in labels.columns]), pd.DataFrame(added)], axis=1)
    _report_versions(out, defs, store, selection, name)
    return out


def _time_column(labels: pd.DataFrame, timestamp_column: Optional[str], required: bool) -> Optional[str]:
    if timestamp_column is not None or required:
        return pick_timestamp_column(labels, timestamp_column, "labels_df")
    if DEFAULT_TS in labels.columns:
        return DEFAULT_TS
    candidates = [c for c in labels.columns if pd.api.types.is_datetime64_any_dtype(labels[c].dtype)]
    return candidates[0] if len(candidates) == 1 else None


def _label_keys(labels: pd.DataFrame, types: Dict[str, str]) -> List[tuple]:
    """Each label's join keys as a tuple of values of the declared types (the entity_df rules: a key of
    the wrong type is refused, naming the column and row)."""
    from featurestore.sdk.inputs import key_column

    cols = [key_column(labels[key], dtype, "labels_df", key).to_pylist() for key, dtype in types.items()]
    return list(zip(*cols))


def _log_keys(logs: pd.DataFrame, types: Dict[str, str], name: str) -> List[tuple]:
    entities = [json.loads(e) for e in logs["entity"]]
    table = sl.typed_keys(entities, types, f"serving logs of '{name}'")
    return list(zip(*(table.column(k).to_pylist() for k in types))) if len(entities) else []


def _log_times_ms(logs: pd.DataFrame) -> List[int]:
    if logs.empty:
        return []
    col = pd.to_datetime(logs["request_time"], utc=True)
    return (col.astype("datetime64[ns, UTC]").astype("int64") // 1_000_000).tolist()


def _match_by_id(labels: pd.DataFrame, label_keys: Optional[List[tuple]], request_ids: List[str],
                 log_keys: List[tuple]) -> List[Optional[int]]:
    served: Dict[str, Dict[tuple, int]] = {}  # request id -> entity keys -> first row serving them
    for i, (rid, key) in enumerate(zip(request_ids, log_keys)):
        served.setdefault(rid, {}).setdefault(key, i)
    matched: List[Optional[int]] = []
    for r, rid in enumerate(labels["request_id"].tolist()):
        if not isinstance(rid, str) and not pd.isna(rid):  # e.g. ids of digits a CSV reader turned into ints
            raise RequestError(f"labels_df row {r}: request_id {rid!r} is of type {type(rid).__name__}, not a string "
                               "(request ids are strings: read the labels with dtype={'request_id': str})")
        entities = served.get(rid) if isinstance(rid, str) else None
        if entities is None:
            matched.append(None)
        elif label_keys is not None:
            matched.append(entities.get(label_keys[r]))
        elif len(entities) == 1:
            matched.append(next(iter(entities.values())))
        else:
            raise RequestError(f"labels_df row {r}: request '{rid}' served {len(entities)} entities; add the join "
                               f"key columns to labels_df to say which one the label is for")
    return matched


def _match_by_time(labels: pd.DataFrame, ts_col: str, label_keys: List[tuple], log_keys: List[tuple],
                   times: List[int]) -> List[Optional[int]]:
    first: Dict[Tuple[tuple, int], int] = {}
    for i, (key, ms) in enumerate(zip(log_keys, times)):
        first.setdefault((key, ms), i)
    q_ms = request_times_ms(labels, ts_col, "labels_df").tolist()
    return [first.get((key, q)) for key, q in zip(label_keys, q_ms)]


def _fill(store, name: str, labels: pd.DataFrame, missing: List[int], label_keys: Optional[List[tuple]],
          types: Dict[str, str], ts_col: Optional[str], request_time: Dict[str, int], by_id: bool,
          full_feature_names: bool) -> pa.Table:
    """Point-in-time values for the labels without a served row, as Arrow (exact types)."""
    if label_keys is None:
        r = missing[0]
        raise RequestError(f"labels_df row {r}: request_id {labels['request_id'].iloc[r]!r} has no logged row to "
                           f"match and labels_df has no join key columns to fill it by the point-in-time join")
    if ts_col is not None:
        q = request_times_ms(labels.iloc[missing], ts_col, "labels_df", missing).tolist()
    else:
        q = []
        for r in missing:
            rid = labels["request_id"].iloc[r] if by_id else None
            if rid not in request_time:
                raise RequestError(f"labels_df row {r}: request_id {rid!r} was never logged and labels_df has no "
                                   "timestamp column to fill it by the point-in-time join (pass timestamp_column=)")
            q.append(request_time[rid])
    cols = {k: pa.array([label_keys[r][j] for r in missing], type=dtypes.arrow_type(t))
            for j, (k, t) in enumerate(types.items())}
    frame = sl.exact_pandas(pa.table(cols))
    frame[FILL_TIME] = pd.to_datetime(pd.Series(q, dtype="int64"), unit="ms", utc=True)
    # Request features need their request data: labels_df carries it for the rows that were never logged.
    from featurestore.sdk.refs import resolve_features

    for col in sl.request_types(store, resolve_features(store.repo, feature_service=name)):
        if col not in labels.columns:
            raise RequestError(f"labels_df row {missing[0]} has no logged row to match; filling it by the "
                               f"point-in-time join needs request column '{col}' in labels_df (the request features "
                               f"of '{name}' read it)")
        frame[col] = labels[col].iloc[missing].reset_index(drop=True)
    return store.get_historical_features(frame, feature_service=name, timestamp_column=FILL_TIME,
                                         full_feature_names=full_feature_names).to_arrow()


def _decoded(filled_values: List[Any], dtype: str) -> List[Any]:
    """Point-in-time values as the training set holds them: a JSON feature's stored text decoded, as served."""
    return decode_list(filled_values) if dtype == dtypes.JSON else filled_values


def _fill_unserved(store, lacking: Tuple[str, ...], pairs: List[Tuple[int, int]], served_columns: Dict[str, tuple],
                   labels: pd.DataFrame, logs: pd.DataFrame, log_keys: List[tuple], times: List[int],
                   types: Dict[str, str], full_feature_names: bool) -> pa.Table:
    """The ``lacking`` features of logged rows that did not serve them (they joined the service later), by the
    point-in-time join at each row's logged request time and served keys. Request columns they read come from
    ``labels_df``, else from the row's logged request data."""
    cols = {k: pa.array([log_keys[i][j] for _, i in pairs], type=dtypes.arrow_type(t))
            for j, (k, t) in enumerate(types.items())}
    frame = sl.exact_pandas(pa.table(cols))
    frame[FILL_TIME] = pd.to_datetime(pd.Series([times[i] for _, i in pairs], dtype="int64"), unit="ms", utc=True)
    from featurestore.sdk.refs import resolve_features

    refs = [f"{served_columns[c][0]}:{served_columns[c][1]}" for c in lacking]
    request_cols = sl.request_types(store, resolve_features(store.repo, features=refs))
    if request_cols:
        logged = sl.decode_request_data(logs.iloc[[i for _, i in pairs]], request_cols, "serving logs")
        for col in request_cols:
            if col in labels.columns:
                frame[col] = labels[col].iloc[[r for r, _ in pairs]].reset_index(drop=True)
            elif logged.column(col).null_count < len(pairs):
                frame[col] = logged.column(col).to_pandas()
            else:
                raise RequestError(f"labels_df row {pairs[0][0]}: its logged row did not serve {list(lacking)}; "
                                   f"filling them by the point-in-time join needs request column '{col}' in labels_df")
    return store.get_historical_features(frame, features=refs, timestamp_column=FILL_TIME,
                                         full_feature_names=full_feature_names).to_arrow()


def _report_versions(out: pd.DataFrame, defs: List[Optional[str]], store, selection, name: str) -> None:
    versions = pd.Series([d for d in defs if d is not None], dtype=object).value_counts().to_dict()
    out.attrs["definition_versions"] = versions
    current = sl._dumps({v: store.repo.feature_view(v).data_fingerprint for v in selection})
    if len(versions) > 1 or (versions and current not in versions):
        warnings.warn(
            f"training_set_from_logs('{name}'): logged rows come from {len(versions)} definition version(s)"
            + ("" if current in versions else ", none of them the current one")
            + "; see the _definitions column", stacklevel=4)


__all__ = ["training_set_from_logs"]
