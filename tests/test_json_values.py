"""JSON values (dtype ``json``: Feast's Map, Json, Struct, Array): one JSON text in every store, exact.

Random events with nested Parquet columns (a struct, a list of doubles, a map) and a JSON-text column, hot
keys and equal event times, nulls: the backfill's offline value at every request equals the brute-force
latest event's value (ours, a Python value, == the Parquet value), online equals offline after
materialize, a pushed dict lands as its JSON text in both stores and reads back as the dict, served values
come back from the serving log as the very values served (log-and-wait), and a text that is not JSON is a
dead letter naming the column.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import load_config
from featurestore.push.rows import json_text
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr

DEFS = '''\
from featurestore import Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
profiles = Source(
    schema={"user_id": "string", "profile": "json", "embedding": "json", "tags": "json", "config": "json",
            "n": "int64", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/profiles/*.parquet"),
    tiebreak=("n",),
)
user_profile = FeatureView(entities=[user], source=profiles, features=[
    Latest("profile"), Latest("embedding"), Latest("tags"), Latest("config"), Latest("n")])
everything = FeatureService(features=[user_profile])
'''
FEATURES = ("profile", "embedding", "tags", "config")
T0_MS = 1_780_000_000_000


def _events(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(12)]
    rows = []
    for i in range(n):
        user = users[0] if rng.random() < 0.3 else users[rng.integers(len(users))]  # a hot key
        ts = T0_MS + int(rng.integers(0, 40)) * 1000  # few distinct times: ties
        rows.append({
            "user_id": user,
            "profile": None if rng.random() < 0.1 else {"name": f"n{i}", "age": str(rng.integers(18, 90))},
            "embedding": None if rng.random() < 0.1 else [float(x) for x in rng.normal(size=4)] + [1e-300, -0.0],
            "tags": None if rng.random() < 0.1 else [(f"k{j}", f"v{i}é") for j in range(int(rng.integers(0, 3)))],
            "config": None if rng.random() < 0.1 else json.dumps({"max": int(rng.integers(0, 100)), "z": [i]}),
            "n": i,
            "ts": pd.Timestamp(ts, unit="ms", tz="UTC"),
        })
    return pd.DataFrame(rows)


def _write(root, events: pd.DataFrame, bad_config_row: bool = False) -> None:
    schema = pa.schema([("user_id", pa.string()), ("profile", pa.struct([("name", pa.string()), ("age", pa.string())])),
                        ("embedding", pa.list_(pa.float64())), ("tags", pa.map_(pa.string(), pa.string())),
                        ("config", pa.string()), ("n", pa.int64()), ("ts", pa.timestamp("ms", tz="UTC"))])
    table = pa.Table.from_pandas(events, schema=schema, preserve_index=False)
    (root / "data" / "profiles").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "profiles" / "part-0.parquet")
    if bad_config_row:
        bad = events.iloc[:1].assign(config="{not json", n=10_000)
        pq.write_table(pa.Table.from_pandas(bad, schema=schema, preserve_index=False),
                       root / "data" / "profiles" / "part-1.parquet")


def _expected(events: pd.DataFrame, user: str, q_ms: int, feature: str):
    ts_ms = events["ts"].astype("int64") // 1_000_000 if events["ts"].dtype.kind == "M" else None
    before = events[(events["user_id"] == user) & (ts_ms < q_ms)]
    if before.empty:
        return None
    last = before.assign(_t=ts_ms[before.index]).sort_values(["_t", "n"]).iloc[-1]
    return last[feature]


def _same(ours, raw, feature: str) -> bool:
    """Ours is the Python value (a dict, a list...), as Feast returns it; never the JSON text."""
    if raw is None:
        return ours is None
    if isinstance(ours, str):
        return False
    if feature == "config":
        return ours == json.loads(raw)  # a JSON document column: its value
    if feature == "tags":  # a Parquet map is an object of its pairs (an empty map: DuckDB writes {})
        return ours == {k: v for k, v in raw}
    return ours == raw


@pytest.fixture
def store_of(tmp_path, redis_client):
    projects = []

    def make(events, bad_config_row=False):
        root = tmp_path / f"repo{len(projects)}"
        (root / "definitions").mkdir(parents=True)
        (root / "definitions" / "defs.py").write_text(DEFS)
        _write(root, events, bad_config_row)
        project = f"t_json_{uuid.uuid4().hex[:10]}"
        projects.append(project)
        return FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))

    yield make
    for p in projects:
        keys = list(redis_client.scan_iter(match=f"{orr.KEY_PREFIX}:{p}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def test_json_text_of_pushed_and_computed_values():
    assert json_text({"a": [1, 2.5, None], "b": "é"}) == '{"a":[1,2.5,null],"b":"é"}'
    assert json_text(np.array([0.5, 1.0], dtype=np.float32)) == "[0.5,1.0]"
    assert json_text('{"x": 1}') == '{"x": 1}'  # a Json text is kept as written
    for bad in ("{not json", 3, 1.5, True, {"x": float("nan")}):
        with pytest.raises(ValueError):
            json_text(bad)


@pytest.mark.redis
@pytest.mark.parametrize("seed", (3, 17))
def test_json_values_offline_equal_the_latest_event_and_online_equals_offline(store_of, seed):
    events = _events(seed)
    store = store_of(events, bad_config_row=True)
    (result,) = store.backfill()
    assert result.dead_letters == 1 and "config" in next(iter(result.reasons)), result.reasons
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(13)]  # u12 has no event
    q = T0_MS + rng.integers(-1, 42, 120) * 1000 + rng.choice([0, 1], 120)
    req = pd.DataFrame({"user_id": rng.choice(users, 120), "event_timestamp": pd.to_datetime(q, unit="ms", utc=True)})
    got = pd.DataFrame(store.get_historical_features(req, feature_service="everything"))
    seen = 0
    for i, row in req.iterrows():
        for f in FEATURES:
            raw = _expected(events, row.user_id, int(q[i]), f)
            assert _same(got[f][i], raw, f), (f, i, got[f][i], raw)
            seen += raw is not None
    assert seen > 100
    store.materialize()
    for i, row in req.head(30).iterrows():
        online = store.get_online_features([{"user_id": row.user_id}], feature_service="everything",
                                           request_time=row.event_timestamp).to_dict()
        for f in FEATURES:
            assert online[f][0] == got[f][i], (f, i)


@pytest.mark.redis
def test_pushed_json_values_are_their_text_online_and_offline(store_of):
    events = _events(5, n=20)
    store = store_of(events)
    store.backfill()
    store.materialize()
    ts = pd.Timestamp(T0_MS + 100_000, unit="ms", tz="UTC")
    row = {"user_id": "u99", "profile": {"name": "p", "age": "7"}, "embedding": np.array([0.25, -1.0]),
           "tags": {"a": "b"}, "config": '{"max": 3}', "n": 1, "ts": ts}
    res = store.push("profiles", [row])
    assert res.events == 1 and not res.dead_letters
    q = ts + pd.Timedelta(milliseconds=1)
    want = {"profile": '{"name":"p","age":"7"}', "embedding": "[0.25,-1.0]", "tags": '{"a":"b"}',
            "config": '{"max": 3}'}
    training = store.get_historical_features(pd.DataFrame({"user_id": ["u99"], "event_timestamp": [q]}),
                                             feature_service="everything")
    offline = pd.DataFrame(training)
    response = store.get_online_features([{"user_id": "u99"}], feature_service="everything", request_time=q)
    online, online_df = response.to_dict(), response.to_df()
    for f, text in want.items():  # stored as the text, read as the value
        assert training.to_arrow().column(f).to_pylist() == [text] and response.raw_dict()[f] == [text]
        assert offline[f][0] == json.loads(text) == online[f][0] == online_df[f][0]
    bad = store.push("profiles", [{**row, "n": 2, "config": "{nope"}])
    assert bad.events == 0 and sum(bad.dead_letters.values()) == 1, bad.dead_letters


@pytest.mark.redis
def test_served_json_values_are_trained_and_spoken_in_feast_shape(store_of):
    """Log-and-wait: the values a lookup served (Python values) come back from the serving log as those very
    values, and verify recomputes them equal; over HTTP both response shapes carry the values, not the text."""
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    events = _events(11, n=120)
    store = store_of(events)
    store.backfill()
    store.materialize()
    q = pd.Timestamp(T0_MS + 60_000, unit="ms", tz="UTC")
    rows = [{"user_id": f"u{i}"} for i in range(13)]
    response = store.get_online_features(rows, feature_service="everything", request_time=q, log=True)
    served = response.to_dict()
    assert any(isinstance(v, dict) for v in served["profile"]) and any(isinstance(v, list) for v in served["embedding"])
    labels = pd.DataFrame({"request_id": [response.request_id] * len(rows), "user_id": [r["user_id"] for r in rows],
                           "label": range(len(rows))})
    trained = store.training_set_from_logs(labels, "everything")
    assert trained["_from_log"].all()
    for f in FEATURES:
        assert trained[f].tolist() == served[f], f
    report = store.verify("everything")
    assert report.rows == len(rows) and all(s.mismatch == s.missing == s.extra == 0 for s in report.features.values()), \
        {c: (s.mismatch, s.missing, s.extra, s.examples[:1]) for c, s in report.features.items()}

    client = TestClient(create_app(store))
    body = {"features": [f"user_profile:{f}" for f in FEATURES], "entities": {"user_id": [r["user_id"] for r in rows]},
            "request_time": q.isoformat()}
    ours = client.post("/get-online-features", json=body)
    assert ours.status_code == 200, ours.text
    feast_shape = client.post("/get-online-features", json={**body, "include_feature_view_version_metadata": False})
    assert feast_shape.status_code == 200, feast_shape.text
    names = feast_shape.json()["metadata"]["feature_names"]
    by_name = dict(zip(names, feast_shape.json()["results"]))
    for f in FEATURES:
        assert by_name[f]["values"] == served[f] == ours.json()["results"][f], f
