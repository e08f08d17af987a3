"""Log-and-wait (SPEC §7): what was served is logged, shipped offline, and joined to labels later.

1. **Log.** A logged lookup appends one entry to the Redis Stream ``fs:{project}:_log:{stream}`` (or, for a
   service with ``LoggingConfig(destination="kafka")``, produces it to a Kafka topic:
   :mod:`featurestore.serving_log_kafka`)
   (``stream`` = the feature service's name, or ``_adhoc`` for a feature list) before the call returns:
   request id, request time, service name and version, each view's data fingerprint, the entity keys
   (in their declared types) and every served value, as exact JSON. Redis runs with an append-only file
   (``infra/redis.sh``).
2. **Ship.** :func:`ship` copies stream entries into the offline Parquet table ``<stream>`` under
   ``<offline root>/<project>/_serving_logs/`` (one row per served entity row), then trims what it
   shipped. Exactly once per stream entry, whatever runs concurrently or dies (:func:`ship_stream`).
3. **Read.** :func:`read_logs` gives one row per served row of each request id (a request id logged
   twice counts once: its last lookup); :func:`typed_keys`, :func:`exact_pandas` and
   :func:`decode_served` turn log rows into keys and values of their declared types, never through
   pandas' float64.
4. **Join** (:mod:`featurestore.sdk.from_logs`) and **verify** (:mod:`featurestore.verify`) read through 3.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from math import isfinite
from operator import is_not
from typing import Any, Dict, List, Optional

import orjson
import pyarrow as pa

from featurestore.model.service import ADHOC_STREAM

_not_none = partial(is_not, None)
ADHOC = ADHOC_STREAM  # the stream of lookups by feature list (no service may take its name)
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
    # JSON {request column: value} of the request data served with the row; null when the lookup had
    # no request feature views (and in tables shipped before request features existed)
    ("request_data", pa.string()),
])


def _dumps(obj: Any, finite: bool = False) -> str:
    """Compact JSON of ``obj``. ``finite``: the caller checked that no float in it is NaN or infinite
    (:func:`_all_finite`), so orjson may write it (several times faster; it would write those as null):
    the same values read back. Whatever orjson refuses or would write otherwise (integers beyond 64 bits,
    subclasses, dataclasses, non-string keys) goes through json, as everything else does."""
    if finite:
        try:
            return orjson.dumps(obj, default=_default, option=_ORJSON_PLAIN).decode()
        except (orjson.JSONEncodeError, TypeError):
            pass
    # allow_nan: a feature expression may yield NaN/inf; Python's json reads these tokens back exactly.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=True, default=_default)


# orjson writes these types natively in its own form: they go to ``_default`` (json's form) instead, or
# (a subclass of str, int, dict, list; a dataclass) make it refuse
_ORJSON_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS


def _all_finite(column: List[Any]) -> bool:
    """Whether no value of ``column`` is a non-finite float (numbers checked in C; a column of other
    values, e.g. strings, is checked value by value)."""
    try:
        return all(map(isfinite, filter(_not_none, column)))
    except (TypeError, OverflowError):  # (strings, times, ...; an integer beyond the double range)
        return not any(isinstance(v, float) and not isfinite(v) for v in column)


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
                 request_time_ms: int, request_id: Optional[str],
                 request_data: Optional[Dict[str, List[Any]]] = None) -> LogRecord:
    """One stream entry for one lookup (all of its rows); ``request_data`` (``{column: [typed value per
    row]}``) is logged when the lookup computed request features, so they can be recomputed offline."""
    if request_id is not None and (not isinstance(request_id, str) or not request_id):
        from featurestore.errors import RequestError

        raise RequestError(f"request_id must be a non-empty string, got {request_id!r}")
    request_id = request_id or uuid.uuid4().hex
    name = getattr(feature_service, "name", feature_service)
    service = store.repo.services.get(name) if name else None
    fingerprints = {v: _data_fingerprint(store, v) for v in selection}
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
    if request_data is not None:
        payload["request_data"] = [{c: v[i] for c, v in request_data.items()} for i in range(n)]
    finite = all(map(_all_finite, columns.values())) and (
        request_data is None or all(map(_all_finite, request_data.values())))
    return LogRecord(request_id, {"r": _dumps(payload, finite)}, name or ADHOC)


def _data_fingerprint(store, name: str) -> str:
    """The data fingerprint of view ``name``, computed once per definition object (a fingerprint hashes the
    definition's canonical form: most of a one-entity lookup's logging; ``reload()`` makes new objects)."""
    view = store.repo.feature_view(name)
    memo = store.__dict__.setdefault("_log_fingerprints", {})
    hit = memo.get(name)
    if hit is None or hit[0] is not view:
        hit = memo[name] = (view, view.data_fingerprint)
    return hit[1]


def write(client, project: str, record: LogRecord) -> str:
    """Append the record; returns its stream id once Redis has acknowledged it."""
    return client.xadd(stream_key(project, record.stream), record.fields).decode()


def log_table_name(stream: str) -> str:
    """The log table of a stream, one per stream: ``adhoc`` for feature lists, the service's name, or
    ``service-<name>`` for a service named ``adhoc`` or starting with ``_`` (a table name starts with a letter
    or digit; a definition name never holds ``-``, so no two streams share a table)."""
    if stream == ADHOC:
        return "adhoc"
    if stream == "adhoc" or stream.startswith("_"):
        return f"service-{stream}"
    return stream


def log_table(store, stream: str):
    from featurestore.stores.offline import OfflineStore

    return OfflineStore(store.config.offline_path / store.config.project / LOG_ROOT).table(
        log_table_name(stream), ts_column="request_time")


@dataclass
class ShipResult:
    stream: str
    entries: int  # log entries (lookups) this call shipped
    rows: int  # offline rows it wrote (one per served entity row)
    version: Optional[int]  # the log table's version afterwards
    conflicts: int = 0  # times another shipper committed first (this one re-read and went on)


def ship(store, batch: int = 10_000) -> List[ShipResult]:
    """Move every logged lookup from Redis Streams into the offline log tables: each stream entry lands
    exactly once, whatever runs concurrently, retries or dies (see :func:`ship_stream`)."""
    from featurestore import serving_log_kafka

    client = store.online_store().client
    prefix = f"fs:{store.config.project}:_log:"
    results = []
    for raw_key in client.scan_iter(match=prefix + "*", count=1000):
        key = raw_key.decode()
        stream = key[len(prefix):]
        results.append(ship_stream(client, key, log_table(store, stream), stream, batch))
    return results + serving_log_kafka.ship(store, batch)  # services logging to Kafka


def ship_stream(client, key: str, table, stream: str, batch: int = 10_000) -> ShipResult:
    """Ship one stream. The log table records the id of the last stream entry it holds (its ``seq``
    for the app ``ship:<key>``): every entry up to that id is in the table, none after it. A round
    reads the entries after that position, appends them on the condition that the position has not
    moved (a compare-and-set, ``OfflineTable.append(after_seq=...)``) and then trims them from the
    stream. Two shippers that read the same entries cannot both commit them (the loser re-reads after
    the new position), and a shipper that dies anywhere leaves either nothing committed or a committed
    batch whose entries the next round skips (and trims): no entry is lost or shipped twice."""
    from featurestore.stores.offline import CommitConflict

    app = f"ship:{key}"
    entries = rows = conflicts = 0
    while True:
        shipped = table.app_seq(app)
        if shipped is not None:  # entries a ship that died before trimming left behind
            client.xtrim(key, minid=_next_id(_stream_id(shipped)), approximate=False)
        start = "-" if shipped is None else _next_id(_stream_id(shipped))
        got = client.xrange(key, start, "+", count=batch)
        if not got:
            break
        last_id = got[-1][0].decode()
        arrow = _rows(got)
        try:
            table.append(arrow, app_id=app, seq=_seq(last_id), after_seq=shipped)
        except CommitConflict:
            conflicts += 1
            continue
        client.xtrim(key, minid=_next_id(last_id), approximate=False)
        entries += len(got)
        rows += arrow.num_rows
    return ShipResult(stream, entries, rows, table.version, conflicts)


_SEQ_BASE = 1_000_000  # a stream id ms-n is the seq ms * 10^6 + n (Redis numbers at most ~10^5 entries per ms)


def _seq(stream_id: str) -> int:
    ms, n = (int(x) for x in stream_id.split("-"))
    if n >= _SEQ_BASE:
        raise ValueError(f"stream id {stream_id}: more than {_SEQ_BASE} entries in one millisecond")
    return ms * _SEQ_BASE + n


def _stream_id(seq: int) -> str:
    return f"{seq // _SEQ_BASE}-{seq % _SEQ_BASE}"


def _next_id(stream_id: str) -> str:
    ms, n = stream_id.split("-")
    return f"{ms}-{int(n) + 1}"


def _rows(entries) -> pa.Table:
    cols: Dict[str, list] = {f.name: [] for f in LOG_TABLE_SCHEMA}
    for sid, fields in entries:
        doc = json.loads(fields[b"r"])
        request = doc.get("request_data")
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
            cols["request_data"].append(_dumps(request[i]) if request is not None else None)
    return pa.table({k: pa.array(v, type=LOG_TABLE_SCHEMA.field(k).type) for k, v in cols.items()})


def read_logs(store, feature_service: str):
    """The shipped log rows of a feature service as pandas, in log order: one row per served entity row.
    A request id logged more than once (a lookup retried with the same ``request_id=``, or a log write
    that Redis took twice) counts once: its last logged lookup, all of its rows."""
    import pandas as pd

    table = log_table(store, getattr(feature_service, "name", feature_service))
    if table.version is None:
        return pd.DataFrame({f.name: pd.Series(dtype=object) for f in LOG_TABLE_SCHEMA})
    return latest_per_request(table.read()).to_pandas()


def latest_per_request(table: pa.Table) -> pa.Table:
    """The rows of each request id's last stream entry, ordered by stream id then row."""
    order = [tuple(int(x) for x in sid.split("-")) for sid in table.column("stream_id").to_pylist()]
    last: Dict[str, tuple] = {}
    for rid, pos in zip(table.column("request_id").to_pylist(), order):
        if rid not in last or pos > last[rid]:
            last[rid] = pos
    rows = table.column("row").to_pylist()
    keep = sorted((pos, row, i) for i, (rid, pos, row) in
                  enumerate(zip(table.column("request_id").to_pylist(), order, rows)) if last[rid] == pos)
    return table.take(pa.array([i for _, _, i in keep], pa.int64()))


# -- typed decoding: log rows keep their declared types (never through pandas' float) -----------------
def key_types(store, selection) -> Dict[str, str]:
    """The declared type of every join key of the views the selection looks up (those its request views
    read included), in first-seen order."""
    from featurestore.sdk.request_features import plan

    from featurestore.sdk.entityless import DUMMY_KEY

    rplan = plan(store, selection)
    if rplan is not None:
        return {k: t for k, t in rplan.key_types.items() if k != DUMMY_KEY}
    out: Dict[str, str] = {}
    for view in selection:
        for key, dtype in store.compiled(view).key_types.items():
            if key != DUMMY_KEY:  # an entityless view's key is no request's: get_*_features adds it
                out.setdefault(key, dtype)
    return out


def column_dtypes(store, selection, full_feature_names: bool = False) -> Dict[str, str]:
    """The declared type of every output column of the selection (``view__feature`` names with
    ``full_feature_names``)."""
    return {column: dtype for column, (_, _, dtype) in served_columns(store, selection, full_feature_names).items()}


def served_columns(store, selection, full_feature_names: bool = False) -> Dict[str, tuple]:
    """Every output column of the selection -> (view, feature, declared type). Names as
    ``get_historical_features`` gives them: two views' features of one name need ``full_feature_names``
    (the same one-line error otherwise)."""
    from featurestore.sdk.refs import output_names

    return {column: (view, feat, feature_dtype(store, view, feat))
            for (view, feat), column in output_names(selection, full_feature_names).items()}


def names_clash(selection) -> bool:
    """Whether two views of the selection have a feature of one name (their columns need full names)."""
    names = [f for feats in selection.values() for f in feats]
    return len(names) != len(set(names))


def feature_dtype(store, view: str, feature: str) -> str:
    """The declared type of one feature of a feature view or a request feature view."""
    from featurestore.sdk.request_features import compiled_request

    if view in store.repo.request_views:
        return compiled_request(store, view).output_dtypes[feature]
    return store.compiled(view).feature_dtypes[feature]


def request_types(store, selection) -> Dict[str, str]:
    """The declared type of every request column the selection's request views read ({} without them)."""
    from featurestore.sdk.request_features import plan

    rplan = plan(store, selection)
    return {c.name: c.dtype for c in rplan.request_columns} if rplan is not None else {}


def decode_request_data(logs, types: Dict[str, str], where: str) -> pa.Table:
    """The logged request data of each row as one Arrow column per request column, of its declared type
    (a row logged without request data has nulls)."""
    from featurestore import dtypes

    rows = [json.loads(r) if isinstance(r, str) else {} for r in (logs["request_data"] if "request_data" in logs
                                                                   else [None] * len(logs))]
    cols = {}
    for col, dtype in types.items():
        values = [r.get(col) for r in rows]
        if dtype == dtypes.TIMESTAMP:
            values = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]
        try:
            cols[col] = pa.array(values, type=dtypes.arrow_type(dtype))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad = next(i for i, v in enumerate(values) if not _fits(v, dtype))
            from featurestore.errors import RequestError

            raise RequestError(f"{where}: logged row {bad} has request column {col}={values[bad]!r}, not a {dtype} "
                               "(logged under another definition of the request source?)") from None
    return pa.table(cols) if cols else pa.table({})


def typed_keys(entities: List[dict], types: Dict[str, str], where: str) -> pa.Table:
    """Logged entity dicts as one Arrow column per join key, of its declared type (nulls kept)."""
    from featurestore import dtypes
    from featurestore.errors import RequestError

    cols = {}
    for key, dtype in types.items():
        values = [e.get(key) for e in entities]
        try:
            cols[key] = pa.array(values, type=dtypes.arrow_type(dtype))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad = next(i for i, v in enumerate(values) if not _fits(v, dtype))
            raise RequestError(f"{where}: logged row {bad} has join key {key}={values[bad]!r}, not a {dtype} "
                               "(logged under another definition of the key?)") from None
    return pa.table(cols)


def _fits(v, dtype: str) -> bool:
    try:
        from featurestore import dtypes

        pa.array([v], type=dtypes.arrow_type(dtype))
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False


def exact_pandas(table: pa.Table):
    """Arrow to pandas without precision loss: integer columns become nullable ``Int64``/``Int32``
    (never float64, which cannot hold int64 keys beyond 2^53 and turns nulls into NaN), bools
    ``boolean``; strings stay ``object`` with ``None``."""
    import pandas as pd

    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


def decode_served(features_json: str, columns: Dict[str, tuple]) -> Dict[str, Any]:
    """The served values of one logged row by output column (``columns``: :func:`served_columns`), each as
    the plain Python value of its feature's type. A lookup logs its values under the names it returned:
    ``view__feature`` when it asked for full feature names, else ``feature``; both are read. A feature the
    row does not hold (logged before the service had it) is absent from the result."""
    from featurestore import dtypes
    from featurestore.sdk.json_values import decode

    served = json.loads(features_json)
    out: Dict[str, Any] = {}
    for column, (view, feat, dtype) in columns.items():
        full = f"{view}__{feat}"
        if full in served:
            v = served[full]
        elif feat in served:
            v = served[feat]
        else:
            continue
        if dtype == dtypes.TIMESTAMP and isinstance(v, str):  # logged as ISO 8601 (exact to the microsecond)
            v = datetime.fromisoformat(v)
        elif dtype == dtypes.JSON:  # logged as the stored text: the value served is its Python value
            v = decode(v)
        out[column] = v
    return out
