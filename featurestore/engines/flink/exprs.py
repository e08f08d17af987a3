"""Render compiled views as Flink SQL for the streaming job, and say at plan time what cannot stream.

Two parts:

* **Expressions.** Filters, projections and feature inputs are DuckDB-dialect SQL in the definitions.
  :class:`ExprCompiler` parses them with sqlglot (dialect ``duckdb``), accepts a whitelist of node types
  and renders Flink SQL with DuckDB's semantics (each rule below is checked against DuckDB by
  ``tests/test_stream.py``). Anything else raises :class:`UnsupportedExpression`; :func:`check_repo`
  turns those into :class:`~featurestore.errors.Problem` s naming file, line, view and feature, and
  :func:`compile_view_exprs` raises :class:`StreamCompileError` when the job is built.

  DuckDB rules rendered explicitly (Flink would differ otherwise):

  - ``a / b`` is a floating division for every numeric type (DuckDB: INTEGER / INTEGER = DOUBLE);
    FLOAT stays FLOAT. ``x / 0`` follows IEEE (inf, NaN) in both.
  - ``a // b`` on integers truncates toward zero; with a float operand it is ``/`` (DuckDB). ``a % b``
    on integers has the sign of ``a``. A zero divisor is NULL in the stream (DuckDB raises an error
    and the backfill fails; the stream must not crash-loop on one event).
  - Arithmetic with a FLOAT/DOUBLE result casts both operands to that type first (DuckDB: FLOAT op
    DECIMAL = FLOAT; Flink would widen to DOUBLE).
  - ``CAST(float AS INTEGER/BIGINT)`` rounds half to even (DuckDB), not toward zero (Flink);
    ``CAST(decimal AS int)`` rounds half away from zero; ``CAST(bool AS VARCHAR)`` is ``'true'``/``'false'``;
    ``CAST(int AS BOOLEAN)`` is ``<> 0``. Casts from strings to numbers and from floats to strings
    format/parse differently in the two engines and are rejected.
  - ``length(s)`` counts code points (Flink's CHAR_LENGTH counts UTF-16 units).
  - ``round(double, n)`` is DuckDB's ``round(x * 10^n) / 10^n``; see :meth:`ExprCompiler._round`.
  - ``ILIKE`` is ``LOWER(a) LIKE LOWER(p)``.

  Known differences that remain (documented in docs/streaming.md): integer overflow wraps in Flink
  (DuckDB raises), ``lower``/``upper`` of a few special letters (``ß``) differ.

* **Tables.** :func:`plan_stream` builds every DDL statement and query of the streaming job: one raw
  Kafka table per source and a typed view that parses each record once and names the reason a record
  is a dead letter (:mod:`featurestore.engines.flink.ingest`: strict JSON, the supported event times),
  one Parquet sink per view (stored events exactly as the backfill writes them), one dead-letter sink
  per source, and one insert-only query per (source, join keys) group feeding the online (Redis)
  writer, which therefore never sees a dead letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.errors import FeatureStoreError, Problem

FLINK_TYPES = {
    t.STRING: "STRING",
    t.INT32: "INT",
    t.INT64: "BIGINT",
    t.FLOAT32: "FLOAT",
    t.FLOAT64: "DOUBLE",
    t.BOOL: "BOOLEAN",
    t.TIMESTAMP: "TIMESTAMP(3)",
    t.JSON: "STRING",  # JSON text
}
DECIMAL = "decimal"  # a DuckDB/Flink DECIMAL intermediate (decimal literals); never stored
NULL = "null"  # the type of a bare NULL literal
FLOATS = (t.FLOAT32, t.FLOAT64)
INTS = (t.INT32, t.INT64)
NUMERIC = (*INTS, *FLOATS, DECIMAL)

SUPPORTED_TEXT = ("supported: columns, literals, + - * / // %, comparisons, AND/OR/NOT, IS [NOT] NULL/TRUE/FALSE, "
                  "CASE, IF, CAST/TRY_CAST, COALESCE, NULLIF, IN (list), BETWEEN, LIKE, ILIKE, ||, lower, upper, "
                  "length, abs, round")

TS_MS = "__ts_ms"  # the event time as epoch ms (BIGINT) in the typed view
PAYLOAD, KAFKA_PARTITION, KAFKA_OFFSET, KAFKA_TIMESTAMP = "__payload", "__kafka_partition", "__kafka_offset", "__kafka_ts"
REASON = "__reason"


class UnsupportedExpression(Exception):
    """An expression the streaming job cannot evaluate with DuckDB's semantics (message: why)."""


class StreamCompileError(FeatureStoreError):
    """A definition cannot be compiled to the streaming job (names view and feature)."""


@dataclass(frozen=True)
class FExpr:
    """A rendered Flink SQL expression and its type (a featurestore dtype, DECIMAL or NULL)."""

    sql: str
    dtype: str


# -- quoting ------------------------------------------------------------------------------------------
def qi(name: str) -> str:
    """A Flink SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def lit(value) -> str:
    """A Flink SQL literal for a Python value (str, bool, int, float, None)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value) if -(2**31) <= value < 2**31 else f"CAST({value} AS BIGINT)"
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


def _typed_null(dtype: str) -> str:
    if dtype in (NULL, DECIMAL):
        return "NULL"
    return f"CAST(NULL AS {FLINK_TYPES[dtype]})"


# -- types --------------------------------------------------------------------------------------------
def _numeric(e: FExpr) -> bool:
    return e.dtype in NUMERIC or e.dtype == NULL


def _arith_type(a: str, b: str) -> str:
    """DuckDB's result type of + - * (and the common type of CASE/COALESCE branches) for numerics."""
    kinds = {a, b} - {NULL}
    if not kinds:
        return t.INT32
    if t.FLOAT64 in kinds:
        return t.FLOAT64
    if t.FLOAT32 in kinds:
        return t.FLOAT32
    if DECIMAL in kinds:
        return DECIMAL
    return t.INT64 if t.INT64 in kinds else t.INT32


def _common_type(types: Sequence[str], what: str) -> str:
    kinds = [k for k in types if k != NULL]
    if not kinds:
        return NULL
    if all(k in NUMERIC for k in kinds):
        out = kinds[0]
        for k in kinds[1:]:
            out = _arith_type(out, k)
        return out
    if len(set(kinds)) == 1:
        return kinds[0]
    raise UnsupportedExpression(f"{what} mixes types {', '.join(sorted(set(kinds)))} (DuckDB and Flink convert "
                                "them differently); add a CAST")


def _cast_sql(e: FExpr, target: str) -> str:
    """``CAST(e AS target)`` with DuckDB's semantics (raises for casts whose results differ)."""
    src = e.dtype
    if src == target:
        return e.sql
    if src == NULL:
        return _typed_null(target)
    ft = FLINK_TYPES[target]
    if target == t.TIMESTAMP or src == t.TIMESTAMP:
        raise UnsupportedExpression(f"CAST from {src} to {target} is not supported in the streaming job")
    if target == t.STRING:
        if src in INTS:
            return f"CAST({e.sql} AS STRING)"
        if src == t.BOOL:
            return f"(CASE WHEN {e.sql} THEN 'true' WHEN NOT {e.sql} THEN 'false' END)"
        raise UnsupportedExpression(f"CAST of a {src} to a string formats numbers differently in DuckDB and Flink")
    if src == t.STRING:
        raise UnsupportedExpression(f"CAST of a string to {target} parses differently in DuckDB and Flink")
    if target == t.BOOL:
        if src in INTS:
            return f"({e.sql} <> 0)"
        raise UnsupportedExpression(f"CAST of a {src} to a boolean is not supported in the streaming job")
    if src == t.BOOL:
        if target in INTS or target in FLOATS:
            return f"CAST(CASE WHEN {e.sql} THEN 1 WHEN NOT {e.sql} THEN 0 END AS {ft})"
    if target in INTS:
        lo, hi = _INT_RANGE[target]
        if src in FLOATS:
            x = f"CAST({e.sql} AS DOUBLE)"
            # DuckDB rounds half to even (nearbyint), then fails (TRY_CAST: NULL) outside the range;
            # Flink's CAST truncates and saturates. The stream never fails on a value: NULL.
            # (NaN and infinities fail the first range check: ROUND would throw on them.)
            r = f"(CASE WHEN {x} - FLOOR({x}) = 0.5 THEN 2 * ROUND({x} / 2, 0) ELSE ROUND({x}, 0) END)"
            return (f"(CASE WHEN {x} >= {lo} - 1 AND {x} <= {hi} + 1 AND {r} >= {lo} AND {r} <= {hi} "
                    f"THEN CAST({r} AS {ft}) END)")
        if src == DECIMAL:
            return f"CAST(ROUND({e.sql}, 0) AS {ft})"  # half away from zero, as DuckDB
        if src == t.INT64 and target == t.INT32:
            return f"(CASE WHEN {e.sql} >= -2147483648 AND {e.sql} <= 2147483647 THEN CAST({e.sql} AS INT) END)"
        return f"CAST({e.sql} AS {ft})"
    return f"CAST({e.sql} AS {ft})"


# Inclusive bounds of the rounded double that fits the integer type (DuckDB's range check).
_INT_RANGE = {
    t.INT32: ("CAST(-2147483648 AS DOUBLE)", "CAST(2147483647 AS DOUBLE)"),
    t.INT64: ("CAST(-9.223372036854775808E18 AS DOUBLE)", "CAST(9.223372036854774784E18 AS DOUBLE)"),
}


_TYPE_NAMES = {
    "VARCHAR": t.STRING, "TEXT": t.STRING, "CHAR": t.STRING, "NVARCHAR": t.STRING, "NCHAR": t.STRING,
    "INT": t.INT32, "BIGINT": t.INT64, "DOUBLE": t.FLOAT64, "FLOAT": t.FLOAT32, "BOOLEAN": t.BOOL,
}


# -- the expression compiler ----------------------------------------------------------------------------
class ExprCompiler:
    """DuckDB-dialect SQL over named, typed columns -> Flink SQL (see the module docstring)."""

    def __init__(self, columns: Mapping[str, FExpr]):
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
        return self.node(tree)

    # dispatch ----------------------------------------------------------------------------------------
    def node(self, n) -> FExpr:
        from sqlglot import exp

        handler = getattr(self, "_" + type(n).__name__, None) if isinstance(n, exp.Expression) else None
        if handler is None:
            raise UnsupportedExpression(_describe(n, getattr(self, "_text", "")) + " is not supported in the streaming job ("
                                        + SUPPORTED_TEXT + ")")
        return handler(n)

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
        e = self._num(n.this, "unary minus")
        if e.dtype == NULL:
            return e
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
        return FExpr(f"({a.sql} {op} {b.sql})", rt)

    def _Add(self, n) -> FExpr:
        return self._binary(n, "+")

    def _Sub(self, n) -> FExpr:
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
            return FExpr(f"({_cast_sql(a, rt)} / NULLIF({_cast_sql(b, rt)}, 0))", rt)
        rt = _arith_type(a.dtype, b.dtype)
        return FExpr(f"({a.sql} / NULLIF({b.sql}, 0))", rt)

    def _Mod(self, n) -> FExpr:
        a, b = self._num(n.this, "'%'"), self._num(n.expression, "'%'")
        if a.dtype not in (*INTS, NULL) or b.dtype not in (*INTS, NULL):
            raise UnsupportedExpression("'%' is supported on integers only in the streaming job")
        return FExpr(f"MOD({a.sql}, NULLIF({b.sql}, 0))", _arith_type(a.dtype, b.dtype))

    def _DPipe(self, n) -> FExpr:
        a, b = self.node(n.this), self.node(n.expression)
        for e in (a, b):
            if e.dtype not in (t.STRING, NULL):
                raise UnsupportedExpression(f"'||' needs strings, got a {e.dtype} (CAST it to VARCHAR)")
        return FExpr(f"({_cast_sql(a, t.STRING)} || {_cast_sql(b, t.STRING)})", t.STRING)

    # comparisons and logic ---------------------------------------------------------------------------
    def _comparable(self, items: Sequence[FExpr], what: str) -> str:
        kind = _common_type([e.dtype for e in items], what)
        if kind == t.TIMESTAMP:
            raise UnsupportedExpression(f"{what} on timestamps is not supported in the streaming job")
        return kind

    def _compare(self, n, op: str) -> FExpr:
        a, b = self.node(n.this), self.node(n.expression)
        kind = self._comparable([a, b], f"'{op}'")
        return FExpr(f"({self._as(a, kind)} {op} {self._as(b, kind)})", t.BOOL)

    def _as(self, e: FExpr, kind: str) -> str:
        """``e`` in a comparison/branch of common type ``kind``: NULL typed; floats compared as floats."""
        if e.dtype == NULL:
            return _typed_null(kind)
        if kind in FLOATS and e.dtype != kind:
            return _cast_sql(e, kind)
        return e.sql

    def _EQ(self, n) -> FExpr:
        return self._compare(n, "=")

    def _NEQ(self, n) -> FExpr:
        return self._compare(n, "<>")

    def _GT(self, n) -> FExpr:
        return self._compare(n, ">")

    def _GTE(self, n) -> FExpr:
        return self._compare(n, ">=")

    def _LT(self, n) -> FExpr:
        return self._compare(n, "<")

    def _LTE(self, n) -> FExpr:
        return self._compare(n, "<=")

    def _bool(self, child, what: str) -> FExpr:
        e = self.node(child)
        if e.dtype not in (t.BOOL, NULL):
            raise UnsupportedExpression(f"{what} needs booleans, got a {e.dtype}")
        return FExpr(e.sql if e.dtype == t.BOOL else "CAST(NULL AS BOOLEAN)", t.BOOL)

    def _And(self, n) -> FExpr:
        return FExpr(f"({self._bool(n.this, 'AND').sql} AND {self._bool(n.expression, 'AND').sql})", t.BOOL)

    def _Or(self, n) -> FExpr:
        return FExpr(f"({self._bool(n.this, 'OR').sql} OR {self._bool(n.expression, 'OR').sql})", t.BOOL)

    def _Not(self, n) -> FExpr:
        return FExpr(f"(NOT {self._bool(n.this, 'NOT').sql})", t.BOOL)

    def _Is(self, n) -> FExpr:
        from sqlglot import exp

        a = self.node(n.this)
        if isinstance(n.expression, exp.Null):
            return FExpr(f"({a.sql} IS NULL)", t.BOOL)
        if isinstance(n.expression, exp.Boolean):
            if a.dtype not in (t.BOOL, NULL):
                raise UnsupportedExpression(f"IS TRUE/FALSE needs a boolean, got a {a.dtype}")
            x = a.sql if a.dtype == t.BOOL else "CAST(NULL AS BOOLEAN)"
            return FExpr(f"({x} IS {'TRUE' if n.expression.this else 'FALSE'})", t.BOOL)
        raise UnsupportedExpression(f"IS {n.expression.sql(dialect='duckdb')} is not supported in the streaming job")

    def _Case(self, n) -> FExpr:
        subject = self.node(n.this) if n.this is not None else None
        conds, values = [], []
        for branch in n.args.get("ifs") or []:
            if subject is not None:
                when = self.node(branch.this)
                kind = self._comparable([subject, when], "CASE")
                conds.append(f"{self._as(subject, kind)} = {self._as(when, kind)}")
            else:
                conds.append(self._bool(branch.this, "CASE WHEN").sql)
            values.append(self.node(branch.args["true"]))
        default = self.node(n.args["default"]) if n.args.get("default") is not None else None
        return self._branches(conds, values, default, "CASE")

    def _If(self, n) -> FExpr:
        cond = self._bool(n.this, "IF").sql
        values = [self.node(n.args["true"])]
        default = self.node(n.args["false"]) if n.args.get("false") is not None else None
        return self._branches([cond], values, default, "IF")

    def _branches(self, conds: List[str], values: List[FExpr], default: Optional[FExpr], what: str) -> FExpr:
        kind = _common_type([v.dtype for v in values] + ([default.dtype] if default else []), what)
        if kind == NULL:
            return FExpr("NULL", NULL)
        parts = [f"WHEN {c} THEN {self._branch(v, kind)}" for c, v in zip(conds, values)]
        tail = f" ELSE {self._branch(default, kind)}" if default is not None else ""
        return FExpr(f"(CASE {' '.join(parts)}{tail} END)", kind)

    def _branch(self, e: FExpr, kind: str) -> str:
        if e.dtype == NULL:
            return _typed_null(kind)
        if kind in FLOATS and e.dtype != kind:
            return _cast_sql(e, kind)
        return e.sql

    def _Coalesce(self, n) -> FExpr:
        items = [self.node(n.this)] + [self.node(x) for x in n.expressions]
        kind = _common_type([e.dtype for e in items], "COALESCE")
        if kind == NULL:
            return FExpr("NULL", NULL)
        return FExpr("COALESCE(" + ", ".join(self._branch(e, kind) for e in items) + ")", kind)

    def _Nullif(self, n) -> FExpr:
        a, b = self.node(n.this), self.node(n.expression)
        kind = self._comparable([a, b], "NULLIF")
        if a.dtype == NULL:
            return FExpr("NULL", NULL)
        return FExpr(f"NULLIF({self._branch(a, kind)}, {self._as(b, kind)})", kind if a.dtype != NULL else NULL)

    def _In(self, n) -> FExpr:
        if n.args.get("query") is not None or n.args.get("unnest") is not None or n.args.get("field") is not None:
            raise UnsupportedExpression("IN with a subquery is not supported; list the values")
        a = self.node(n.this)
        items = [self.node(x) for x in n.expressions]
        kind = self._comparable([a, *items], "IN")
        return FExpr(f"({self._as(a, kind)} IN (" + ", ".join(self._as(e, kind) for e in items) + "))", t.BOOL)

    def _Between(self, n) -> FExpr:
        if n.args.get("symmetric"):
            raise UnsupportedExpression("BETWEEN SYMMETRIC is not supported")
        a, lo, hi = self.node(n.this), self.node(n.args["low"]), self.node(n.args["high"])
        kind = self._comparable([a, lo, hi], "BETWEEN")
        x = self._as(a, kind)
        return FExpr(f"({x} >= {self._as(lo, kind)} AND {x} <= {self._as(hi, kind)})", t.BOOL)

    def _like(self, n, ci: bool) -> FExpr:
        if n.args.get("escape") is not None:
            raise UnsupportedExpression("LIKE ... ESCAPE is not supported in the streaming job")
        a, p = self.node(n.this), self.node(n.expression)
        for e in (a, p):
            if e.dtype not in (t.STRING, NULL):
                raise UnsupportedExpression(f"LIKE needs strings, got a {e.dtype}")
        if p.dtype == t.STRING and "\\" in p.sql:
            raise UnsupportedExpression("LIKE patterns with a backslash are not supported in the streaming job")
        x, y = _cast_sql(a, t.STRING), _cast_sql(p, t.STRING)
        if ci:
            x, y = f"LOWER({x})", f"LOWER({y})"
        neg = "NOT " if n.args.get("negate") else ""
        return FExpr(f"({x} {neg}LIKE {y})", t.BOOL)

    def _Like(self, n) -> FExpr:
        return self._like(n, False)

    def _ILike(self, n) -> FExpr:
        return self._like(n, True)

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
            body = f"ROUND({x}, 0)"
        elif digits > 0:
            m = f"CAST(1e{digits} AS DOUBLE)"
            body = f"(ROUND({x} * {m}, 0) / {m})"
        else:
            m = f"CAST(1e{-digits} AS DOUBLE)"
            body = f"(ROUND({x} / {m}, 0) * {m})"
        # A negative input that rounds to zero is -0.0 in DuckDB (std::round); Flink's BigDecimal has no -0.
        negative = f"({x} < 0 OR ({x} = 0 AND CAST(1 AS DOUBLE) / {x} < 0))"
        body = (f"(CASE WHEN NOT ({x} - {x} = 0) THEN {x} "  # NaN, infinities: unchanged (ROUND would throw)
                f"WHEN {body} = 0 AND {negative} THEN {body} * CAST(-1 AS DOUBLE) ELSE {body} END)")
        return FExpr(f"CAST({body} AS {ft})", e.dtype)

    def _Cast(self, n) -> FExpr:
        e = self.node(n.this)
        to = n.args["to"]
        name = to.this.name if hasattr(to.this, "name") else str(to.this)
        target = _TYPE_NAMES.get(str(name).upper())
        if target is None or to.expressions:
            raise UnsupportedExpression(f"CAST to {to.sql(dialect='duckdb')} is not supported in the streaming job "
                                        "(use VARCHAR, INTEGER, BIGINT, FLOAT, DOUBLE or BOOLEAN)")
        return FExpr(_cast_sql(e, target), target)

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


# -- per view ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewExprs:
    """Every expression of one view rendered against the typed source view."""

    filter: Optional[str]  # Flink boolean SQL (rows where it IS TRUE are kept), or None
    projections: Tuple[Tuple[str, str], ...]  # (name, Flink SQL already CAST to the projection's type)
    inputs: Tuple[Tuple[str, str], ...]  # online input columns (featurestore.online.input_columns order):
    # (duckdb expr, Flink SQL of the value as stored online: CAST to its type; timestamps as epoch us)


def source_columns(cv: CompiledView) -> Dict[str, FExpr]:
    return {name: FExpr(qi(name), dtype) for name, dtype in cv.source_columns}


def _compile_parts(cv: CompiledView) -> Tuple[ViewExprs, List[Tuple[Optional[str], str, str]]]:
    """The view's expressions in Flink SQL and every failure as (feature name or None, part, message)."""
    from featurestore.online import input_columns

    errors: List[Tuple[Optional[str], str, str]] = []
    msg = "expression {!r} cannot run in the streaming job: {}"
    base = source_columns(cv)
    src = ExprCompiler(base)
    flt = None
    if cv.filter:
        try:
            f = src.compile(cv.filter)
            if f.dtype not in (t.BOOL, NULL):
                raise UnsupportedExpression(f"a filter must be a boolean, got a {f.dtype}")
            flt = f.sql if f.dtype == t.BOOL else "CAST(NULL AS BOOLEAN)"
        except UnsupportedExpression as exc:
            errors.append((None, "filter", msg.format(cv.filter, exc)))
    projections = []
    visible = dict(base)
    for name, expr, dtype in cv.projections:
        try:
            e = src.compile(expr)
            if e.dtype == t.TIMESTAMP or dtype == t.TIMESTAMP:
                raise UnsupportedExpression("timestamp projections are not supported in the streaming job")
            sql = _cast_sql(e, dtype)
        except UnsupportedExpression as exc:
            errors.append((None, f"projection '{name}'", msg.format(expr, exc)))
            sql = f"CAST(NULL AS {FLINK_TYPES.get(dtype, 'STRING')})"
        projections.append((name, sql))
        visible[name] = FExpr(f"({sql})", dtype)
    feat = ExprCompiler(visible)
    users: Dict[str, List[str]] = {}  # input expression -> features using it
    for s in cv.latest:
        users.setdefault(s.expr, []).append(s.name)
    for a in cv.aggregations:
        if a.expr is not None:
            users.setdefault(a.expr, []).append(a.name)
    inputs = []
    for expr, dtype in input_columns(cv):
        try:
            e = feat.compile(expr)
            if dtype == t.TIMESTAMP or e.dtype == t.TIMESTAMP:
                if e.sql != qi(cv.ts_column):
                    raise UnsupportedExpression("only the event-time column itself can be a timestamp feature input")
                sql = f"({qi(TS_MS)} * 1000)"  # the online state stores timestamps as epoch microseconds
            else:
                sql = _cast_sql(e, dtype)
        except UnsupportedExpression as exc:
            for name in users.get(expr, [expr]):
                errors.append((name, f"feature '{name}'", msg.format(expr, exc)))
            sql = "NULL"
        inputs.append((expr, sql))
    return ViewExprs(flt, tuple(projections), tuple(inputs)), errors


def compile_view_exprs(cv: CompiledView) -> ViewExprs:
    """The view's filter, projections and online inputs in Flink SQL; :class:`StreamCompileError` names the
    view and the first part (filter, projection or feature) that cannot be compiled."""
    exprs, errors = _compile_parts(cv)
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
    if getattr(source.stream, "format", "json") != "json":
        return [(None, f"source '{source.name}': stream format {source.stream.format!r} is not supported by the "
                       "streaming job yet (use json)")]
    for name, dtype in source.schema:
        if dtype == t.TIMESTAMP and name != source.timestamp:
            out.append((None, f"source '{source.name}': column '{name}' is a timestamp other than the event time; "
                              "the streaming job cannot parse it yet"))
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


# -- the job's tables ---------------------------------------------------------------------------------
@dataclass
class OnlineView:
    """What the online writer needs to know about one view of a key group."""

    name: str
    key_prefix: str  # fs:{project}:{view}:
    fingerprint: str
    flag: int  # index in the event array of the view's "passes the filter" flag
    inputs: Tuple[int, ...]  # indexes of its input columns in the event array
    keep_base: bool  # featurestore.stores.online_redis.Retention
    window_ms: int
    expires: bool
    layout: dict = field(default_factory=dict)  # featurestore.kernel.partials.Layout arguments

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OnlineGroup:
    """Views of one source sharing join keys: one keyed stream, one state per entity.

    Rows of ``sql``: ``k`` (JSON array of the join-key values: the Flink key), ``v`` (JSON array: the
    event's id = Kafka partition << 40 | offset, its time in ms, the other order columns, one filter flag
    per view, the distinct input values)."""

    gid: int
    source: str
    join_keys: Tuple[str, ...]
    n_order: int
    views: List[OnlineView]
    sql: str = ""

    def to_dict(self) -> dict:
        return {"gid": self.gid, "source": self.source, "join_keys": list(self.join_keys), "n_order": self.n_order,
                "views": [v.to_dict() for v in self.views]}


@dataclass
class StreamPlan:
    """Every statement of the streaming job (DDL run first, then the inserts as one statement set) and the
    online groups. ``explain()`` prints it."""

    ddl: List[str] = field(default_factory=list)
    views: List[Tuple[str, str]] = field(default_factory=list)  # (name, SELECT): materialized once, in order
    inserts: List[Tuple[str, str]] = field(default_factory=list)  # (sink table, SELECT)
    online: List[OnlineGroup] = field(default_factory=list)
    sinks: Dict[str, str] = field(default_factory=dict)  # view or "_dead_letters/<source>" -> staging dir

    def explain(self) -> str:
        parts = [s.strip() + ";" for s in self.ddl]
        parts += [f"-- evaluated once per record (DataStream barrier), then shared\nCREATE TEMPORARY VIEW {qi(n)} AS\n{q};"
                  for n, q in self.views]
        parts += [f"INSERT INTO {sink}\n{sql};" for sink, sql in self.inserts]
        parts += [f"-- online group {g.gid} ({', '.join(v.name for v in g.views)}) -> per-entity mini-batches "
                  f"(ARRAY_AGG over a processing-time TUMBLE) -> kernel state (Python) -> Redis writer\n{g.sql};"
                  for g in self.online]
        return "\n\n".join(parts)


def _table_name(kind: str, name: str) -> str:
    return f"fs_{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


PARQUET_OPTIONS = {
    "format": "parquet",
    "parquet.write.int64.timestamp": "true",
    "parquet.timestamp.time.unit": "millis",
    "parquet.utc-timezone": "true",
}


def _with(options: Mapping[str, str]) -> str:
    return "WITH (\n  " + ",\n  ".join(f"{lit(k)} = {lit(str(v))}" for k, v in options.items()) + "\n)"


def events_select_sql(cv: CompiledView, ve: ViewExprs, typed_view: str) -> str:
    """The view's stored events (the backfill's columns and types) plus the Kafka partition and offset of
    each (the committer adds an event to the offline table once by them, then drops them)."""
    cols = [qi(n) for n, _ in cv.source_columns]
    cols += [f"{sql} AS {qi(n)}" for n, sql in ve.projections]
    cols += [qi(KAFKA_PARTITION), qi(KAFKA_OFFSET)]
    return f"SELECT {', '.join(cols)}\nFROM {qi(typed_view)}\nWHERE {_stored_where(cv.join_keys, ve.filter)}"


def _stored_where(join_keys: Sequence[str], flt: Optional[str]) -> str:
    conds = [f"{qi(REASON)} IS NULL", *(f"{qi(k)} IS NOT NULL" for k in join_keys)]
    if flt:
        conds.append(f"({flt}) IS TRUE")
    return " AND ".join(conds)


def _json_value(sql: str, dtype: str) -> str:
    """A value as JSON_ARRAY writes it losslessly (FLOAT widened exactly to DOUBLE)."""
    return f"CAST({sql} AS DOUBLE)" if dtype == t.FLOAT32 else sql


def online_group_sql(group: OnlineGroup, cvs: Sequence[CompiledView], exprs: Sequence[ViewExprs],
                     typed_view: str, columns: Dict[str, str]) -> Tuple[str, List[str]]:
    """The group's insert-only query, and the SQL of each slot of the event array."""
    cv0 = cvs[0]
    eid = f"CAST({qi(KAFKA_PARTITION)} AS BIGINT) * {1 << 40} + {qi(KAFKA_OFFSET)}"  # flink_online.PARTITION_SHIFT
    slots: List[str] = [eid, qi(TS_MS)]
    for c in cv0.order_columns[1:]:
        slots.append(_json_value(qi(c), columns[c]))
    flags = []
    input_slots: Dict[str, int] = {}
    for ov, cv, ve in zip(group.views, cvs, exprs):
        flag = f"COALESCE(({ve.filter}) IS TRUE, FALSE)" if ve.filter else "TRUE"
        flags.append(flag)
        ov.flag = len(slots)
        slots.append(flag)
    from featurestore.online import input_columns

    for ov, cv, ve in zip(group.views, cvs, exprs):
        idx = []
        for (expr, sql), (_, dtype) in zip(ve.inputs, input_columns(cv)):
            value = _json_value(sql, dtype)
            if value not in input_slots:
                input_slots[value] = len(slots)
                slots.append(value)
            idx.append(input_slots[value])
        ov.inputs = tuple(idx)
    key = "JSON_ARRAY(" + ", ".join(qi(k) for k in group.join_keys) + " NULL ON NULL)"
    where = _stored_where(group.join_keys, None)
    if all(f != "TRUE" for f in flags):
        where += " AND (" + " OR ".join(flags) + ")"
    sql = (f"SELECT {key} AS k,\n  JSON_ARRAY({', '.join(slots)} NULL ON NULL) AS v\n"
           f"FROM {qi(typed_view)}\nWHERE {where}")
    return sql, slots


def plan_stream(project: str, cvs: Sequence[CompiledView], sources: Mapping[str, object], *, bootstrap: str,
                group_id: str, bounded: bool, staging: Mapping[str, str], dead_letter_staging: Mapping[str, str],
                online_views: Sequence[str] = (), kafka_options: Optional[Mapping[str, str]] = None,
                max_future_ms: Optional[int] = None) -> StreamPlan:
    """The streaming job of ``cvs`` (views whose source has a stream face).

    ``sources``: view name -> its Source; ``staging``: view -> directory URI its Parquet sink writes;
    ``dead_letter_staging``: source name -> directory URI of its dead-letter sink; ``online_views``: the
    views written to Redis; ``max_future_ms``: the future-time bound (config ``event_time.max_future``)."""
    from featurestore.engines.flink import ingest as flink_ingest
    from featurestore.online import view_layout
    from featurestore.stores.online_redis import retention, view_prefix

    plan = StreamPlan()
    plan.ddl.append(flink_ingest.function_ddl())
    by_source: Dict[str, List[CompiledView]] = {}
    for cv in cvs:
        by_source.setdefault(sources[cv.name].name, []).append(cv)
    gid = 0
    for source_name, views in by_source.items():
        source = sources[views[0].name]
        raw = _table_name("kafka", source_name)
        typed = _table_name("typed", source_name)
        parsed = _table_name("parsed", source_name)
        plan.ddl.append(flink_ingest.kafka_table_ddl(source, raw, bootstrap, group_id, bounded, kafka_options))
        plan.views.append((parsed, flink_ingest.parsed_select_sql(source, raw)))
        plan.views.append((typed, flink_ingest.typed_select_sql(source, parsed, max_future_ms)))
        columns = dict(source.schema)
        exprs = {cv.name: compile_view_exprs(cv) for cv in views}
        # offline: one Parquet sink per view. Not partitioned: a sink subtask then writes the rows of each
        # Kafka partition in offset order into files that become visible in order, which the committer's
        # exactly-once by offsets relies on (it splits the rows by date itself).
        for cv in views:
            sink = _table_name("events", cv.name)
            cols = [f"{qi(n)} {FLINK_TYPES[d]}" for n, d in cv.stored_columns]
            cols += [f"{qi(KAFKA_PARTITION)} INT", f"{qi(KAFKA_OFFSET)} BIGINT"]
            options = {"connector": "filesystem", "path": staging[cv.name], **PARQUET_OPTIONS}
            plan.ddl.append(f"CREATE TEMPORARY TABLE {qi(sink)} (\n  " + ",\n  ".join(cols) + "\n) " + _with(options))
            plan.inserts.append((sink, events_select_sql(cv, exprs[cv.name], typed)))
            plan.sinks[cv.name] = staging[cv.name]
        # key groups (views with the same join keys)
        groups: Dict[Tuple[str, ...], List[CompiledView]] = {}
        for cv in views:
            groups.setdefault(tuple(cv.join_keys), []).append(cv)
        dl = _table_name("dead_letters", source_name)
        options = {"connector": "filesystem", "path": dead_letter_staging[source_name], **PARQUET_OPTIONS}
        plan.ddl.append(
            f"CREATE TEMPORARY TABLE {qi(dl)} (\n  payload STRING,\n  reason STRING,\n  kafka_partition INT,\n"
            f"  kafka_offset BIGINT,\n  kafka_timestamp TIMESTAMP(3),\n  ingest_time TIMESTAMP(3)\n) " + _with(options))
        plan.inserts.append((dl, flink_ingest.dead_letters_select_sql(typed, [(k, [c.name for c in g])
                                                                              for k, g in groups.items()])))
        plan.sinks[f"_dead_letters/{source_name}"] = dead_letter_staging[source_name]
        # online: one query per key group
        for keys, gviews in groups.items():
            gviews = [cv for cv in gviews if cv.name in online_views]
            if not gviews:
                continue
            ovs = []
            for cv in gviews:
                r = retention(cv)
                lay = view_layout(cv)
                ovs.append(OnlineView(cv.name, view_prefix(project, cv.name), cv.data_fingerprint, 0, (), r.keep_base,
                                      r.window_ms, r.expires,
                                      {"inputs": [list(x) for x in lay.inputs], "latest": lay.latest_cols,
                                       "aggs": [[a.name, a.function, [e for e, _ in lay.inputs].index(a.expr)
                                                 if a.expr is not None else None, a.window_ms]
                                                for a in cv.aggregations]}))
            group = OnlineGroup(gid, source_name, keys, len(gviews[0].order_columns), ovs)
            group.sql, _ = online_group_sql(group, gviews, [exprs[cv.name] for cv in gviews], typed, columns)
            plan.online.append(group)
            gid += 1
    return plan


__all__ = ["ExprCompiler", "FExpr", "UnsupportedExpression", "StreamCompileError", "compile_view_exprs", "check_view",
           "check_repo", "plan_stream", "StreamPlan", "OnlineGroup", "OnlineView", "FLINK_TYPES", "qi", "lit"]
