"""The meaning of every feature, defined once (SPEC §2). Every engine compiles from here.

Nothing in this module imports an engine. The DuckDB compiler, the Flink compiler, the online
store's request-time combiner and the test oracle all take their rules from these names:

* Times are epoch milliseconds, UTC. Anything finer is truncated (floor) to the millisecond.
* Supported event times: ``MIN_EVENT_TIME_MS <= ts < MAX_EVENT_TIME_MS`` (1900-01-01 to 2199-12-31
  UTC), and at most ``max_future`` (config ``event_time.max_future``, default 1h) after the wall clock
  of the job that ingests the event. A source row outside that, or one that cannot be read (missing
  event time, a value that is not of its column's type), is a **dead letter** with a reason, in every
  job, never an event: :func:`row_reason_sql` is the rule, rendered into every job's SQL.
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
  columns, then by every source column in schema order, each ascending with nulls first (a timestamp
  column other than the event time, such as a created time, keeps and compares its microseconds in every
  job: only the event time is truncated to the millisecond). ``last`` is
  the non-null value of the greatest event in the window, ``first`` of the least; *latest* is the
  greatest event. Fully identical events are interchangeable, so the order is total in effect and
  depends only on event content, never on arrival order or file layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from featurestore import dtypes as t

TIME_UNIT = "ms"

# -- supported event times ---------------------------------------------------------------------------
# Inside pandas' datetime64[ns] range (1677-09-21 .. 2262-04-11), so every stored event time reads back in
# pandas, numpy and Feast without overflow; wide enough for any history, and far from what the common unit
# mistakes produce (epoch microseconds or nanoseconds read as milliseconds land after the year 50000).
MIN_EVENT_TIME_MS = -2_208_988_800_000  # 1900-01-01T00:00:00Z, inclusive
MAX_EVENT_TIME_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z, exclusive
SUPPORTED_RANGE_TEXT = "1900-01-01 to 2199-12-31 UTC"
# The longest window or TTL: from the first supported event time to the last request time (pandas' last
# timestamp, 2262-04-11T23:47:16.854Z): a longer one reaches every event from every request, i.e. is
# unbounded, and is refused (write window=None / no ttl) rather than overflowing int64 arithmetic of q - W.
LAST_REQUEST_TIME_MS = 9_223_372_036_854
MAX_SPAN_MS = LAST_REQUEST_TIME_MS - MIN_EVENT_TIME_MS
DEFAULT_MAX_FUTURE = "1h"  # how far after the ingesting job's wall clock an event time may be

# -- timestamp values (every ``timestamp`` column but the event time) ------------------------------------
# Years 1 to 9999 UTC (microseconds): what ISO-8601, Python's datetime (the online value and the push
# input), pandas, Arrow and DuckDB all hold, so a far sentinel such as 9999-12-31 is a value in every path
# (batch face, push) and a time outside it is a dead letter (``column 'x': not a timestamp``) in every path.
MIN_TIME_VALUE_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z, inclusive
MAX_TIME_VALUE_US = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z, exclusive


def time_value_supported(us: int) -> bool:
    """A timestamp value (epoch microseconds) of a column other than the event time is supported."""
    return MIN_TIME_VALUE_US <= us < MAX_TIME_VALUE_US


def time_value_supported_sql(us_sql: str) -> str:
    """SQL (DuckDB): :func:`time_value_supported` of an epoch-µs BIGINT; false when NULL (an infinite time)."""
    return f"COALESCE({us_sql} >= {int(MIN_TIME_VALUE_US)} AND {us_sql} < {int(MAX_TIME_VALUE_US)}, false)"


def time_value_checked_sql(expr: str) -> str:
    """SQL (DuckDB): the TIMESTAMPTZ value of a user's timestamp expression (a projection or feature input),
    failing on an event where it leaves years 1 to 9999 (:func:`time_value_supported`) as an overflow fails:
    an input column is checked when read, a computed value (``exp + INTERVAL 100 YEAR``) only here."""
    typed = f"CAST(({expr}) AS TIMESTAMPTZ)"
    why = f"'{expr}' is a timestamp outside years 1 to 9999 UTC, the supported timestamp values".replace("'", "''")
    return (f"(CASE WHEN {typed} IS NULL OR {time_value_supported_sql(f'epoch_us({typed})')} THEN {typed} "
            f"ELSE error('{why}') END)")


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


def created_visible_sql(created_sql: str, q_ms_sql: str) -> str:
    """SQL for "an event created at ``created_sql`` (a timestamp) is visible to a request at ``q_ms_sql``"
    under Feast's ``get_historical_features(filter_by_created_timestamp=True)``: ``created < q``, exclusive
    like ``ts < q`` (Feast: ``created <= q``, the same 1-microsecond shift as its inclusive event time, see
    docs/coming-from-feast.md). A null created time hides the event, as in Feast's SQL. DuckDB only."""
    return f"(epoch_us({created_sql}) < {q_ms_sql} * 1000)"


def latest_visible(ts_ms: int, q_ms: int, ttl_ms: Optional[int]) -> bool:
    """True when an event at ``ts_ms`` may be the *latest* value seen by a request at ``q_ms``."""
    return in_window(ts_ms, q_ms, ttl_ms)


def truncate_to_ms(ns: int) -> int:
    """Epoch nanoseconds to epoch milliseconds, flooring (so 1969 times floor, not round to zero)."""
    return ns // 1_000_000


# -- dead letters: why a source row is not an event ----------------------------------------------------
def missing_time_reason(column: str) -> str:
    return f"missing event time '{column}'"


def unreadable_time_reason(column: str, expected: str = "a timestamp") -> str:
    """The event time is present but is not a time (the stream: not an integer of epoch milliseconds)."""
    return f"event time '{column}': not {expected}"


def out_of_range_reason(column: str) -> str:
    return f"event time '{column}' out of range (supported: {SUPPORTED_RANGE_TEXT})"


def future_reason(column: str, max_future_ms: int) -> str:
    from featurestore.model.durations import format_duration

    return f"event time '{column}' too far in the future (more than {format_duration(max_future_ms)} after ingestion)"


def column_reason(column: str, dtype: str) -> str:
    """A value that is not of its column's declared type (wrong type, unparseable, out of the type's range)."""
    return f"column '{column}': not a {dtype}"


def inexact_int_reason(column: str, dtype: str) -> str:
    """A float at or beyond 2^53 for an integer column: another integer rounds to it too, so it is not trusted as
    the integer meant (the rule of entity frames' integer join keys, ``sdk.inputs``)."""
    return (f"column '{column}': a float at or beyond 2^53 is not a trusted {dtype} (pandas turns an integer column "
            "with a missing value into float64; pass integers or pandas' nullable Int64)")


NULL_KEY_PREFIX = "null join key"


def event_time_reason(column: str, ts_ms: int, now_ms: int, max_future_ms: Optional[int]) -> Optional[str]:
    """Why a (readable) event time makes its row a dead letter, None when it is supported: the Python form
    of the time part of :func:`row_reason_sql`, for values read in Python (``push``)."""
    if not MIN_EVENT_TIME_MS <= ts_ms < MAX_EVENT_TIME_MS:
        return out_of_range_reason(column)
    if max_future_ms is not None and ts_ms > now_ms + max_future_ms:
        return future_reason(column, max_future_ms)
    return None


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_int(value: int) -> str:
    return f"CAST({int(value)} AS BIGINT)"  # a BIGINT literal in DuckDB and Flink alike


def time_supported_sql(ts_ms_sql: str) -> str:
    """SQL: the event time (epoch-ms BIGINT, not null) is inside the supported range."""
    return f"({ts_ms_sql} >= {_sql_int(MIN_EVENT_TIME_MS)} AND {ts_ms_sql} < {_sql_int(MAX_EVENT_TIME_MS)})"


def time_read_reason_sql(ts_column: str, missing_sql: str, unreadable_sql: str, expected: str = "a timestamp") -> str:
    """SQL: the reason an event time could not be read (NULL when it could), for engines that read it
    themselves (the backfills): ``missing_sql`` / ``unreadable_sql`` are true when it is absent / not a time."""
    return (f"CASE WHEN {missing_sql} THEN {_sql_str(missing_time_reason(ts_column))} "
            f"WHEN {unreadable_sql} THEN {_sql_str(unreadable_time_reason(ts_column, expected))} END")


def column_reason_sql(checks) -> str:
    """SQL: the reason of the first column (in the order given: schema order) whose value is present but
    not of its type; ``checks``: (column, dtype, SQL true when that is so). NULL when every value is."""
    if not checks:
        return "CAST(NULL AS VARCHAR)"
    return "CASE " + " ".join(f"WHEN {bad} THEN {_sql_str(column_reason(c, d))}" for c, d, bad in checks) + " END"


def row_reason_sql(ts_column: str, *, time_read_reason: str, ts_ms_sql: str, now_ms_sql: str,
                   max_future_ms: Optional[int], column_reason: str) -> str:
    """SQL (DuckDB and Flink alike): the dead-letter reason of a source row, NULL for an event. In order:
    the event time could not be read (``time_read_reason``: SQL giving that reason or NULL), it is
    outside the supported range, it is more than ``max_future_ms`` after ``now_ms_sql`` (the ingesting
    job's wall clock, epoch ms); then a value not of its column's type (``column_reason``: SQL giving the
    first such column's reason or NULL). ``ts_ms_sql``: the event time as epoch-ms BIGINT."""
    whens = [f"WHEN NOT {time_supported_sql(ts_ms_sql)} THEN {_sql_str(out_of_range_reason(ts_column))}"]
    if max_future_ms is not None:
        whens.append(f"WHEN {ts_ms_sql} > {now_ms_sql} + {_sql_int(max_future_ms)} "
                     f"THEN {_sql_str(future_reason(ts_column, max_future_ms))}")
    return f"COALESCE({time_read_reason}, CASE {' '.join(whens)} END, {column_reason})"


# -- integer results ----------------------------------------------------------------------------------
# An integer ``sum`` is int64 (SPEC §1 column types; pandas, Arrow and Feast hold nothing wider) and exact.
# Its inputs are int64, but the exact sum of a window can leave the int64 range: that value is never
# rounded, wrapped or served as another number. Offline (training sets, verify, logs) it is a one-line
# error naming the view and feature; online the value is REFUSED (null) with the same line in the
# response's refusals. Partial sums (tiles, prefixes) hold the exact integer at any size.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_OVERFLOW = "is outside int64"  # the marker of the offline error (DuckDB's error() text)


def int64_overflow_reason(view: str, feature: str) -> str:
    """Why an integer sum is not served: its exact value is outside int64."""
    return (f"feature view '{view}': feature '{feature}': the integer sum {INT64_OVERFLOW} "
            f"({INT64_MIN} to {INT64_MAX}); sum a float64 expression (e.g. 'CAST(x AS DOUBLE)') to get a float")


def time_value_reason(view: str, feature: str) -> str:
    """Why a timestamp feature's stored value is not served: it is outside years 1 to 9999 (stored by a
    version that did not check computed timestamps, :func:`time_value_checked_sql`)."""
    return (f"feature view '{view}': feature '{feature}': a stored timestamp outside years 1 to 9999 UTC; run "
            f"'featurestore materialize --view {view}' (it names the expression that computes it)")


def in_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def int64_sum_sql(total_sql: str, view: str, feature: str, refuse: bool = False) -> str:
    """SQL (DuckDB): an exact (HUGEINT) integer sum as BIGINT, or an error (:func:`int64_overflow_reason`)
    when it is outside int64. ``refuse``: null instead of the error (the caller reads
    :func:`int64_overflow_sql` beside it: verify compares such a cell with the served REFUSED)."""
    outside = (f"error({_sql_str(int64_overflow_reason(view, feature))})" if not refuse
               else "CAST(NULL AS BIGINT)")
    return (f"CASE WHEN {total_sql} IS NULL OR {total_sql} BETWEEN {INT64_MIN} AND {INT64_MAX} "
            f"THEN CAST({total_sql} AS BIGINT) ELSE {outside} END")


def int64_overflow_sql(total_sql: str) -> str:
    """SQL (DuckDB): true when an exact integer sum is outside int64 (its value is refused)."""
    return f"COALESCE({total_sql} NOT BETWEEN {INT64_MIN} AND {INT64_MAX}, false)"


def null_key_reason_sql(keys, views, quote) -> str:
    """SQL: the dead-letter reason of an event with a null join key, for the views keyed on ``keys``
    (one dead-letter row per distinct join-key set): ``null join key <first null key> (views a, b)``.
    ``quote`` quotes an identifier in the engine's dialect."""
    which = "CASE " + " ".join(f"WHEN {quote(k)} IS NULL THEN {_sql_str(k)}" for k in keys) + " END"
    return f"{_sql_str(NULL_KEY_PREFIX + ' ')} || {which} || {_sql_str(' (views ' + ', '.join(views) + ')')}"


def floor_div_sql(x_sql: str, divisor: int, int_div: str) -> str:
    """SQL floor division of a BIGINT by a positive constant: times before 1970 floor too. ``int_div`` is
    the engine's integer division operator (DuckDB ``//``, Flink ``/``); both truncate toward zero and
    their remainder has the dividend's sign."""
    d = int(divisor)
    if d == 1:
        return x_sql
    return f"({x_sql} {int_div} {d} - CASE WHEN MOD({x_sql}, {d}) < 0 THEN 1 ELSE 0 END)"
