"""The online store: Redis, one key per (project, feature view, entity), read in one round trip.

Layout (SPEC §5), readable and writable without this library (e.g. by the Flink job)::

    key    fs:{project}:{view}:{entity}       entity = JSON array of the join-key values in the view's
                                              join-key order, compact: ["u1"]  ["u1",2]  (UTF-8, no
                                              ASCII escaping, separators "," and ":")
    value  one JSON object (UTF-8):
           {"v": 1,                           format version
            "fp": "<data fingerprint>",       CompiledView.data_fingerprint of the definition that wrote it
            "h": <ms> | null,                 earliest request time answered exactly (null: every time)
            "ts": [ms, ...],                  the entity's stored events' times, epoch ms
            "c": [[value, ...], ...]}         per feature input expression (featurestore.online.input_columns
                                              order), the value for each event, null for SQL NULL
    TTL    bounded views: PXAT max(now, last event) + retention + 10 min; no TTL otherwise

Events are stored **in SPEC event order** (time, then the source's tiebreak and other columns, ascending,
nulls first: ``CompiledView.order_columns``); a writer must keep that order (the Flink job writes the
whole value from its own keyed state). Values are JSON numbers (doubles in shortest round-trip form,
so they decode bit-identically), strings, booleans; timestamps are epoch microseconds. NaN cannot occur
in stored columns (null at ingestion), but a feature expression may make NaN or infinity: written as the
``NaN``/``Infinity`` tokens that DuckDB's ``to_json`` and Python's ``json`` both read and write.
Materialize builds every value inside DuckDB (``to_json(list(x ORDER BY event rank))``), so the
inputs are evaluated and cast exactly as the offline SQL evaluates them.

Retention (what a key holds). The *retention* ``R`` of a view is its largest window, or its TTL if
larger (views with latest features and a TTL). ``materialize(end=E)`` keeps what a request at any
``q >= E`` needs:

* bounded views (every window finite; latest features, if any, have a TTL): events with
  ``ts >= E - R``. The key expires ``R`` + 10 min after its last event (or after the write when that
  is later): from then on every window of that entity is empty at the current time, so memory is
  bounded by the events of the last ``R`` per active entity.
* latest features without a TTL (and only finite windows): the same, plus the one greatest event
  before ``E - R`` (it can still be the latest; every window excludes it by its time); no key TTL.
* views with an unbounded aggregation (``window=None``): **every event of the entity's history** is
  kept and the key never expires; memory grows with history and a lookup decodes it all. (Exact prefix
  summaries of old events are a later optimisation; see docs.)

``end=None`` keeps every event (exact for every request time; memory = the whole offline table until
keys expire). A request before a key's horizon ``h`` is refused rather than answered from partial
state. A key written by another definition (fingerprint differs) is refused too: re-run materialize.
"""

from __future__ import annotations

import json
import time

import orjson
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import pyarrow.compute as pc

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_sql as dsql
from featurestore.errors import FeatureStoreError, InfraError
from featurestore.online import EntityState, input_columns

FORMAT_VERSION = 1
KEY_PREFIX = "fs"
SLACK_MS = 10 * 60 * 1000  # key TTL beyond retention: clock skew, late writers
CHUNK_KEYS = 1000  # keys per pipelined round trip when writing
BATCH_ROWS = 20_000  # entities per Arrow batch read from DuckDB
PASS_ROWS = 20_000_000  # events per materialize pass (passes split the entities by key hash)
_ENC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_TS_COL = "__fs_ts"


class StaleOnlineState(FeatureStoreError):
    """Online state was written by another definition of the view (or another format)."""


# -- keys ---------------------------------------------------------------------------------------------
def encode_entity(values: Sequence) -> str:
    """The entity part of a key: the join-key values as a compact JSON array."""
    return _ENC.encode(list(values))


def view_prefix(project: str, view: str) -> str:
    return f"{KEY_PREFIX}:{project}:{view}:"


def entity_key(project: str, view: str, values: Sequence) -> str:
    return view_prefix(project, view) + encode_entity(values)


# -- retention ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retention:
    """What the online state of a view keeps (see the module docstring)."""

    keep_all: bool  # an unbounded aggregation: every event, no key TTL
    window_ms: int  # R: events with ts >= end - R are kept (when not keep_all)
    keep_last_before: bool  # latest without TTL: also the greatest event before end - R; no key TTL

    @property
    def expires(self) -> bool:
        return not (self.keep_all or self.keep_last_before)


def retention(cv: CompiledView) -> Retention:
    keep_all = any(a.window_ms is None for a in cv.aggregations)
    spans = [a.window_ms for a in cv.aggregations if a.window_ms is not None]
    if cv.latest and cv.ttl_ms is not None:
        spans.append(cv.ttl_ms)
    return Retention(keep_all, max(spans, default=0), bool(cv.latest) and cv.ttl_ms is None)


# -- state encoding -----------------------------------------------------------------------------------
def encode_state(fingerprint: str, horizon: Optional[int], ts: List[int], cols: List[List]) -> str:
    return _ENC.encode({"v": FORMAT_VERSION, "fp": fingerprint, "h": horizon, "ts": ts, "c": cols})


def _loads(raw: bytes):
    """orjson is several times faster on the lookup path; it refuses the NaN/Infinity tokens a feature
    expression can produce, and those values fall back to the standard parser (same values)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def decode_state(raw: bytes, cv: CompiledView, key: str) -> EntityState:
    try:
        doc = _loads(raw)
        version, fp = doc.get("v"), doc.get("fp")
    except (ValueError, AttributeError):
        raise StaleOnlineState(f"online state at '{key}' is not a featurestore state value; "
                               f"run 'featurestore materialize --views {cv.name}'") from None
    if version != FORMAT_VERSION:
        raise StaleOnlineState(f"online state at '{key}' has format version {version!r}, this library reads "
                               f"{FORMAT_VERSION}; run 'featurestore materialize --views {cv.name}'")
    if fp != cv.data_fingerprint:
        raise StaleOnlineState(
            f"online state of feature view '{cv.name}' at '{key}' was written by another definition "
            f"(fingerprint {str(fp)[:12]}, current {cv.data_fingerprint[:12]}); "
            f"run 'featurestore materialize --views {cv.name}'"
        )
    return EntityState(doc["ts"], doc["c"], doc.get("h"))


# -- the client ---------------------------------------------------------------------------------------
def redact(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def connect(url: str, password: Optional[str] = None, tls: bool = False):
    """A redis-py client (connection pool) for the online store; TLS turns ``redis://`` into
    ``rediss://``. Nothing is sent until the first command."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    if tls and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://"):]
    # No health-check PINGs (they would add round trips to a lookup); a dropped connection is retried
    # instead (every command we send is idempotent: MGET, SET, MSET, DEL).
    kwargs = {
        "socket_connect_timeout": 3.0,
        "socket_timeout": 30.0,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    }
    if password:
        kwargs["password"] = password
    return redis.Redis.from_url(url, **kwargs)


@dataclass
class MaterializeResult:
    view: str
    entities: int  # keys written
    events: int  # events stored in them
    deleted: int  # keys removed because all their events fell behind the horizon
    seconds: float
    horizon: Optional[int]  # earliest exactly answered request time (None: every time)

    @property
    def rows_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


class RedisOnlineStore:
    """The online store of one project."""

    def __init__(self, project: str, url: str, password: Optional[str] = None, tls: bool = False, client=None):
        self.project = project
        self.url = url
        self.password = password
        self.tls = tls
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.url, self.password, self.tls)
        return self._client

    def infra_error(self, exc: Exception) -> InfraError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return InfraError(f"cannot reach Redis at {redact(self.url)}: {text} (run bash infra/up.sh)")

    def _guard(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.AuthenticationError, OSError) as exc:
            raise self.infra_error(exc) from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise self.infra_error(exc) from None
            raise

    def key(self, view: str, values: Sequence) -> str:
        return entity_key(self.project, view, values)

    # -- read -------------------------------------------------------------------------------------
    def get_many(self, keys: List[str]) -> List[Optional[bytes]]:
        """Values of ``keys`` in one round trip (one MGET)."""
        if not keys:
            return []
        return self._guard(self.client.mget, keys)

    # -- write ------------------------------------------------------------------------------------
    def write_states(self, items: List[Tuple[str, str, int]], expires: bool, ttl_extra_ms: int, now_ms: int) -> None:
        """Write ``(key, value, last event ms)`` items, ``CHUNK_KEYS`` per command, several commands per
        round trip: MSET, or (keys with a TTL) one Lua call doing ``SET key value PXAT t`` per key."""
        pipe = self.client.pipeline(transaction=False)
        for i in range(0, len(items), CHUNK_KEYS):
            chunk = items[i:i + CHUNK_KEYS]
            if expires:
                args: List = []
                for _, v, last in chunk:
                    args.append(v)
                    args.append(max(now_ms, last) + ttl_extra_ms)
                pipe.eval(_SET_PXAT_LUA, len(chunk), *[k for k, _, _ in chunk], *args)
            else:
                pipe.mset({k: v for k, v, _ in chunk})
        self._guard(pipe.execute)

    def materialize_view(self, con, cv: CompiledView, relation: str, end_ms: Optional[int] = None,
                         on_rows: Optional[Callable[[int], None]] = None,
                         now_ms: Optional[int] = None) -> MaterializeResult:
        """Write the online state of ``cv`` from a relation of its stored events (see module docs).

        DuckDB builds each entity's value (events sorted in event order, inputs evaluated and cast,
        JSON-encoded: doubles in shortest round-trip form) in a GROUP BY; Python only names the keys
        and sends them. Large views are processed in ``ceil(rows / PASS_ROWS)`` passes over disjoint
        hash ranges of the keys, so memory is bounded by one pass."""
        t0 = time.perf_counter()
        ret = retention(cv)
        pruned = end_ms is not None and not ret.keep_all
        horizon = end_ms if pruned else None
        cutoff = end_ms - ret.window_ms if pruned else None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            ((total,),) = con.sql(f"SELECT count(*) FROM {relation}").fetchall()
        except Exception as exc:
            raise FeatureStoreError(f"materialize of view '{cv.name}' failed: {str(exc).splitlines()[0]}") from None
        passes = max(1, -(-int(total) // PASS_ROWS))
        prefix = view_prefix(self.project, cv.name)
        nkeys = len(cv.join_keys)
        ttl_extra = ret.window_ms + SLACK_MS
        entities = events = 0
        for part in range(passes):
            sql = materialize_sql(cv, relation, horizon, cutoff, ret.keep_last_before,
                                  part=(part, passes) if passes > 1 else None)
            try:
                reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
            except Exception as exc:
                raise FeatureStoreError(
                    f"materialize of view '{cv.name}' failed: {str(exc).splitlines()[0]}") from None
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                keycols = [batch.column(i).to_pylist() for i in range(nkeys)]
                last = batch.column(nkeys).to_pylist()
                count = int(pc.sum(batch.column(nkeys + 1)).as_py())
                blobs = batch.column(nkeys + 2).to_pylist()
                enc = _ENC.encode
                if nkeys == 1:
                    keys = [prefix + enc([k]) for k in keycols[0]]
                else:
                    keys = [prefix + enc(list(ks)) for ks in zip(*keycols)]
                self.write_states(list(zip(keys, blobs, last)), ret.expires, ttl_extra, now)
                entities += batch.num_rows
                events += count
                if on_rows:
                    on_rows(count)

        deleted = 0
        if pruned and not ret.keep_last_before:
            # Entities whose every event fell behind the horizon: their old state must not linger.
            gone = con.sql(gone_sql(cv, relation, cutoff)).to_arrow_table()
            keycols = [gone.column(i).to_pylist() for i in range(nkeys)]
            keys = [prefix + _ENC.encode([kc[r] for kc in keycols]) for r in range(gone.num_rows)]
            for i in range(0, len(keys), CHUNK_KEYS):
                deleted += self._guard(self.client.delete, *keys[i:i + CHUNK_KEYS])
        return MaterializeResult(cv.name, entities, events, deleted, time.perf_counter() - t0, horizon)


_SET_PXAT_LUA = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PXAT', ARGV[2 * i])
end
return #KEYS
"""


# -- the FeatureStore's side ---------------------------------------------------------------------------
def for_store(store) -> RedisOnlineStore:
    """The online store of a FeatureStore (one client and connection pool per FeatureStore)."""
    cfg = store.config
    ident = (cfg.project, cfg.redis_url, cfg.redis_password, cfg.redis_tls)
    cached = store.__dict__.get("_online_store")
    if cached is None or cached[0] != ident:
        cached = (ident, RedisOnlineStore(cfg.project, cfg.redis_url, cfg.redis_password, cfg.redis_tls))
        store.__dict__["_online_store"] = cached
    return cached[1]


def materialize(store, views=None, end=None, progress=None) -> List[MaterializeResult]:
    """``FeatureStore.materialize``: see the module docstring for what is kept."""
    from featurestore.errors import RequestError
    from featurestore.sdk.timeutil import to_epoch_ms

    repo = store.repo
    if views is None:
        names = [n for n, v in repo.views.items() if v.online]
    else:
        names = [views] if isinstance(views, str) else list(views)
        for n in names:
            if n not in repo.views:
                raise RequestError(f"unknown feature view '{n}'")
            if not repo.views[n].online:
                raise RequestError(f"feature view '{n}' is not online (online=False)")
    end_ms = to_epoch_ms(end, "end")
    online = for_store(store)
    online._guard(online.client.ping)
    con = store._connect()
    results = []
    for n in names:
        cv = store.compiled(n)
        relation = store._view_input(con, cv).events_relation
        on_rows = progress(n) if progress else None
        results.append(online.materialize_view(con, cv, relation, end_ms, on_rows))
    return results


def _is_null(v) -> bool:
    if v is None:
        return True
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(v, float) and v != v


def _cast_key(value, dtype: str, row: int, key: str):
    """A join-key value of an entity row as the stored key type (SQL CAST semantics for the common cases)."""
    from featurestore.errors import RequestError

    if _is_null(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    try:
        if dtype in t.INTEGER:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{value!r} is not an integer")
                return int(value)
            if isinstance(value, (bytes, bool)):
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"entity row {row}: join key '{key}' value {value!r} is not a {dtype} ({exc})") from None


def _entity_rows(entity_rows) -> List[dict]:
    from collections.abc import Mapping

    from featurestore.errors import RequestError

    try:
        import pandas as pd

        if isinstance(entity_rows, pd.DataFrame):
            return entity_rows.to_dict("records")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(entity_rows, Mapping):
        raise RequestError("entity_rows must be a list of dicts (one per entity) or a pandas DataFrame, "
                           "got a single dict; wrap it in a list")
    try:
        rows = list(entity_rows)
    except TypeError:
        raise RequestError(f"entity_rows must be a list of dicts or a pandas DataFrame, "
                           f"got {type(entity_rows).__name__}") from None
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise RequestError(f"entity row {i} is a {type(r).__name__}, not a dict of join keys")
    return rows


def lookup(store, entity_rows, features=None, feature_service=None, request_time=None, full_feature_names=False):
    """``FeatureStore.get_online_features``: one MGET for every (view, entity) of the request, then
    request-time computation (:mod:`featurestore.online`) at ``q = request_time`` (ms, floored)."""
    from featurestore import online as ol
    from featurestore.errors import RequestError
    from featurestore.sdk.refs import output_names, resolve_features
    from featurestore.sdk.timeutil import now_ms, to_epoch_ms

    selection = resolve_features(store.repo, features, feature_service)
    columns = output_names(selection, full_feature_names)
    for view_name in selection:
        if not store.repo.views[view_name].online:
            raise RequestError(f"feature view '{view_name}' is not online (online=False)")
    rows = _entity_rows(entity_rows)
    q = now_ms() if request_time is None else to_epoch_ms(request_time, "request_time")
    online = for_store(store)

    plans = online.__dict__.setdefault("_plans", {})
    views = []  # (cv, plans, key per row)
    key_columns: dict = {}
    wanted: dict = {}
    compiled = online.__dict__.setdefault("_compiled", {})
    for view_name, names in selection.items():
        view = store.repo.views[view_name]
        hit = compiled.get(view_name)
        if hit is None or hit[0] is not view:  # same definition object: same compiled view (reload() replaces it)
            hit = compiled[view_name] = (view, store.compiled(view_name))
        cv = hit[1]
        pk = (view_name, cv.data_fingerprint, tuple(names))
        if pk not in plans:
            plans[pk] = ol.plan_features(cv, names)
        types = cv.key_types
        keys: List[Optional[str]] = []
        for i, row in enumerate(rows):
            values = []
            for k in cv.join_keys:
                if k not in row:
                    raise RequestError(f"entity row {i} has no join key '{k}' (needed by feature view '{view_name}')")
                values.append(_cast_key(row[k], types[k], i, k))
            for k, v in zip(cv.join_keys, values):
                key_columns.setdefault(k, [None] * len(rows))[i] = v
            if any(v is None for v in values):  # a null key never matches an entity (SQL)
                keys.append(None)
            else:
                key = online.key(view_name, values)
                keys.append(key)
                wanted.setdefault(key, None)
        views.append((cv, plans[pk], keys))

    clash = sorted(set(columns.values()) & set(key_columns))
    if clash:
        raise RequestError(f"feature column(s) {clash} would overwrite the join key column(s) of the response; "
                           "pass full_feature_names=True")
    unique = list(wanted)
    raws = dict(zip(unique, online.get_many(unique))) if unique else {}

    out = {k: v for k, v in key_columns.items()}
    for cv, fplans, keys in views:
        cache: dict = {}
        cols = [[] for _ in fplans]
        for key in keys:
            if key not in cache:
                raw = raws.get(key) if key is not None else None
                state = decode_state(raw, cv, key) if raw is not None else None
                if state is not None and state.horizon is not None and q < state.horizon:
                    raise RequestError(
                        f"request_time {_iso(q)} is before the online store's retention horizon "
                        f"{_iso(state.horizon)} for feature view '{cv.name}' (online state answers request "
                        "times at or after the materialize end); use get_historical_features for the past"
                    )
                cache[key] = ol.compute(fplans, state, q)
            for j, v in enumerate(cache[key]):
                cols[j].append(v)
        for p, col in zip(fplans, cols):
            out[columns[(cv.name, p.name)]] = col
    return ol.OnlineResponse(out, None, q)


def _iso(ms: int) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)).isoformat()


# -- SQL ----------------------------------------------------------------------------------------------
def _input_sql(expr: str, dtype: str) -> str:
    sql_type = dsql.SQL_TYPES[dtype]
    if dtype == t.TIMESTAMP:
        return f"epoch_us(CAST(({expr}) AS {sql_type}))"
    return f"CAST(({expr}) AS {sql_type})"


def _event_order(cv: CompiledView, desc: bool = False) -> List[str]:
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    parts = [ts + (" DESC" if desc else "")]
    parts += [f"{dsql.q(c)} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}" for c in cv.order_columns[1:]]
    return parts


def materialize_sql(cv: CompiledView, relation: str, horizon: Optional[int], cutoff: Optional[int],
                    keep_last_before: bool, part: Optional[Tuple[int, int]] = None) -> str:
    """One row per entity: join keys, last event time (ms), event count, and the state value (JSON, see
    the module docstring) built by DuckDB. With a ``cutoff``, only events at or after it (plus, for
    ``keep_last_before``, each entity's greatest event before it). ``part=(i, n)``: only entities whose
    key hash is ``i`` modulo ``n``."""
    keys = [dsql.q(k) for k in cv.join_keys]
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    inputs = input_columns(cv)
    cols = [f"{_input_sql(e, d)} AS __fs_c{i}" for i, (e, d) in enumerate(inputs)]
    rank = f"row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY {', '.join(_event_order(cv))}) AS __fs_r"
    select = ", ".join([*keys, f"{ts} AS {_TS_COL}", *cols, rank])
    where = [f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{k} IS NOT NULL" for k in keys)]
    if part is not None:
        where.append(f"hash({', '.join(keys)}) % {int(part[1])} = {int(part[0])}")
    qualify = ""
    if cutoff is not None:
        if keep_last_before:
            qualify = (f" QUALIFY {ts} >= {int(cutoff)} OR row_number() OVER (PARTITION BY {', '.join(keys)}, "
                       f"{ts} < {int(cutoff)} ORDER BY {', '.join(_event_order(cv, desc=True))}) = 1")
        else:
            where.append(f"{ts} >= {int(cutoff)}")
    head = (f'{{"v":{FORMAT_VERSION},"fp":{_ENC.encode(cv.data_fingerprint)},"h":{_ENC.encode(horizon)},"ts":')
    parts = [dsql.literal(head), f"to_json(list({_TS_COL} ORDER BY __fs_r))", dsql.literal(',"c":[')]
    for i in range(len(inputs)):
        if i:
            parts.append("','")
        parts.append(f"to_json(list(__fs_c{i} ORDER BY __fs_r))")
    parts.append(dsql.literal("]}"))
    return (
        f"WITH ev AS (SELECT {select} FROM {relation} AS src WHERE {' AND '.join(where)}{qualify})\n"
        f"SELECT {', '.join(keys)}, max({_TS_COL}) AS __fs_last, count(*) AS __fs_n, "
        f"{' || '.join(parts)} AS __fs_value FROM ev GROUP BY {', '.join(keys)}"
    )


def gone_sql(cv: CompiledView, relation: str, cutoff: int) -> str:
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    not_null = " AND ".join([f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{dsql.q(k)} IS NOT NULL" for k in cv.join_keys)])
    return f"SELECT {keys} FROM {relation} AS ev WHERE {not_null} GROUP BY {keys} HAVING max({ts}) < {int(cutoff)}"


__all__ = ["RedisOnlineStore", "for_store", "materialize", "lookup", "MaterializeResult", "Retention", "retention", "entity_key", "encode_entity",
           "encode_state", "decode_state", "materialize_sql", "StaleOnlineState", "connect", "redact",
           "FORMAT_VERSION"]
