"""Pushed rows -> events of a source: one typed Arrow table, and a dead letter per row that cannot be one.

Rows arrive as a pandas DataFrame, a list of dicts (one per row), a dict of columns (Feast's ``df``:
``{column: [values]}``) or a pyarrow Table. Each value is read by its column's declared type with the
rules of the batch face and the stream face together (docs/push.md):

* the **event time**: a timestamp (``datetime``, ``pandas.Timestamp``, ``numpy.datetime64``; naive ones
  are UTC, as in a batch face and in Feast), an ISO-8601 string (naive: UTC), or an integer of epoch
  milliseconds (the stream face's form); floored to the millisecond. Missing, unreadable (a float, a
  bool, text that is not a time), outside the supported range (1900-01-01 to 2199-12-31 UTC) or too far
  after the clock (``event_time.max_future``): a dead letter, as in every job (docs/semantics.md);
* ``int64``/``int32``: integers, or floats with an integral value below 2^53 in magnitude (pandas turns an
  integer column with a gap into floats; beyond 2^53 another integer rounds to the same float, so such a
  float is refused, as in an entity frame's integer join key), in the type's range; never a bool or a string;
* ``float64``/``float32``: numbers (NaN is null, as at every ingestion); ``bool``: booleans;
  ``string``: strings; other ``timestamp`` columns: as the event time, null allowed, years 1 to 9999
  (``semantics.time_value_supported``, as in a batch face);
* a missing column or value is null; a column the source does not declare is ignored.

A row with a value that is not of its column's type is a **dead letter** with a one-line reason naming
the column (the first such column in schema order), never a partial event.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pyarrow as pa
from pandas.errors import OutOfBoundsDatetime

from featurestore import dtypes as t
from featurestore import semantics
from featurestore.errors import RequestError

_INT_RANGE = {t.INT64: (-(2**63), 2**63 - 1), t.INT32: (-(2**31), 2**31 - 1)}
PUSH_TS_TYPE = pa.timestamp("ms", tz="UTC")


# The reasons (and the event-time rule) are those of every job: featurestore.semantics.
missing_time_reason = semantics.missing_time_reason
range_reason = semantics.out_of_range_reason
column_reason = semantics.column_reason


def bad_time_reason(column: str) -> str:
    return semantics.unreadable_time_reason(column, "a timestamp (a datetime, an ISO-8601 string or epoch milliseconds)")


class InexactInt(ValueError):
    """A float at or beyond 2^53 for an integer column (``dtypes.FLOAT_EXACT_INT``)."""


@dataclass
class Parsed:
    """The events (``table``: the source's columns, typed; the event time as ``timestamp[ms, UTC]``) and
    the rows that are not events: ``dead`` = (row index, reason, the row as JSON text)."""

    table: pa.Table
    index: List[int]  # input row index of each event
    dead: List[tuple] = field(default_factory=list)

    def reasons(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for _, reason, _ in self.dead:
            out[reason] = out.get(reason, 0) + 1
        return out


def columns_of(rows: Any) -> Dict[str, List[Any]]:
    """``{column: [value per row]}`` from any accepted form of pushed rows."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return {str(c): rows[c].tolist() for c in rows.columns}
    if isinstance(rows, pa.Table):
        return {c: rows.column(c).to_pylist() for c in rows.column_names}
    if isinstance(rows, Mapping):  # Feast's df: columns of equal length
        cols = {str(k): (list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else None)
                for k, v in rows.items()}
        bad = [k for k, v in cols.items() if v is None]
        if bad:
            raise RequestError(f"rows: a dict of columns needs a list of values per column ({bad[0]!r} is not a list)")
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise RequestError(f"rows: columns have different lengths {lengths}")
        return cols
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise RequestError(f"rows must be a pandas DataFrame, a list of dicts or a dict of columns, "
                           f"got {type(rows).__name__}")
    out: Dict[str, List[Any]] = {}
    listed = list(rows)
    for i, r in enumerate(listed):
        if not isinstance(r, Mapping):
            raise RequestError(f"row {i} is a {type(r).__name__}, not a dict of column values")
        for k in r:
            out.setdefault(str(k), [None] * len(listed))
    for i, r in enumerate(listed):
        for k, v in r.items():
            out[str(k)][i] = v
    return out


def _null(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        import pandas as pd

        return v is pd.NaT or v is pd.NA
    except ImportError:  # pragma: no cover
        return False


def time_ms(v: Any) -> Optional[int]:
    """Epoch ms (floored) of an event-time value; raises ValueError when it is not a time."""
    return time_us(v) // 1000


def time_us(v: Any) -> int:
    """Epoch microseconds (floored) of a time value (an integer is epoch milliseconds); ValueError when
    it is not a time."""
    import pandas as pd

    if isinstance(v, (bool, np.bool_)) or isinstance(v, (float, np.floating)):
        raise ValueError("not a time")
    if isinstance(v, (int, np.integer)):
        return int(v) * 1000
    if isinstance(v, str):
        if not v.strip() or v.strip().lstrip("-").isdigit():
            raise ValueError("not a time")
    elif not isinstance(v, (datetime, date, np.datetime64, pd.Timestamp)):
        raise ValueError("not a time")
    ts = pd.Timestamp(v)  # ValueError / OverflowError when unreadable or out of range
    if ts is pd.NaT:
        raise ValueError("not a time")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    if ts.unit == "ns":
        return ts.value // 1_000
    # beyond pandas' nanosecond range (a sentinel such as 9999-12-31): exact in its own unit
    return int(ts.as_unit("us").tz_convert(None).to_datetime64().astype(np.int64))


def _plain_json(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_plain_json(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain_json(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def json_text(v: Any) -> str:
    """A JSON value (``dtypes.JSON``) as its JSON text: a string must already be JSON text (Feast's ``Json``);
    dicts, lists and arrays (Feast's ``Map``, ``Struct``, ``Array``) are encoded compactly. ValueError else."""
    import json

    if isinstance(v, str):
        json.loads(v)  # ValueError (JSONDecodeError) when it is not JSON text
        return v
    if not isinstance(v, (dict, list, tuple, np.ndarray)):
        raise ValueError
    return json.dumps(_plain_json(v), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _value(v: Any, dtype: str) -> Any:
    """The value as its declared type, or ValueError."""
    if dtype == t.JSON:
        return json_text(v)
    if dtype in t.INTEGER:
        if isinstance(v, (bool, np.bool_)):
            raise ValueError
        if isinstance(v, (float, np.floating)):
            if not math.isfinite(v) or v != int(v):
                raise ValueError
            if abs(v) >= t.FLOAT_EXACT_INT:  # another integer rounds to it too: the entity frames' rule
                raise InexactInt
            v = int(v)
        if not isinstance(v, (int, np.integer)):
            raise ValueError
        lo, hi = _INT_RANGE[dtype]
        if not lo <= int(v) <= hi:
            raise ValueError
        return int(v)
    if dtype in (t.FLOAT64, t.FLOAT32):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError
        f = float(v)
        return None if math.isnan(f) else f
    if dtype == t.BOOL:
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError
        return bool(v)
    if dtype == t.STRING:
        if not isinstance(v, str):
            raise ValueError
        return v
    if dtype == t.TIMESTAMP:
        us = time_us(v)
        if not semantics.time_value_supported(us):  # years 1 to 9999, as in a batch face
            raise ValueError
        return us
    raise ValueError  # pragma: no cover - every declared type is handled


def _json_row(cols: Dict[str, List[Any]], i: int) -> str:
    def plain(v):
        if _null(v):
            return None
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return v.item()
        if isinstance(v, (str, int, float, bool)):
            return v if not (isinstance(v, float) and not math.isfinite(v)) else str(v)
        return str(v)

    return json.dumps({k: plain(v[i]) for k, v in cols.items()}, ensure_ascii=False, sort_keys=True)


def parse(source, rows: Any, now_ms: Optional[int] = None, max_future_ms: Optional[int] = None) -> Parsed:
    """The events and dead letters of ``rows`` pushed to ``source`` (see the module docstring); ``now_ms``
    (default: now) and ``max_future_ms`` (None: no bound) are the future bound's clock and bound."""
    import time

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cols = columns_of(rows)
    n = len(next(iter(cols.values()), []))
    if n and source.timestamp not in cols:  # no rows (a batch that came out empty) push nothing
        raise RequestError(f"rows pushed to source '{source.name}' have no event-time column '{source.timestamp}' "
                           f"(columns: {sorted(cols)})")
    schema = list(source.schema)
    out: Dict[str, List[Any]] = {c: [] for c, _ in schema}
    index: List[int] = []
    dead: List[tuple] = []
    ts_col = source.timestamp
    for i in range(n):
        reason = None
        values = {}
        raw = cols[ts_col][i]
        if _null(raw):
            reason = missing_time_reason(ts_col)
        else:
            try:
                ms = time_ms(raw)
            except (OverflowError, OutOfBoundsDatetime):  # a time, beyond what pandas holds
                reason = range_reason(ts_col)
            except (ValueError, TypeError):
                reason = bad_time_reason(ts_col)
            else:
                reason = semantics.event_time_reason(ts_col, ms, now_ms, max_future_ms)
                values[ts_col] = ms
        if reason is None:
            for c, dtype in schema:
                if c == ts_col:
                    continue
                v = cols[c][i] if c in cols else None
                if _null(v):
                    values[c] = None
                    continue
                try:
                    values[c] = _value(v, dtype)
                except InexactInt:
                    reason = semantics.inexact_int_reason(c, dtype)
                    break
                except (ValueError, TypeError, OverflowError):
                    reason = column_reason(c, dtype)
                    break
        if reason is not None:
            dead.append((i, reason, _json_row(cols, i)))
            continue
        index.append(i)
        for c, _ in schema:
            out[c].append(values[c])
    fields = []
    arrays = []
    for c, dtype in schema:
        if dtype == t.TIMESTAMP:  # the event time in ms (the stored events' unit), others in us
            typ = PUSH_TS_TYPE if c == ts_col else t.arrow_type(dtype)
            arrays.append(pa.array(out[c], type=pa.int64()).cast(typ))
        else:
            typ = t.arrow_type(dtype)
            arrays.append(pa.array(out[c], type=typ))
        fields.append(pa.field(c, typ))
    return Parsed(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), index, dead)


__all__ = ["Parsed", "parse", "columns_of", "time_ms", "missing_time_reason", "bad_time_reason", "range_reason",
           "column_reason", "PUSH_TS_TYPE"]
