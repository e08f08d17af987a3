"""SPEC §1-§3 on every column and key type the model allows, against the oracle, on random data.

tests/randomrepo.py keys on strings and aggregates float64/int64 columns; this repo covers the rest: an
int64 key with extreme values, a composite (int64, string) key whose strings are empty, unicode or hold
separators (``:``, ``|``, a space), an int32 key with nulls (null join keys) and extremes; every function
over int32, float32 (±inf, -0.0, subnormals), float64 (±inf, NaN, -0.0, 5e-324, ±1e308), int64
(beyond 2^53), string, bool and timestamp columns; 1 ms to unbounded windows, a TTL, defaults; event
times from 1900, across 1970 and in 2026 with sub-millisecond digits, bursts of equal times; requests
exactly at events and window edges, with sub-millisecond digits, in other time zones, unknown keys and
duplicates. Offline = oracle in every point-in-time plan; online (after materialize) = offline.
"""

import dataclasses
import math
import random
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.conftest import drop_project

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

acct = Entity(join_keys=["acct"])
combo = Entity(join_keys=["acct", "name"])
ikey = Entity(join_keys=["i32"])
src = Source(schema={"acct": "int64", "name": "string", "i32": "int32", "f32": "float32", "x": "float64",
                     "b": "bool", "s": "string", "t2": "timestamp", "big": "int64", "ts": "timestamp"},
             timestamp="ts", batch=ParquetFiles("data/events/*.parquet"))
ALL = ["count", "sum", "mean", "min", "max", "last", "first", "stddev", "variance", "count_distinct"]
NONNUM = ["count", "min", "max", "last", "first", "count_distinct"]
WINDOWS = {"1ms": "1ms", "7s": "7s", "all": None}
feats = [Aggregation(c, f, w, name=f"{c}_{f}_{l}") for c in ["x", "i32", "f32", "big"] for f in ALL
         for l, w in WINDOWS.items()]
feats += [Aggregation(c, f, w, name=f"{c}_{f}_{l}") for c in ["s", "b", "t2"] for f in NONNUM
          for l, w in WINDOWS.items()]
feats += [Aggregation("*", "count", w, name=f"n_{l}") for l, w in WINDOWS.items()]
feats += [Aggregation("x", "sum", "7s", name="x_sum_def", default=2.5),
          Aggregation("i32", "min", "7s", name="i32_min_def", default=-9),
          Aggregation("s", "last", "7s", name="s_last_def", default="none")]
by_acct = FeatureView(entities=[acct], source=src, features=feats)
latest = FeatureView(entities=[combo], source=src, ttl="5s",
                     features=[Latest(c, name=f"lat_{c}") for c in ["x", "i32", "f32", "b", "s", "t2", "big"]]
                     + [Latest("x * 2", name="lat_x2")])
latest_forever = FeatureView(entities=[combo], source=src,
                             features=[Latest("s", name="ever_s"), Aggregation("x", "sum", "3s", name="combo_x_sum_3s"),
                                       Aggregation("s", "first", None, name="combo_s_first")])
by_i32 = FeatureView(entities=[ikey], source=src, ttl="10s",
                     features=[Latest("s", name="i32_s"), Aggregation("f32", "max", "7s", name="i32k_f32_max"),
                               Aggregation("f32", "count_distinct", None, name="i32k_f32_nd"),
                               Aggregation("f32", "sum", None, name="i32k_f32_sum")])
everything = FeatureService(features=[by_acct, latest, latest_forever, by_i32])
'''
BASES = [pd.Timestamp("2026-03-01T00:00:00Z"), pd.Timestamp("1969-12-31T23:59:40Z"), pd.Timestamp("1900-01-01T00:00:01Z")]
ACCTS = [0, -1, 7, 2**62, -(2**63) + 5, 123456789012]
NAMES = ["", "a:b", "a|b", "é", "😀", "\uff01", "x y", "A"]
XS = [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, 5e-324, 1e308, -1e308, 1e16, 1.0, None, math.nan]


def make_repo(root):
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: typed\ndefinitions: definitions\n")
    return root


def typed_events(seed: int, base: pd.Timestamp, n: int = 300) -> pd.DataFrame:
    rng = random.Random(seed)
    rows, t = [], 0
    for _ in range(n):
        t += rng.choice([0, 0, 1, 2, 999, 1000, 1001, 3000, 7000, rng.randint(0, 20000)])
        hot = rng.random() < 0.5
        rows.append(dict(
            acct=ACCTS[0] if hot else rng.choice(ACCTS),
            name=NAMES[0] if hot and rng.random() < .5 else rng.choice(NAMES),
            i32=None if rng.random() < .1 else rng.choice([0, 1, -1, 2**31 - 1, -(2**31), rng.randint(-100, 100)]),
            f32=None if rng.random() < .1 else rng.choice([0.1, -0.0, 0.0, 3.4e38, 1e-45, 2.5, math.inf, -math.inf,
                                                          float(rng.randint(-50, 50))]),
            x=rng.choice(XS) if rng.random() < .5 else round(rng.uniform(-100, 100), rng.choice([0, 3, 9])),
            b=None if rng.random() < .1 else rng.random() < .5,
            s=None if rng.random() < .1 else rng.choice(NAMES + ["zz", "Z", "a\u0301"]),
            t2=None if rng.random() < .1 else base + pd.Timedelta(microseconds=rng.randint(-10**12, 10**12)),
            big=None if rng.random() < .1 else rng.choice([2**40, -(2**40), 2**53 + 1, rng.randint(-5, 5)]),
            ts=base + pd.Timedelta(milliseconds=t) + pd.Timedelta(microseconds=rng.choice([0, 0, 1, 999]))))
    df = pd.DataFrame(rows)
    df["i32"] = pd.array([r["i32"] for r in rows], dtype="Int32")
    df["big"] = pd.array([r["big"] for r in rows], dtype="Int64")
    df["b"] = df["b"].astype("boolean")
    df["f32"] = df["f32"].astype("float32")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["t2"] = pd.to_datetime(df["t2"], utc=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def typed_requests(seed: int, events: pd.DataFrame, n: int = 120) -> pd.DataFrame:
    rng = random.Random(seed + 5)
    times = list(events["ts"])
    rows = []
    for _ in range(n):
        t = rng.choice(times).floor("ms")
        kind = rng.random()
        if kind < 0.3:
            q = t  # at an event: excluded
        elif kind < 0.7:  # at and next to window and TTL edges
            q = t + pd.Timedelta(milliseconds=rng.choice([1, 999, 1000, 7000, 7001, 3000, 5000, 5001, 86_400_000]))
        else:
            q = t + pd.Timedelta(milliseconds=rng.randint(-5000, 30000))
        q += pd.Timedelta(microseconds=rng.choice([0, 0, 0, 1, 999]))  # floors to the millisecond
        e = events.iloc[rng.randrange(len(events))]
        rows.append(dict(acct=int(e["acct"]) if rng.random() < .9 else 99, name=e["name"] if rng.random() < .9 else "nobody",
                         i32=rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 5, 77]), event_timestamp=q))
    rows.append(dict(rows[0]))  # a duplicate row stays a duplicate
    df = pd.DataFrame(rows)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def write(root, events):
    out = root / "data" / "events"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    events.iloc[: len(events) // 2].to_parquet(out / "a.parquet", index=False)
    events.iloc[len(events) // 2:].to_parquet(out / "b.parquet", index=False)


def features(store):
    return [f for v in store.repo.views.values() for f in v.feature_names]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore(make_repo(tmp_path_factory.mktemp("typed")))


@pytest.mark.parametrize("seed,cost", [(0, None), (1, None), (2, None), (3, 0.0), (4, float("inf"))],
                         ids=["per key 0", "per key 1", "per key 2", "sweep", "range join"])
def test_offline_equals_oracle_on_every_type(store, monkeypatch, seed, cost):
    if cost is not None:
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", cost)
    events = typed_events(seed, BASES[seed % 3])
    write(store.repo_path, events)
    requests = typed_requests(seed, events, n=80)
    tz = ["UTC", "Asia/Kolkata", "America/St_Johns"][seed % 3]  # the same instants in another zone
    zoned = requests.assign(event_timestamp=requests["event_timestamp"].dt.tz_convert(tz))
    got = store.get_historical_features(zoned, feature_service="everything")
    assert list(got.columns[:4]) == list(requests.columns) and len(got) == len(requests)
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"seed {seed} view {view.name}")


@pytest.mark.redis
@pytest.mark.parametrize("layout", ["sparse", "tiled"])
def test_online_equals_offline_on_every_type(tmp_path, redis_client, monkeypatch, layout):
    from featurestore.kernel import entity

    if layout == "tiled":
        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
        monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 0)
    root = make_repo(tmp_path)
    project = f"t_typed_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    try:
        seed = 4 if layout == "sparse" else 5
        events = typed_events(seed, BASES[seed % 3])
        write(root, events)
        store.backfill()
        requests = typed_requests(seed, events, n=40)
        offline = store.get_historical_features(requests, feature_service="everything")
        store.materialize()
        rows = []
        keys = ["acct", "name", "i32"]
        for r in requests.to_dict("records"):
            got = store.get_online_features([{k: r[k] for k in keys}], feature_service="everything",
                                            request_time=r["event_timestamp"]).to_dict()
            rows.append({k: v[0] for k, v in got.items()})
        online = pd.DataFrame(rows)
        assert_features_equal(online, offline, features(store), f"online ({layout}), seed {seed}")
        # many entities in one lookup (duplicates and unknown keys included) at one request time
        q = requests["event_timestamp"].iloc[3]
        many = store.get_online_features(requests[keys].to_dict("records"), feature_service="everything",
                                         request_time=q).to_dict()
        at_q = store.get_historical_features(requests.assign(event_timestamp=q), feature_service="everything")
        assert_features_equal(pd.DataFrame(many), at_q, features(store), f"one lookup of many ({layout})")
    finally:
        drop_project(redis_client, project)
