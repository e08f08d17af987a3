"""What callers pass in (join-key values and entity rows), checked the same way on every path.

``get_historical_features`` (the entity frame), ``get_online_features`` (entity rows, from Python and
HTTP) and ``training_set_from_logs`` (the labels frame) all go through here, so one mistake gets one
message everywhere, and never a silent cast: an int for a string key used to read zeros offline and
``"1"`` online, a bool or a list was stringified.

A join-key value must have the key's type (the type of the column in the view's source):

* ``string`` keys take ``str`` values;
* ``int64``/``int32`` keys take integers (``int``, numpy integers, pandas integer columns, nullable
  ``Int64`` included), in the type's range, and floats with an integral value (``1.0``: pandas turns an
  integer column with a missing value into floats) below 2^53, never ``1.5``; a float of 2^53 or more
  may not be the integer the caller had (123456789012345678 is 123456789012345680.0 as a float), so it is
  refused rather than looked up as another entity;
* ``None``, NaN, ``pd.NA`` and ``NaT`` are a null key, which matches no entity (SQL), so its features
  are empty.

Anything else (an int for a string key, a string or a float for an integer key, a bool, bytes, a list...)
is a :class:`~featurestore.errors.RequestError` naming where, the key and the expected type::

    entity_df row 0: join key 'user_id' expects a string, got 7 (int)
    entity row 2: join key 'shop' expects an integer (int64), got '7' (str)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, List, Optional

from featurestore import dtypes
from featurestore.errors import RequestError

_RANGES = {dtypes.INT64: (-(2**63), 2**63 - 1), dtypes.INT32: (-(2**31), 2**31 - 1)}


def expected(dtype: str) -> str:
    return "a string" if dtype == dtypes.STRING else f"an integer ({dtype})"


def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    kind = type(value).__name__
    if kind in ("float64", "float32", "float16", "datetime64", "timedelta64"):  # numpy NaN / NaT
        return value != value
    return False


def key_value(value: Any, dtype: str, where: str, key: str) -> Any:
    """``value`` as the key's Python value (``str``/``int``), None for a null key, or RequestError."""
    if is_null(value):
        return None
    if dtype == dtypes.STRING:
        if isinstance(value, str):
            return str(value)
    elif dtype in dtypes.INTEGER:
        number = None if _inexact_float(value) else _integer(value)
        if number is not None:
            low, high = _RANGES[dtype]
            if low <= number <= high:
                return number
            raise RequestError(f"{where}: join key '{key}' expects {expected(dtype)}, got {number} (out of range)")
    else:  # pragma: no cover - validation allows string and integer join keys only
        raise RequestError(f"{where}: join key '{key}' has type {dtype}, which cannot be looked up")
    if dtype in dtypes.INTEGER and _inexact_float(value):
        raise RequestError(f"{where}: join key '{key}' got {_show(value)}, a float at or beyond 2^53 that may not be the "
                           "integer meant (pandas turns an integer column with a missing value into float64); pass "
                           "the column as pandas' nullable Int64")
    raise RequestError(f"{where}: join key '{key}' expects {expected(dtype)}, got {_show(value)}")


def _inexact_float(value: Any) -> bool:
    """A finite float of magnitude 2^53 or more: another integer rounds to it too (2^53 + 1 is 2^53 as a float),
    so it is not trusted as an integer key."""
    import numpy as np

    return isinstance(value, (float, np.floating)) and math.isfinite(value) and abs(value) >= dtypes.FLOAT_EXACT_INT


def _integer(value: Any) -> Optional[int]:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def _show(value: Any) -> str:
    """``repr`` of a value as the caller wrote it, and its type: ``7 (int)``, ``1.0 (float64)``."""
    shown = value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) and \
        getattr(value, "ndim", 1) == 0 else value
    text = repr(shown)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def key_column(series, dtype: str, where: str, key: str):
    """A join-key column of a frame as an Arrow array of the key's type, or RequestError at the first
    wrong value (``where`` names the frame: ``entity_df``, ``labels_df``)."""
    import pandas as pd
    import pyarrow as pa

    arrow_type = pa.string() if dtype == dtypes.STRING else pa.int64()
    kind = series.dtype
    if isinstance(kind, pd.CategoricalDtype):
        series = series.astype(object)
        kind = series.dtype
    ok = False
    if dtype == dtypes.STRING:
        if pd.api.types.is_string_dtype(kind):
            ok = pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
    elif pd.api.types.is_bool_dtype(kind):
        ok = False
    elif pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind):
        low, high = _RANGES[dtype]
        values = series.dropna()
        if pd.api.types.is_float_dtype(kind):  # integral floats only (a missing value made the column float)
            ok = bool(((values % 1) == 0).all()) and (values.empty or (
                -dtypes.FLOAT_EXACT_INT < values.min() and values.max() < dtypes.FLOAT_EXACT_INT
                and low <= values.min() and values.max() <= high))
            series = series.astype("Int64") if ok else series
        else:
            ok = values.empty or (int(values.min()) >= low and int(values.max()) <= high)
    elif kind == object:
        ok = pd.api.types.infer_dtype(series, skipna=True) in ("integer", "empty")
    elif series.isna().all():
        ok = True
    if ok:
        try:
            return pa.array(series, type=arrow_type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # out of range or mixed: name the value below
    for i, value in enumerate(series):
        key_value(value, dtype, f"{where} row {i}", key)
    # Every value passed one by one (e.g. a mixed object column of ints and nulls): convert them so.
    return pa.array([key_value(v, dtype, where, key) for v in series], type=arrow_type)


def entity_rows(rows) -> List[dict]:
    """Entity rows of an online lookup: a list of dicts (one per entity) or a pandas DataFrame."""
    try:
        import pandas as pd

        if isinstance(rows, pd.DataFrame):
            return rows.to_dict("records")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(rows, Mapping):
        raise RequestError("entity_rows must be a list of dicts (one per entity) or a pandas DataFrame, "
                           "got a single dict; wrap it in a list")
    if isinstance(rows, (str, bytes)):
        raise RequestError(f"entity_rows must be a list of dicts or a pandas DataFrame, got {type(rows).__name__}")
    try:
        out = list(rows)
    except TypeError:
        raise RequestError(f"entity_rows must be a list of dicts or a pandas DataFrame, "
                           f"got {type(rows).__name__}") from None
    for i, r in enumerate(out):
        if not isinstance(r, Mapping):
            raise RequestError(f"entity row {i} is a {type(r).__name__}, not a dict of join keys")
    return out


__all__ = ["entity_rows", "expected", "is_null", "key_column", "key_value"]
