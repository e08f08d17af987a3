"""Comparisons, logic and branches of the streaming job's expressions with DuckDB's semantics (each checked
against DuckDB by ``tests/test_stream_exprs.py`` and ``tests/test_flink_math.py``): :class:`LogicRules` is
mixed into :class:`~featurestore.engines.flink.exprs.ExprCompiler` (uses its ``node``, ``_under``,
``_null_of`` and ``times_us``).

* Comparisons (``=``, ``<``, ``BETWEEN``, ``IN``, ``IS [NOT] DISTINCT FROM``, ...) of floats follow DuckDB's
  order where an operand is an expression that may be NaN (NaN equals NaN and is above +inf; a stored column
  is never NaN); ``IN`` on floats is ``=`` per item (Flink's hashes -0.0 apart from 0.0), and every float
  operand of a comparison has its -0.0 as 0.0 (:meth:`LogicRules._key`).
* ``CASE``/``IF``/``COALESCE`` evaluate a branch only where DuckDB does (``ExprCompiler._under``): a failing
  CAST in a branch never taken fails nothing.
* ``ILIKE`` is ``LOWER(a) LIKE LOWER(p)``.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence

from featurestore import dtypes as t
from featurestore.engines.flink.sqltypes import FLINK_TYPES, FLOATS, NULL, FExpr, UnsupportedExpression, _cast_sql, _common_type


def duck_sql(n) -> str:
    """A node of a definition's expression as DuckDB SQL (a branch's guard in ``ExprCompiler.duck_checks``)."""
    return n.sql(dialect="duckdb")


class LogicRules:
    """Comparisons, boolean logic, CASE/IF/COALESCE/NULLIF, IN, BETWEEN and LIKE (see the module docstring)."""

    def _comparable(self, items: Sequence[FExpr], what: str) -> str:
        return _common_type([e.dtype for e in items], what)  # timestamps: to the microsecond in either form

    def _compare(self, n, op: str) -> FExpr:
        a, b = self.node(n.this), self.node(n.expression)
        kind = self._comparable([a, b], f"'{op}'")
        nan = kind in FLOATS
        return FExpr(_cmp(self._key(a, kind), op, self._key(b, kind), nan and _may_be_nan(n.this),
                          nan and _may_be_nan(n.expression)), t.BOOL)

    def _as(self, e: FExpr, kind: str) -> str:
        """``e`` in a comparison/branch of common type ``kind``: NULL typed; floats compared as floats."""
        if e.dtype == NULL:
            return self._null_of(kind)
        if kind in FLOATS and e.dtype != kind:
            return _cast_sql(e, kind)
        return e.sql

    def _key(self, e: FExpr, kind: str) -> str:
        """``e`` as an operand of a comparison of type ``kind``: a float's -0.0 as 0.0. Calcite turns
        comparisons of one operand with literals (``x >= 0 AND x < 9``, ``IN``) into a range search that
        orders doubles by ``Double.compareTo`` (-0.0 below 0.0); DuckDB compares -0.0 equal to 0.0."""
        x = self._as(e, kind)
        if kind not in FLOATS or e.dtype not in FLOATS:  # an integer or decimal is never -0.0
            return x
        number = re.fullmatch(r"(?:CAST\()?\(?(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\)?(?: AS \w+\))?", x)
        if number is not None:  # a literal: a zero is 0.0, any other stays as written
            return f"CAST(0 AS {FLINK_TYPES[kind]})" if float(number.group(1)) == 0 else x
        return f"(CASE WHEN {x} = 0 THEN CAST(0 AS {FLINK_TYPES[kind]}) ELSE {x} END)"

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

    def _distinct(self, n, negate: bool) -> FExpr:
        """``a IS [NOT] DISTINCT FROM b``: never NULL; a NULL equals only a NULL, values compare as ``=`` does."""
        a, b = self.node(n.this), self.node(n.expression)
        kind = self._comparable([a, b], "IS DISTINCT FROM")
        if kind == NULL:
            return FExpr("FALSE" if negate else "TRUE", t.BOOL)
        x, y = self._key(a, kind), self._key(b, kind)
        nan = kind in FLOATS
        same = _cmp(x, "=", y, nan and _may_be_nan(n.this), nan and _may_be_nan(n.expression))
        sql = f"(CASE WHEN {x} IS NULL OR {y} IS NULL THEN {x} IS NULL AND {y} IS NULL ELSE {same} END)"
        return FExpr(f"(NOT {sql})" if negate else sql, t.BOOL)

    def _NullSafeEQ(self, n) -> FExpr:
        return self._distinct(n, False)

    def _NullSafeNEQ(self, n) -> FExpr:
        return self._distinct(n, True)

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
        # DuckDB evaluates a WHEN only where no earlier one held, a branch only where it is taken
        subject = self.node(n.this) if n.this is not None else None
        conds, values, not_yet, duck_not_yet = [], [], [], []  # (the guards in Flink SQL and in DuckDB SQL)
        for branch in n.args.get("ifs") or []:
            if subject is not None:
                when = self._under(not_yet, lambda: self.node(branch.this), duck_not_yet)
                kind = self._comparable([subject, when], "CASE")
                conds.append(f"{self._key(subject, kind)} = {self._key(when, kind)}")
                duck = f"({duck_sql(n.this)}) = ({duck_sql(branch.this)})"
            else:
                conds.append(self._under(not_yet, lambda: self._bool(branch.this, "CASE WHEN"), duck_not_yet).sql)
                duck = f"({duck_sql(branch.this)})"
            values.append(self._under(not_yet + [f"({conds[-1]}) IS TRUE"], lambda: self.node(branch.args["true"]),
                                      duck_not_yet + [f"({duck}) IS TRUE"]))
            not_yet.append(f"({conds[-1]}) IS NOT TRUE")
            duck_not_yet.append(f"({duck}) IS NOT TRUE")
        default = self._under(not_yet, lambda: self.node(n.args["default"]), duck_not_yet) \
            if n.args.get("default") is not None else None
        return self._branches(conds, values, default, "CASE")

    def _If(self, n) -> FExpr:
        cond, duck = self._bool(n.this, "IF").sql, duck_sql(n.this)
        values = [self._under([f"({cond}) IS TRUE"], lambda: self.node(n.args["true"]), [f"({duck}) IS TRUE"])]
        default = self._under([f"({cond}) IS NOT TRUE"], lambda: self.node(n.args["false"]), [f"({duck}) IS NOT TRUE"]) \
            if n.args.get("false") is not None else None
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
            return self._null_of(kind)
        if kind in FLOATS and e.dtype != kind:
            return _cast_sql(e, kind)
        return e.sql

    def _Coalesce(self, n) -> FExpr:
        items = [self.node(n.this)]  # DuckDB evaluates an argument only where every earlier one is NULL
        for i, x in enumerate(n.expressions):
            earlier = [n.this, *n.expressions[:i]]
            items.append(self._under([f"({e.sql}) IS NULL" for e in items], lambda: self.node(x),
                                     [f"({duck_sql(e)}) IS NULL" for e in earlier]))
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
        if kind in FLOATS:  # Flink's IN hashes doubles (-0.0 is not 0.0, NaN is itself): DuckDB's '=' each
            x = self._key(a, kind)
            return FExpr("(" + " OR ".join(_cmp(x, "=", self._key(e, kind), _may_be_nan(n.this), _may_be_nan(node))
                                           for e, node in zip(items, n.expressions)) + ")", t.BOOL)
        return FExpr(f"({self._as(a, kind)} IN (" + ", ".join(self._as(e, kind) for e in items) + "))", t.BOOL)

    def _Between(self, n) -> FExpr:
        if n.args.get("symmetric"):
            raise UnsupportedExpression("BETWEEN SYMMETRIC is not supported")
        a, lo, hi = self.node(n.this), self.node(n.args["low"]), self.node(n.args["high"])
        kind = self._comparable([a, lo, hi], "BETWEEN")
        x = self._key(a, kind)
        nan = kind in FLOATS
        na, nlo, nhi = (nan and _may_be_nan(n.this), nan and _may_be_nan(n.args["low"]),
                        nan and _may_be_nan(n.args["high"]))
        return FExpr(f"({_cmp(x, '>=', self._key(lo, kind), na, nlo)} AND {_cmp(x, '<=', self._key(hi, kind), na, nhi)})",
                     t.BOOL)

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


def _may_be_nan(node) -> bool:
    """Whether a float operand may be NaN: a stored column never is (NaN is null at ingestion), nor a
    literal; an expression may be (``x - x`` of an infinity, ``0 / 0``)."""
    from sqlglot import exp

    while isinstance(node, (exp.Paren, exp.Neg)):
        node = node.this
    return not isinstance(node, (exp.Column, exp.Literal, exp.Null))


def _is_nan(x: str, may_be_nan: bool) -> str:
    """SQL: true when ``x`` is NaN, null when it is null. Not "x <> x": Calcite simplifies it (and "x = x")
    as if NaN did not exist."""
    if not may_be_nan:
        return f"(CASE WHEN {x} IS NULL THEN CAST(NULL AS BOOLEAN) ELSE FALSE END)"
    return f"(CAST({x} AS STRING) = 'NaN')"


def _cmp(a: str, op: str, b: str, a_nan: bool = False, b_nan: bool = False) -> str:
    """``a op b`` with DuckDB's order of floats when an operand may be NaN: NaN equals NaN and is greater
    than every other value, +inf included (Flink compares IEEE: NaN is unordered). A null is null."""
    if not (a_nan or b_nan):
        return f"({a} {op} {b})"
    na, nb = _is_nan(a, a_nan), _is_nan(b, b_nan)
    return (f"(CASE WHEN {na} OR {nb} THEN CAST({na} AS INT) {op} CAST({nb} AS INT) "
            f"ELSE {a} {op} {b} END)")


__all__ = ["LogicRules"]
