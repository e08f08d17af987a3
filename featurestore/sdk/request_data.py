"""Request data as callers pass it, checked against the request sources' types, the same way everywhere.

Offline, request data are columns of the entity frame (:func:`request_column`); online they come with the
lookup (:func:`online_request_data`), as ``request_data=`` (a dict of column lists, a list of row dicts or
a DataFrame) or, as Feast passes them, inside the entity rows. A value must have its column's type,
never cast silently (the rules of join keys in :mod:`featurestore.sdk.inputs`, widened to every type):

* ``string``: ``str``; ``bool``: ``bool``;
* ``int64``/``int32``: integers in range, and integral floats (a pandas integer column with a gap is float);
* ``float64``/``float32``: ints and floats (never a bool or a numeric string);
* ``timestamp``: a timezone-aware ``datetime``/``Timestamp``, an ISO-8601 string with a zone, or int epoch
  milliseconds (the request-time rules); kept to the microsecond;
* ``None``, NaN, ``pd.NA``, ``NaT``: null.

A missing column is one line naming it and the request source that declares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional

import pyarrow as pa

from featurestore import dtypes as t
from featurestore.errors import RequestError
from featurestore.sdk.inputs import _RANGES, _integer, _show, is_null


def value(v: Any, dtype: str, where: str, column: str) -> Any:
    """One request value as the plain Python value of ``dtype`` (None for null), or RequestError."""
    if is_null(v):
        return None
    import numpy as np

    if dtype == t.STRING:
        if isinstance(v, str):
            return str(v)
    elif dtype == t.BOOL:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
    elif dtype in t.INTEGER:
        number = _integer(v)
        if number is not None:
            low, high = _RANGES[dtype]
            if low <= number <= high:
                return number
            raise RequestError(f"{where}: request column '{column}' expects {_kind(dtype)}, got {number} "
                               "(out of range)")
    elif dtype in (t.FLOAT32, t.FLOAT64):
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            return float(v)
    elif dtype == t.TIMESTAMP:
        return _timestamp(v, where, column)
    raise RequestError(f"{where}: request column '{column}' expects {_kind(dtype)}, got {_show(v)}")


def _kind(dtype: str) -> str:
    return {t.STRING: "a string", t.BOOL: "a bool", t.TIMESTAMP: "a timezone-aware timestamp"}.get(
        dtype, f"a number ({dtype})" if dtype in (t.FLOAT32, t.FLOAT64) else f"an integer ({dtype})")


def _timestamp(v: Any, where: str, column: str):
    from datetime import datetime, timedelta, timezone

    import numpy as np
    import pandas as pd

    from featurestore.sdk.timeutil import read_time_text, timestamp_us, to_epoch_ms

    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return epoch + timedelta(milliseconds=to_epoch_ms(v, f"{where}: request column '{column}'"))
    if isinstance(v, (str, datetime)):
        try:
            ts = read_time_text(v, f"{where}: request column '{column}'") if isinstance(v, str) else pd.Timestamp(v)
        except (ValueError, TypeError, OverflowError):
            ts = None
        if ts is not None and ts is not pd.NaT and ts.tzinfo is not None:
            return epoch + timedelta(microseconds=timestamp_us(ts))
        if ts is not None and ts is not pd.NaT:
            raise RequestError(f"{where}: request column '{column}' expects a timezone-aware timestamp, got "
                               f"{_show(v)} (timezone-naive; give a UTC time)")
    raise RequestError(f"{where}: request column '{column}' expects a timezone-aware timestamp, got {_show(v)}")


def request_column(series, dtype: str, where: str, column: str) -> pa.Array:
    """A request-data column of a frame (``where``: ``entity_df``) as an Arrow array of ``dtype``, or
    RequestError at the first wrong value."""
    import pandas as pd

    target = t.arrow_type(dtype)
    kind = series.dtype
    if isinstance(kind, pd.CategoricalDtype):
        series = series.astype(object)
        kind = series.dtype
    arr = None
    try:
        if dtype == t.STRING and pd.api.types.is_string_dtype(kind) \
                and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            arr = pa.array(series, type=target, from_pandas=True)
        elif dtype == t.BOOL and pd.api.types.is_bool_dtype(kind):
            arr = pa.array(series, type=target, from_pandas=True)
        elif dtype in t.INTEGER and not pd.api.types.is_bool_dtype(kind) and (
                pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind)):
            arr = pa.array(series, from_pandas=True).cast(target)  # safe: 1.5 and out of range fail
        elif dtype in (t.FLOAT32, t.FLOAT64) and not pd.api.types.is_bool_dtype(kind) and (
                pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind)):
            arr = pa.array(series, from_pandas=True).cast(target, safe=False)
        elif dtype == t.TIMESTAMP and isinstance(kind, pd.DatetimeTZDtype):
            arr = pa.array(series, from_pandas=True).cast(target, safe=False)  # ns -> us: truncated
        elif series.isna().all():
            arr = pa.nulls(len(series), target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = None
    if arr is not None:
        return arr
    values = [value(v, dtype, f"{where} row {i}", column) for i, v in enumerate(series)]
    return pa.array(values, type=target)


def rows_to_columns(data: Any, n: Optional[int], what: str = "request_data") -> Dict[str, List[Any]]:
    """``request_data`` as ``{column: [value per row]}``: from a dict of lists (Feast's columnar shape), a
    list of row dicts or a DataFrame; every column has ``n`` values when ``n`` is given."""
    if data is None:
        return {}
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            data = {c: data[c].tolist() for c in data.columns}
    except ImportError:  # pragma: no cover
        pass
    if isinstance(data, Mapping):
        out = {}
        for col, values in data.items():
            if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
                raise RequestError(f"{what}: column '{col}' must be a list of values (one per entity row), got "
                                   f"{type(values).__name__}")
            out[str(col)] = list(values)
    elif isinstance(data, (list, tuple)):
        out = {}
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise RequestError(f"{what} row {i} is a {type(row).__name__}, not a dict of request columns")
            for col in row:
                out.setdefault(str(col), [None] * len(data))
            for col, v in row.items():
                out[str(col)][i] = v
        missing = {c for c in out for i, row in enumerate(data) if c not in row}
        if missing:
            col = sorted(missing)[0]
            row = next(i for i, r in enumerate(data) if col not in r)
            raise RequestError(f"{what} row {row} has no column '{col}' (other rows have it)")
    else:
        raise RequestError(f"{what} must be a dict of column lists, a list of row dicts or a DataFrame, got "
                           f"{type(data).__name__}")
    if n is not None:
        for col, values in out.items():
            if len(values) != n:
                raise RequestError(f"{what}: column '{col}' has {len(values)} values for {n} entity rows")
    return out


__all__ = ["request_column", "rows_to_columns", "value"]
