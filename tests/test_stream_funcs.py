"""The streaming job's functions (engines/flink/exprs_funcs.py): ``least``/``greatest``, ``concat``/``concat_ws``/
``||``, date parts of timestamps (``year(ts)`` ... ``date_part``, ``EXTRACT``) and ``epoch``/``epoch_ms``/
``epoch_us`` give DuckDB's values in both forms the Flink jobs carry timestamps in: the streaming job's
``TIMESTAMP`` (made by its own ``fs_timestamp_us``, read by ``fs_epoch_us``) and the Flink backfill's epoch
microseconds. Rows come from a Parquet file (values the planner cannot fold): NULLs, NaN made inside an
expression, -0.0, ties, the calendar's ends (years 1 and 9999), leap days, ISO week edges, a microsecond
before 1970, month ends, and random instants across years 1 to 9999; also ``IS [NOT] DISTINCT FROM``, ``ts +/-
INTERVAL`` and ``date_trunc`` (engines/flink/exprs_time.py). One Flink batch job for both forms.

Then one stream run (Kafka -> Flink) of definitions using them in filters, projections and features equals
the DuckDB backfill and the Flink backfill row for row; what stays refused is one line at plan time."""

from __future__ import annotations

import datetime
import random
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.flink import exprs as flink_sql
from featurestore.engines.flink.exprs_funcs import PART_NAMES
from featurestore.engines.flink.exprs_time import TRUNC_PARTS
from tests.compare import same_engine_value
from tests.flink_batch import batch_table_env

COLUMNS = {"i": "int64", "j": "int64", "n": "int32", "x": "float64", "y": "float64", "f": "float32",
           "s": "string", "s2": "string", "b": "bool", "ts": "timestamp", "u": "timestamp"}
CHUNK = 40  # expressions per Flink query of test_functions_equal_duckdb_in_the_stream_and_the_flink_backfill_forms
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_800_000_000 - 1  # 9999-12-31T23:59:59.999999Z
EPOCH = datetime.datetime(1970, 1, 1)


def _us(text: str) -> int:
    d = datetime.datetime.fromisoformat(text)
    return (d - EPOCH) // datetime.timedelta(microseconds=1)


EDGE_TIMES = [MIN_US, MIN_US + 1, MAX_US, MAX_US - 1, -1, -500, -1000, 0, 999, 1000, _us("1969-12-31 23:59:59.999500"),
              _us("2000-02-29 12:00:00"), _us("1900-02-28 23:59:59.999999"), _us("1900-03-01 00:00:00"),
              _us("2024-12-30 00:00:00"), _us("2021-01-03 23:59:59"), _us("2021-01-04 00:00:00"),
              _us("2020-12-31 00:00:00"), _us("1582-10-10 10:10:10.101010"), _us("0004-02-29 00:00:00"),
              _us("0400-12-31 23:00:00"), _us("2026-03-01 00:00:00.000001"), _us("9999-12-27 00:00:00"),
              _us("0001-01-07 00:00:00"), _us("2008-12-29 00:00:00"), _us("2010-01-03 00:00:00")]
# month ends and the hours around them (INTERVAL months clamp to the month's end; the order of months and hours)
MONTH_ENDS = [_us("2024-01-31 10:00:00"), _us("2024-01-30 23:00:00"), _us("2024-03-01 01:00:00"),
              _us("2024-03-31 01:00:00"), _us("2023-01-31 23:59:59.999999"), _us("1500-01-31 00:00:00"),
              _us("0001-01-31 12:00:00"), _us("9999-12-31 00:00:00"), _us("9999-11-30 23:00:00"),
              _us("0009-12-31 00:00:00"), _us("0099-05-01 00:00:00"), _us("2021-01-03 10:00:00")]


def _rows(seed: int):
    """(id, i, j, n, x, y, f, s, s2, b, ts us, u us): edge values, then random ones."""
    rng = random.Random(seed)
    rows = [
        (0, 1, 7, 2, 3.0, 2.5, -2.5, "abc", "a%", True, EDGE_TIMES[0], EDGE_TIMES[1]),
        (1, 2, None, 2, -3.0, 0.0, 1.5, None, "_b%", False, EDGE_TIMES[2], None),
        (2, 3, 0, None, 0.0, -0.0, 2.5, "", "", None, None, EDGE_TIMES[3]),
        (3, None, 3, 3, None, -0.5, None, "É😀x", None, True, EDGE_TIMES[4], EDGE_TIMES[4]),
        (4, 5, -4, -4, -0.0, 0.0, -0.0, "Hello", "Hello", False, EDGE_TIMES[5], EDGE_TIMES[6]),
        (5, 9223372036854775807, -9223372036854775807, 2147483647, 1e308, -1e308, 3.4e38, "ß", "SS", True,
         EDGE_TIMES[7], EDGE_TIMES[8]),
    ]
    times = EDGE_TIMES[9:] + MONTH_ENDS
    for k in range(6, 90):
        pick = lambda gen: None if rng.random() < 0.1 else gen()  # noqa: E731
        ts = times[k - 6] if k - 6 < len(times) else rng.randrange(MIN_US, MAX_US)
        rows.append((k, pick(lambda: rng.randrange(-10, 10)), pick(lambda: rng.randrange(-10, 10)),
                     pick(lambda: rng.randrange(-10, 10)), pick(lambda: rng.choice([0.0, -0.0, 1.5, -2.5, 7.0])),
                     pick(lambda: rng.choice([0.0, -0.0, 1.5, 2.5])), pick(lambda: rng.choice([0.5, -0.0, 2.0])),
                     pick(lambda: rng.choice(["a", "b", "", "ab"])), pick(lambda: rng.choice(["a", "b", "z"])),
                     pick(lambda: rng.random() < 0.5), pick(lambda: ts), pick(lambda: rng.randrange(MIN_US, MAX_US))))
    return rows


EXPRESSIONS = [
    # least / greatest: NULLs skipped, DuckDB's common type, NaN above +inf, the first of equal -0.0/0.0 kept
    "least(i, j)", "greatest(i, j, n)", "least(n, 2)", "least(x, y)", "greatest(x, y)", "least(y, x)",
    "greatest(y, x)", "least(x, y, 0.0)", "greatest(x / y, x)", "least(x / y, 1e300)", "greatest(x - x, y)",
    "least(f, x)", "greatest(f, 1.25)", "least(j, 2.5)", "greatest(i, 1e3)", "least(s, s2)", "greatest(s, s2, 'b')",
    "least(b, TRUE)", "greatest(b, FALSE)", "least(ts, u)", "greatest(ts, u)", "least(j, NULL)", "greatest(NULL, s)",
    "least(NULL, CAST(NULL AS INTEGER))", "least(i)", "greatest(j, i) > least(j, i)", "least(x, y) = greatest(x, y)",
    # text: concat skips NULLs, || is NULL with one; integers and booleans as DuckDB's text
    "concat(s, s2)", "concat(s, NULL, s2)", "concat(NULL, NULL)", "concat(s)", "concat(i, '-', b, '-', n)",
    "concat_ws(',', s, s2, i)", "concat_ws(s2, s, 'z')", "concat_ws(NULL, s)", "concat_ws(',', NULL)",
    "s || s2", "s || i", "j || b", "n || CAST(NULL AS VARCHAR)", "length(concat(s, s2))",
    # date parts
    "year(ts)", "month(ts)", "day(ts)", "dayofmonth(ts)", "hour(ts)", "minute(ts)", "second(ts)", "millisecond(ts)",
    "microsecond(ts)", "dayofweek(ts)", "weekday(ts)", "isodow(ts)", "dayofyear(ts)", "week(ts)", "weekofyear(ts)",
    "isoyear(ts)", "yearweek(ts)", "quarter(ts)", "decade(ts)", "century(ts)", "millennium(ts)", "era(ts)",
    "epoch(ts)", "epoch_ms(ts)", "epoch_us(ts)", "year(u)", "week(u)", "dayofyear(u)", "epoch_ms(u)",
    "date_part('year', u)", "date_part('epoch', u)", "datepart('dow', ts)", "date_part('Hour', ts)",
    "EXTRACT(year FROM ts)", "EXTRACT(dow FROM u)", "EXTRACT('isodow' FROM ts)", "EXTRACT(epoch FROM ts)",
    "EXTRACT(millisecond FROM u)", "year(greatest(ts, u))", "hour(coalesce(ts, u))", "epoch_ms(least(ts, u))",
    "year(CAST(NULL AS TIMESTAMP))", "CASE WHEN month(ts) > 6 THEN 'h2' ELSE 'h1' END", "epoch_ms(ts) - epoch_ms(u)",
    *(f"date_part('{name}', u)" for name in sorted(PART_NAMES)),
    # IS [NOT] DISTINCT FROM: never NULL, NULL equals only NULL; floats as '=' (-0.0 = 0.0, NaN = NaN), all types
    "i IS DISTINCT FROM j", "i IS NOT DISTINCT FROM j", "n IS DISTINCT FROM i", "n IS NOT DISTINCT FROM 2",
    "x IS DISTINCT FROM y", "x IS NOT DISTINCT FROM y", "x / y IS NOT DISTINCT FROM y / x", "x - x IS DISTINCT FROM y",
    "f IS NOT DISTINCT FROM x", "f IS DISTINCT FROM 1.5", "x IS NOT DISTINCT FROM 0", "s IS DISTINCT FROM s2",
    "s IS NOT DISTINCT FROM 'abc'", "b IS DISTINCT FROM TRUE", "b IS NOT DISTINCT FROM NULL", "ts IS DISTINCT FROM u",
    "ts IS NOT DISTINCT FROM u", "NULL IS NOT DISTINCT FROM NULL", "NULL IS DISTINCT FROM NULL",
    "i IS DISTINCT FROM NULL", "NOT (j IS DISTINCT FROM 0)", "least(x, y) IS NOT DISTINCT FROM greatest(y, x)",
    "greatest(ts, u) IS NOT DISTINCT FROM coalesce(u, ts)",
    # ts +/- INTERVAL (DuckDB's order: adding months first, clamped to the month's end; subtracting microseconds
    # first) and date_trunc; a result outside years 1 to 9999 is NULL (and fails the row: raises)
    "u + INTERVAL 1 MONTH", "u - INTERVAL 1 MONTH", "ts + INTERVAL 1 MONTH", "ts - INTERVAL 3 HOURS",
    "u + INTERVAL '1 month 2 hours'", "u - INTERVAL '1 month 2 hours'", "INTERVAL '1 year -1 day' + u",
    "u - INTERVAL '1 month 1 day'", "u + INTERVAL '1 month -31 days 1 microsecond'", "u + INTERVAL 1 DAY",
    "u - INTERVAL 1 MICROSECOND", "u + INTERVAL '1.5 days'", "u + INTERVAL '1.5 months'", "u + INTERVAL 13 MONTHS",
    "u - INTERVAL 1000 YEARS", "u + INTERVAL 1 WEEK", "CAST(NULL AS TIMESTAMP) + INTERVAL 1 DAY",
    "greatest(ts, u) - INTERVAL 1 YEAR",
    *(f"date_trunc('{name}', u)" for name in sorted(TRUNC_PARTS)), "date_trunc('week', ts)", "date_trunc('month', ts)",
    "datetrunc('day', u)", "date_trunc('hour', u) + INTERVAL 1 HOUR", "date_trunc('year', greatest(ts, u))",
    "date_trunc('day', CAST(NULL AS TIMESTAMP))",
]
DUCK_TYPES = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE",
              "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}


def _duck_values(rows, exprs, types):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cols = ", ".join(f"{c} {'BIGINT' if d == 'timestamp' else DUCK_TYPES[d]}" for c, d in COLUMNS.items())
    con.execute(f"CREATE TABLE raw_rows (id BIGINT, {cols})")
    con.executemany(f"INSERT INTO raw_rows VALUES ({', '.join('?' * (len(COLUMNS) + 1))})", rows)
    # the event time is stored truncated to milliseconds (floored)
    cols = ", ".join((f"make_timestamptz({c} - (({c} % 1000) + 1000) % 1000) AS {c}" if c == "ts" else
                      f"make_timestamptz({c}) AS {c}") if d == "timestamp" else c for c, d in COLUMNS.items())
    con.execute(f"CREATE VIEW samples AS SELECT id, {cols} FROM raw_rows")
    out = [(f"epoch_us(({e}))" if d == "timestamp" else f"({e})") for e, d in zip(exprs, types)]
    return {r[0]: r[1:] for r in con.sql(f"SELECT id, {', '.join(out)} FROM samples").fetchall()}


@pytest.mark.flink
@pytest.mark.slow
def test_functions_equal_duckdb_in_the_stream_and_the_flink_backfill_forms(tmp_path):

    from featurestore.engines.flink.ingest import TIME_VALUE_FUNCTION
    from featurestore.engines.flink.tables import expression_function_ddl
    from featurestore.engines.flink.udf import MICROS_TIMESTAMP_CLASS
    from featurestore.validation import Binder

    rows = _rows(5)
    path = tmp_path / "samples.parquet"
    arrow = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
             "float64": pa.float64(), "bool": pa.bool_(), "timestamp": pa.int64()}
    pq.write_table(pa.table({"id": [r[0] for r in rows], **{c: pa.array([r[k + 1] for r in rows], arrow[d])
                                                           for k, (c, d) in enumerate(COLUMNS.items())}}), path)
    binder = Binder(COLUMNS, "samples")
    types = [binder.dtype(e) for e in EXPRESSIONS]
    duck = _duck_values(rows, EXPRESSIONS, types)

    def selects(times_us: bool, prefix: str, ks: range):
        comp = flink_sql.ExprCompiler({c: flink_sql.FExpr(flink_sql.qi(c), d) for c, d in COLUMNS.items()},
                                      times_us=times_us)
        out = []
        for k in ks:
            e, t = EXPRESSIONS[k], types[k]
            v = comp.compile(e)
            if t == "timestamp":
                sql = v.sql if times_us else f"fs_epoch_us({v.sql})"
            else:
                sql = flink_sql._cast_sql(v, t)
            out.append(f"CAST({sql} AS DOUBLE) AS {prefix}{k}" if t == "float32" else f"{sql} AS {prefix}{k}")
            # where DuckDB's evaluation fails (here: a timestamp outside years 1 to 9999) the row is flagged
            out.append(f"COALESCE({' OR '.join(comp.raises) or 'FALSE'}, FALSE) AS {prefix}r{k}")
        return out

    t_env = batch_table_env(tmp_path)
    t_env.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION {TIME_VALUE_FUNCTION} AS '{MICROS_TIMESTAMP_CLASS}' LANGUAGE JAVA")
    flink_cols = {"string": "STRING", "int32": "INT", "int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE",
                  "bool": "BOOLEAN", "timestamp": "BIGINT"}
    t_env.execute_sql("CREATE TEMPORARY TABLE raw_rows (id BIGINT, " + ", ".join(f"{c} {flink_cols[d]}" for c, d in COLUMNS.items())
                      + f") WITH ('connector' = 'filesystem', 'path' = '{path.resolve().as_uri()}', 'format' = 'parquet')")
    # the streaming job's form: the event time a TIMESTAMP(3) (of whole milliseconds, as ingestion truncates it),
    # other timestamp values TIMESTAMP(6) made by its own function
    stream_cols = ", ".join(
        (f"CAST({TIME_VALUE_FUNCTION}({c} - MOD(MOD({c}, 1000) + 1000, 1000)) AS TIMESTAMP(3)) AS {c}" if c == "ts"
         else f"{TIME_VALUE_FUNCTION}({c}) AS {c}") if d == "timestamp" else c for c, d in COLUMNS.items())
    t_env.create_temporary_view("streamed", t_env.sql_query(f"SELECT id, {stream_cols} FROM raw_rows"))
    backfill_cols = ", ".join(f"{c} - MOD(MOD({c}, 1000) + 1000, 1000) AS {c}" if c == "ts" else c for c in COLUMNS)
    t_env.create_temporary_view("backfilled", t_env.sql_query(f"SELECT id, {backfill_cols} FROM raw_rows"))
    results = {}
    for form, times_us in (("stream", False), ("Flink backfill", True)):
        table = "backfilled" if times_us else "streamed"
        results[form] = {}
        # a few dozen expressions per query: Flink plans one query of all of them in minutes, not seconds
        for lo in range(0, len(EXPRESSIONS), CHUNK):
            ks = range(lo, min(lo + CHUNK, len(EXPRESSIONS)))
            select = f"SELECT id, {', '.join(selects(times_us, 'e', ks))} FROM {table}"
            for ddl in expression_function_ddl([select]):
                t_env.execute_sql(ddl)
            with t_env.execute_sql(select).collect() as result:
                for r in result:
                    results[form].setdefault(r[0], []).extend(tuple(r)[1:])
    problems, outside_rows = [], 0
    for form, flink in results.items():
        assert sorted(flink) == sorted(duck), form
        for k, (expr, dtype) in enumerate(zip(EXPRESSIONS, types)):
            for rid in sorted(duck):
                want = duck[rid][k]
                outside = dtype == "timestamp" and want is not None and not MIN_US <= want <= MAX_US
                if outside:
                    want = None  # DuckDB's value is outside years 1 to 9999: NULL, and the row fails (raises)
                    outside_rows += 1
                got, raises = flink[rid][2 * k], flink[rid][2 * k + 1]
                if not same_engine_value(want, got, "int64" if dtype == "timestamp" else dtype) or raises != outside:
                    problems.append(f"{form}: {expr!r} row {rid} {rows[rid][10:]}: DuckDB {want!r} (outside: {outside}), "
                                    f"Flink {got!r} (raises: {raises})")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])
    assert outside_rows > 10  # the calendar's ends shifted and truncated beyond years 1 to 9999 were reached


# -- one stream run vs both backfills -------------------------------------------------------------------------
T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
E2E_SCHEMA = {"user_id": "string", "amount": "float64", "qty": "int64", "tag": "string", "exp": "timestamp",
              "ts": "timestamp"}
E2E_DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")

parts = FeatureView(
    entities=[user], source=events, filter="dayofweek(ts) = 0 AND (exp IS NULL OR month(exp) <> 2)",
    projections={{"y": "year(exp)", "wk": "yearweek(exp)", "h": "hour(ts)", "ms": "epoch_ms(ts)",
                  "exp_ms": "epoch_ms(exp)", "exp_s": "epoch(exp)", "lo": "least(amount, qty)",
                  "hi": "greatest(exp, ts)", "label": "concat(tag, '-', qty)", "pipe": "tag || qty",
                  "doy": "date_part('doy', exp)"}},
    features=[Latest("y"), Latest("wk"), Latest("label"), Latest("pipe"), Latest("hi"), Latest("exp_s"),
              Latest("EXTRACT(isodow FROM exp)", name="dow"), Latest("concat_ws('/', tag, h)", name="tag_h"),
              Aggregation("lo", "sum", "1h", name="lo_1h"), Aggregation("ms", "max", "1h", name="ms_1h"),
              Aggregation("least(qty, 3)", "sum", None, name="capped"),
              Aggregation("microsecond(exp)", "max", None, name="us_max")],
)
'''


def _e2e_events(seed: int, n: int = 300):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        ts_ms = T0_MS - 3_600_000 + rng.randrange(7_200_000)  # Saturday 23:00 to Sunday 01:00 (dayofweek 6 / 0)
        if rng.random() < 0.15 and rows:
            ts_ms = rows[-1]["ts"]
        exp = rng.choice([None, MIN_US, MAX_US, *EDGE_TIMES, ts_ms * 1000 + rng.randrange(-10**6, 10**6),
                          rng.randrange(MIN_US, MAX_US), rng.randrange(MIN_US, MAX_US)])
        rows.append({"user_id": f"u{rng.randrange(6)}", "amount": rng.choice([None, -0.0, 0.0, rng.uniform(-9, 9)]),
                     "qty": rng.choice([None, rng.randrange(-5, 10)]), "tag": rng.choice([None, "", "a", "É"]),
                     "exp": exp, "ts": ts_ms})
    return rows


def _e2e_repo(root, topic: str, project: str, rows):
    from featurestore.store import FeatureStore

    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(E2E_DEFINITIONS.format(schema=E2E_SCHEMA, topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    col = lambda name: [r[name] for r in rows]  # noqa: E731
    pq.write_table(pa.table({
        "user_id": pa.array(col("user_id"), pa.string()), "amount": pa.array(col("amount"), pa.float64()),
        "qty": pa.array(col("qty"), pa.int64()), "tag": pa.array(col("tag"), pa.string()),
        "exp": pa.array(col("exp"), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "ts": pa.array(col("ts"), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_functions_stream_equal_both_backfills(tmp_path, redis_client, kafka_admin):
    import numpy as np
    import pandas as pd

    from featurestore import datagen
    from featurestore.engines.flink import stream as streaming
    from tests.stream_helpers import (JOB_TIMEOUT_S, assert_online_equals_offline, assert_same_rows, create_topic,
                                      drop_project, offline_table, produce)

    rows = _e2e_events(29)
    topic, project = f"fs_funcs_{uuid.uuid4().hex[:10]}", f"t_funcs_{uuid.uuid4().hex[:8]}"
    store = _e2e_repo(tmp_path / "stream", topic, project, rows)
    assert flink_sql.check_repo(store.repo) == []  # accepted by the stream compiler
    duck = _e2e_repo(tmp_path / "duck", topic, project + "d", rows)
    flink = _e2e_repo(tmp_path / "flinkb", topic, project + "f", rows)
    records = [(r["user_id"].encode(), datagen.to_json_record(
        {**r, "exp": None if r["exp"] is None else np.datetime64(r["exp"], "us")}, "ts", list(E2E_SCHEMA))) for r in rows]
    random.Random(29).shuffle(records)
    create_topic(kafka_admin, topic)
    produce(topic, records)
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.metrics["events"]["dead_letters"] == 0
        duck.backfill()
        flink.backfill(engine="flink")
        want = offline_table(duck, "parts")
        assert 50 < want.num_rows < len(rows)  # the filter keeps Sunday's events only
        assert_same_rows(offline_table(store, "parts"), want, "parts: stream vs DuckDB backfill")
        assert_same_rows(offline_table(flink, "parts"), want, "parts: Flink vs DuckDB backfill")
        assert {1, 9999} <= set(want.column("y").to_pylist())  # the calendar's ends reached
        # online = offline at random request times (after the last event too)
        rng = random.Random(29)
        times = sorted(r["ts"] for r in rows)
        req = pd.DataFrame({"user_id": [f"u{rng.randrange(6)}" for _ in range(40)],
                            "event_timestamp": pd.to_datetime(
                                [rng.choice(times) + rng.choice([0, 1, 500, 3_600_000]) for _ in range(40)],
                                unit="ms", utc=True)})
        names = [f"parts:{f}" for f in store.repo.views["parts"].feature_names]
        assert_online_equals_offline(store, req, names, at_least=15)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.parametrize("expr, reason", [
    ("epoch_ms(qty) > ts", "epoch_ms() of a int64 (a timestamp from milliseconds) is not supported in the streaming job"),
    ("date_part('julian', exp) > 0", "date_part() of part 'julian' is not supported in the streaming job (parts: "),
    ("date_part(tag, exp) > 0", "date_part() needs the part as a string literal ('year', 'hour', ...)"),
    ("EXTRACT(timezone FROM exp) = 0", "EXTRACT() of part 'timezone' is not supported in the streaming job (parts: "),
    ("concat(tag, amount) <> ''", "concat() of a float64 is not supported in the streaming job (DuckDB and Flink format "
     "it differently as text)"),
    ("tag || exp <> ''", "'||' of a timestamp is not supported in the streaming job"),
    ("least(exp, '2026-03-01') > ts", "least() mixes types string, timestamp (DuckDB and Flink convert them "
     "differently); add a CAST"),
    ("date_trunc('era', exp) > ts", "date_trunc() of part 'era' is not supported in the streaming job (parts: "),
    ("date_trunc(tag, exp) > ts", "date_trunc() needs the part as a string literal ('hour', 'day', ...)"),
    ("exp + INTERVAL (qty) DAY > ts", "INTERVAL (qty) DAY is not an interval literal ("),
    ("CAST(amount AS VARCHAR) <> ''", "CAST of a float64 to a string formats numbers differently in DuckDB and Flink"),
])
def test_what_stays_refused_is_one_line_naming_view_and_expression(tmp_path, expr, reason):
    from featurestore.store import FeatureStore

    store = _e2e_repo(tmp_path / "r", "unused", "t_funcs_refused", _e2e_events(3, 5))
    defs = store.repo_path / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('filter="dayofweek(ts) = 0 AND (exp IS NULL OR month(exp) <> 2)"',
                                             f'filter="{expr}"'))
    problems = flink_sql.check_repo(FeatureStore(store.repo_path).repo)
    assert len(problems) == 1 and "\n" not in problems[0].message, problems
    assert problems[0].obj == "parts" and f"filter: expression {expr!r} cannot run in the streaming job: " \
        in problems[0].message and reason in problems[0].message, problems[0].message
