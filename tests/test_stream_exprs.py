"""The streaming job's expressions (engines/flink/exprs.py): each whitelisted construct compiled to Flink SQL
gives DuckDB's values (one Flink batch job evaluates all of them); unsupported constructs are plan-time errors
with exact texts, reported together; views without a stream face are not checked; explain prints the job."""

from __future__ import annotations

import sys

import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink import exprs as flink_sql
from featurestore.errors import FeatureStoreError, RequestError
from featurestore.store import FeatureStore
from tests.compare import same_engine_value
from tests.randomrepo import DEFINITIONS, write_repo
from tests.stream_helpers import stream_definitions


# -- expressions ------------------------------------------------------------------------------------------
EXPR_COLUMNS = {"i": "int64", "j": "int64", "n": "int32", "x": "float64", "y": "float64", "f": "float32",
                "s": "string", "s2": "string", "b": "bool"}
EXPR_ROWS = [
    (1, 7, 2, 3, 2.5, -2.5, 1.5, "abc", "a%", True),
    (2, -7, 2, -3, 3.5, 0.0, -0.1, "É😀x", "_b%", False),
    (3, 0, 0, 0, 2.675, 1.005, 2.5, "", "", None),
    (4, None, 3, None, None, -0.5, None, None, "x", True),
    (5, 9223372036854775, -4, 2147483, -1234.5678, 0.285, 3.14159, "Hello World", "%World", False),
    (6, 5, -2, 7, 1e15 + 0.5, -3.5, -2.5, "ab\\c", "ab_", True),
    (7, -5, 3, -2147483647, 0.49999999999999994, 2.5, 0.5, "e\u0301t", "E%", None),
    (8, 15, 10, 1, -0.0, 1e-7, 7.0, "MiXeD", "mixed", True),
    (9, 2, -1, -1, 1.5, -0.0, 2.0, "ß", "SS", False),
]
EXPRESSIONS = [
    # arithmetic: DuckDB's types and rules (/ is a float division; // and % truncate on integers)
    "i + j", "i - j * 2", "j * n", "-j", "j / n", "j // n", "j % n", "x / y", "x // y", "f / 2", "f * 1.5",
    "x * 1.5", "j * 1.5", "j + 0.1 + 0.2", "x + f", "n + 1", "n / 0", "x / 0", "j // 0", "j % 0", "(j + n) * 2 - 1",
    "1e3 * j", "x - 0.5",
    # comparisons and logic (three-valued)
    "j > n", "x >= y", "s < s2", "s = 'abc'", "s <> s2", "b AND j > 0", "b OR j > 0", "NOT b", "s IS NULL",
    "s IS NOT NULL", "b IS TRUE", "b IS NOT TRUE", "b IS FALSE", "x * 2 > 5 AND NOT b", "j = x", "f < 1",
    # CASE / IF / COALESCE / NULLIF
    "CASE WHEN j > 0 THEN 'pos' WHEN j < 0 THEN 'neg' ELSE 'zero' END", "CASE n WHEN 2 THEN x WHEN 3 THEN y END",
    "CASE WHEN b THEN j ELSE 2.5 END", "if(b, j, n)", "coalesce(j, n)", "coalesce(x, j, 0)", "coalesce(s, 'none')",
    "nullif(j, 5)", "CASE WHEN b THEN NULL ELSE x END",
    # casts
    "CAST(x AS BIGINT)", "TRY_CAST(x * 1e5 AS INTEGER)", "TRY_CAST(j * 1000 AS INTEGER)", "CAST(y AS INTEGER)",
    "CAST(f AS BIGINT)", "CAST(j AS VARCHAR)", "CAST(b AS VARCHAR)", "CAST(j AS DOUBLE)", "CAST(n AS BOOLEAN)",
    "CAST(b AS INTEGER)", "x::FLOAT", "CAST(2.5 AS INTEGER)", "TRY_CAST(x AS INTEGER)", "CAST(n AS BIGINT)",
    # IN, BETWEEN, LIKE
    "n IN (2, 3)", "n NOT IN (2, NULL)", "s IN ('abc', 'MiXeD')", "x BETWEEN 0 AND 3", "j NOT BETWEEN -5 AND 5",
    "s LIKE 'a%'", "s LIKE s2", "s NOT LIKE '%x'", "s ILIKE 'mixed'", "s ILIKE s2",
    # functions
    "lower(s)", "upper(s)", "length(s)", "abs(j)", "abs(x)", "abs(f)", "round(x)", "round(-x)", "round(x / 1000, 2)",
    "round(x, 2)", "round(y, 2)", "round(x, -2)", "round(f, 1)", "round(j, -1)", "round(n)", "round(1.25, 1)",
    "s || s2", "s || 'z'", "length(s || s2)",
    # non-finite values (x / y is infinite where y is 0 or -0.0)
    "x / y", "round(x / y, 1)", "round(x / y)", "TRY_CAST(x / y AS BIGINT)", "abs(x / y)", "x / y > 1e300",
]
# Known differences (docs/streaming.md): Java upper-cases 'ß' to 'SS', DuckDB to 'ẞ'.
KNOWN_DIFFERENCES = {("upper(s)", 9)}


def _duck_values(exprs):
    import duckdb

    from featurestore.validation import Binder

    duck = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE",
            "bool": "BOOLEAN"}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET error_on_division_by_zero = false")  # where DuckDB would fail, the stream yields NULL
    con.execute("CREATE TABLE samples (id BIGINT, " + ", ".join(f"{c} {duck[d]}" for c, d in EXPR_COLUMNS.items()) + ")")
    con.executemany("INSERT INTO samples VALUES (" + ", ".join("?" * (len(EXPR_COLUMNS) + 1)) + ")", EXPR_ROWS)
    binder = Binder(EXPR_COLUMNS, "samples")
    types = [binder.dtype(e) for e in exprs]
    sql = "SELECT id, " + ", ".join(f"CAST(({e}) AS {duck[t]})" for e, t in zip(exprs, types)) + " FROM samples"
    return types, {r[0]: r[1:] for r in con.sql(sql).fetchall()}


@pytest.mark.flink
@pytest.mark.slow
def test_whitelisted_expressions_equal_duckdb():
    """Every construct the streaming job accepts, on sample values (nulls, negatives, ties at .5, zero
    divisors, -0.0, infinities, non-ASCII), gives DuckDB's value: one Flink batch job for all of them."""
    from pyflink.common import Configuration
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from featurestore.engines.flink.tables import expression_function_ddl
    from featurestore.engines.flink.udf import udf_jar

    types, duck = _duck_values(EXPRESSIONS)
    comp = flink_sql.ExprCompiler({c: flink_sql.FExpr(flink_sql.qi(c), d) for c, d in EXPR_COLUMNS.items()})
    selects = [f"{flink_sql._cast_sql(comp.compile(e), t)} AS e{k}" for k, (e, t) in enumerate(zip(EXPRESSIONS, types))]
    conf = Configuration()
    conf.set_string("pipeline.jars", udf_jar().resolve().as_uri())  # the Java functions expressions call
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", "1")
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())
    ft = {"string": DataTypes.STRING(), "int32": DataTypes.INT(), "int64": DataTypes.BIGINT(),
          "float32": DataTypes.FLOAT(), "float64": DataTypes.DOUBLE(), "bool": DataTypes.BOOLEAN()}
    schema = DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT())]
                           + [DataTypes.FIELD(c, ft[d]) for c, d in EXPR_COLUMNS.items()])
    t_env.create_temporary_view("samples", t_env.from_elements(EXPR_ROWS, schema))
    select = "SELECT id, " + ", ".join(selects) + " FROM samples"
    for ddl in expression_function_ddl([select]):
        t_env.execute_sql(ddl)
    with t_env.execute_sql(select).collect() as rows:
        flink = {r[0]: tuple(r)[1:] for r in rows}
    problems = []
    for k, (expr, dtype) in enumerate(zip(EXPRESSIONS, types)):
        for rid in sorted(duck):
            if (expr, rid) in KNOWN_DIFFERENCES:
                continue
            if not same_engine_value(duck[rid][k], flink[rid][k], dtype):
                problems.append(f"{expr!r} row {rid}: DuckDB {duck[rid][k]!r}, Flink {flink[rid][k]!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])


UNSUPPORTED = [
    ("dayname(ts)", "function dayname() is not supported in the streaming job (" + flink_sql.SUPPORTED_TEXT + ")"),
    ("regexp_matches(tag, 'a.')", "function regexp_matches() is not supported in the streaming job ("
     + flink_sql.SUPPORTED_TEXT + ")"),
    ("CAST(amount AS VARCHAR)", "CAST of a float64 to a string formats numbers differently in DuckDB and Flink"),
    ("CAST(tag AS DATE) IS NULL", "CAST to DATE is not supported in the streaming job (use VARCHAR, INTEGER, BIGINT, FLOAT, "
     "DOUBLE, BOOLEAN or TIMESTAMP)"),
    ("amount % 2", "'%' is supported on integers only in the streaming job"),
    ("tag = 1", "'=' mixes types int32, string (DuckDB and Flink convert them differently); add a CAST"),
    ("ts > '2026-03-01'", "'>' mixes types string, timestamp (DuckDB and Flink convert them differently); add a CAST"),
    ("CAST(amount AS TIMESTAMP)", "CAST of a float64 to a timestamp is not supported in the streaming job (a timestamp "
     "column, or a literal: TIMESTAMP '2026-03-01 12:00:00')"),
    ("tag LIKE 'a\\%'", "LIKE patterns with a backslash are not supported in the streaming job"),
    ("CAST(qty AS DECIMAL(10, 2))", "CAST to DECIMAL(10, 2) is not supported in the streaming job "
     "(use VARCHAR, INTEGER, BIGINT, FLOAT, DOUBLE, BOOLEAN or TIMESTAMP)"),
]


@pytest.mark.parametrize("expr,reason", UNSUPPORTED)
def test_unsupported_expression_is_a_plan_time_error_naming_view_and_feature(tmp_path, expr, reason):
    defs = stream_definitions("t").replace(
        'Latest("qty + 1", name="last_qty_plus_one")', f'Latest({expr!r}, name="bad_feature")')
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(defs)
    store = FeatureStore(root)
    message = f"expression {expr!r} cannot run in the streaming job: {reason}"
    problems = flink_sql.check_repo(store.repo)
    assert [(p.obj, p.message) for p in problems] == [("profile.bad_feature", f"streaming: feature 'bad_feature': {message}")]
    assert problems[0].file == "definitions/features.py" and problems[0].line > 0
    with pytest.raises(FeatureStoreError) as err:
        streaming.plan(store)
    assert str(err.value) == f"feature view 'profile', feature 'bad_feature': {message}"


def test_unsupported_filter_and_projection_are_reported_together(tmp_path):
    defs = stream_definitions("t").replace('filter="flag",', 'filter="regexp_matches(tag, \'a\')",').replace(
        '"tag_len": "length(tag)"', '"tag_len": "strlen(tag)"')
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(defs)
    problems = flink_sql.check_repo(FeatureStore(root).repo)
    fn = "is not supported in the streaming job (" + flink_sql.SUPPORTED_TEXT + ")"
    assert [(p.obj, p.message) for p in problems] == [
        ("qty_stats", f"streaming: filter: expression \"regexp_matches(tag, 'a')\" cannot run in the streaming job: "
                      f"function regexp_matches() {fn}"),
        ("qty_stats", f"streaming: projection 'tag_len': expression 'strlen(tag)' cannot run in the streaming job: "
                      f"function strlen() {fn}"),
    ]


def test_views_without_a_stream_face_are_not_checked_and_cannot_stream(tmp_path):
    root = write_repo(tmp_path)  # the plain random repo: no stream face anywhere
    defs = DEFINITIONS.replace('Latest("qty + 1", name="last_qty_plus_one")', 'Latest("dayname(ts)", name="h")')
    (root / "definitions" / "features.py").write_text(defs)
    store = FeatureStore(root)
    assert flink_sql.check_repo(store.repo) == []
    with pytest.raises(RequestError) as err:
        store.stream(bounded=True)
    assert str(err.value) == "no feature view has a source with a stream face (KafkaTopic): nothing to stream"


def test_explain_prints_every_statement_of_the_job(tmp_path):
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(stream_definitions("tx_topic"))
    text = streaming.explain(FeatureStore(root))
    assert "'topic' = 'tx_topic'" in text and "fs_parse_json_record(`__value`, " in text
    assert "INSERT INTO fs_staged_events" in text  # each event once; the committer splits it by view
    for view in ("amount_stats", "qty_stats", "profile", "profile_forever", "pair_stats"):
        assert f"--   view {view}: rows where `__v" in text
    assert "INSERT INTO fs_dead_letters_events" in text
    assert text.count("-> Redis writer") == 2  # two key groups: (user_id) and (user_id, shop)
