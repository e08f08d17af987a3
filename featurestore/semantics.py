"""The meaning of every feature, defined once (SPEC §2). Every engine compiles from here.

Nothing in this module imports an engine. The DuckDB compiler, the Flink compiler, the online
store's request-time combiner and the test oracle all take their rules from these names:

* Times are epoch milliseconds, UTC. Anything finer is truncated (floor) to the millisecond.
* A request at ``q`` sees only events with ``ts < q`` (exclusive).
* *latest* at ``q``: the event with the greatest event order among ``ts < q`` (and ``ts >= q - ttl``
  when the view has a TTL); its value, which may be null. No such event: null.
* Window ``W`` at ``q``: events with ``q - W <= ts < q``; unbounded: ``ts < q``. No rounding.
* Empty window: ``count``/``count_distinct`` are 0, the rest null, unless a ``default`` is declared.
* Null inputs are ignored (SQL); ``stddev``/``variance`` are sample statistics (n - 1), null for n < 2.
* ``default`` replaces a null aggregation result: ``COALESCE(agg, default)`` (so an empty window, and
  ``stddev``/``variance`` of one value, read the default). Counts are never null.
* Float NaN in source data is null at ingestion (JSON cannot carry NaN; both jobs agree).
* Event order (ties): events are ordered by ``ts``, then by the source's declared ``tiebreak``
  columns, then by every source column in schema order, each ascending with nulls first. ``last`` is
  the non-null value of the greatest event in the window, ``first`` of the least; *latest* is the
  greatest event. Fully identical events are interchangeable, so the order is total in effect and
  depends only on event content, never on arrival order or file layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from featurestore import dtypes as t

TIME_UNIT = "ms"


@dataclass(frozen=True)
class AggFunction:
    """What one aggregation function means and how its result is typed."""

    name: str
    needs_column: bool
    numeric_only: bool
    order_sensitive: bool
    empty_value: Optional[int]  # value of an empty window before any default; None means null
    output_dtype: Callable[[str], str]

    def result_dtype(self, input_dtype: str) -> str:
        return self.output_dtype(input_dtype)


def _same(dtype: str) -> str:
    return dtype


def _int64(_: str) -> str:
    return t.INT64


def _float64(_: str) -> str:
    return t.FLOAT64


def _sum_type(dtype: str) -> str:
    return t.INT64 if dtype in t.INTEGER else t.FLOAT64


AGG_FUNCTIONS = {
    f.name: f
    for f in (
        AggFunction("count", needs_column=False, numeric_only=False, order_sensitive=False, empty_value=0, output_dtype=_int64),
        AggFunction("count_distinct", needs_column=True, numeric_only=False, order_sensitive=False, empty_value=0, output_dtype=_int64),
        AggFunction("sum", needs_column=True, numeric_only=True, order_sensitive=False, empty_value=None, output_dtype=_sum_type),
        AggFunction("mean", needs_column=True, numeric_only=True, order_sensitive=False, empty_value=None, output_dtype=_float64),
        AggFunction("min", needs_column=True, numeric_only=False, order_sensitive=False, empty_value=None, output_dtype=_same),
        AggFunction("max", needs_column=True, numeric_only=False, order_sensitive=False, empty_value=None, output_dtype=_same),
        AggFunction("last", needs_column=True, numeric_only=False, order_sensitive=True, empty_value=None, output_dtype=_same),
        AggFunction("first", needs_column=True, numeric_only=False, order_sensitive=True, empty_value=None, output_dtype=_same),
        AggFunction("stddev", needs_column=True, numeric_only=True, order_sensitive=False, empty_value=None, output_dtype=_float64),
        AggFunction("variance", needs_column=True, numeric_only=True, order_sensitive=False, empty_value=None, output_dtype=_float64),
    )
}
AGG_ALIASES = {"avg": "mean", "average": "mean", "std": "stddev", "stddev_samp": "stddev", "var": "variance",
               "var_samp": "variance", "distinct_count": "count_distinct"}


def in_window(ts_ms: int, q_ms: int, window_ms: Optional[int]) -> bool:
    """True when an event at ``ts_ms`` is inside the window of a request at ``q_ms``."""
    return ts_ms < q_ms and (window_ms is None or ts_ms >= q_ms - window_ms)


def window_predicate_sql(ts_ms_sql: str, q_ms_sql: str, window_ms: Optional[int]) -> str:
    """SQL for "an event at ``ts_ms_sql`` is in the window of a request at ``q_ms_sql``" (epoch-ms
    integers): ``q - W <= ts < q``, the lower edge inclusive, the request time exclusive, no rounding.
    Shared by every SQL engine (DuckDB, Flink); ``window_ms=None`` is unbounded."""
    cond = f"{ts_ms_sql} < {q_ms_sql}"
    if window_ms is not None:
        cond += f" AND {ts_ms_sql} >= {q_ms_sql} - {int(window_ms)}"
    return f"({cond})"


def latest_visible(ts_ms: int, q_ms: int, ttl_ms: Optional[int]) -> bool:
    """True when an event at ``ts_ms`` may be the *latest* value seen by a request at ``q_ms``."""
    return in_window(ts_ms, q_ms, ttl_ms)


def truncate_to_ms(ns: int) -> int:
    """Epoch nanoseconds to epoch milliseconds, flooring (so 1969 times floor, not round to zero)."""
    return ns // 1_000_000
