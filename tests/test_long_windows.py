"""Windows and TTLs of centuries, up to the longest one allowed (``semantics.MAX_SPAN_MS``: from the first
supported event time to pandas' last request time), on random events from 1900 to 2199 and requests from
1677 to 2262: offline (every point-in-time plan) = oracle, online = offline; a longer one is refused with
one line (it would be unbounded, and overflowed int64 arithmetic of ``q - W``)."""

import dataclasses
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.engines import duckdb_pit
from featurestore.errors import ValidationError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.conftest import drop_project
from tests.randomrepo import random_events, write_events

MAX_SPAN_MS = 9_223_372_036_854 + 2_208_988_800_000  # semantics.MAX_SPAN_MS: 1900-01-01 to 2262-04-11
WINDOWS = {"c100y": "36500d", "c274y": "100000d", "cmax": MAX_SPAN_MS, "all": None}
DEFINITIONS = f'''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int64",
                         "tag": "string", "flag": "bool", "ts": "timestamp"}},
                timestamp="ts", batch=ParquetFiles("data/events/*.parquet"))
long = FeatureView(entities=[user], source=events, ttl="100000d", features=[
    Aggregation(c, f, w, name=f"{{c}}_{{f}}_{{label}}") for c in ["amount", "qty"]
    for f in ["count", "sum", "min", "last", "variance", "count_distinct"] for label, w in {WINDOWS!r}.items()]
    + [Latest("tag", name="tag")])
everything = FeatureService(features=[long])
'''


def centuries_events(seed: int) -> pd.DataFrame:
    """random_events spread over 1900..2199 (each event's time scaled), hot users and ties kept."""
    events = random_events(seed, n=400)
    ms = events["ts"].astype("int64") // 1_000_000
    lo, hi = -2_208_988_800_000, 7_258_032_000_000  # 1900-01-01, 2199-12-31
    scaled = [lo + (int(v) - int(ms.min())) * (hi - lo) // int(ms.max() - ms.min()) for v in ms]
    events["ts"] = pd.to_datetime(scaled, unit="ms", utc=True)
    return events


def requests(events: pd.DataFrame, seed: int) -> pd.DataFrame:
    import random

    rng = random.Random(seed)
    times = [pd.Timestamp("2262-04-11T00:00:00Z"), pd.Timestamp("1677-09-22T00:00:00Z"),
             pd.Timestamp("1900-01-01T00:00:00.001Z")]
    for _ in range(40):
        t = rng.choice(list(events["ts"])).value // 1_000_000 + rng.choice([0, 36500, 100000, -1, 1]) * 86_400_000
        times.append(pd.Timestamp(min(t, 9_223_372_036_854), unit="ms", tz="UTC"))  # at an event, a window edge
    users = ["u0", "u1", "u2", "nobody"]
    df = pd.DataFrame({"user_id": [rng.choice(users) for _ in times], "event_timestamp": times})
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def make(root, project="longw"):
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: longw\ndefinitions: definitions\n"
                                            "event_time:\n  max_future: none\n")
    return FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))


@pytest.mark.parametrize("seed,cost", [(0, None), (1, 0.0), (2, float("inf"))], ids=["per key", "sweep", "range join"])
def test_offline_equals_oracle_for_windows_of_centuries(tmp_path, monkeypatch, seed, cost):
    if cost is not None:
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", cost)
    store = make(tmp_path)
    events = centuries_events(seed)
    write_events(store.repo_path, events)
    reqs = requests(events, seed)
    got = store.get_historical_features(reqs, feature_service="everything")
    view = store.repo.views["long"]
    expected = oracle.point_in_time(events, view, reqs, max_future_ms=None)
    assert_features_equal(got, expected, view.feature_names, f"seed {seed}")


@pytest.mark.redis
def test_online_equals_offline_for_windows_of_centuries(tmp_path, redis_client, monkeypatch):
    """Windows of ~9,000 and ~11,600 top tiles: the read script fetches them in chunks (Lua's unpack takes
    ~8,000 values at most)."""
    from featurestore.kernel import entity

    monkeypatch.setattr(entity, "DENSE_EVENTS", 0)  # every entity keeps tiles: the longest read path
    monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 0)
    project = f"t_longw_{uuid.uuid4().hex[:10]}"
    store = make(tmp_path, project)
    root = tmp_path
    try:
        events = centuries_events(3)
        write_events(root, events)
        store.backfill()
        store.materialize()
        reqs = requests(events, 3).iloc[:12]
        offline = store.get_historical_features(reqs, feature_service="everything")
        rows = []
        for r in reqs.to_dict("records"):
            got = store.get_online_features([{"user_id": r["user_id"]}], feature_service="everything",
                                            request_time=r["event_timestamp"]).to_dict()
            rows.append({k: v[0] for k, v in got.items()})
        names = store.repo.views["long"].feature_names
        assert_features_equal(pd.DataFrame(rows), offline, names, "online")
    finally:
        drop_project(redis_client, project)


@pytest.mark.parametrize("where,value", [("window", MAX_SPAN_MS + 1), ("window", "999999999999d"),
                                         ("ttl", "106751991167d")])
def test_a_window_or_ttl_longer_than_any_reach_is_one_line(tmp_path, where, value):
    store = make(tmp_path)
    text = DEFINITIONS.replace('ttl="100000d"', f"ttl={value!r}") if where == "ttl" else DEFINITIONS.replace(
        "'c100y': '36500d'", f"'c100y': {value!r}")
    assert text != DEFINITIONS
    (tmp_path / "definitions" / "features.py").write_text(text)
    with pytest.raises(ValidationError, match=f"{value!r} is longer than any time between an event and a request "
                                              r"\(1900-01-01 to 2262-04-11, 132318 days\); leave it out \(None\)"):
        store.reload()
