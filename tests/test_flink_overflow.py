"""Integer overflow: one rule in every job, the rule of a failing CAST (docs/streaming.md). DuckDB's ``+ - *``,
unary minus, ``abs``, ``//`` and ``%`` of INTEGER/BIGINT fail on an overflow (and ``//``, ``%`` on a zero
divisor); the Flink jobs compute them with ``fs_add_exact`` ... (``Math.*Exact``: NULL on an overflow, where
Java's arithmetic would wrap to a wrong value) and flag the row (``ExprCompiler.raises``): every job (both backfills,
the stream) makes the event a dead letter of the view (tests/test_stream_failing_exprs.py), never a wrapped value. A text cast to BOOLEAN follows the same
rule (DuckDB fails on a text other than its true/false words).

The rows come from a Parquet file (values the planner cannot fold): the types' extremes and their
neighbours, zeros, -1, NULLs. Every expression's Flink value equals DuckDB's where DuckDB succeeds; where
it fails, Flink's value is NULL and its raises flag is set, and nowhere else. Then both backfills of a view
with an overflowing projection fail in one line naming it."""

from __future__ import annotations

import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.flink import exprs as flink_sql
from tests.compare import same_engine_value
from tests.flink_batch import batch_table_env

pytestmark = [pytest.mark.flink, pytest.mark.slow]

COLUMNS = {"j": "int64", "k": "int64", "n": "int32", "m": "int32", "s": "string"}
I64 = [2**63 - 1, 2**63 - 2, -2**63, -2**63 + 1, 2**62, -2**62, 2**32, 3037000499, 3037000500, -3037000500, -1, 0, 1,
       2, None]
# texts DuckDB reads as booleans (ASCII letters in any case, nothing around them) and texts it fails on
TEXTS = ["t", "T", "true", "TrUe", "y", "YES", "1", "f", "False", "n", "NO", "0", " true", "true ", "true\n", "\ttrue",
         "tru", "on", "2", "01", "1.0", "", "ｔｒｕｅ", "İ", "yes\x00", None]
I32 = [2**31 - 1, -2**31, -2**31 + 1, 2**30, 46340, 46341, -46341, 65536, -1, 0, 1, 2, None]
EXPRESSIONS = [
    "j + k", "j - k", "j * k", "-j", "abs(j)", "j + 1", "j - 1", "j * 2", "k * -1", "n + m", "n - m", "n * m", "-n",
    "abs(n)", "n + 1", "n * 2", "n + j", "n * j", "j * n - k", "(j + k) * 2 - 1", "n * m + 1", "-(j * 1)",
    "CASE WHEN j > 0 THEN j + k ELSE 0 END", "coalesce(k, j * j)", "j * k > 0", "abs(j) = j",
    "TRY_CAST(j AS INTEGER) + m", "j * 1.5", "n * 2.0", "j / k",
    # '//' and '%': the minimum // -1 and % -1 overflow, a zero divisor fails DuckDB too (not where a CASE skips it)
    "j // k", "j % k", "n // m", "n % m", "j // -1", "j % -1", "n // -1", "j // 0", "n % 0", "j // n", "n % j",
    "CASE WHEN k <> 0 THEN j // k END", "coalesce(j, 1) // coalesce(k, 1)", "(j // k) * 2",
    # a text cast to BOOLEAN: DuckDB fails on any other text (not where a CASE skips it); TRY_CAST is NULL
    "s::BOOLEAN", "CAST(s AS BOOLEAN)", "TRY_CAST(s AS BOOLEAN)", "CASE WHEN length(s) <= 3 THEN s::BOOLEAN END",
    "coalesce(TRY_CAST(s AS BOOLEAN), s::BOOLEAN)", "NOT s::BOOLEAN",
]
FAILS = object()  # DuckDB raises on this row


def _rows(seed: int):
    rng = random.Random(seed)
    rows = []
    for _ in range(160):
        rows.append((rng.choice(I64), rng.choice(I64), rng.choice(I32), rng.choice(I32), rng.choice(TEXTS)))
    rows += [(a, b, None, None, None) for a, b in ((2**63 - 1, 1), (-2**63, -1), (-2**63, 1), (3037000500, 3037000500))]
    rows += [(None, None, None, None, text) for text in TEXTS]
    return rows


def _schema():
    return pa.schema([("id", pa.int64()), ("j", pa.int64()), ("k", pa.int64()), ("n", pa.int32()), ("m", pa.int32()),
                      ("s", pa.string())])


def _duck(rows, exprs, types):
    import duckdb

    duck = {"int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE", "bool": "BOOLEAN"}
    con = duckdb.connect()
    con.register("src", pa.table({"id": list(range(len(rows))), **{c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}},
                                 schema=_schema()))
    out = {}
    for x, (e, t) in enumerate(zip(exprs, types)):
        out[x] = {}
        for i in range(len(rows)):  # row by row: DuckDB fails the whole query on one row
            try:
                out[x][i] = con.sql(f"SELECT CAST(({e}) AS {duck[t]}) FROM src WHERE id = {i}").fetchall()[0][0]
            except duckdb.Error:
                out[x][i] = FAILS
    return out


def test_integer_overflow_is_null_and_flagged_in_flink_where_duckdb_fails(tmp_path):

    from featurestore.engines.flink.tables import expression_function_ddl
    from featurestore.validation import Binder

    rows = _rows(17)
    path = tmp_path / "samples.parquet"
    pq.write_table(pa.table({"id": list(range(len(rows))), **{c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}},
                            schema=_schema()), path)
    binder = Binder(COLUMNS, "samples")
    types = [binder.dtype(e) for e in EXPRESSIONS]
    duck = _duck(rows, EXPRESSIONS, types)
    comp = flink_sql.ExprCompiler({c: flink_sql.FExpr(flink_sql.qi(c), d) for c, d in COLUMNS.items()})
    selects, raises = [], []
    for x, (e, t) in enumerate(zip(EXPRESSIONS, types)):
        selects.append(f"{flink_sql._cast_sql(comp.compile(e), t)} AS e{x}")
        raises.append(f"({' OR '.join(comp.raises)}) IS TRUE AS r{x}" if comp.raises else f"FALSE AS r{x}")
    t_env = batch_table_env(tmp_path)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE samples (id BIGINT, j BIGINT, k BIGINT, n INT, m INT, s STRING) WITH ("
                      f"'connector' = 'filesystem', 'path' = '{path.resolve().as_uri()}', 'format' = 'parquet')")
    select = "SELECT id, " + ", ".join(selects + raises) + " FROM samples"
    for ddl in expression_function_ddl([select]):
        t_env.execute_sql(ddl)
    with t_env.execute_sql(select).collect() as result:
        flink = {r[0]: tuple(r)[1:] for r in result}
    assert sorted(flink) == list(range(len(rows)))
    problems, failing = [], 0
    for x, (expr, dtype) in enumerate(zip(EXPRESSIONS, types)):
        for rid in range(len(rows)):
            fails, flagged, value = duck[x][rid] is FAILS, flink[rid][len(EXPRESSIONS) + x], flink[rid][x]
            failing += fails
            if fails != flagged:
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB {'fails' if fails else 'does not fail'}, Flink's "
                                f"raises flag {flagged}")
            elif fails and value is not None and (dtype in ("int64", "int32") or expr.startswith(("s::", "CAST("))):
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB fails, Flink {value!r} (NULL expected)")
            elif not fails and not same_engine_value(duck[x][rid], value, dtype):
                problems.append(f"{expr!r} on {rows[rid]}: DuckDB {duck[x][rid]!r}, Flink {value!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])
    assert failing > 100  # the rows overflow DuckDB's arithmetic often


DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "qty": "int64", "ts": "timestamp"}}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
squares = FeatureView(entities=[user], source=events, projections={{"sq": "qty * qty"}},
                      features=[Aggregation("sq", "sum", "1h", name="sq_1h")])
'''


def _repo(root, qty):
    from featurestore.store import FeatureStore

    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format())
    (root / "featurestore.yaml").write_text("project: t_overflow\ndefinitions: definitions\n")
    n = len(qty)
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(n)], "qty": pa.array(qty, pa.int64()),
                             "ts": pa.array([1_772_323_200_000 + i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root)


def test_both_backfills_dead_letter_an_event_an_overflowing_projection_fails_on(tmp_path):
    fine = [None, 3, -3037000499, 3037000499, 0]
    from featurestore.store import FeatureStore
    from tests.stream_helpers import assert_backfills_agree, backfill_letters

    clean = _repo(tmp_path / "clean", fine)
    shutil.copytree(clean.repo_path, tmp_path / "cleanf")

    (want,), (got,) = clean.backfill(), FeatureStore(tmp_path / "cleanf").backfill(engine="flink")
    assert (got.rows, got.dead_letters) == (want.rows, want.dead_letters) and want.rows == len(fine)
    a = clean.offline.table("squares", "ts").read().to_pylist()
    b = FeatureStore(tmp_path / "cleanf").offline.table("squares", "ts").read().to_pylist()
    assert sorted(map(repr, a)) == sorted(map(repr, b)) and 3037000499**2 in [r["sq"] for r in a]
    # its square is above 2^63 - 1: a dead letter of the view in both, worded alike; the other events stored
    duck = _repo(tmp_path / "bad", fine + [3037000500])
    shutil.copytree(duck.repo_path, tmp_path / "badf")
    results = assert_backfills_agree(duck, FeatureStore(tmp_path / "badf"))
    assert (results["squares"].rows, results["squares"].failed) == (len(fine), 1)
    ((reason, at),) = backfill_letters(duck)
    assert reason.startswith("view 'squares': projection 'sq' (qty * qty): an integer overflow") and "\n" not in reason
    assert at == 1_772_323_200_000 + len(fine)
