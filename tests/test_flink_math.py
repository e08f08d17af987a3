"""Non-finite values and signed zeros through the streaming job's math (featurestore/engines/flink/exprs.py) equal
DuckDB's: round (every digits form, its guard ``NOT (x - x = 0)`` for NaN and infinities, its -0.0 rule), abs,
negation, arithmetic, comparisons, CASE/COALESCE/NULLIF and casts, on +-inf, -0.0, subnormals, the largest
doubles, float32 extremes and halves, plus NaN made inside an expression (ingestion stores no NaN: a NaN
input is null, but ``x - x`` of an infinity is NaN).

The rows come from a Parquet file through Flink's filesystem source, as the Flink backfill reads them: values
the planner cannot see, so Calcite's simplification of the compiled SQL (which ran at plan time, on the
whole expression) is what is tested, not constant folding over literals. One Flink batch job for all."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.flink import exprs as flink_sql
from tests.compare import same_engine_value
from tests.flink_batch import batch_table_env

pytestmark = [pytest.mark.flink, pytest.mark.slow]

COLUMNS = {"x": "float64", "f": "float32", "j": "int64"}
SPECIAL = [math.inf, -math.inf, -0.0, 0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
           -1.7976931348623157e308, 0.5, -0.5, 1.5, -2.5, 2.675, -0.049, 0.05, 1e15 + 0.5, -1e300, 4.5e15, None]
F32 = [math.inf, -math.inf, -0.0, 0.0, 3.4028234663852886e38, -3.4028234663852886e38, 1.401298464324817e-45, 0.5,
       -0.5, -2.5, 0.25, None]
MATH = [
    # round: every digits form, on the doubles and the floats, and on NaN made inside the expression
    "round(x)", "round(-x)", "round(x, 1)", "round(x, 2)", "round(x, 5)", "round(x, -1)", "round(x, -2)",
    "round(f)", "round(f, 1)", "round(f, -1)", "round(x - x)", "round(x - x, 2)", "round(x * 0, -1)",
    "round(x / 3, 3)", "round(x * 1e300, 1)", "round(x / 1e300, 2)", "round(-x, -3)", "round(x + f, 1)",
    "round(j / 2)", "round(j, -1)", "round(0 / x, 1)",
    # the other math of exprs
    "abs(x)", "abs(f)", "abs(x - x)", "abs(-x)", "-x", "-f", "x + 1", "x - x", "x * 0", "x * 2", "x / 2", "x / 0",
    "0 / x", "x / x", "x // 2", "x // x", "f * 1.5", "f / 0", "x + f", "j / 0", "j * 1.5 - x",
    # comparisons, CASE, COALESCE, NULLIF, IN, BETWEEN (on NaN and signed zeros too)
    "x > 0", "x < 0", "x = 0", "x <> 0", "x >= x", "(x - x) = (x - x)", "(x - x) > 0", "(x - x) < 0",
    "x BETWEEN -1 AND 1", "x IN (0.0, 1.5)", "f = 0", "CASE WHEN x = x THEN 'eq' ELSE 'ne' END",
    "CASE WHEN x - x = 0 THEN 'finite' ELSE 'other' END", "coalesce(x - x, 7.0)", "nullif(x, 0)",
    "nullif(x - x, 0)", "CASE WHEN x > 0 THEN x ELSE -x END",
    # casts (where DuckDB's CAST fails on a row, Flink's is NULL and ExprCompiler.raises is true there: the Flink
    # backfill then fails like the DuckDB backfill; it used to be +-inf for a double beyond float32)
    "CAST(x AS FLOAT)", "CAST(-x * 2 AS FLOAT)", "CAST(x * 1e30 AS FLOAT)", "TRY_CAST(x AS FLOAT)", "CAST(x AS INTEGER)",
    "CAST(x AS BIGINT)", "CAST(j AS INTEGER)", "CAST(f AS INTEGER)", "coalesce(CAST(x AS FLOAT), f)",
    "TRY_CAST(x AS BIGINT)", "TRY_CAST(x AS INTEGER)", "CAST(x / 1e300 AS FLOAT)", "CAST(f AS DOUBLE)",
    "TRY_CAST(f AS BIGINT)", "CAST(j AS DOUBLE)", "CAST(f * 2 AS FLOAT)",
    # NaN in every comparison (made inside the expression) and -0.0 in IN
    "(x - x) >= 0", "(x - x) <= x", "(x - x) <> (x - x)", "x / x > 0.5", "(x - x) BETWEEN 0 AND 1",
    "(x - x) IN (0.0, 1.5)", "x - x NOT IN (1.5)", "x IN (-0.0)", "x NOT IN (0.0, 1.5)", "f IN (0.0, 0.5)",
    "(x * 0) > f", "f < (x - x)", "nullif(x / x, 1.0)",
    # -0.0 in comparisons that Calcite turns into a range search (Sarg: Double.compareTo puts -0.0 below 0.0)
    "x >= 0 AND x < 10", "x > -1 AND x <= 0", "x BETWEEN 0 AND 1", "x BETWEEN -1 AND -0.0", "x = 0 OR x = 1.5",
    "x < 0 OR x > 2", "f >= 0 AND f <= 0", "CASE x WHEN 0 THEN 'zero' WHEN 1.5 THEN 'one' ELSE 'other' END",
    "CASE WHEN x >= 0 AND x < 1 THEN 'unit' ELSE 'out' END",
]


def _rows(seed: int):
    rng = random.Random(seed)
    rows = [(x, f, j) for x in SPECIAL for f, j in [(rng.choice(F32), rng.choice([None, 0, -7, 15, 2**53 + 1]))]]
    rows += [(f, f, None) for f in F32]
    for _ in range(40):
        x = rng.choice([rng.uniform(-1e6, 1e6), rng.choice(SPECIAL), round(rng.uniform(-100, 100), 1) + 0.05,
                        rng.randint(-10, 10) / 2, math.ldexp(rng.random(), rng.randint(-1074, 1023))])
        rows.append((x, rng.choice(F32 + [rng.uniform(-1e3, 1e3)]), rng.randint(-2**40, 2**40)))
    return rows


def _duck(rows, exprs, types):
    import duckdb

    duck = {"int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR",
            "int32": "INTEGER"}
    con = duckdb.connect()
    con.register("src", pa.table({"id": list(range(len(rows))), **{c: [r[k] for r in rows] for k, c in enumerate(COLUMNS)}},
                                 schema=_schema()))
    out = {}
    for k, (e, t) in enumerate(zip(exprs, types)):
        try:
            values = con.sql(f"SELECT id, CAST(({e}) AS {duck[t]}) FROM src ORDER BY id").fetchall()
        except duckdb.Error:  # an expression DuckDB refuses on some rows: row by row, the failures as FAILS
            out[k] = {}
            for i in range(len(rows)):
                try:
                    out[k][i] = con.sql(f"SELECT CAST(({e}) AS {duck[t]}) FROM src WHERE id = {i}").fetchall()[0][0]
                except duckdb.Error:
                    out[k][i] = FAILS
            continue
        out[k] = {i: v for i, v in values}
    return out


FAILS = object()  # DuckDB raises on this row


def _schema():
    return pa.schema([("id", pa.int64()), ("x", pa.float64()), ("f", pa.float32()), ("j", pa.int64())])


def test_non_finite_values_and_signed_zeros_through_flink_math_equal_duckdb(tmp_path):

    from featurestore.validation import Binder

    rows = _rows(11)
    path = tmp_path / "samples.parquet"
    pq.write_table(pa.table({"id": list(range(len(rows))), **{c: [r[k] for r in rows] for k, c in enumerate(COLUMNS)}},
                            schema=_schema()), path)
    binder = Binder(COLUMNS, "samples")
    types = [binder.dtype(e) for e in MATH]
    duck = _duck(rows, MATH, types)
    comp = flink_sql.ExprCompiler({c: flink_sql.FExpr(flink_sql.qi(c), d) for c, d in COLUMNS.items()})
    # a FLOAT result reaches Python as its text, which PyFlink cannot read for Infinity/NaN: widened (exact)
    selects, raises = [], []
    for k, (e, t) in enumerate(zip(MATH, types)):
        sql = flink_sql._cast_sql(comp.compile(e), t)
        selects.append(f"CAST({sql} AS DOUBLE) AS e{k}" if t == "float32" else f"{sql} AS e{k}")
        raises.append(f"({' OR '.join(comp.raises)}) IS TRUE AS r{k}" if comp.raises else f"FALSE AS r{k}")
    t_env = batch_table_env(tmp_path, udfs=False)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE samples (id BIGINT, x DOUBLE, f FLOAT, j BIGINT) WITH ("
                      f"'connector' = 'filesystem', 'path' = '{path.resolve().as_uri()}', 'format' = 'parquet')")
    with t_env.execute_sql("SELECT id, " + ", ".join(selects + raises) + " FROM samples").collect() as result:
        flink = {r[0]: tuple(r)[1:] for r in result}
    assert sorted(flink) == list(range(len(rows)))
    problems, failing = [], 0
    for k, (expr, dtype) in enumerate(zip(MATH, types)):
        for rid in range(len(rows)):
            fails, flagged = duck[k][rid] is FAILS, flink[rid][len(MATH) + k]
            failing += fails
            if fails != flagged:
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB {'fails' if fails else 'does not fail'}, Flink's "
                                f"raises flag {flagged}")
            elif fails and expr.startswith("CAST(") and flink[rid][k] is not None:  # the stream's value: NULL
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB fails, Flink {flink[rid][k]!r} (NULL expected)")
            elif not fails and not same_engine_value(duck[k][rid], flink[rid][k], dtype):
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB {duck[k][rid]!r}, Flink {flink[rid][k]!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])
    assert failing > 0  # the rows hold values DuckDB's casts refuse
