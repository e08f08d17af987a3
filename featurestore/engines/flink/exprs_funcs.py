"""The streaming job's functions beyond the basic whitelist, with DuckDB's semantics (each checked against DuckDB
by ``tests/test_stream_funcs.py``): :class:`FunctionRules` is mixed into
:class:`~featurestore.engines.flink.exprs.ExprCompiler`.

* ``least``/``greatest``: NULL arguments are skipped (NULL only when all are); the arguments' common type as
  DuckDB's (``least(int, bigint)`` is a BIGINT); floats in DuckDB's order (NaN above +inf) and, among equal
  values (``-0.0`` and ``0.0``), the first argument wins, as DuckDB's left-to-right fold keeps it.
* ``concat(...)`` skips NULLs (all NULL: ``''``), ``concat_ws(sep, ...)`` too (a NULL separator: NULL);
  ``a || b`` is NULL when either is. Integers and booleans are cast to text as DuckDB does (``'true'``);
  floats and timestamps stay refused (DuckDB and Java format them differently).
* Date parts of a timestamp (``year(ts)``, ``month``, ``day``, ``hour``, ``minute``, ``second``,
  ``millisecond``, ``microsecond``, ``dayofweek``/``weekday`` (Sunday = 0), ``isodow`` (Monday = 1),
  ``dayofyear``, ``week``/``weekofyear`` (ISO), ``isoyear``, ``yearweek``, ``quarter``, ``decade``,
  ``century``, ``millennium``, ``era``; ``date_part('part', ts)``, ``datepart``, ``EXTRACT(part FROM ts)``
  with DuckDB's part names) are BIGINTs of the timestamp's epoch microseconds, UTC, proleptic Gregorian
  calendar (DuckDB's), computed by the job's Java function ``fs_date_part`` (``DatePart.java``: java.time) in
  both Flink jobs: the streaming job passes ``fs_epoch_us`` of its TIMESTAMP, the Flink backfill the epoch
  microseconds it carries timestamps as. ``epoch_ms(ts)`` (rounded half away from zero, DuckDB's)
  and ``epoch_us(ts)`` are BIGINTs, ``epoch(ts)`` and ``date_part('epoch', ts)`` DOUBLE seconds (DuckDB's
  sum of milliseconds / 1e3 and microseconds / 1e6). ``epoch_ms(integer)`` (a timestamp from
  milliseconds) stays refused.
"""

from __future__ import annotations

from typing import List

from featurestore import dtypes as t
from featurestore.engines.flink.sqltypes import (DATE_PART_FUNCTION, EPOCH_US_FUNCTION, FLOATS, INTS, NULL, FExpr,
                                                 UnsupportedExpression, _cast_sql)

# microseconds from 0001-01-01 to 1970-01-01: epoch us + SHIFT_US >= 0 for every timestamp (years 1 to 9999)
SHIFT_US = 62_135_596_800_000_000


def date_part_sql(part: str, us: str) -> str:
    """Flink SQL of DuckDB's ``date_part(part, ts)`` (canonical ``part``, see :data:`PART_NAMES`) where ``us`` is
    the timestamp's epoch microseconds (BIGINT): a BIGINT, a DOUBLE for ``epoch``."""
    if part == "epoch_us":
        return us
    if part == "epoch_ms":  # DuckDB rounds half away from zero (not floor)
        return f"(CASE WHEN {us} >= 0 THEN ({us} + 500) / 1000 ELSE -((500 - {us}) / 1000) END)"
    if part == "epoch":
        # DuckDB (a TIMESTAMPTZ): the floored milliseconds / 1e3 + the microseconds below them / 1e6, in doubles
        floor_ms = f"(({us} + CAST({SHIFT_US} AS BIGINT)) / 1000 - CAST({SHIFT_US // 1000} AS BIGINT))"
        below = f"MOD({us} + CAST({SHIFT_US} AS BIGINT), 1000)"
        return f"(CAST({floor_ms} AS DOUBLE) / CAST(1000 AS DOUBLE) + CAST({below} AS DOUBLE) / CAST(1000000 AS DOUBLE))"
    return f"{DATE_PART_FUNCTION}('{part}', {us})"


# DuckDB's names of each part (date_part / EXTRACT, case-insensitive); a name DuckDB refuses is not here
PART_NAMES = {
    **dict.fromkeys(("year", "years", "y", "yr", "yrs"), "year"),
    **dict.fromkeys(("month", "months", "mon", "mons"), "month"),
    **dict.fromkeys(("day", "days", "d", "dayofmonth"), "day"),
    **dict.fromkeys(("hour", "hours", "h", "hr", "hrs"), "hour"),
    **dict.fromkeys(("minute", "minutes", "m", "min", "mins"), "minute"),
    **dict.fromkeys(("second", "seconds", "s", "sec", "secs"), "second"),
    **dict.fromkeys(("millisecond", "milliseconds", "ms", "msec", "msecs"), "millisecond"),
    **dict.fromkeys(("microsecond", "microseconds", "us", "usec", "usecs"), "microsecond"),
    **dict.fromkeys(("dayofweek", "dow", "weekday"), "dayofweek"),
    "isodow": "isodow",
    **dict.fromkeys(("dayofyear", "doy"), "dayofyear"),
    **dict.fromkeys(("week", "weeks", "w", "weekofyear"), "week"),
    **dict.fromkeys(("quarter", "quarters"), "quarter"),
    "isoyear": "isoyear", "yearweek": "yearweek", "era": "era", "epoch": "epoch",
    **dict.fromkeys(("decade", "decades", "dec"), "decade"),
    **dict.fromkeys(("century", "centuries", "c", "cent"), "century"),
    **dict.fromkeys(("millennium", "millennia", "mil", "millenium"), "millennium"),
}
# one-argument functions of a timestamp: their part
_PART_FUNCTIONS = {
    "year": "year", "month": "month", "day": "day", "dayofmonth": "day", "hour": "hour", "minute": "minute",
    "second": "second", "millisecond": "millisecond", "microsecond": "microsecond", "dayofweek": "dayofweek",
    "weekday": "dayofweek", "isodow": "isodow", "dayofyear": "dayofyear", "week": "week", "weekofyear": "week",
    "quarter": "quarter", "isoyear": "isoyear", "yearweek": "yearweek", "decade": "decade", "century": "century",
    "millennium": "millennium", "era": "era", "epoch": "epoch", "epoch_ms": "epoch_ms", "epoch_us": "epoch_us",
}
_DATE_PART_FUNCTIONS = ("date_part", "datepart")
# sqlglot's node for each function it parses into its own class
_NODE_PARTS = {"Year": "year", "Month": "month", "Day": "day", "DayOfMonth": "day", "Hour": "hour", "Minute": "minute",
               "Second": "second", "DayOfWeek": "dayofweek", "DayOfWeekIso": "isodow", "DayOfYear": "dayofyear",
               "Week": "week", "WeekOfYear": "week", "Quarter": "quarter", "TimeToUnix": "epoch"}


class FunctionRules:
    """``least``/``greatest``, ``concat``/``concat_ws``/``||`` and the date parts (module docstring); mixed into
    ``ExprCompiler`` (uses its ``node``, ``_comparable``, ``_key``, ``_branch`` and ``times_us``)."""

    # least / greatest ---------------------------------------------------------------------------------
    def _extreme(self, n, name: str, op: str) -> FExpr:
        from featurestore.engines.flink.exprs_logic import _cmp, _may_be_nan

        nodes = [n.this, *n.expressions]
        items = [self.node(x) for x in nodes]
        kind = self._comparable(items, f"{name}()")
        kept = [(e, x) for e, x in zip(items, nodes) if e.dtype != NULL]  # a NULL literal is skipped, like any NULL
        if not kept:
            return FExpr("NULL", NULL)
        keys = [self._key(e, kind) for e, _ in kept]
        nan = [kind in FLOATS and _may_be_nan(x) for _, x in kept]
        whens = []
        for i, (e, _) in enumerate(kept):
            # the first non-null argument beyond which no later one is strictly smaller (least)
            conds = [f"{keys[i]} IS NOT NULL"]
            conds += [f"({keys[j]} IS NULL OR {_cmp(keys[i], op, keys[j], nan[i], nan[j])})" for j in range(i)]
            conds += [f"({keys[j]} IS NULL OR NOT {_cmp(keys[j], op, keys[i], nan[j], nan[i])})"
                      for j in range(i + 1, len(kept))]
            whens.append(f"WHEN {' AND '.join(conds)} THEN {self._branch(e, kind)}")
        return FExpr(f"(CASE {' '.join(whens)} END)", kind)

    def _Least(self, n) -> FExpr:
        return self._extreme(n, "least", "<")

    def _Greatest(self, n) -> FExpr:
        return self._extreme(n, "greatest", ">")

    # text ---------------------------------------------------------------------------------------------
    def _as_text(self, node, what: str) -> FExpr:
        """An argument of ``||``/``concat`` as text (DuckDB casts integers and booleans to VARCHAR)."""
        e = self.node(node)
        if e.dtype not in (t.STRING, NULL, t.BOOL, *INTS):
            raise UnsupportedExpression(f"{what} of a {e.dtype} is not supported in the streaming job (DuckDB and Flink "
                                        "format it differently as text)")
        return FExpr(_cast_sql(e, t.STRING), t.STRING if e.dtype != NULL else NULL)

    def _DPipe(self, n) -> FExpr:
        a, b = self._as_text(n.this, "'||'"), self._as_text(n.expression, "'||'")
        return FExpr(f"({a.sql} || {b.sql})", t.STRING)  # NULL when either is (DuckDB)

    def _Concat(self, n) -> FExpr:
        parts = [self._as_text(x, "concat()") for x in n.expressions]
        kept = [f"COALESCE({p.sql}, '')" for p in parts if p.dtype != NULL]  # DuckDB skips NULLs
        return FExpr(f"CONCAT({', '.join(kept)})" if kept else "''", t.STRING)

    def _ConcatWs(self, n) -> FExpr:
        sep, *args = [self._as_text(x, "concat_ws()") for x in n.expressions]
        if not args:
            raise UnsupportedExpression("concat_ws() needs a separator and at least one value")
        if sep.dtype == NULL:
            return FExpr("CAST(NULL AS STRING)", t.STRING)
        kept = [p.sql for p in args if p.dtype != NULL]
        if not kept:
            return FExpr(f"(CASE WHEN {sep.sql} IS NOT NULL THEN '' END)", t.STRING)
        # DuckDB skips NULL values, and so does Flink's CONCAT_WS (NULL when the separator is)
        return FExpr(f"CONCAT_WS({sep.sql}, {', '.join(kept)})", t.STRING)

    # date parts ---------------------------------------------------------------------------------------
    def _epoch_us(self, e: FExpr) -> str:
        """The epoch microseconds (BIGINT) of timestamp ``e``: how the Flink backfill carries it, or
        ``fs_epoch_us`` of the streaming job's TIMESTAMP (registered by the job when its SQL uses it)."""
        return e.sql if self.times_us else f"{EPOCH_US_FUNCTION}({e.sql})"

    def _date_part(self, part: str, node, fn: str) -> FExpr:
        e = self.node(node)
        dtype = t.FLOAT64 if part == "epoch" else t.INT64
        if e.dtype == NULL:
            return FExpr(f"CAST(NULL AS {'DOUBLE' if dtype == t.FLOAT64 else 'BIGINT'})", dtype)
        if e.dtype != t.TIMESTAMP:
            raise UnsupportedExpression(f"{fn}() of a {e.dtype} is not supported in the streaming job (a timestamp only)")
        return FExpr(date_part_sql(part, self._epoch_us(e)), dtype)

    def _part_function(self, n) -> FExpr:
        fn = _written_name(n, getattr(self, "_text", ""))
        part = _NODE_PARTS.get(type(n).__name__)
        if part is None or n.expressions or any(v is not None for k, v in n.args.items() if k != "this"):
            return self._refuse(n)
        return self._date_part(part, n.this, fn)

    _Year = _Month = _Day = _DayOfMonth = _Hour = _Minute = _Second = _part_function
    _DayOfWeek = _DayOfWeekIso = _DayOfYear = _Week = _WeekOfYear = _Quarter = _TimeToUnix = _part_function

    def _UnixToTime(self, n) -> FExpr:
        """sqlglot's reading of ``epoch_ms(x)``: of a timestamp, its epoch milliseconds."""
        from sqlglot import exp

        scale = n.args.get("scale")
        name = _written_name(n, getattr(self, "_text", ""))
        if name.lower() != "epoch_ms" or not (isinstance(scale, exp.Literal) and str(scale.this) == "3") \
                or any(v is not None for k, v in n.args.items() if k not in ("this", "scale")):
            return self._refuse(n)
        e = self.node(n.this)
        if e.dtype not in (t.TIMESTAMP, NULL):
            raise UnsupportedExpression(f"epoch_ms() of a {e.dtype} (a timestamp from milliseconds) is not supported in "
                                        "the streaming job")
        return self._date_part("epoch_ms", n.this, "epoch_ms")

    def _Extract(self, n) -> FExpr:
        name = n.this.name  # sqlglot spells some DuckDB names its way ('dow': DAYOFWEEK), same meaning
        return self._date_part(self._part_name(name, "EXTRACT"), n.expression, "EXTRACT")

    def _part_name(self, name: str, fn: str) -> str:
        part = PART_NAMES.get(name.lower())
        if part is None:
            raise UnsupportedExpression(f"{fn}() of part '{name.lower()}' is not supported in the streaming job (parts: "
                                        + ", ".join(sorted(set(PART_NAMES.values()))) + ")")
        return part

    def _Anonymous(self, n) -> FExpr:
        from sqlglot import exp

        name = n.name.lower()
        args: List = list(n.expressions)
        if name in _PART_FUNCTIONS and len(args) == 1:
            return self._date_part(_PART_FUNCTIONS[name], args[0], name)
        if name in _DATE_PART_FUNCTIONS and len(args) == 2:
            if not (isinstance(args[0], exp.Literal) and args[0].is_string):
                raise UnsupportedExpression(f"{name}() needs the part as a string literal ('year', 'hour', ...)")
            return self._date_part(self._part_name(args[0].this, name), args[1], name)
        return self._refuse(n)


def _written_name(n, text: str) -> str:
    meta = n.meta or {}
    written = text[meta["start"]: meta["end"] + 1] if "start" in meta and "end" in meta else ""
    return written or (n.name if n.name else n.sql_name().lower())


__all__ = ["FunctionRules", "date_part_sql", "PART_NAMES", "SHIFT_US"]
