"""The brute-force reference: the judge of every engine (SPEC §2).

Every engine (the DuckDB backfill, the Flink job, the online store's request-time combiner) is tested
by comparing its output to this module on random event sets. It is deliberately slow and plain:
Python loops over every (request, event) pair, exact arithmetic, no tiles, no pandas group-bys. It
does not import ``featurestore.semantics`` rules; it re-states them, so a mistake there is caught here.

Rules implemented (SPEC §2 and the ``featurestore.semantics`` docstring):

* Event times are epoch milliseconds, floored (``ns // 1_000_000``). Naive timestamps are taken as UTC;
  a plain integer is already epoch ms (times pandas cannot hold, e.g. the year 58000, are given so).
  Events with a null event time are dropped; events with any null join key never match an entity.
* Supported event times: from 1900-01-01 (inclusive) to 2200-01-01 (exclusive) UTC, and at most
  ``max_future_ms`` (default one hour) after ``now_ms`` (the time the job read the event; default: now).
  Events outside are dead letters, never events.
* A request at ``q`` (the entity row's timestamp, floored to ms) sees only ``ts < q``.
* Window ``W``: ``q - W <= ts < q``; unbounded: ``ts < q``. *latest*: the same with the view's TTL.
* Event order: ``source.order_columns`` (ts, tiebreak columns, every other source column in schema
  order), ascending, nulls first; strings by code point (= UTF-8 bytes), NaN above every number.
* *latest* = that expression's value in the greatest visible event, null or not.
* Aggregations ignore null inputs. ``count(*)`` counts events, ``count(col)`` non-null values,
  ``count_distinct`` distinct non-null values. ``sum`` is exact (int input -> int, else a correctly
  rounded float); ``mean`` is the correctly rounded exact mean; ``variance`` is the correctly rounded
  exact sample variance (n - 1), ``stddev`` its float square root; both null when n < 2. Non-finite
  floats follow IEEE (any NaN -> NaN, +inf and -inf -> NaN, else the infinity); an exact result beyond
  the double range rounds to an infinity of its sign. ``min``/``max`` by the value order above;
  ``count_distinct`` counts every NaN as one value and ``0.0`` and ``-0.0`` as one.
  ``last``/``first`` = the value of the greatest/least event (event order) whose value is non-null.
* Empty window: ``count``/``count_distinct`` are 0; every other function is null. ``default`` replaces
  a null aggregation result (an empty window, and also ``stddev``/``variance`` with one value), i.e.
  ``COALESCE(agg, default)``, a value of the aggregation's type (0.1 of a float32 max is float32's 0.1);
  it never changes a count (a count is never null).
* Filter, projections and feature expressions are SQL, evaluated row by row by DuckDB (a scalar
  expression's value depends on its row only). The filter sees source columns; rows where it is not
  TRUE are dropped. Projections see source columns; feature expressions see both. The event-time
  column appears to SQL as the ms-truncated ``TIMESTAMP WITH TIME ZONE`` (session time zone UTC).
* pandas NaN/NaT/NA in a source column is null (pandas cannot tell a float NaN from a missing value).
  A NaN that a projection or feature expression computes (``0 / 0``, ``inf - inf``) is a value.

Output: one row per entity row, same order, index reset, entity columns kept, one ``object`` column per
feature holding plain Python values (``None`` for null), so comparisons are exact.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import duckdb
import pandas as pd
import pyarrow as pa

from featurestore.model import Aggregation, FeatureView, Latest, Source

_RID = "__oracle_rid"
_ARROW = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
          "float64": pa.float64(), "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}
_INT_SQL_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                  "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")


# -- time -------------------------------------------------------------------------------------------
SUPPORTED_FROM_MS = int(pd.Timestamp("1900-01-01T00:00:00Z").value // 1_000_000)
SUPPORTED_UNTIL_MS = int((pd.Timestamp("2199-12-31T00:00:00Z") + pd.Timedelta(days=1)).value // 1_000_000)
DEFAULT_MAX_FUTURE_MS = 3_600_000


def to_ms(value: Any) -> Optional[int]:
    """A timestamp (pandas, datetime, string; naive = UTC) as epoch ms, floored; an int is epoch ms. Null -> None."""
    if _is_null(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return pd.Timestamp(value).value // 1_000_000  # .value is epoch ns, tz-aware or naive-as-UTC


def supported(ts_ms: int, now_ms: Optional[int] = None, max_future_ms: Optional[int] = DEFAULT_MAX_FUTURE_MS) -> bool:
    """The event time is in the supported range and not more than ``max_future_ms`` after ``now_ms``."""
    if not SUPPORTED_FROM_MS <= ts_ms < SUPPORTED_UNTIL_MS:
        return False
    now = pd.Timestamp.now(tz="UTC").value // 1_000_000 if now_ms is None else now_ms
    return max_future_ms is None or ts_ms <= now + max_future_ms


def in_window(ts: int, q: int, window_ms: Optional[int]) -> bool:
    """``q - W <= ts < q`` (unbounded when ``window_ms`` is None). Used for windows and TTLs alike."""
    return ts < q and (window_ms is None or ts >= q - window_ms)


# -- values -----------------------------------------------------------------------------------------
def _is_null(v: Any) -> bool:
    if v is None or v is pd.NaT or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def value_key(v: Any) -> tuple:
    """Sort key for one value: nulls first, then values ascending, NaN above every number."""
    if v is None:
        return (0,)
    if _is_nan(v):
        return (2,)
    return (1, v)


def _normalize(v: Any, dtype: str) -> Any:
    if _is_null(v):
        return None
    if dtype in ("int32", "int64"):
        return int(v)
    if dtype in ("float32", "float64"):
        return float(v)
    if dtype == "bool":
        return bool(v)
    if dtype == "string":
        return str(v)
    ts = pd.Timestamp(v)  # another timestamp column: UTC, floored to microseconds (Arrow's "us")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).floor("us")


def events_ms(df: pd.DataFrame, source: Source, now_ms: Optional[int] = None,
              max_future_ms: Optional[int] = DEFAULT_MAX_FUTURE_MS) -> List[dict]:
    """Event rows as dicts of plain Python values; the event-time column becomes epoch ms (floored).

    Columns of the source schema are normalized to their declared type (NaN/NaT/NA -> None); other
    columns are kept as they are. Rows with a null or unsupported event time are dropped.
    """
    types = source.columns
    rows = []
    for rec in df.to_dict("records"):
        ts = to_ms(rec[source.timestamp])
        if ts is None or not supported(ts, now_ms, max_future_ms):
            continue
        row = {c: (_normalize(v, types[c]) if c in types and c != source.timestamp else v) for c, v in rec.items()}
        row[source.timestamp] = ts
        rows.append(row)
    return rows


def event_order_key(row: dict, source: Source) -> tuple:
    """The event order of SPEC §2 ties: ``source.order_columns``, ascending, nulls first."""
    return tuple(value_key(row.get(c)) for c in source.order_columns)


# -- SQL expressions ---------------------------------------------------------------------------------
def sql_values(rows: Sequence[dict], source: Source, exprs: Sequence[str],
               projections: Sequence[Tuple[str, str]] = ()) -> Tuple[List[tuple], List[str]]:
    """Each SQL expression's value for each row (in row order), and each expression's SQL type.

    The expressions see the source columns and, when given, the ``projections`` (name, expr) pairs.
    """
    cols = {}
    for name, dtype in source.schema:
        values = [r.get(name) for r in rows]
        if name == source.timestamp:
            cols[name] = pa.array(values, type=pa.timestamp("ms", tz="UTC"))
        else:
            cols[name] = pa.array(values, type=_ARROW[dtype])
    cols[_RID] = pa.array(range(len(rows)), type=pa.int64())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("events", pa.table(cols))
        proj = "".join(f", ({expr}) AS \"{name}\"" for name, expr in projections)
        select = ", ".join(f"({e})" for e in exprs)
        rel = con.sql(f"SELECT {_RID}, {select} FROM (SELECT *{proj} FROM events) ORDER BY {_RID}")
        types = [str(t) for t in rel.types[1:]]
        # NULL is None; a NaN an expression computes (0 / 0, inf - inf) is a value, not a null.
        out = [tuple(r[1:]) for r in rel.fetchall()]
    finally:
        con.close()
    return out, types


def apply_view_rows(rows: Sequence[dict], view: FeatureView) -> List[dict]:
    """Keep rows where ``view.filter`` is TRUE, then add one column per projection."""
    rows = list(rows)
    if view.filter is not None:
        keep, _ = sql_values(rows, view.source, [view.filter])
        rows = [r for r, (ok,) in zip(rows, keep) if ok is True]
    if view.projections:
        vals, _ = sql_values(rows, view.source, [e for _, e in view.projections])
        rows = [{**r, **dict(zip([n for n, _ in view.projections], v))} for r, v in zip(rows, vals)]
    return rows


# -- the functions -----------------------------------------------------------------------------------
def latest(items: Iterable[Tuple[tuple, Any]]) -> Any:
    """Value of the greatest event among ``(order_key, value)`` items, null or not; None if none."""
    best = None
    for key, value in items:
        if best is None or key > best[0]:
            best = (key, value)
    return None if best is None else best[1]


def _float_sum(xs: List[Any]) -> Any:
    if all(isinstance(x, int) or math.isfinite(x) for x in xs):
        return sum((Fraction(x) for x in xs), Fraction(0))
    if any(_is_nan(x) for x in xs) or (math.inf in xs and -math.inf in xs):
        return math.nan
    return math.inf if math.inf in xs else -math.inf


def _to_float(x: Any) -> float:
    """An exact value rounded to the nearest double; beyond the double range an infinity of its sign
    (IEEE round-to-nearest; Python's int division raises instead)."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def aggregate(function: str, items: Iterable[Tuple[tuple, Any]], *, integer_input: bool = False,
              default: Any = None) -> Any:
    """One aggregation over the events in a window, given as ``(event_order_key, value)`` pairs.

    ``value`` None is a null input (ignored). For ``count(*)`` pass any non-null value per event.
    ``integer_input`` makes ``sum`` return an int. ``default`` replaces a null result.
    """
    items = [(k, v) for k, v in items if v is not None]
    xs = [v for _, v in items]
    n = len(xs)
    if function == "count":
        return n
    if function == "count_distinct":
        return len({("NaN",) if _is_nan(x) else x for x in xs})
    result: Any = None
    if function in ("last", "first"):
        if items:
            pick = max if function == "last" else min
            result = pick(items, key=lambda kv: kv[0])[1]
    elif function in ("min", "max"):
        if xs:
            result = (min if function == "min" else max)(xs, key=value_key)
    elif function in ("sum", "mean"):
        if xs:
            total = sum(xs) if integer_input and function == "sum" else _float_sum(xs)
            if function == "mean":
                total = total / n
            result = total if (integer_input and function == "sum") else _to_float(total)
    elif function in ("variance", "stddev"):
        if n >= 2:
            total = _float_sum(xs)
            if isinstance(total, Fraction):
                mean = total / n
                var = _to_float(sum(((Fraction(x) - mean) ** 2 for x in xs), Fraction(0)) / (n - 1))
            else:
                var = math.nan
            result = var if function == "variance" else math.sqrt(var)
    else:
        raise ValueError(f"oracle: unknown aggregation function {function!r}")
    return default if result is None else result


def typed_default(function: str, default: Any, input_sql_type: str) -> Any:
    """``default`` as a value of the aggregation's type (``COALESCE(agg, default)`` is typed like ``agg``):
    min/max/first/last have their input's type (a FLOAT rounds to float32), sum of integers is an integer,
    every other function a double."""
    if default is None or isinstance(default, (str, bool)):
        return default
    typed = input_sql_type.upper() if function in ("min", "max", "first", "last") else (
        "BIGINT" if function == "sum" and input_sql_type.upper() in _INT_SQL_TYPES else "DOUBLE")
    if typed in _INT_SQL_TYPES:
        return int(default)
    if typed == "FLOAT":
        return struct.unpack("f", struct.pack("f", default))[0]
    return float(default)


# -- the point-in-time join --------------------------------------------------------------------------
def point_in_time(events_df: pd.DataFrame, view: FeatureView, entity_df: pd.DataFrame,
                  timestamp_col: str = "event_timestamp", now_ms: Optional[int] = None,
                  max_future_ms: Optional[int] = DEFAULT_MAX_FUTURE_MS) -> pd.DataFrame:
    """SPEC §2 values of every feature of ``view`` for every row of ``entity_df`` (same order); events
    outside the supported times (see the module docstring) are not events."""
    source, keys = view.source, view.join_keys
    rows = apply_view_rows(events_ms(events_df, source, now_ms, max_future_ms), view)
    features = list(view.features)
    exprs = [f.expr if isinstance(f, Latest) else (f.column or "1") for f in features]
    values, types = sql_values(rows, source, exprs, view.projections)

    by_entity: dict = {}
    for row, vals in zip(rows, values):
        key = tuple(row.get(k) for k in keys)
        if any(_is_null(k) for k in key):
            continue
        by_entity.setdefault(key, []).append((row[source.timestamp], event_order_key(row, source), vals))

    out = {f.name: [] for f in features}
    for req in entity_df.to_dict("records"):
        key = tuple(req[k] for k in keys)
        q = to_ms(req[timestamp_col])
        events = [] if q is None or any(_is_null(k) for k in key) else by_entity.get(key, [])
        for i, f in enumerate(features):
            if isinstance(f, Latest):
                value = latest((order, vals[i]) for ts, order, vals in events if in_window(ts, q, view.ttl))
            else:
                assert isinstance(f, Aggregation)
                value = aggregate(
                    f.function,
                    [(order, vals[i]) for ts, order, vals in events if in_window(ts, q, f.window_ms)],
                    integer_input=types[i].upper() in _INT_SQL_TYPES,
                    default=typed_default(f.function, f.default, types[i]),
                )
            out[f.name].append(value)

    result = entity_df.reset_index(drop=True)
    columns = {name: pd.Series(col, dtype=object, index=result.index) for name, col in out.items()}
    return pd.concat([result.drop(columns=[c for c in columns if c in result.columns]), pd.DataFrame(columns)], axis=1)
