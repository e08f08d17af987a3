"""Timestamp values other than the event time through both backfills (SPEC §4: "the same plan can run as a
Flink batch job"; the batch engines agree to the bit). Parquet files of every unit (ms, us, ns; UTC and naive),
sub-microsecond digits before and after 1970, years 1 and 9999, and values beyond 9999 / before year 1:
the Flink backfill stores the same microseconds as the DuckDB backfill (it used to read them as Flink's
TIMESTAMP(3), dropping the microseconds, or not at all), both floor nanoseconds to microseconds as a push does
(DuckDB's cast rounded half away from zero), and both make a value outside years 1-9999 the same dead letter
(``semantics.time_value_supported``). Features over them (latest, min, max, first, last) read the same."""

from __future__ import annotations

import random
import shutil
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import semantics
from featurestore.engines.backfill import dead_letter_table
from featurestore.store import FeatureStore


DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "exp": "timestamp", "seen": "timestamp", "ts": "timestamp"},
                timestamp="ts", batch=ParquetFiles("data/*.parquet"))
times = FeatureView(entities=[user], source=events, features=[
    Latest("exp", name="exp_latest"), Latest("seen", name="seen_latest"),
    Aggregation("exp", "min", None, name="exp_min"), Aggregation("exp", "max", None, name="exp_max"),
    Aggregation("seen", "first", None, name="seen_first"), Aggregation("seen", "last", "1h", name="seen_last_1h"),
    Aggregation("exp", "count", None, name="exp_n")])
'''
BASE_MS = 1_767_225_600_000  # 2026-01-01
NS_MIN, NS_MAX = -(2**63) + 1, 2**63 - 1  # pandas' Timestamp.min/max (DuckDB reads them as -+infinity)
US_LO, US_HI = semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US


def _value(rng: random.Random, unit: str):
    """A random time value in ``unit``: sub-unit digits around 1970, the supported range's edges, beyond them."""
    if unit == "ns":  # pandas' range (years 1677-2262): all supported; sub-microsecond digits to floor
        return rng.choice([None, rng.randrange(-5000, 5000), rng.choice([-1500, -1501, -1499, 1500, 2500, -2500, -1, 999, NS_MIN, NS_MAX]),
                           rng.randrange(NS_MIN, NS_MAX), rng.randrange(-10**15, 10**15) * 1000 + rng.randrange(1000)])
    per = 1 if unit == "us" else 1000
    return rng.choice([None, rng.randrange(US_LO // per, US_HI // per), US_LO // per, US_LO // per - 1,
                       US_HI // per - 1, US_HI // per, rng.randrange(-2**62, 2**62) // per, rng.randrange(-5000, 5000)])


def _files(root, seed: int) -> None:
    rng = random.Random(seed)
    for i, (unit, tz) in enumerate([("us", "UTC"), ("ns", "UTC"), ("ms", "UTC"), ("ns", None), ("us", None)]):
        n = rng.randint(10, 40)
        columns = {"user_id": [f"u{rng.randrange(3)}" for _ in range(n)]}
        for col in ("exp", "seen"):
            if col == "seen" and i == 2:
                continue  # a column some files do not hold: null there, in both engines
            columns[col] = pa.array([_value(rng, unit) for _ in range(n)], pa.int64()).cast(pa.timestamp(unit, tz=tz))
        ts = [BASE_MS + rng.randrange(0, 3_600_000) for _ in range(n)]  # ties on purpose: few distinct
        columns["ts"] = pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        pq.write_table(pa.table(columns), root / "data" / f"part-{i}.parquet")


def _floor_us(raw, unit: str):
    """The stored microseconds of a raw value (None: null or a dead letter)."""
    if raw is None:
        return None
    us = raw * 1000 if unit == "ms" else raw // 1000 if unit == "ns" else raw
    return us if semantics.time_value_supported(us) else None


def _offline(store) -> list:
    table = store.offline.table("times", "ts").read()
    table = table.select(["user_id", "exp", "seen", "ts"])
    assert [table.schema.field(c).type for c in ("exp", "seen")] == [pa.timestamp("us", tz="UTC")] * 2
    table = pa.table({"user_id": table.column("user_id"), "exp": table.column("exp").cast(pa.int64()),
                      "seen": table.column("seen").cast(pa.int64()), "ts": table.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())})
    return sorted(repr(tuple(r.values())) for r in table.to_pylist())


def _repo(root):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: ftv_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    _files(root, 3)
    return FeatureStore(root)


def _assert_oracle(store, result) -> None:
    """Each kept value is its raw value floored to microseconds; a value outside years 1-9999 a dead letter."""
    expected, dead, halves, extremes = [], 0, 0, 0
    for f in sorted((store.repo_path / "data").glob("*.parquet")):
        t = pq.read_table(f)
        units = {c: t.schema.field(c).type.unit for c in ("exp", "seen") if c in t.column_names}
        raw = {c: t.column(c).cast(pa.int64()).to_pylist() for c in units}
        ns = [v for c in units if units[c] == "ns" for v in raw[c] if v is not None]
        halves += sum(v % 1000 == 500 for v in ns)
        extremes += sum(v in (NS_MIN, NS_MAX) for v in ns)
        for i, (user, ts) in enumerate(zip(t.column("user_id").to_pylist(), t.column("ts").cast(pa.int64()).to_pylist())):
            values = {c: (raw[c][i], _floor_us(raw[c][i], units[c])) for c in units}
            if any(r is not None and us is None for r, us in values.values()):
                dead += 1
                continue
            expected.append(repr((user, values["exp"][1], values.get("seen", (None, None))[1], ts)))
    assert dead > 0 and result.dead_letters == dead, result.reasons
    assert halves > 0 and extremes > 0  # the data holds what rounding and DuckDB's infinities would change
    assert _offline(store) == sorted(expected)


def test_duckdb_backfill_floors_nanoseconds_and_reads_files_of_every_unit(tmp_path):
    """(DuckDB alone: a us value after 2262 failed the whole read once a ns file was present, union_by_name;
    1500 ns was 2 us, not 1; pandas' Timestamp.max was read as infinity, a dead letter.)"""
    store = _repo(tmp_path / "duck")
    (result,) = store.backfill()
    _assert_oracle(store, result)


@pytest.mark.flink
@pytest.mark.slow
def test_flink_backfill_keeps_timestamp_values_to_the_microsecond_like_duckdb(tmp_path):
    duck = _repo(tmp_path / "duck")
    shutil.copytree(duck.repo_path, tmp_path / "flink")
    flink = FeatureStore(tmp_path / "flink")
    (want,), (got,) = duck.backfill(), flink.backfill(engine="flink")
    assert (got.rows, got.dead_letters, got.reasons) == (want.rows, want.dead_letters, want.reasons)
    assert want.dead_letters > 0, want.reasons
    assert _offline(flink) == _offline(duck)
    _assert_oracle(duck, want)
    a = dead_letter_table(flink, "events").read().to_pylist()
    b = dead_letter_table(duck, "events").read().to_pylist()
    assert sorted((r["reason"], r["event_time_ms"]) for r in a) == sorted((r["reason"], r["event_time_ms"]) for r in b)
    # the features over them read the same from either table
    rng = random.Random(4)
    entity_df = pd.DataFrame({"user_id": [f"u{rng.randrange(4)}" for _ in range(30)],
                              "event_timestamp": pd.to_datetime([BASE_MS + rng.randrange(-1000, 4_000_000) for _ in range(30)],
                                                                unit="ms", utc=True)})
    features = [f"times:{n}" for n in ("exp_latest", "seen_latest", "exp_min", "exp_max", "seen_first",
                                       "seen_last_1h", "exp_n")]
    x = duck.get_historical_features(entity_df, features).to_arrow()
    y = flink.get_historical_features(entity_df, features).to_arrow()
    assert x.equals(y), (x.to_pandas(), y.to_pandas())
    assert x.column("exp_max").null_count < len(x)
