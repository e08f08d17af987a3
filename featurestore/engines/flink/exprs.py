"""The streaming job's expressions: DuckDB-dialect SQL of the definitions rendered as Flink SQL with
DuckDB's semantics, and at plan time what cannot stream.

* Filters, projections and feature inputs are DuckDB-dialect SQL in the definitions.
  :class:`ExprCompiler` parses them with sqlglot (dialect ``duckdb``), accepts a whitelist of node types
  and renders Flink SQL with DuckDB's semantics (each rule below is checked against DuckDB by
  ``tests/test_stream_exprs.py``). Anything else raises :class:`UnsupportedExpression`; :func:`check_repo`
  turns those into :class:`~featurestore.errors.Problem` s naming file, line, view and feature, and
  :func:`compile_view_exprs` raises :class:`StreamCompileError` when the job is built.

  DuckDB rules rendered explicitly (Flink would differ otherwise):

  - ``a / b`` is a floating division for every numeric type (DuckDB: INTEGER / INTEGER = DOUBLE);
    FLOAT stays FLOAT. ``x / 0`` follows IEEE (inf, NaN) in both.
  - ``a // b`` on integers truncates toward zero; with a float operand it is ``/`` (DuckDB). ``a % b``
    on integers has the sign of ``a``. A zero divisor is NULL (DuckDB raises an error and the backfill
    fails), and ``raises`` holds there.
  - Arithmetic with a FLOAT/DOUBLE result casts both operands to that type first (DuckDB: FLOAT op
    DECIMAL = FLOAT; Flink would widen to DOUBLE).
  - A ``CAST`` whose value is out of the target's range (where DuckDB fails) is NULL, a double beyond float32
    too (Java's cast gives +-inf); ``ExprCompiler.raises`` holds the Flink SQL true on those rows (the Flink
    backfill then fails, like DuckDB's; ``TRY_CAST`` records none), as lazily as DuckDB evaluates: only where
    its CASE/IF branch is taken, a later COALESCE argument where the earlier ones are NULL.
  - ``CAST(float AS INTEGER/BIGINT)`` rounds half to even (DuckDB), not toward zero (Flink);
    ``CAST(decimal AS int)`` rounds half away from zero; ``CAST(bool AS VARCHAR)`` is ``'true'``/``'false'``;
    ``CAST(int AS BOOLEAN)`` is ``<> 0``; ``CAST(text AS BOOLEAN)`` reads DuckDB's words only (else NULL,
    ``raises`` holds); ``CAST(text AS INTEGER/BIGINT/DOUBLE/FLOAT)`` is DuckDB's reader (``NumberText.java``:
    spaces, ``1_000``, ``0x1F``, ``2.5`` to 3, ``inf``, ...; else NULL, ``raises`` holds; a float from a text
    with ``_`` and over 19 digits, which DuckDB misreads, too, even under ``TRY_CAST``). Casts from floats to
    strings format differently in the two engines and are rejected.
  - Timestamps compare to the microsecond: the stream carries them as TIMESTAMP(3) (event time) / TIMESTAMP(6),
    the Flink backfill (``times_us``) as BIGINT epoch microseconds; a ``TIMESTAMP '...'`` literal is read by
    DuckDB itself at plan time (time zone UTC, as the backfill). ``CAST`` between timestamps and other types,
    and strings compared with timestamps, are rejected.
  - ``length(s)`` counts code points (Flink's CHAR_LENGTH counts UTF-16 units).
  - ``round(double, n)`` is DuckDB's ``round(x * 10^n) / 10^n``; see :meth:`ExprCompiler._round`.
  - ``least``/``greatest``, ``concat``/``concat_ws``/``||`` and the date parts of timestamps (``year(ts)``,
    ``date_part``, ``EXTRACT``, ``epoch_ms``, ...): :mod:`~featurestore.engines.flink.exprs_funcs`; ``ts +/- INTERVAL``
    and ``date_trunc``: :mod:`~featurestore.engines.flink.exprs_time`.
  - Comparisons, ``IN``, ``BETWEEN``, ``CASE``/``IF``/``COALESCE`` and ``ILIKE``: :mod:`~featurestore.engines.flink.exprs_logic`
    (floats in DuckDB's order: NaN above +inf, -0.0 equal to 0.0).

  - Integer ``+ - *``, unary minus and ``abs`` are NULL where they overflow (``fs_add_exact`` ...:
    ``Math.*Exact``; Flink's would wrap), and ``raises`` holds there (DuckDB fails), as for a CAST.

  Where ``raises`` holds on a stored event (in the filter, a projection or a feature input: ``ViewExprs.raises``)
  every job (the stream: ``tables.view_failure_sql``; both backfills) makes the event a dead letter of the view,
  its reason naming the part (:func:`failure_label`): the NULL is never stored or applied online.

  Known differences that remain (documented in docs/streaming.md): ``lower``/``upper`` of a few special letters
  (``ß``) differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.engines.flink.exprs_funcs import FunctionRules
from featurestore.engines.flink.exprs_logic import LogicRules, _cmp, _is_nan, _may_be_nan, duck_sql  # noqa: F401 (re-exported)
from featurestore.engines.flink.exprs_time import TimeRules
from featurestore.engines.flink.sqltypes import (  # noqa: F401 (re-exported: the expression vocabulary)
    DECIMAL, EPOCH_US_FUNCTION, EXACT_FUNCTIONS, FLINK_TYPES, FLOATS, INTS, NULL, SUPPORTED_TEXT, TS_MS, FExpr, StreamCompileError,
    UnsupportedExpression, _arith_type, _cast_sql, _common_type, _numeric, _TYPE_NAMES, _typed_null, lit, qi)
from featurestore.errors import Problem

# -- the expression compiler ----------------------------------------------------------------------------
class ExprCompiler(LogicRules, FunctionRules, TimeRules):
    """DuckDB-dialect SQL over named, typed columns -> Flink SQL (see the module docstring; comparisons and
    branches: :mod:`~featurestore.engines.flink.exprs_logic`, functions: :mod:`~featurestore.engines.flink.exprs_funcs`)."""

    def __init__(self, columns: Mapping[str, FExpr], times_us: bool = False):
        # how a timestamp is carried: Flink TIMESTAMP(p) (the streaming job: TIMESTAMP(3) event time, TIMESTAMP(6)
        # values), or ``times_us`` BIGINT epoch microseconds (the Flink backfill's timestamp values)
        self.times_us = times_us
        self.columns: Dict[str, FExpr] = {}
        for name, e in columns.items():
            self.columns.setdefault(name.lower(), e)  # DuckDB identifiers are case-insensitive

    def compile(self, text: str) -> FExpr:
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        try:
            tree = sqlglot.parse_one(text, read="duckdb")
        except (ParseError, TokenError) as exc:
            raise UnsupportedExpression(f"cannot parse it ({str(exc).splitlines()[0]})") from None
        self._text = text
        self.raises = []  # Flink SQL true on a row where DuckDB's evaluation fails (the value here is NULL)
        self.raise_reasons: List[str] = []  # why, one per raises entry
        # DuckDB SQL true where DuckDB's evaluation succeeds with a wrong value the Flink jobs flag instead (a text
        # it misreads: TEXT_MISREAD), so the DuckDB backfill dead-letters the same rows (in a CASE/IF branch or a
        # later COALESCE argument only where DuckDB evaluates it: the branch's guards carried in DuckDB SQL)
        self.duck_checks: List[str] = []
        self._guards: List[str] = []  # where the node being compiled is evaluated (CASE/IF/COALESCE branches)
        self._duck_guards: List[str] = []  # the same guards in DuckDB SQL (over the definition's own text)
        return self.node(tree)

    def _fails_where(self, conditions: Sequence[str], reason: str) -> None:
        """Record that DuckDB's evaluation fails where every one of ``conditions`` (Flink SQL) holds, on the rows
        it evaluates the part being compiled on (its guards)."""
        self.raises.append("(" + " AND ".join([*self._guards, *conditions]) + ")")
        self.raise_reasons.append(reason)

    def _under(self, guards: Sequence[str], compile_, duck_guards: Sequence[str]):
        """``compile_()`` for a part DuckDB evaluates only where every one of ``guards`` (Flink SQL) is TRUE:
        a CASE/IF branch or a later COALESCE argument. A CAST in it fails DuckDB only on those rows.
        ``duck_guards``: the same conditions in DuckDB SQL (a :attr:`duck_checks` entry holds only there)."""
        before, duck_before = self._guards, self._duck_guards
        self._guards, self._duck_guards = before + list(guards), duck_before + list(duck_guards)
        try:
            return compile_()
        finally:
            self._guards, self._duck_guards = before, duck_before

    # dispatch ----------------------------------------------------------------------------------------
    def node(self, n) -> FExpr:
        from sqlglot import exp

        handler = getattr(self, "_" + type(n).__name__, None) if isinstance(n, exp.Expression) else None
        if handler is None:
            self._refuse(n)
        return handler(n)

    def _refuse(self, n):
        raise UnsupportedExpression(_describe(n, getattr(self, "_text", "")) + " is not supported in the streaming job ("
                                    + SUPPORTED_TEXT + ")")

    def _Paren(self, n) -> FExpr:
        e = self.node(n.this)
        return FExpr(f"({e.sql})", e.dtype)

    def _Column(self, n) -> FExpr:
        if n.table:
            raise UnsupportedExpression(f"qualified column {n.sql(dialect='duckdb')} is not supported")
        name = n.name
        col = self.columns.get(name.lower())
        if col is None:
            raise UnsupportedExpression(f"unknown column '{name}'")
        return col

    def _Literal(self, n) -> FExpr:
        if n.is_string:
            return FExpr(lit(n.this), t.STRING)
        text = str(n.this)
        if re.fullmatch(r"\d+", text):
            v = int(text)
            if v < 2**31:
                return FExpr(text, t.INT32)
            if v < 2**63:
                return FExpr(f"CAST({text} AS BIGINT)", t.INT64)
            raise UnsupportedExpression(f"integer literal {text} does not fit a BIGINT")
        if re.fullmatch(r"(\d+\.?\d*|\.\d+)[eE][+-]?\d+", text):
            return FExpr(f"CAST({text} AS DOUBLE)", t.FLOAT64)
        if re.fullmatch(r"\d+\.\d*|\.\d+", text):
            return FExpr(text if not text.startswith(".") else "0" + text, DECIMAL)
        raise UnsupportedExpression(f"number literal {text} is not supported")

    def _Boolean(self, n) -> FExpr:
        return FExpr("TRUE" if n.this else "FALSE", t.BOOL)

    def _Null(self, n) -> FExpr:
        return FExpr("NULL", NULL)

    def _Neg(self, n) -> FExpr:
        from sqlglot import exp

        e = self._num(n.this, "unary minus")
        if e.dtype == NULL:
            return e
        if e.dtype in INTS and not isinstance(n.this, exp.Literal):  # -(minimum) overflows (DuckDB fails)
            return self._exact("-", FExpr("0", t.INT32), e, e.dtype)
        return FExpr(f"(-({e.sql}))", e.dtype)

    # arithmetic --------------------------------------------------------------------------------------
    def _num(self, child, what: str) -> FExpr:
        e = self.node(child)
        if not _numeric(e):
            raise UnsupportedExpression(f"{what} needs numbers, got a {e.dtype}")
        return e

    def _binary(self, n, op: str) -> FExpr:
        a, b = self._num(n.this, f"'{op}'"), self._num(n.expression, f"'{op}'")
        rt = _arith_type(a.dtype, b.dtype)
        if rt in FLOATS:
            return FExpr(f"({_cast_sql(a, rt)} {op} {_cast_sql(b, rt)})", rt)
        if rt in INTS:
            return self._exact(op, a, b, rt)
        return FExpr(f"({a.sql} {op} {b.sql})", rt)

    def _exact(self, op: str, a: FExpr, b: FExpr, rt: str) -> FExpr:
        """Integer ``a op b`` of type ``rt``: NULL where it overflows (Flink's would wrap), and DuckDB's failure
        recorded there (the Flink backfill then fails as DuckDB's does)."""
        x, y = _cast_sql(a, rt), _cast_sql(b, rt)
        sql = f"{EXACT_FUNCTIONS[op]}({x}, {y})"
        if NULL not in (a.dtype, b.dtype):
            self._fails_where([f"({x}) IS NOT NULL", f"({y}) IS NOT NULL", f"({sql}) IS NULL"], OVERFLOW)
        return FExpr(sql, rt)

    def _Add(self, n) -> FExpr:
        from sqlglot import exp

        if isinstance(n.this, exp.Interval) or isinstance(n.expression, exp.Interval):
            return self._shift(n, 1)
        return self._binary(n, "+")

    def _Sub(self, n) -> FExpr:
        from sqlglot import exp

        if isinstance(n.this, exp.Interval) or isinstance(n.expression, exp.Interval):
            return self._shift(n, -1)
        return self._binary(n, "-")

    def _Mul(self, n) -> FExpr:
        return self._binary(n, "*")

    def _Div(self, n) -> FExpr:
        a, b = self._num(n.this, "'/'"), self._num(n.expression, "'/'")
        rt = t.FLOAT32 if t.FLOAT32 in (a.dtype, b.dtype) and t.FLOAT64 not in (a.dtype, b.dtype) \
            and DECIMAL not in (a.dtype, b.dtype) else t.FLOAT64
        if t.FLOAT32 in (a.dtype, b.dtype) and DECIMAL in (a.dtype, b.dtype):
            rt = t.FLOAT32
        return FExpr(f"({_cast_sql(a, rt)} / {_cast_sql(b, rt)})", rt)

    def _IntDiv(self, n) -> FExpr:
        a, b = self._num(n.this, "'//'"), self._num(n.expression, "'//'")
        if DECIMAL in (a.dtype, b.dtype):
            raise UnsupportedExpression("'//' with a decimal literal is not supported; use an integer or a float")
        if a.dtype in FLOATS or b.dtype in FLOATS:
            # DuckDB: '//' with a float operand is a division, but a zero divisor fails (here: NULL).
            d = self._Div(n)
            rt = d.dtype
            x, y = _cast_sql(a, rt), _cast_sql(b, rt)
            self._fails_on_zero(x, y)
            return FExpr(f"({x} / NULLIF({y}, 0))", rt)
        rt = _arith_type(a.dtype, b.dtype)
        if NULL in (a.dtype, b.dtype):
            return FExpr(_typed_null(rt), rt)
        self._fails_on_zero(a.sql, b.sql)
        # x // -1 is -x: NULL where that overflows (the minimum; DuckDB fails), where Java's '/' would wrap
        negated = self._under([f"({b.sql}) = -1"], lambda: self._exact("-", FExpr("0", t.INT32), a, rt),
                              [f"({duck_sql(n.expression)}) = -1"])
        return FExpr(f"(CASE WHEN {b.sql} = -1 THEN {negated.sql} ELSE {_cast_sql(a, rt)} / NULLIF({b.sql}, 0) END)",
                     rt)

    def _Mod(self, n) -> FExpr:
        a, b = self._num(n.this, "'%'"), self._num(n.expression, "'%'")
        if a.dtype not in (*INTS, NULL) or b.dtype not in (*INTS, NULL):
            raise UnsupportedExpression("'%' is supported on integers only in the streaming job")
        rt = _arith_type(a.dtype, b.dtype)
        if NULL in (a.dtype, b.dtype):
            return FExpr(_typed_null(rt), rt)
        self._fails_on_zero(a.sql, b.sql)
        # the minimum % -1 fails DuckDB (its division overflows); Java's is 0
        lowest = "CAST(-9223372036854775808 AS BIGINT)" if rt == t.INT64 else "-2147483648"
        overflow = [f"({b.sql}) = -1", f"({a.sql}) = {lowest}"]
        self._fails_where(overflow, OVERFLOW)
        return FExpr(f"(CASE WHEN {' AND '.join(overflow)} THEN {_typed_null(rt)} ELSE MOD({a.sql}, NULLIF({b.sql}, 0)) "
                     "END)", rt)

    def _fails_on_zero(self, dividend: str, divisor: str) -> None:
        """DuckDB's '//' and '%' fail on a zero divisor (a NULL dividend gives NULL); the value here is NULL."""
        self._fails_where([f"({dividend}) IS NOT NULL", f"({divisor}) = 0"], DIVISION_BY_ZERO)

    # typed NULLs and timestamp literals ---------------------------------------------------------------
    def _null_of(self, kind: str) -> str:
        if kind == t.TIMESTAMP:
            return "CAST(NULL AS BIGINT)" if self.times_us else "CAST(NULL AS TIMESTAMP(6))"
        return _typed_null(kind)

    def _time_literal(self, n) -> FExpr:
        """``TIMESTAMP '...'`` / ``CAST('...' AS TIMESTAMPTZ)``: the instant DuckDB reads (time zone UTC, as the
        backfill's connection), as a Flink TIMESTAMP(6) literal or epoch microseconds."""
        import duckdb

        from featurestore import semantics

        text = n.sql(dialect="duckdb")
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            us = con.execute(f"SELECT epoch_us(CAST({text} AS TIMESTAMPTZ))").fetchone()[0]
        except duckdb.Error as exc:
            raise UnsupportedExpression(f"{text} is not a timestamp ({str(exc).splitlines()[0]})") from None
        finally:
            con.close()
        if us is None or not semantics.time_value_supported(us):
            raise UnsupportedExpression(f"{text} is outside years 1 to 9999")
        if self.times_us:
            return FExpr(f"CAST({us} AS BIGINT)", t.TIMESTAMP)
        import datetime

        d = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
        return FExpr(f"TIMESTAMP '{d.year:04d}-{d:%m-%d %H:%M:%S}.{d.microsecond:06d}'", t.TIMESTAMP)

    # functions ---------------------------------------------------------------------------------------
    def _string_arg(self, n, fn: str) -> FExpr:
        if n.expressions:
            raise UnsupportedExpression(f"{fn}() takes one argument")
        e = self.node(n.this)
        if e.dtype not in (t.STRING, NULL):
            raise UnsupportedExpression(f"{fn}() needs a string, got a {e.dtype}")
        return FExpr(_cast_sql(e, t.STRING), t.STRING)

    def _Lower(self, n) -> FExpr:
        return FExpr(f"LOWER({self._string_arg(n, 'lower').sql})", t.STRING)

    def _Upper(self, n) -> FExpr:
        return FExpr(f"UPPER({self._string_arg(n, 'upper').sql})", t.STRING)

    def _Length(self, n) -> FExpr:
        s = self._string_arg(n, "length").sql
        # Code points (DuckDB), not UTF-16 units: a supplementary character counts once.
        return FExpr(f"CAST(CHAR_LENGTH(REGEXP_REPLACE({s}, '[\\x{{10000}}-\\x{{10FFFF}}]', '_')) AS BIGINT)", t.INT64)

    def _Abs(self, n) -> FExpr:
        e = self._num(n.this, "abs()")
        if e.dtype in INTS:  # abs(minimum) overflows (DuckDB fails)
            negated = self._exact("-", FExpr("0", t.INT32), e, e.dtype)
            return FExpr(f"(CASE WHEN {e.sql} < 0 THEN {negated.sql} ELSE {e.sql} END)", e.dtype)
        return FExpr(f"ABS({e.sql})", e.dtype)

    def _Round(self, n) -> FExpr:
        from sqlglot import exp

        e = self._num(n.this, "round()")
        digits = 0
        d = n.args.get("decimals")
        if d is not None:
            neg = isinstance(d, exp.Neg)
            inner = d.this if neg else d
            if not (isinstance(inner, exp.Literal) and not inner.is_string and re.fullmatch(r"\d+", str(inner.this))):
                raise UnsupportedExpression("round(x, n) needs an integer literal n")
            digits = -int(inner.this) if neg else int(inner.this)
        if n.args.get("truncate") is not None:
            raise UnsupportedExpression("round() with a third argument is not supported")
        return self._round(e, digits)

    def _round(self, e: FExpr, digits: int) -> FExpr:
        if e.dtype == NULL:
            return e
        if e.dtype in INTS:
            if digits >= 0:
                return e
            return FExpr(f"CAST(ROUND({e.sql}, {digits}) AS {FLINK_TYPES[e.dtype]})", e.dtype)
        if e.dtype == DECIMAL:
            return FExpr(f"ROUND({e.sql}, {digits})", DECIMAL)
        # DuckDB on floats: nearest integer of x * 10^n (half away from zero), divided by 10^n.
        # Flink's ROUND(double, 0) rounds the shortest decimal of its input half-up: the same integer.
        ft = FLINK_TYPES[e.dtype]
        x = f"CAST({e.sql} AS DOUBLE)"
        if digits == 0:
            scaled, body = x, f"ROUND({x}, 0)"
        elif digits > 0:
            m = f"CAST(1e{digits} AS DOUBLE)"
            scaled = f"({x} * {m})"
            body = f"(ROUND({scaled}, 0) / {m})"
        else:
            m = f"CAST(1e{-digits} AS DOUBLE)"
            scaled = f"({x} / {m})"
            body = f"(ROUND({scaled}, 0) * {m})"
        # A negative input that rounds to zero is -0.0 in DuckDB (std::round); Flink's BigDecimal has no -0.
        negative = f"({x} < 0 OR ({x} = 0 AND CAST(1 AS DOUBLE) / {x} < 0))"
        # NaN, infinities, and a finite x whose x * 10^n is not finite (1.7e308 at 1 digit): DuckDB returns the
        # input when the rounded value is not finite; Flink's ROUND would throw (BigDecimal of "Infinity").
        # ``NOT (v - v = 0)`` is true exactly for those (Calcite keeps it: it becomes ``v - v <> 0``; checked
        # on values it cannot fold by tests/test_flink_math.py).
        body = (f"(CASE WHEN NOT ({scaled} - {scaled} = 0) THEN {x} WHEN NOT ({body} - {body} = 0) THEN {x} "
                f"WHEN {body} = 0 AND {negative} THEN {body} * CAST(-1 AS DOUBLE) ELSE {body} END)")
        return FExpr(f"CAST({body} AS {ft})", e.dtype)

    def _Cast(self, n) -> FExpr:
        from sqlglot import exp

        to = n.args["to"]
        name = to.this.name if hasattr(to.this, "name") else str(to.this)
        if str(name).upper() in _TIME_TYPE_NAMES and not to.expressions:
            if isinstance(n.this, exp.Literal) and n.this.is_string:
                return self._time_literal(n)
            e = self.node(n.this)
            if e.dtype in (t.TIMESTAMP, NULL):  # TIMESTAMPTZ <-> TIMESTAMP at time zone UTC: the same instant
                return e if e.dtype == t.TIMESTAMP else FExpr(self._null_of(t.TIMESTAMP), t.TIMESTAMP)
            raise UnsupportedExpression(f"CAST of a {e.dtype} to a timestamp is not supported in the streaming job "
                                        "(a timestamp column, or a literal: TIMESTAMP '2026-03-01 12:00:00')")
        e = self.node(n.this)
        target = _TYPE_NAMES.get(str(name).upper())
        if target is None or to.expressions:
            raise UnsupportedExpression(f"CAST to {to.sql(dialect='duckdb')} is not supported in the streaming job "
                                        "(use VARCHAR, INTEGER, BIGINT, FLOAT, DOUBLE, BOOLEAN or TIMESTAMP)")
        sql = _cast_sql(e, target)
        if e.dtype == t.STRING and target in FLOATS:  # DuckDB misreads these (NumberText.unsupported): fail loudly
            self._fails_where([f"POSITION('_' IN {e.sql}) > 0",
                               f"CHAR_LENGTH(REGEXP_REPLACE({e.sql}, '[^0-9]', '')) > 19"], TEXT_MISREAD)
            text = f"CAST(({duck_sql(n.this)}) AS VARCHAR)"
            check = f"(position('_' IN {text}) > 0 AND length(regexp_replace({text}, '[^0-9]', '', 'g')) > 19)"
            for guard in reversed(self._duck_guards):  # nested CASEs: DuckDB evaluates each only where it holds
                check = f"(CASE WHEN {guard} THEN {check} END)"
            self.duck_checks.append(check)
        if not isinstance(n, exp.TryCast) and e.dtype not in (target, NULL, t.BOOL) and (
                target in INTS or (target == t.FLOAT32 and e.dtype == t.FLOAT64) or e.dtype == t.STRING):
            # where DuckDB's CAST fails on a value (out of range, NaN/inf to an integer, a text that is no boolean)
            # this one is NULL; on the rows DuckDB evaluates it on (a CASE branch never taken fails nothing)
            self._fails_where([f"({e.sql}) IS NOT NULL", f"({sql}) IS NULL"],
                              CAST_TEXT_FAILS if e.dtype == t.STRING else CAST_FAILS)
        return FExpr(sql, target)

    def _TryCast(self, n) -> FExpr:
        return self._Cast(n)



def _describe(n, text: str = "") -> str:
    """How the user wrote the unsupported node: a function by its name as written."""
    from sqlglot import exp

    if isinstance(n, exp.Func):
        meta = n.meta or {}
        written = text[meta["start"]: meta["end"] + 1] if "start" in meta and "end" in meta else ""
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", written or ""):
            return f"function {written}()"
        return f"function {n.name if isinstance(n, exp.Anonymous) else n.sql_name().lower()}()"
    if isinstance(n, (exp.Select, exp.Subquery)):
        return "a subquery"
    return f"{type(n).__name__.upper()} ({n.sql(dialect='duckdb')})"


CAST_FAILS = "a CAST of a value out of its type's range (DuckDB's CAST fails on it; TRY_CAST gives NULL)"
CAST_TEXT_FAILS = "a CAST of a text DuckDB cannot read as that type (its CAST fails on it; TRY_CAST gives NULL)"
TEXT_MISREAD = ("a CAST of a text with '_' and over 19 digits to a float (DuckDB reads a wrong number from it; "
                "remove the underscores)")
DIVISION_BY_ZERO = "a division by zero in '//' or '%' (DuckDB fails on it; write NULLIF(divisor, 0))"
OVERFLOW = "an integer overflow (DuckDB's arithmetic fails on it; compute in a wider type: CAST to BIGINT or DOUBLE)"


# -- per view ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewExprs:
    """Every expression of one view rendered against the typed source view."""

    filter: Optional[str]  # Flink boolean SQL (rows where it IS TRUE are kept), or None
    projections: Tuple[Tuple[str, str], ...]  # (name, Flink SQL already CAST to the projection's type)
    inputs: Tuple[Tuple[str, str], ...]  # online input columns (featurestore.online.input_columns order):
    # (duckdb expr, Flink SQL of the value as stored online: CAST to its type; timestamps as epoch us)
    # (part: why, Flink SQL true on a row where DuckDB's evaluation of the filter, a projection or a feature input
    # fails: a CAST out of range, an integer overflow, a timestamp outside years 1 to 9999), part one of
    # "filter (...)", "projection 'p' (...)", "feature 'f' (...)", ``part: why`` its failure_label: every job makes
    # such an event a dead letter of the view with that reason (tables.view_failure_sql, backfill.VIEW_FAILED)
    raises: Tuple[Tuple[str, str], ...] = ()
    labels: Tuple[Tuple[str, str], ...] = ()  # (part, its failure_label) of the parts in raises, in order
    safe: Tuple[str, ...] = ()  # the parts compiled with no failure recorded: DuckDB's evaluation never fails
    duck_checks: Tuple[Tuple[str, str], ...] = ()  # (part, ExprCompiler.duck_checks entry): flagged, DuckDB won't fail


_TIME_TYPE_NAMES = {"TIMESTAMP", "TIMESTAMPNTZ", "TIMESTAMPTZ", "DATETIME"}  # microsecond timestamps (UTC)


def source_columns(cv: CompiledView, times_us: bool = False) -> Dict[str, FExpr]:
    """The view's source columns for :class:`ExprCompiler`; ``times_us``: as the Flink backfill carries them
    (timestamp values as BIGINT epoch microseconds; the event time then too, from ``__ts_ms``)."""
    out = {name: FExpr(qi(name), dtype) for name, dtype in cv.source_columns}
    if times_us:
        out[cv.ts_column] = FExpr(f"(CASE WHEN {qi(cv.ts_column)} IS NOT NULL THEN CAST({qi(TS_MS)} AS BIGINT) * 1000 END)",
                                  t.TIMESTAMP)
    return out


def _compile_parts(cv: CompiledView, online: bool = True) -> Tuple[ViewExprs, List[Tuple[Optional[str], str, str]]]:
    """The view's expressions in Flink SQL and every failure as (feature name or None, part, message).
    ``online=False``: filter and projections, and of the feature inputs only their ``raises`` (the Flink backfill
    stores rows, computes no online input)."""
    from featurestore.online import input_columns

    errors: List[Tuple[Optional[str], str, str]] = []
    failing: Dict[str, Tuple[List[str], List[str], List[str]]] = {}  # part -> (its raises, their whys, duck_checks)

    def record(part: str, compiler: ExprCompiler) -> None:
        preds, whys, checks = failing.setdefault(part, ([], [], []))
        preds.extend(compiler.raises)
        whys.extend(compiler.raise_reasons)
        checks.extend(compiler.duck_checks)
    msg = "expression {!r} cannot run in the streaming job: {}"
    base = source_columns(cv, times_us=not online)  # online=False: the Flink backfill's rows
    src = ExprCompiler(base, times_us=not online)
    flt = None
    if cv.filter:
        try:
            f = src.compile(cv.filter)
            if f.dtype not in (t.BOOL, NULL):
                raise UnsupportedExpression(f"a filter must be a boolean, got a {f.dtype}")
            flt = f.sql if f.dtype == t.BOOL else "CAST(NULL AS BOOLEAN)"
            record(filter_part(cv), src)  # evaluated on the events only
        except UnsupportedExpression as exc:
            errors.append((None, "filter", msg.format(cv.filter, exc)))
    for key in cv.join_keys:  # Feast's entityless, field_mapping'd and with_join_key_map views (DuckDB only)
        if any(name == key for name, _, _ in cv.projections):
            errors.append((None, f"join key '{key}'", "is made by a projection; the Flink jobs key events by "
                                                      "source columns only (use the default backfill)"))
    projections = []
    visible = dict(base)
    for name, expr, dtype in cv.projections:
        try:
            e = src.compile(expr)
            if dtype == t.TIMESTAMP and e.dtype in (t.TIMESTAMP, NULL):  # the stored value: microseconds, UTC
                sql = e.sql if e.dtype == t.TIMESTAMP else src._null_of(t.TIMESTAMP)
            else:
                sql = _cast_sql(e, dtype)
            record(projection_part(name, expr), src)
        except UnsupportedExpression as exc:
            errors.append((None, f"projection '{name}'", msg.format(expr, exc)))
            sql = src._null_of(dtype) if dtype == t.TIMESTAMP else f"CAST(NULL AS {FLINK_TYPES.get(dtype, 'STRING')})"
        projections.append((name, sql))
        visible[name] = FExpr(f"({sql})", dtype)
    feat = ExprCompiler(visible, times_us=not online)
    users = input_users(cv)
    inputs = []
    for expr, dtype in input_columns(cv):
        named = users.get(expr, [expr])
        try:
            e = feat.compile(expr)
            # evaluated on the stored events (DuckDB: get_historical_features, materialize, push)
            record(feature_part(cv, expr, users), feat)
            if not online:  # the Flink backfill computes no input, only where DuckDB's evaluation fails
                continue
            if dtype == t.TIMESTAMP or e.dtype == t.TIMESTAMP:
                # the online state stores timestamps as epoch microseconds
                sql = f"({qi(TS_MS)} * 1000)" if e.sql == qi(cv.ts_column) else f"{EPOCH_US_FUNCTION}({e.sql})"
            else:
                sql = _cast_sql(e, dtype)
        except UnsupportedExpression as exc:
            if not online:  # not streamable: plan reports it; the Flink backfill needs no input
                continue
            for name in named:
                errors.append((name, f"feature '{name}'", msg.format(expr, exc)))
            sql = "NULL"
        inputs.append((expr, sql))
    labels = {part: failure_label(part, whys) for part, (preds, whys, _) in failing.items() if preds}
    raises = tuple((labels[part], pred) for part, (preds, _, _) in failing.items() for pred in preds)
    safe = tuple(part for part, (preds, _, _) in failing.items() if not preds)
    checks = tuple((part, check) for part, (_, _, part_checks) in failing.items() for check in part_checks)
    return ViewExprs(flt, tuple(projections), tuple(inputs), raises, tuple(labels.items()), safe, checks), errors


# -- naming the part of a view whose evaluation fails on an event (its dead-letter reason, every job) -------
EVALUATION_FAILS = "DuckDB's evaluation fails on it"  # the why of a part the streaming compiler records none for


def filter_part(cv: CompiledView) -> str:
    return f"filter ({cv.filter})"


def projection_part(name: str, expr: str) -> str:
    return f"projection '{name}' ({expr})"


def input_users(cv: CompiledView) -> Dict[str, List[str]]:
    """Feature input expression -> the names of the features computed from it."""
    users: Dict[str, List[str]] = {}
    for s in cv.latest:
        users.setdefault(s.expr, []).append(s.name)
    for a in cv.aggregations:
        if a.expr is not None:
            users.setdefault(a.expr, []).append(a.name)
    return users


def feature_part(cv: CompiledView, expr: str, users: Optional[Dict[str, List[str]]] = None) -> str:
    named = (users if users is not None else input_users(cv)).get(expr, [expr])
    return f"feature {', '.join(repr(n) for n in named)} ({expr})"


def failure_label(part: str, whys: Sequence[str]) -> str:
    """``part: why`` where a part's evaluation fails: its distinct failures (the streaming compiler's, in their
    order) joined by " or ", :data:`EVALUATION_FAILS` without one. Fixed per part, never per event, so every job
    (the stream, both backfills) words an event's failure alike."""
    return f"{part}: {' or '.join(dict.fromkeys(whys)) or EVALUATION_FAILS}"


def view_failure_reason(view: str, label: str) -> str:
    """The dead-letter reason of an event the view's part ``label`` (:func:`failure_label`) fails on."""
    return f"view '{view}': {label}"


def failure_labels(cv: CompiledView) -> Tuple[Dict[str, str], Tuple[str, ...], Dict[str, List[str]]]:
    """Part (:func:`filter_part`, :func:`projection_part`, :func:`feature_part`) -> its :func:`failure_label`,
    for the parts the streaming compiler records a failure in; the parts it compiled recording none (so
    DuckDB's evaluation of them cannot fail; a part it cannot compile is in neither); and part -> the DuckDB SQL
    of the failures it flags where DuckDB does not fail (``ExprCompiler.duck_checks``)."""
    exprs = _compile_parts(cv, online=False)[0]
    checks: Dict[str, List[str]] = {}
    for part, check in exprs.duck_checks:
        checks.setdefault(part, []).append(check)
    return dict(exprs.labels), exprs.safe, checks


def compile_view_exprs(cv: CompiledView, online: bool = True) -> ViewExprs:
    """The view's filter, projections and (``online``) online inputs in Flink SQL; :class:`StreamCompileError`
    names the view and the first part (filter, projection or feature) that cannot be compiled."""
    exprs, errors = _compile_parts(cv, online)
    if errors:
        _, part, message = errors[0]
        raise StreamCompileError(f"feature view '{cv.name}', {part}: {message}")
    return exprs


def check_view(view) -> List[Tuple[Optional[str], str]]:
    """(feature name or None, message) for every part of ``view`` that cannot stream (empty when its
    source has no stream face)."""
    from featurestore.compiler.ir import compile_view

    out: List[Tuple[Optional[str], str]] = []
    source = view.source
    if source.stream is None:
        return out
    from featurestore.model.avro import problems as avro_problems

    out.extend((None, p) for p in avro_problems(source))
    if out:
        return out
    try:
        cv = compile_view(view)
    except Exception:  # validation reports definitions that do not compile
        return out
    _, errors = _compile_parts(cv)
    for feature, part, message in errors:
        out.append((feature, message if feature is not None else f"{part}: {message}"))
    return out


def check_repo(repo) -> List[Problem]:
    """Every definition of ``repo`` the streaming job cannot run (views whose source has a stream face),
    as Problems naming file, line, view and feature. ``featurestore plan`` reports them with the other
    problems of the repo (``load_repo(..., streaming=True)``)."""
    from featurestore.validation import streaming_problems

    problems: List[Problem] = []
    for view in repo.views.values():
        problems.extend(streaming_problems(repo, view))
    return sorted(problems, key=lambda p: (p.file, p.line, p.obj, p.message))


__all__ = ["ExprCompiler", "FExpr", "UnsupportedExpression", "StreamCompileError", "compile_view_exprs", "check_view",
           "check_repo", "ViewExprs", "SUPPORTED_TEXT", "failure_labels", "failure_label", "filter_part", "projection_part",
           "feature_part", "input_users", "view_failure_reason", "EVALUATION_FAILS"]
