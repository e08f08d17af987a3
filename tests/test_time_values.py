"""Timestamp values of columns other than the event time (SPEC §1 column types, docs/semantics.md): one rule
in every path (featurestore.semantics.time_value_supported: years 1 to 9999 UTC). A far sentinel such as
9999-12-31T23:59:59.999999 is a value whether it comes from a Parquet batch face or a push (push used to make
it a dead letter: pandas' nanosecond range); a time outside years 1-9999 is a dead letter ``column 'exp':
not a timestamp`` in both (the batch face used to keep it, and an online lookup then crashed with Python's
OverflowError). Random values around every bound; the kept ones read back exactly offline and online."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import semantics
from featurestore.engines.backfill import dead_letter_table
from featurestore.store import FeatureStore
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "exp": "timestamp", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
expiry = FeatureView(entities=[user], source=events, features=[
    Latest("exp", name="exp_latest"), Aggregation("exp", "count", None, name="exp_n")])
'''
US_PER_YEAR = 365 * 86_400 * 10**6
BOUNDS = [semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US,
          -9_223_372_036_854_775, 9_223_372_036_854_775,  # pandas' nanosecond range, in µs
          -2_208_988_800_000_000, 7_258_118_400_000_000]  # the event times' range
SEEN = pd.Timestamp("2026-01-01T00:00:00Z")


def _values(seed: int):
    rng = random.Random(seed)
    out = [b + d for b in BOUNDS for d in (-1, 0, 1)]
    out += [253_402_300_799_999_999, 20_000 * US_PER_YEAR, -18_000 * US_PER_YEAR, 0, -1]
    out += [rng.randrange(-290_000 * US_PER_YEAR, 290_000 * US_PER_YEAR) for _ in range(10)]
    out += [rng.randrange(semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US) for _ in range(10)]
    rng.shuffle(out)
    return out


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: tv_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    fs = FeatureStore(root)
    yield fs
    drop_project(fs.online_store().client, fs.config.project)


@pytest.mark.parametrize("seed", [0, 1])
def test_timestamp_values_follow_one_rule_in_the_batch_face_and_push(store, seed):
    values = _values(seed)
    n = len(values)
    ok = [semantics.time_value_supported(v) for v in values]
    assert any(ok) and not all(ok)
    ts = [SEEN + pd.Timedelta(milliseconds=i) for i in range(n)]
    # the batch face: users b0.., one event each
    pq.write_table(pa.table({"user_id": [f"b{i}" for i in range(n)], "exp": pa.array(values, pa.timestamp("us", tz="UTC")),
                             "ts": pa.array([t.to_pydatetime() for t in ts], pa.timestamp("us", tz="UTC"))}),
                   store.repo_path / "data" / "e.parquet")
    results = store.backfill()
    assert results[0].dead_letters == ok.count(False), results
    dead = dead_letter_table(store, "events").read().to_pylist()
    assert sorted(r["reason"] for r in dead) == ["column 'exp': not a timestamp"] * ok.count(False)
    store.materialize()
    # push: users p0.., the same values as numpy datetimes (what a DataFrame of such times holds)
    pushed = store.push("events", [{"user_id": f"p{i}", "exp": np.datetime64(v, "us"), "ts": ts[i]}
                                   for i, v in enumerate(values)])
    assert pushed.events == ok.count(True), pushed
    assert pushed.dead_letters == ({"column 'exp': not a timestamp": ok.count(False)} if ok.count(False) else {})
    requests = pd.DataFrame({"user_id": [f"{p}{i}" for p in "bp" for i in range(n)],
                             "event_timestamp": SEEN + pd.Timedelta("1h")})
    offline = store.get_historical_features(requests, features=["expiry:exp_latest", "expiry:exp_n"]).to_arrow()
    got_latest = pa.compute.cast(offline["exp_latest"], pa.int64()).to_pylist()
    want = [v if good else None for v, good in zip(values, ok)] * 2
    assert got_latest == want
    assert offline["exp_n"].to_pylist() == [int(good) for good in ok] * 2
    online = store.get_online_features([{"user_id": u} for u in requests["user_id"]],
                                       features=["expiry:exp_latest", "expiry:exp_n"], request_time=SEEN + pd.Timedelta("1h"))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    served = [None if v is None else (v - epoch) // dt.timedelta(microseconds=1) for v in online.to_dict()["exp_latest"]]
    assert served == want
