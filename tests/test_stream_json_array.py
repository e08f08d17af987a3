"""``fs_json_array`` (java/.../JsonArrayText.java) writes the online rows' key and event arrays: its text must
be what Flink's ``JSON_ARRAY(... NULL ON NULL)`` writes, byte for byte, for every column type the online
rows carry (the Python operator parses it, and a restored job's keyed state holds texts of both), but for a
negative zero DOUBLE, which it writes ``-0.0`` (JSON_ARRAY: ``0.0``; a latest/first/last of -0.0 is -0.0), on random
values with the edges of each type: NaN, infinities, -0.0, subnormals, exponents on both sides of the
plain-notation range, every ASCII control character, quotes, backslashes, non-BMP characters, timestamps
before 1970 and in years 1 and 9999, nulls."""

import datetime as dt
import math
import random
import struct
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from featurestore.engines.flink.tables import JSON_ARRAY_FUNCTION, json_array_ddl

pytestmark = pytest.mark.flink

COLUMNS = [("b", "BIGINT"), ("i", "INT"), ("d", "DOUBLE"), ("f", "FLOAT"), ("s", "STRING"), ("t", "BOOLEAN"),
           ("ts", "TIMESTAMP(3)"), ("m", "DECIMAL(12, 3)")]
DOUBLES = [0.0, -0.0, 1.0, -1.0, 0.1, 100.0, 1e20, -1e20, 1e-7, 1.23e-5, 0.001, 0.000999, 1e7, 9999999.0,
           9999999.999, 12345678901234567890.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
           math.nan, math.inf, -math.inf, 2.0 ** 53, 2.0 ** 53 + 2, 1 / 3]
BIGINTS = [0, 1, -1, 2 ** 31, -2 ** 31 - 1, 2 ** 63 - 1, -2 ** 63, 1 << 40, (2 << 40) + 12345]
INTS = [0, 1, -1, 2 ** 31 - 1, -2 ** 31]
STRINGS = ["", "a", '"', "\\", "a\"b\\c", "/", "\u007f", "é", "漢字", "😀", "\u2028\u2029", "\ufeff", "x" * 300,
           "".join(chr(c) for c in range(0x80))] + [chr(c) for c in range(0x20)]
TIMES = [dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999000), dt.datetime(1, 1, 1),
         dt.datetime(9999, 12, 31, 23, 59, 59, 999000), dt.datetime(2024, 2, 29, 12, 0, 0, 120000),
         dt.datetime(2024, 2, 29, 12, 0, 30), dt.datetime(2024, 2, 29, 12, 30)]


def _random_double(rng: random.Random) -> float:
    if rng.random() < 0.5:  # any bit pattern (subnormals, huge, tiny)
        d = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return 0.5 if math.isnan(d) else d
    return round(rng.uniform(-1, 1) * 10 ** rng.randint(-9, 12), rng.randint(0, 6))


def _random_string(rng: random.Random) -> str:
    pool = [chr(c) for c in range(0x80)] + ["é", "ß", "漢", "😀", "\u2028", "\ud7ff", "\ue000", "\uffff"]
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))


def _rows(n: int = 400):
    rng = random.Random(20261201)
    rows = []
    for k in range(n):
        def pick(edges, make):
            r = rng.random()
            return None if r < 0.08 else (rng.choice(edges) if r < 0.5 else make())

        ms = rng.randint(-2_000_000_000_000, 5_000_000_000_000)
        rows.append((k,
                     pick(BIGINTS, lambda: rng.randint(-2 ** 63, 2 ** 63 - 1)),
                     pick(INTS, lambda: rng.randint(-2 ** 31, 2 ** 31 - 1)),
                     pick(DOUBLES, lambda: _random_double(rng)),
                     pick([0.0, 1.5, -0.0, 3.4028234663852886e38, 1e-45], lambda: struct.unpack(
                         "<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]),
                     pick(STRINGS, lambda: _random_string(rng)),
                     pick([True, False], lambda: rng.random() < 0.5),
                     pick(TIMES, lambda: dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)),
                     pick([Decimal("0.000"), Decimal("-1.500"), Decimal("123456789.125")],
                          lambda: Decimal(rng.randint(-10 ** 12 + 1, 10 ** 12 - 1)).scaleb(-3))))
    return rows


def test_fs_json_array_writes_what_json_array_writes_byte_for_byte():
    from pyflink.common import Configuration
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from featurestore.engines.flink.udf import job_jars
    from featurestore.store import FeatureStore

    conf = Configuration()
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", "1")
    jars = job_jars(FeatureStore(Path(__file__).resolve().parents[1]))  # the job's: the function's jar among them
    conf.set_string("pipeline.jars", ";".join(j.resolve().as_uri() for j in jars))
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())
    t_env.execute_sql(json_array_ddl())
    types = {"BIGINT": DataTypes.BIGINT(), "INT": DataTypes.INT(), "DOUBLE": DataTypes.DOUBLE(),
             "FLOAT": DataTypes.FLOAT(), "STRING": DataTypes.STRING(), "BOOLEAN": DataTypes.BOOLEAN(),
             "TIMESTAMP(3)": DataTypes.TIMESTAMP(3), "DECIMAL(12, 3)": DataTypes.DECIMAL(12, 3)}
    schema = DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT())]
                           + [DataTypes.FIELD(c, types[ty]) for c, ty in COLUMNS])
    rows = _rows()
    t_env.create_temporary_view("samples", t_env.from_elements(rows, schema))
    # one array per column (a difference names its type), the whole row, the FLOAT widened as the job
    # widens it, and a column twice
    shapes = [[c] for c, _ in COLUMNS] + [[c for c, _ in COLUMNS], ["CAST(f AS DOUBLE)"], ["b", "b", "d"]]
    selects = []
    for k, cols in enumerate(shapes):
        args = ", ".join(cols)
        selects += [f"JSON_ARRAY({args} NULL ON NULL) AS j{k}", f"{JSON_ARRAY_FUNCTION}({args}) AS f{k}"]
    with t_env.execute_sql("SELECT id, " + ", ".join(selects) + " FROM samples").collect() as result:
        out = [tuple(r) for r in result]
    assert len(out) == len(rows)
    problems = []
    for r in out:
        for k, cols in enumerate(shapes):
            flink, ours = r[1 + 2 * k], _unsigned_zeros(r[2 + 2 * k])
            if flink != ours:
                problems.append(f"row {r[0]} {cols}: JSON_ARRAY {flink!r}, fs_json_array {ours!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:20])
    # a negative zero keeps its sign (both the DOUBLE and the FLOAT widened to DOUBLE)
    d, f = [c for c, _ in COLUMNS].index("d"), [c for c, _ in COLUMNS].index("f")
    widened = len(COLUMNS) + 1  # the shape ["CAST(f AS DOUBLE)"]
    by_id = {row[0]: row for row in rows}
    zeros = 0
    for r in out:
        for value, text in ((by_id[r[0]][1 + d], r[2 + 2 * d]), (by_id[r[0]][1 + f], r[2 + 2 * widened])):
            if value == 0.0:
                zeros += math.copysign(1, value) < 0
                assert text == ("[-0.0]" if math.copysign(1, value) < 0 else "[0.0]"), (r[0], value, text)
    assert zeros >= 2  # negative zeros of both types were there
    # the edges were all there
    texts = " ".join(r[2 * len(COLUMNS) + 1] for r in out)
    for needle in ('"NaN"', '"Infinity"', '"-Infinity"', "E+", "E-", "\\u001F", "\\n", '\\"', "\\\\", "null"):
        assert needle in texts, needle


def _unsigned_zeros(text: str) -> str:
    """``text`` with each negative zero element written as JSON_ARRAY writes it (``0.0``)."""
    import re

    return re.sub(r"(?<=[\[,])-0\.0(?=[,\]])", "0.0", text)
