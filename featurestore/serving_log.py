"""Log-and-wait (SPEC §7): what was served is logged, shipped offline, and joined to labels later.

1. **Log.** A logged lookup appends one entry to the Redis Stream ``fs:{project}:_log:{stream}``
   (``stream`` = the feature service's name, or ``_adhoc`` for a feature list) before the call returns:
   request id, request time, service name and version, each view's data fingerprint, the entity keys
   and every served value, as exact JSON. Redis runs with an append-only file (``infra/redis.sh``).
2. **Ship.** :func:`ship` copies stream entries into the offline Parquet table ``<stream>`` under
   ``<offline root>/<project>/_serving_logs/`` (one row per served entity row), then trims what it
   shipped. The append is idempotent (its sequence number is the last stream id), so a crash between
   append and trim ships nothing twice, and a crash between serving and shipping loses nothing.
3. **Join.** :func:`training_set_from_logs` returns, for each label row, the values that were served.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import pyarrow as pa

ADHOC = "_adhoc"
LOG_ROOT = "_serving_logs"
LOG_TABLE_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("row", pa.int32()),
    ("request_time", pa.timestamp("ms", tz="UTC")),
    ("feature_service", pa.string()),
    ("service_version", pa.int32()),
    ("fingerprints", pa.string()),  # JSON {view: data fingerprint}
    ("entity", pa.string()),  # JSON {join key: value}
    ("features", pa.string()),  # JSON {column: served value}; floats round-trip exactly
    ("stream_id", pa.string()),
])


def _dumps(obj: Any) -> str:
    # allow_nan: a feature expression may yield NaN/inf; Python's json reads these tokens back exactly.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=True, default=_default)


def _default(v):
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"cannot log value {v!r} of type {type(v).__name__}")


def stream_key(project: str, stream: str) -> str:
    return f"fs:{project}:_log:{stream}"


def should_log(store, feature_service, log: bool) -> bool:
    """``log=True``, or a feature service whose logging is on (sampled at its ``sample_rate``)."""
    if log:
        return True
    if feature_service is None:
        return False
    name = getattr(feature_service, "name", feature_service)
    service = store.repo.services.get(name)
    if service is None or not service.logging.enabled:
        return False
    rate = float(service.logging.sample_rate)
    return rate >= 1.0 or random.random() < rate


@dataclass
class LogRecord:
    request_id: str
    fields: Dict[str, str]
    stream: str


def build_record(store, columns: Dict[str, List[Any]], key_names: List[str], selection, feature_service,
                 request_time_ms: int, request_id: Optional[str]) -> LogRecord:
    """One stream entry for one lookup (all of its rows)."""
    request_id = request_id or uuid.uuid4().hex
    name = getattr(feature_service, "name", feature_service)
    service = store.repo.services.get(name) if name else None
    fingerprints = {v: store.repo.views[v].data_fingerprint for v in selection}
    n = len(next(iter(columns.values()), []))
    entities = [{k: columns[k][i] for k in key_names} for i in range(n)]
    features = [{c: columns[c][i] for c in columns if c not in key_names} for i in range(n)]
    payload = {
        "request_id": request_id,
        "request_time": request_time_ms,
        "feature_service": name or ADHOC,
        "service_version": service.version if service else 0,
        "fingerprints": fingerprints,
        "entities": entities,
        "features": features,
    }
    return LogRecord(request_id, {"r": _dumps(payload)}, name or ADHOC)


def write(client, project: str, record: LogRecord) -> str:
    """Append the record; returns its stream id once Redis has acknowledged it."""
    return client.xadd(stream_key(project, record.stream), record.fields).decode()


def log_table(store, stream: str):
    from featurestore.stores.offline import OfflineStore

    return OfflineStore(store.config.offline_path / store.config.project / LOG_ROOT).table(
        stream.lstrip("_") or "adhoc", ts_column="request_time")


@dataclass
class ShipResult:
    stream: str
    entries: int
    rows: int
    version: Optional[int]


def ship(store, batch: int = 10_000) -> List[ShipResult]:
    """Move every logged lookup from Redis Streams into the offline log tables (idempotent)."""
    client = store.online_store().client
    prefix = f"fs:{store.config.project}:_log:"
    results = []
    for raw_key in client.scan_iter(match=prefix + "*", count=1000):
        key = raw_key.decode()
        stream = key[len(prefix):]
        table = log_table(store, stream)
        entries = rows = 0
        version = table.version
        while True:
            got = client.xrange(key, "-", "+", count=batch)
            if not got:
                break
            last_id = got[-1][0].decode()
            arrow = _rows(got)
            version = table.append(arrow, app_id=f"ship:{key}", seq=_seq(last_id))
            client.xtrim(key, minid=_next_id(last_id), approximate=False)
            entries += len(got)
            rows += arrow.num_rows
        results.append(ShipResult(stream, entries, rows, version))
    return results


def _seq(stream_id: str) -> int:
    ms, n = stream_id.split("-")
    return int(ms) * 1_000_000 + int(n)


def _next_id(stream_id: str) -> str:
    ms, n = stream_id.split("-")
    return f"{ms}-{int(n) + 1}"


def _rows(entries) -> pa.Table:
    cols: Dict[str, list] = {f.name: [] for f in LOG_TABLE_SCHEMA}
    for sid, fields in entries:
        doc = json.loads(fields[b"r"])
        for i, (ent, feats) in enumerate(zip(doc["entities"], doc["features"])):
            cols["request_id"].append(doc["request_id"])
            cols["row"].append(i)
            cols["request_time"].append(doc["request_time"])
            cols["feature_service"].append(doc["feature_service"])
            cols["service_version"].append(doc["service_version"])
            cols["fingerprints"].append(_dumps(doc["fingerprints"]))
            cols["entity"].append(_dumps(ent))
            cols["features"].append(_dumps(feats))
            cols["stream_id"].append(sid.decode())
    return pa.table({k: pa.array(v, type=LOG_TABLE_SCHEMA.field(k).type) for k, v in cols.items()})


def read_logs(store, feature_service: str):
    """The shipped log rows of a feature service, as pandas (values decoded from JSON)."""
    import pandas as pd

    table = log_table(store, feature_service)
    if table.version is None:
        return pd.DataFrame(columns=[f.name for f in LOG_TABLE_SCHEMA])
    return table.read().to_pandas()


def is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def training_set_from_logs(store, labels_df, feature_service, timestamp_column: Optional[str] = None,
                           ship_first: bool = True):
    """Labels joined to the feature values that were served for them (SPEC §7).

    Each label row is matched to a logged row by ``request_id`` (plus the join keys, when a request
    served several entities), or, without a ``request_id`` column, by join keys and request time
    (the label's timestamp, to the millisecond). Matched rows carry the served values exactly and
    ``_from_log=True``; unmatched rows are filled by the point-in-time join at the label's timestamp and
    flagged ``_from_log=False``. Rows logged under different definition versions are reported (a
    warning, ``frame.attrs["definition_versions"]`` and the ``_definitions`` column), never merged
    silently.
    """
    import warnings

    import pandas as pd

    from featurestore.errors import RequestError
    from featurestore.sdk.historical import pick_timestamp_column, request_times_ms
    from featurestore.sdk.inputs import key_column
    from featurestore.sdk.refs import output_names, resolve_features

    name = getattr(feature_service, "name", feature_service)
    if not isinstance(labels_df, pd.DataFrame) or labels_df.empty:
        raise RequestError("labels_df must be a non-empty pandas DataFrame")
    selection = resolve_features(store.repo, feature_service=name)
    columns = list(output_names(selection, False).values())
    keys = []
    for v in selection:
        keys.extend(k for k in store.repo.views[v].join_keys if k not in keys)
    for v in selection:  # keys of the wrong type would match no log and no event: refuse them
        for k, dtype in store.compiled(v).key_types.items():
            if k in labels_df.columns:
                key_column(labels_df[k], dtype, "labels_df", k)
    if ship_first:
        ship(store)
    logs = read_logs(store, name)
    labels = labels_df.reset_index(drop=True)
    by_id = "request_id" in labels.columns
    if not by_id:
        missing = [k for k in keys if k not in labels.columns]
        if missing:
            raise RequestError(f"labels_df needs a 'request_id' column, or the join keys {missing} and a timestamp")
    ts_col = None
    if not by_id or timestamp_column is not None:
        ts_col = pick_timestamp_column(labels, timestamp_column)
    elif any(pd.api.types.is_datetime64_any_dtype(labels[c]) for c in labels.columns):
        ts_col = pick_timestamp_column(labels, None)

    index: Dict[tuple, int] = {}
    entities = [json.loads(e) for e in logs["entity"]] if len(logs) else []
    for i in range(len(logs)):
        ent = entities[i]
        if by_id:
            index.setdefault((logs["request_id"].iloc[i], ), i)
            index.setdefault((logs["request_id"].iloc[i], _key(ent, keys)), i)
        else:
            when = int(pd.Timestamp(logs["request_time"].iloc[i]).value // 1_000_000)
            index.setdefault((_key(ent, keys), when), i)
    label_keys = [k for k in keys if k in labels.columns]
    q_ms = request_times_ms(labels, ts_col) if ts_col else None
    matched: List[Optional[int]] = []
    for r in range(len(labels)):
        if by_id:
            rid = labels["request_id"].iloc[r]
            ent = {k: _py(labels[k].iloc[r]) for k in label_keys}
            hit = index.get((rid, _key(ent, keys))) if len(label_keys) == len(keys) else None
            matched.append(hit if hit is not None else index.get((rid,)))
        else:
            ent = {k: _py(labels[k].iloc[r]) for k in keys}
            matched.append(index.get((_key(ent, keys), int(q_ms.iloc[r]))))

    values = {c: [None] * len(labels) for c in columns}
    defs: List[Optional[str]] = [None] * len(labels)
    for r, i in enumerate(matched):
        if i is None:
            continue
        served = json.loads(logs["features"].iloc[i])
        for c in columns:
            values[c][r] = served.get(c)
        defs[r] = logs["fingerprints"].iloc[i]
    missing_rows = [r for r, i in enumerate(matched) if i is None]
    if missing_rows and ts_col is not None and all(k in labels.columns for k in keys):
        pit = store.get_historical_features(labels.iloc[missing_rows][keys + [ts_col]].reset_index(drop=True),
                                            feature_service=name, timestamp_column=ts_col)
        for j, r in enumerate(missing_rows):
            for c in columns:
                values[c][r] = _py(pit[c].iloc[j])
    out = labels.copy()
    clash = [c for c in columns if c in out.columns]
    if clash:
        raise RequestError(f"labels_df already has column(s) {clash} that the features would produce")
    for c in columns:
        out[c] = pd.Series(values[c], dtype=object)
    out["_from_log"] = [i is not None for i in matched]
    out["_definitions"] = defs
    versions = pd.Series([d for d in defs if d is not None]).value_counts().to_dict()
    out.attrs["definition_versions"] = versions
    current = _dumps({v: store.repo.views[v].data_fingerprint for v in selection})
    if len(versions) > 1 or (versions and current not in versions):
        warnings.warn(
            f"training_set_from_logs('{name}'): logged rows come from {len(versions)} definition version(s)"
            + ("" if current in versions else ", none of them the current one")
            + "; see the _definitions column", stacklevel=2)
    return out


def _key(ent: dict, keys: List[str]) -> str:
    return _dumps([_py(ent.get(k)) for k in keys])


def _py(v):
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
