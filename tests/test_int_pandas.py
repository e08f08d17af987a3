"""get_historical_features' pandas frame holds int64 features exactly (SPEC §3: "identical for integers"),
as the online lookup and ``to_arrow()`` do. An integer column with a null used to become float64 (pandas'
``to_pandas``, Feast's conversion), so a value beyond 2^53 was rounded (9007199254740993 read
9007199254740992): such a column is now pandas' nullable ``Int64``; float64 is kept while it is exact.
Random events with int64 values beyond 2^53, nulls and empty windows, every point-in-time plan."""

import random

import pandas as pd
import pytest

from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from tests import oracle

BASE = pd.Timestamp("2026-03-01T00:00:00Z")
DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "v": "int64", "w": "int32", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/events/*.parquet"))
values = FeatureView(entities=[user], source=events, ttl="30s",
                     features=[Latest("v", name="v_latest"),
                               Aggregation("v", "last", "10s", name="v_last_10s"),
                               Aggregation("v", "min", "1m", name="v_min_1m"),
                               Aggregation("v", "max", None, name="v_max_all"),
                               Aggregation("v", "first", "1m", name="v_first_1m"),
                               Aggregation("w", "sum", "10s", name="w_sum_10s"),
                               Aggregation("w", "last", "10s", name="w_last_10s"),
                               Aggregation("v", "count", "10s", name="v_n_10s")])
'''
BIG = [2**62 + 1, -(2**62) - 1, 2**53 + 1, -(2**53) - 3, 2**63 - 1, -(2**63)]


def big_events(seed: int, n: int = 300) -> pd.DataFrame:
    rng = random.Random(seed)
    rows, t = [], 0
    for _ in range(n):
        t += rng.choice([0, 0, 1, 500, 2000, rng.randint(0, 15_000)])
        rows.append({"user_id": "u0" if rng.random() < 0.5 else f"u{rng.randint(1, 5)}",
                     "v": None if rng.random() < 0.1 else rng.choice(BIG + [rng.randint(-9, 9)]),
                     "w": None if rng.random() < 0.1 else rng.choice([2**31 - 1, -(2**31), rng.randint(-9, 9)]),
                     "ts": BASE + pd.Timedelta(milliseconds=t)})
    return pd.DataFrame({"user_id": [r["user_id"] for r in rows], "v": pd.array([r["v"] for r in rows], "Int64"),
                         "w": pd.array([r["w"] for r in rows], "Int32"), "ts": [r["ts"] for r in rows]})


def big_requests(seed: int, events: pd.DataFrame, n: int = 80) -> pd.DataFrame:
    rng = random.Random(seed + 1)
    times = list(events["ts"])
    return pd.DataFrame([{"user_id": rng.choice(["u0", "u0", "u1", "u2", "u3", "nobody"]),
                          "event_timestamp": rng.choice(times) + pd.Timedelta(milliseconds=rng.choice([0, 1, 10_000, 40_000]))}
                         for _ in range(n)])


@pytest.mark.parametrize("cost", [None, 0.0, float("inf")], ids=["per key", "sweep", "range join"])
@pytest.mark.parametrize("seed", range(2))
def test_pandas_frame_keeps_int64_features_exact(tmp_path, monkeypatch, seed, cost):
    if cost is not None:
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", cost)
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "features.py").write_text(DEFINITIONS)
    (tmp_path / "featurestore.yaml").write_text("project: ints\ndefinitions: definitions\n")
    events = big_events(seed)
    (tmp_path / "data" / "events").mkdir(parents=True)
    events.to_parquet(tmp_path / "data" / "events" / "part-0.parquet", index=False)
    store = FeatureStore(tmp_path)
    requests = big_requests(seed, events)
    frame = store.get_historical_features(requests, feature_service=None, features=[
        f"values:{f}" for f in store.repo.views["values"].feature_names])
    expected = oracle.point_in_time(events, store.repo.views["values"], requests)
    problems, wide = [], 0
    for f in store.repo.views["values"].feature_names:
        for i, (got, want) in enumerate(zip(frame[f], expected[f])):
            got = None if pd.isna(got) else got
            if want is None:
                ok = got is None
            else:
                ok = got is not None and float(got).is_integer() and int(got) == want
                wide += abs(want) > 2**53
            if not ok:
                problems.append(f"row {i} {f}: got {got!r}, expected {want!r}")
    assert wide, "the random data must hold values beyond 2^53"
    assert not problems, f"{len(problems)} mismatches, e.g.\n" + "\n".join(problems[:10])
    assert frame["w_sum_10s"].isna().any() and frame["w_sum_10s"].dtype == "float64"  # exact: Feast's conversion kept
