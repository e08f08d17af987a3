"""``CAST(text AS INTEGER|BIGINT|DOUBLE|FLOAT)`` and ``TRY_CAST`` in the Flink jobs (``NumberText.java``) read every
text as DuckDB does, value by value: spaces around, signs, ``1e3``, ``0x1F``/``0b101``, ``1_000``, ``2.5`` to 3 (half
away from zero on DuckDB's digits), exponents of 16 bits, ``inf``/``nan``, overflow, a FLOAT rounded once. Where
DuckDB's CAST fails the value is NULL and the compiler's ``raises`` holds on that row (the Flink backfill then
fails like DuckDB's); ``TRY_CAST`` is NULL without it. A float from a text with ``_`` and over 19 digits, which
DuckDB misreads, is NULL and flagged under both. Rows come from a Parquet file (values the planner cannot fold);
one Flink batch job."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.flink import exprs as flink_sql
from tests.flink_batch import batch_table_env

TYPES = {"INTEGER": "int32", "BIGINT": "int64", "DOUBLE": "float64", "FLOAT": "float32"}
EDGES = [
    "1", "+1", "-1", " 1", "1 ", "\t1\n", "\x0b1\x0c", "\r1", " 1 2", "", "  ", "1\xa0", "\u20001", "1\x00", "١", "１",
    "1e3", "1E3", "1e-3", "1e+2", "1e-0", "1E+0_1", "1e1_0", "1e_1", "1e1_", "1e", "1e+", "e3", "1e 1", "0E ", "1e1 ",
    "5E1.", "1.e5.", "5e1.5", "1e1 .", "1e-32768", "1e-32769", "0e32767", "0e32768", "1e32767", "1e-400", "1e400",
    "1.5", "2.5", "-2.5", "0.5", "-0.5", "0.49999999999999999999", "2.5000000000000000001", "1.", ".5", "-.5", "+.5",
    ".", "-.", "5.", "00.5", "00012", "-0", "-0.0", "1.5.", "1._5", "1_.5", "1.5_5", ".5_5", "1_000.5_5",
    "0.5e-1", "0.6e-1", "5e-1", "-5e-1", "15e-1", "-15e-1", "25e-1", "105e-2", "150e-2", "14999e-4", "95e-2",
    "1.05e1", "1.049e1", "1.0499999999999e1", "0.15e1", "1.5e-1", "5.5e-1", "9.5e-1", "5e-11", "0.0001e4",
    "0.0000001e7", "1_0e1", "1e0_0", "12e-1", "45e-1", "-45e-1", "123.556e-2", "-123.556e-2", "1.0e1",
    "0x1F", "0X1f", "-0x1F", "+0x10", "0x-1", "0x", "0X", "0x_1", "0x1_F", "0x1__F", "0xg", "0x1F.5", "0x1Fe2",
    "0x12 ", " 0x12", "0x7FFFFFFF", "0x80000000", "0xFFFFFFFF", "0x7FFFFFFFFFFFFFFF", "0x8000000000000000",
    "0x00000000000000001", "0b101", "0B11", "0b1_0", "0b", "0b2", "0b1 ", "0o17",
    "1_000", "1__000", "_1", "1_", "0_1", "1_e1",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "2147483647.5", "2147483646.5", "-2147483648.5",
    "21474836470e-1", "214748364750e-2", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "9223372036854775807.4", "9223372036854775807.5", "-9223372036854775808.5",
    "92233720368547758070e-1", "1e18", "1e19", "1000000000000000000000000000000e-30",
    "inf", "-inf", "+inf", "Infinity", "-INFINITY", "infinit", "in", "nan", "NaN", "+nan", "-nan", "nanx", "nan(1)",
    "nan(ab_1) ", "nan(", "+-1", "-+1", "++1", "--1", "+-inf", "-+inf", "+ 1", "- 1", "+", "-", "+\n", "-\t",
    "3.4028235e38", "3.4028235677973366e38", "3.4028235677973365e38", "3.5e38", "1e39", "1.4e-45", "7e-46",
    "1.7976931348623157e308", "1.7976931348623159e308", "4.9e-324", "2e-324", "2.5e-324", "1e-2147483649",
    "1e99999999999999999999", "0e99999999999999999999", "16777217", "9007199254740993", "1e23", "0.1", "12abc",
    "1d", "1f", "0x1.8p1", "1.0x", "1_0000000000000000000", "1000000000000000000_0000", "10000000000000000000_000",
    "12345678901234567890_1e-3", "1234567890123456789_0", "1.234567890123456789_0", "123456789012345678_9",
    None,
]


def _random_texts(seed: int, n: int):
    """Random concatenations of number pieces, and random decimal numbers of up to 24 digits."""
    rng = random.Random(seed)
    atoms = ["0", "1", "5", "9", "4", "6", "_", ".", "e", "E", "-", "+", " ", "\t", "x", "b", "0x", "0b", "inf", "nan",
             "12", "99999", "2147483647", "2147483648", "9223372036854775807", "0000", "a", "F", "32767", "32768",
             "\n", "e-", ".5", "1e-1"]
    out = {"".join(rng.choice(atoms) for _ in range(rng.randint(1, 6))) for _ in range(n)}
    for _ in range(n // 2):
        m = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 24)))
        k = rng.randint(0, len(m))
        text = m[:k] + ("." if rng.random() < 0.6 else "") + m[k:]
        if rng.random() < 0.7:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.choice([rng.randint(0, 60),
                                                                                    rng.randint(280, 330)]))
        out.add(rng.choice(["", "-", "+", " "]) + text + rng.choice(["", " "]))
    return sorted(out)


def _misread(text) -> bool:
    """DuckDB's float reader gives a wrong number (NumberText.unsupported)."""
    return text is not None and "_" in text and sum("0" <= c <= "9" for c in text) > 19


def _duckdb(texts):
    """Per text and type: (TRY_CAST's value, whether CAST fails)."""
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE texts (id BIGINT, s VARCHAR)")
    con.executemany("INSERT INTO texts VALUES (?, ?)", list(enumerate(texts)))
    out = {}
    cols = ", ".join(f"TRY_CAST(s AS {ty})" for ty in TYPES)
    for row in con.sql(f"SELECT id, s, {cols} FROM texts").fetchall():
        out[row[0]] = [(v, row[1] is not None and v is None) for v in row[2:]]
    return out


def _same(want, got) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, float):
        return (math.isnan(want) and math.isnan(got)) or (want == got and math.copysign(1, want) == math.copysign(1, got))
    return want == got


@pytest.mark.flink
@pytest.mark.slow
def test_text_to_numbers_equals_duckdb_value_by_value(tmp_path):

    from featurestore.engines.flink.tables import expression_function_ddl

    texts = EDGES + _random_texts(11, 3000)
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"id": pa.array(range(len(texts)), pa.int64()), "s": pa.array(texts, pa.string())}), path)
    duck = _duckdb(texts)
    comp = flink_sql.ExprCompiler({"s": flink_sql.FExpr("s", "string")})
    selects = []
    for ty in TYPES:
        for fn in ("CAST", "TRY_CAST"):
            v = comp.compile(f"{fn}(s AS {ty})")
            raises = " OR ".join(comp.raises) or "FALSE"
            value = f"CAST({v.sql} AS DOUBLE)" if ty == "FLOAT" else v.sql
            selects += [value, f"COALESCE({raises}, FALSE)"]
    t_env = batch_table_env(tmp_path)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE texts (id BIGINT, s STRING) WITH ('connector' = 'filesystem', "
                      f"'path' = '{path.resolve().as_uri()}', 'format' = 'parquet')")
    select = f"SELECT id, {', '.join(selects)} FROM texts"
    for ddl in expression_function_ddl([select]):
        t_env.execute_sql(ddl)
    with t_env.execute_sql(select).collect() as result:
        flink = {r[0]: tuple(r)[1:] for r in result}
    assert sorted(flink) == sorted(duck)
    problems = []
    for rid, text in enumerate(texts):
        for k, ty in enumerate(TYPES):
            want, fails = duck[rid][k]
            misread = _misread(text) and ty in ("DOUBLE", "FLOAT")
            cast, cast_raises, try_cast, try_raises = flink[rid][4 * k: 4 * k + 4]
            if misread:
                want, fails = None, True
            checks = [("CAST", cast, want), ("TRY_CAST", try_cast, want), ("CAST raises", cast_raises, fails),
                      ("TRY_CAST raises", try_raises, misread)]
            for what, got, expected in checks:
                if not _same(expected, got):
                    problems.append(f"{what}({text!r} AS {ty}): DuckDB {expected!r}, Flink {got!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])
    kinds = {ty: sum(duck[rid][k][1] for rid in duck) for k, ty in enumerate(TYPES)}
    assert all(0 < n < len(texts) for n in kinds.values()), kinds  # both outcomes reached for every type


def test_cast_of_text_records_duckdbs_failure_and_try_cast_does_not():
    comp = flink_sql.ExprCompiler({"s": flink_sql.FExpr("s", "string")})
    for ty, fn in (("INTEGER", "fs_text_int"), ("BIGINT", "fs_text_bigint"), ("DOUBLE", "fs_text_double"),
                   ("FLOAT", "fs_text_float")):
        v = comp.compile(f"CAST(s AS {ty}) + 1")
        assert fn + "(s)" in v.sql and v.dtype == TYPES[ty]
        assert any(flink_sql.CAST_TEXT_FAILS == why for why in comp.raise_reasons), comp.raise_reasons
        comp.compile(f"TRY_CAST(s AS {ty})")
        assert comp.raise_reasons == ([flink_sql.TEXT_MISREAD] if ty in ("DOUBLE", "FLOAT") else [])
