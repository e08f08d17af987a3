"""Evaluate a request feature view over a table of inputs: the one piece of code both paths run.

``get_historical_features`` calls :func:`evaluate` once over the whole entity frame, the online lookup
once per request; both build the input table the same way (:func:`input_table`: every input column
cast to its declared type), so a row gives the same value in both:

* SQL features: one DuckDB query, ``SELECT CAST((expr) AS type) ... ORDER BY row``, on a connection
  cached per thread (time zone UTC), over the input columns: up to :data:`SMALL` rows (a request) they are
  typed list parameters of a statement prepared once, above it the Arrow table is scanned. Which one
  depends on the row count only, never on the path, and tests hold the two equal on the same data;
* ``mode="row"``: ``fn(row)`` per row, the row a dict of plain Python values (``to_pylist``);
* ``mode="python"``: one ``fn(columns)`` call, a dict of lists (``to_pydict``);
* ``mode="pandas"``: one ``fn(df)`` call, the DataFrame from ``to_pandas()`` (Feast's conversion: an
  integer column with a null arrives as float64 with NaN);
* ``mode="arrow"``: one ``fn(table)`` call on the input ``pyarrow.Table`` itself, returning a Table.

Outputs are held to their declared types, never silently cast: an integral float fits an integer
feature, an int fits a float one, anything else (a string for a number, a naive datetime, a bool for
an int...) is a :class:`~featurestore.errors.RequestError` naming the view, the feature, the row and
the value. NaN is null, as at ingestion. A function that raises, returns the wrong shape or leaves an
output out is an error naming the view and the row.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Dict, List, Optional

import pyarrow as pa
import pyarrow.compute as pc

from featurestore import dtypes as t
from featurestore.compiler.request import CompiledRequestView
from featurestore.errors import RequestError

ROW = "__fs_row"
_TABLE = "__fs_request_inputs"
_LOCAL = threading.local()


def input_table(crv: CompiledRequestView, columns: Dict[str, pa.Array]) -> pa.Table:
    """The inputs of ``crv`` as one table, each column cast to its declared type (``columns`` by input name)."""
    arrays, names = [], []
    for col in crv.inputs:
        arr = columns[col.name]
        target = t.arrow_type(col.dtype)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != target:
            arr = arr.cast(target)
        arrays.append(arr)
        names.append(col.name)
    return pa.Table.from_arrays(arrays, names=names)


def evaluate(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, pa.Array]:
    """The outputs of ``crv`` for every row of ``inputs``: ``{feature: Arrow array of its type}``."""
    n = inputs.num_rows
    if n == 0:
        return {name: pa.array([], t.arrow_type(dtype)) for name, dtype in crv.outputs}
    if crv.mode == "sql":
        raw: Dict[str, Any] = _sql(crv, inputs)
    elif crv.mode == "row":
        raw = _rows(crv, inputs)
    elif crv.mode == "python":
        raw = _columns(crv, inputs)
    elif crv.mode == "pandas":
        raw = _pandas(crv, inputs)
    elif crv.mode == "arrow":
        raw = _arrow(crv, inputs)
    else:  # pragma: no cover - the model allows these five
        raise RequestError(f"request feature view '{crv.name}': unknown mode {crv.mode!r}")
    return {name: conform(crv, name, dtype, raw[name], n) for name, dtype in crv.outputs}


# -- SQL ---------------------------------------------------------------------------------------------
SMALL = 1000  # up to this many rows, a prepared statement over typed list parameters; above, an Arrow scan


def _connection():
    con = getattr(_LOCAL, "con", None)
    if con is None:
        import duckdb

        # One thread: a request's few rows gain nothing from parallelism, and waking a pool per request costs more
        # than the query.
        con = duckdb.connect(config={"threads": 1})
        con.execute("SET TimeZone = 'UTC'")
        _LOCAL.con = con
        _LOCAL.prepared = {}
    return con


def select_sql(crv: CompiledRequestView, relation: str) -> str:
    """The query of a SQL request view over ``relation`` (its inputs plus the row number ``__fs_row``)."""
    from featurestore.dtypes import DUCKDB_TYPES

    cols = ", ".join(f'{_output_sql(expr, dtype)} AS "{name}"'
                     for (name, expr), (_, dtype) in zip(crv.expressions, crv.outputs))
    return f'SELECT {cols} FROM {relation} AS __fs_inputs ORDER BY "{ROW}"'


def _output_sql(expr: str, dtype: str) -> str:
    """An expression as its output type; a timestamp as epoch microseconds (BIGINT), an infinite one as the
    largest BIGINT, so a value outside years 1 to 9999 reaches :func:`conform`'s check rather than failing
    DuckDB's conversion to Python or reading as NULL."""
    from featurestore.dtypes import DUCKDB_TYPES

    typed = f"CAST(({expr}) AS {DUCKDB_TYPES[dtype]})"
    if dtype == t.TIMESTAMP:
        return f"CASE WHEN isinf({typed}) THEN {2**63 - 1} ELSE epoch_us({typed}) END"
    return typed


def _sql_columns(crv: CompiledRequestView):
    """The inputs the expressions refer to (no others are passed to DuckDB)."""
    used = set(crv.sql_inputs)
    return [c for c in crv.inputs if c.name in used]


def parameter_relation(crv: CompiledRequestView) -> str:
    """The inputs as typed list parameters, one row per index: ``$1`` the row numbers, then one per input."""
    from featurestore.dtypes import DUCKDB_TYPES

    cols = [f'UNNEST($1::BIGINT[]) AS "{ROW}"']
    cols += [f'UNNEST(${i}::{DUCKDB_TYPES[c.dtype]}[]) AS "{c.name}"'
             for i, c in enumerate(_sql_columns(crv), start=2)]
    return f"(SELECT {', '.join(cols)})"


def _sql(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, pa.Array]:
    """One DuckDB query of the expressions over the inputs. The same SELECT runs over either relation:
    the Arrow table itself (large inputs) or the same typed columns passed as list parameters to a
    statement prepared once per thread (a request's few rows: no Arrow registration per request)."""
    con = _connection()
    n = inputs.num_rows
    try:
        if n <= SMALL:
            key = f"{crv.name}:{crv.data_fingerprint}"
            statement = _LOCAL.prepared.get(key)
            if statement is None:
                statement = _LOCAL.prepared[key] = con.extract_statements(select_sql(crv, parameter_relation(crv)))[0]
            columns_in = _sql_columns(crv)
            lists = inputs.select([c.name for c in columns_in]).to_pydict()
            rows = con.execute(statement, [list(range(n)), *(lists[c.name] for c in columns_in)]).fetchall()
            columns = list(zip(*rows)) if rows else [[] for _ in crv.outputs]
            return {name: pa.array(list(col), type=t.arrow_type(dtype))
                    for (name, dtype), col in zip(crv.outputs, columns)}
        table = inputs.select([c.name for c in _sql_columns(crv)]).append_column(ROW, pa.array(range(n), pa.int64()))
        con.register(_TABLE, table)
        try:
            out = con.sql(select_sql(crv, _TABLE)).to_arrow_table()
        finally:
            con.unregister(_TABLE)
    except Exception as exc:  # noqa: BLE001 - duckdb raises several classes; a value error (e.g. a cast) is the user's
        first = str(exc).strip().splitlines()[0]
        raise RequestError(f"request feature view '{crv.name}': {first}") from None
    return {name: out.column(name).combine_chunks() for name, _ in crv.outputs}


# -- Python ------------------------------------------------------------------------------------------
def _label(crv: CompiledRequestView) -> str:
    return f"request feature view '{crv.name}': function '{crv.function_name}'"


def _call(crv: CompiledRequestView, arg: Any, where: str) -> Any:
    try:
        return crv.function(arg)
    except Exception as exc:  # noqa: BLE001 - the user's code: name it, the row and the cause in one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RequestError(f"{_label(crv)} raised {type(exc).__name__}{': ' + text if text else ''} ({where})") \
            from None


def _rows(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {name: [] for name, _ in crv.outputs}
    for i, row in enumerate(inputs.to_pylist()):
        got = _call(crv, row, f"row {i}")
        if not isinstance(got, Mapping):
            raise RequestError(f"{_label(crv)} returned {type(got).__name__} for row {i}; mode 'row' returns a dict "
                               "of the features")
        for name in out:
            if name not in got:
                raise RequestError(f"{_label(crv)} returned no '{name}' for row {i} (it returned "
                                   f"{sorted(map(str, got))})")
            out[name].append(got[name])
    return out


def _columns(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, Any]:
    n = inputs.num_rows
    got = _call(crv, inputs.to_pydict(), f"{n} rows")
    if not isinstance(got, Mapping):
        raise RequestError(f"{_label(crv)} returned {type(got).__name__}; mode 'python' returns a dict of lists")
    out = {}
    for name, _ in crv.outputs:
        if name not in got:
            raise RequestError(f"{_label(crv)} returned no '{name}' (it returned {sorted(map(str, got))})")
        values = got[name]
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
            raise RequestError(f"{_label(crv)} returned '{name}' as {type(values).__name__}; mode 'python' returns a "
                               f"list of {n} values per feature")
        out[name] = values
    return out


def _pandas(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, Any]:
    import pandas as pd

    got = _call(crv, inputs.to_pandas(), f"{inputs.num_rows} rows")
    if not isinstance(got, pd.DataFrame):
        raise RequestError(f"{_label(crv)} returned {type(got).__name__}; mode 'pandas' returns a DataFrame")
    out = {}
    for name, _ in crv.outputs:
        if name not in got.columns:
            raise RequestError(f"{_label(crv)} returned no column '{name}' (it returned {list(map(str, got.columns))})")
        out[name] = got[name]
    return out


def _arrow(crv: CompiledRequestView, inputs: pa.Table) -> Dict[str, Any]:
    got = _call(crv, inputs, f"{inputs.num_rows} rows")
    if isinstance(got, pa.RecordBatch):
        got = pa.Table.from_batches([got])
    if not isinstance(got, pa.Table):
        raise RequestError(f"{_label(crv)} returned {type(got).__name__}; mode 'arrow' returns a pyarrow Table")
    out = {}
    for name, _ in crv.outputs:
        if name not in got.column_names:
            raise RequestError(f"{_label(crv)} returned no column '{name}' (it returned {got.column_names})")
        out[name] = got.column(name)
    return out


# -- outputs -----------------------------------------------------------------------------------------
def conform(crv: CompiledRequestView, name: str, dtype: str, values: Any, n: int) -> pa.Array:
    """``values`` of output ``name`` as an Arrow array of ``dtype`` (module docstring: never a silent cast)."""
    if len(values) != n:
        raise RequestError(f"request feature view '{crv.name}': '{name}' has {len(values)} values for {n} rows")
    target = t.arrow_type(dtype)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if dtype == t.JSON:  # a JSON value (Feast's Map, Struct, Array, Json): its JSON text
        return _json_array(crv, name, values)
    if isinstance(values, pa.Array) and crv.mode == "sql":  # DuckDB already cast it (a timestamp: epoch us)
        arr = values if values.type == target else values.cast(target)
    elif isinstance(values, pa.Array):  # mode "arrow": the function's own array, held to the type
        arr = _fit(values, target, dtype)
        if arr is None:
            i, value = _first_misfit(values.to_pylist(), dtype)
            raise RequestError(f"request feature view '{crv.name}': '{name}' is {dtype} but row {i} is "
                               f"{_show(value)}")
    else:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            arr = None
        arr = _fit(arr, target, dtype) if arr is not None else None
        if arr is None:
            i, value = _first_misfit(values, dtype)
            raise RequestError(f"request feature view '{crv.name}': '{name}' is {dtype} but row {i} is "
                               f"{_show(value)}")
    if dtype == t.TIMESTAMP:
        _check_time_values(crv, name, arr)
    if pa.types.is_floating(arr.type) and arr.null_count < len(arr):
        nan = pc.is_nan(arr)
        if pc.any(nan).as_py():
            arr = pc.if_else(nan, pa.scalar(None, arr.type), arr)
    return arr


def _check_time_values(crv: CompiledRequestView, name: str, arr: pa.Array) -> None:
    """A timestamp output outside years 1 to 9999 (``semantics.time_value_supported``, as a view's computed
    timestamp) is an error naming the view, the feature and the row: offline and online alike."""
    from featurestore import semantics

    us = arr.cast(pa.int64())
    bad = pc.invert(pc.and_(pc.greater_equal(us, semantics.MIN_TIME_VALUE_US),
                            pc.less(us, semantics.MAX_TIME_VALUE_US)))
    if pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        raise RequestError(f"request feature view '{crv.name}': feature '{name}' is a timestamp outside years 1 to 9999 "
                           f"UTC, the supported timestamp values (row {i}: {us[i].as_py()} epoch microseconds)")


def _json_array(crv: CompiledRequestView, name: str, values: Any) -> pa.Array:
    from featurestore.push.rows import json_text

    items = values.to_pylist() if isinstance(values, pa.Array) else (
        values.tolist() if hasattr(values, "tolist") and not isinstance(values, list) else list(values))
    out = []
    for i, v in enumerate(items):
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
            continue
        try:
            out.append(json_text(v))
        except (ValueError, TypeError):
            raise RequestError(f"request feature view '{crv.name}': '{name}' is a JSON value (json) but row {i} "
                               f"is {_show(v)}") from None
    return pa.array(out, pa.string())


def _fit(arr: pa.Array, target: pa.DataType, dtype: str) -> Optional[pa.Array]:
    """``arr`` cast to ``target`` when its values are of the feature's kind, else None."""
    kind = arr.type
    try:
        if pa.types.is_null(kind):
            return pa.nulls(len(arr), target)
        if dtype == t.STRING and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return arr.cast(target)
        if dtype == t.BOOL and pa.types.is_boolean(kind):
            return arr
        if dtype in t.INTEGER and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            return arr.cast(target)  # safe: 1.5 or an out-of-range value fails
        if dtype in (t.FLOAT32, t.FLOAT64) and pa.types.is_floating(kind):
            return arr.cast(target, safe=False) if dtype == t.FLOAT32 else arr.cast(target)
        if dtype in (t.FLOAT32, t.FLOAT64) and pa.types.is_integer(kind):
            return arr.cast(target, safe=False)  # as Python's float(int)
        if dtype == t.TIMESTAMP and pa.types.is_timestamp(kind) and kind.tz is not None:
            return arr.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _first_misfit(values: Any, dtype: str):
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    target = t.arrow_type(dtype)
    for i, v in enumerate(items):
        try:
            arr = pa.array([v], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return i, v
        if _fit(arr, target, dtype) is None:
            return i, v
    return 0, items[0] if items else None  # pragma: no cover - mixed kinds that fit one by one


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if getattr(value, "tzinfo", 1) is None:
        return f"{text} (a timezone-naive {type(value).__name__}; return UTC times)"
    return f"{text} ({type(value).__name__})"


__all__ = ["conform", "evaluate", "input_table", "select_sql"]
