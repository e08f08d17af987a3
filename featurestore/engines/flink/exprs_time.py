"""Timestamp arithmetic in the streaming job with DuckDB's semantics (each checked against DuckDB by
``tests/test_stream_funcs.py``): :class:`TimeRules` is mixed into
:class:`~featurestore.engines.flink.exprs.ExprCompiler`.

* ``ts + INTERVAL ...``, ``INTERVAL ... + ts``, ``ts - INTERVAL ...`` with an interval literal (``INTERVAL 1 MONTH``,
  ``INTERVAL '1 month 2 hours'``, ``INTERVAL '1.5 days'``): DuckDB reads the literal at plan time into its months,
  days and microseconds; the job's Java function ``fs_shift_us`` (``ShiftMicros.java``, java.time) shifts the
  timestamp's epoch microseconds in UTC on the proleptic Gregorian calendar in DuckDB's order (adding: months,
  clamped to the month's end, then days, then microseconds; subtracting: microseconds, months, days).
* ``date_trunc('part', ts)`` (``datetrunc``) with DuckDB's part names: ``fs_date_trunc`` (``DateTrunc.java``).
  ``era`` (always year 0) is refused.

A result outside years 1 to 9999 (which DuckDB computes, and the job cannot hold) is NULL, and ``raises`` holds on
that row (every job dead-letters the event for the view), as for an integer overflow.
"""

from __future__ import annotations

import re
from typing import Tuple

from featurestore import dtypes as t
from featurestore.engines.flink.exprs_funcs import PART_NAMES
from featurestore.engines.flink.sqltypes import (DATE_TRUNC_FUNCTION, NULL, SHIFT_US_FUNCTION, FExpr,
                                                 UnsupportedExpression)

# date_trunc's part for each canonical part name of date_part (PART_NAMES: DuckDB's names of them, all accepted)
_TRUNC_OF = {"year": "year", "quarter": "quarter", "month": "month", "week": "week", "yearweek": "week", "day": "day",
             "dayofweek": "day", "isodow": "day", "dayofyear": "day", "hour": "hour", "minute": "minute",
             "second": "second", "epoch": "second", "millisecond": "millisecond", "microsecond": "microsecond",
             "isoyear": "isoyear", "decade": "decade", "century": "century", "millennium": "millennium"}
TRUNC_PARTS = {name: _TRUNC_OF[part] for name, part in PART_NAMES.items() if part in _TRUNC_OF}
TIME_OUT_OF_RANGE = ("a timestamp computed outside years 1 to 9999 (DuckDB computes it, the Flink jobs cannot "
                     "hold it)")


def interval_parts(node) -> Tuple[int, int, int]:
    """(months, days, microseconds) of an interval literal, as DuckDB reads it."""
    import duckdb

    text = node.sql(dialect="duckdb")
    con = duckdb.connect()
    try:
        parts = con.execute("SELECT datepart(['year', 'month', 'day', 'hour', 'minute', 'microseconds'], "
                            f"{text})").fetchone()[0]
    except duckdb.Error as exc:
        raise UnsupportedExpression(f"{text} is not an interval literal ({str(exc).splitlines()[0]})") from None
    finally:
        con.close()
    months = parts["year"] * 12 + parts["month"]
    micros = (parts["hour"] * 60 + parts["minute"]) * 60_000_000 + parts["microseconds"]
    return months, parts["day"], micros


class TimeRules:
    """``ts +/- INTERVAL`` and ``date_trunc`` (module docstring); mixed into ``ExprCompiler`` (uses its ``node``,
    ``_epoch_us``, ``_fails_where`` and ``times_us``)."""

    def _timestamp_of_us(self, us: str) -> str:
        """A timestamp carried as the job carries it, from epoch microseconds (BIGINT SQL)."""
        from featurestore.engines.flink.ingest import TIME_VALUE_FUNCTION

        return us if self.times_us else f"{TIME_VALUE_FUNCTION}({us})"

    def _time_result(self, e: FExpr, us: str) -> FExpr:
        """The timestamp of ``us`` (NULL outside years 1 to 9999): that failure recorded where ``e`` is not NULL."""
        self._fails_where([f"({e.sql}) IS NOT NULL", f"({us}) IS NULL"], TIME_OUT_OF_RANGE)
        return FExpr(self._timestamp_of_us(us), t.TIMESTAMP)

    def _shift(self, n, sign: int) -> FExpr:
        """``ts + INTERVAL`` (``sign`` 1; either side) or ``ts - INTERVAL`` (-1)."""
        from sqlglot import exp

        ts_node, iv = (n.expression, n.this) if isinstance(n.this, exp.Interval) else (n.this, n.expression)
        if sign < 0 and isinstance(n.this, exp.Interval):
            raise UnsupportedExpression("an INTERVAL minus a timestamp is not a timestamp")
        e = self.node(ts_node)
        if e.dtype not in (t.TIMESTAMP, NULL):
            raise UnsupportedExpression(f"INTERVAL arithmetic needs a timestamp, got a {e.dtype}")
        months, days, micros = interval_parts(iv)
        if e.dtype == NULL:
            return FExpr(self._null_of(t.TIMESTAMP), t.TIMESTAMP)
        us = f"{SHIFT_US_FUNCTION}({self._epoch_us(e)}, {months}, {days}, CAST({micros} AS BIGINT), {sign})"
        return self._time_result(e, us)

    def _TimestampTrunc(self, n) -> FExpr:
        from sqlglot import exp

        unit = n.args.get("unit")
        name = unit.name.lower() if isinstance(unit, exp.Var) else ""
        # sqlglot reads date_trunc(s, ts) (a column s) as the unit 's' too: each needs a string literal as written
        written = re.findall(rf"date_?trunc\s*\(\s*'{re.escape(name)}'\s*,", self._text, flags=re.IGNORECASE)
        calls = [x for x in n.root().find_all(exp.TimestampTrunc) if x.args.get("unit") is not None
                 and x.args["unit"].name.lower() == name]
        if not name or len(written) < len(calls) or any(v is not None for k, v in n.args.items()
                                                        if k not in ("this", "unit")):
            raise UnsupportedExpression("date_trunc() needs the part as a string literal ('hour', 'day', ...)")
        part = TRUNC_PARTS.get(name)
        if part is None:
            raise UnsupportedExpression(f"date_trunc() of part '{name}' is not supported in the streaming job (parts: "
                                        + ", ".join(sorted(set(TRUNC_PARTS.values()))) + ")")
        e = self.node(n.this)
        if e.dtype == NULL:
            return FExpr(self._null_of(t.TIMESTAMP), t.TIMESTAMP)
        if e.dtype != t.TIMESTAMP:
            raise UnsupportedExpression(f"date_trunc() of a {e.dtype} is not supported in the streaming job "
                                        "(a timestamp only)")
        return self._time_result(e, f"{DATE_TRUNC_FUNCTION}('{part}', {self._epoch_us(e)})")


__all__ = ["TimeRules", "TRUNC_PARTS", "interval_parts", "TIME_OUT_OF_RANGE"]
