"""Served = trained (SPEC §3.3, §7) for the values a float column can hold besides ordinary numbers:
-0.0, NaN, +inf and -inf come back from ``training_set_from_logs`` bit for bit (a sign of zero too), matched
by request id and by entity and time, and filled ones equal ``get_historical_features``; a service of many
features builds its training set without pandas' fragmentation warning."""

import math
import struct
import uuid
import warnings

import pandas as pd
import pytest

from featurestore.store import FeatureStore
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis]

WIDE = 120  # features of the wide service: pandas warns of a fragmented frame beyond 100 inserted columns
DEFINITIONS = f'''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, LoggingConfig, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "x": "float64", "ts": "timestamp"}}, timestamp="ts",
                batch=ParquetFiles("data/events/*.parquet"))
floats = FeatureView(entities=[user], source=events,
                     features=[Latest("x", name="x_latest"), Aggregation("x", "min", None, name="x_min"),
                               Aggregation("x", "max", None, name="x_max"), Aggregation("x", "first", None, name="x_first"),
                               Aggregation("x", "last", "1h", name="x_last_1h"),
                               Aggregation("x", "sum", None, name="x_sum"), Latest("-x", name="x_neg")])
wide = FeatureView(entities=[user], source=events,
                   features=[Latest("x", name=f"w{{i}}") for i in range({WIDE})])
scoring = FeatureService(features=[floats], logging=LoggingConfig(enabled=True, sample_rate=1.0))
wide_service = FeatureService(name="wide_service", features=[wide], logging=LoggingConfig(enabled=True, sample_rate=1.0))
'''
BASE = pd.Timestamp("2026-03-01T00:00:00Z")
# Each user's events in time order; the last one is what Latest serves.
USERS = {"zero": [1.0, 0.0, -0.0], "nan": [2.0, float("nan")], "inf": [float("inf"), 3.0, float("inf")],
         "ninf": [-0.0, float("-inf")], "mixed": [float("inf"), float("-inf"), -0.0]}


def bits(v):
    """A value's identity: floats by their bits (NaN as one value), others by type and value."""
    if isinstance(v, float):
        return ("nan",) if math.isnan(v) else ("float", struct.pack("<d", v))
    return (type(v).__name__, v)


@pytest.fixture
def fs(tmp_path, redis_client):
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: sv_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n")
    rows = [{"user_id": u, "x": x, "ts": BASE + pd.Timedelta(seconds=10 * i)}
            for u, xs in USERS.items() for i, x in enumerate(xs)]
    (root / "data" / "events").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "events" / "part-0.parquet", index=False)
    store = FeatureStore(root)
    store.backfill()
    store.materialize()
    yield store
    drop_project(store.online_store().client, store.config.project)


def test_special_floats_come_back_bit_for_bit(fs):
    when = BASE + pd.Timedelta("5min")
    users = list(USERS) + ["unknown"]
    res = fs.get_online_features([{"user_id": u} for u in users], feature_service="scoring", request_time=when,
                                 request_id="r-special")
    served = res.to_dict()
    assert bits(served["x_latest"][0]) == bits(-0.0) and bits(served["x_neg"][0]) == bits(0.0)
    cols = [c for c in served if c != "user_id"]
    fs.ship_logs()

    by_id = fs.training_set_from_logs(pd.DataFrame({"request_id": ["r-special"] * len(users), "user_id": users}),
                                      "scoring")
    by_time = fs.training_set_from_logs(pd.DataFrame({"user_id": users, "event_timestamp": [when] * len(users)}),
                                        "scoring")
    # Labels without a log (another time): filled by the point-in-time join, flagged.
    later = when + pd.Timedelta("1s")
    filled = fs.training_set_from_logs(pd.DataFrame({"user_id": users, "event_timestamp": [later] * len(users)}),
                                       "scoring")
    pit = fs.get_historical_features(pd.DataFrame({"user_id": users, "event_timestamp": [later] * len(users)}),
                                     feature_service="scoring").to_arrow()
    for got in (by_id, by_time):
        assert got["_from_log"].all()
        for c in cols:
            assert [bits(v) for v in got[c]] == [bits(v) for v in served[c]], c
    assert not filled["_from_log"].any()
    for c in cols:
        assert [bits(v) for v in filled[c]] == [bits(v) for v in pit.column(c).to_pylist()], c
    report = fs.verify("scoring")
    assert report.rows == len(users) and report.clean, {f: s.examples for f, s in report.features.items()
                                                        if s.skew_rate}


def test_many_features_build_without_a_fragmentation_warning(fs):
    when = BASE + pd.Timedelta("5min")
    res = fs.get_online_features([{"user_id": u} for u in USERS], feature_service="wide_service",
                                 request_time=when, request_id="r-wide")
    served = res.to_dict()
    labels = pd.DataFrame({"request_id": ["r-wide"] * len(USERS), "user_id": list(USERS), "label": range(len(USERS))})
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        got = fs.training_set_from_logs(labels, "wide_service")
    assert list(got.columns) == ["request_id", "user_id", "label"] + [f"w{i}" for i in range(WIDE)] + \
        ["_from_log", "_definitions"]
    for i in range(WIDE):
        assert [bits(v) for v in got[f"w{i}"]] == [bits(v) for v in served[f"w{i}"]]
        assert got[f"w{i}"].dtype == object
    assert got["_from_log"].all() and got["label"].tolist() == list(range(len(USERS)))


def test_labels_before_any_log_are_filled_and_flagged(fs):
    """No lookup logged yet (no log table): every label is filled by the point-in-time join, flagged; by
    request id (ids never logged, a null id) and by entity and time alike."""
    users = list(USERS) + ["unknown"]
    times = [BASE + pd.Timedelta(seconds=s) for s in (-5, 0, 10, 15, 3600, 7)]
    pit = fs.get_historical_features(pd.DataFrame({"user_id": users, "event_timestamp": times}),
                                     feature_service="scoring").to_arrow()
    by_id = pd.DataFrame({"request_id": ["never"] * 5 + [None], "user_id": users, "event_timestamp": times})
    by_time = pd.DataFrame({"user_id": users, "event_timestamp": times})
    for labels in (by_id, by_time):
        got = fs.training_set_from_logs(labels, "scoring")
        assert not got["_from_log"].any() and got["_definitions"].isna().all()
        for c in pit.column_names:
            if c not in labels.columns:
                assert [bits(v) for v in got[c]] == [bits(v) for v in pit.column(c).to_pylist()], c


def test_two_requests_of_one_entity_in_one_millisecond(fs):
    """A push between two lookups of one entity at one request time: each request id gets what it served;
    by entity and time (a tie) the first logged one, as docs/log-and-wait.md says."""
    when = BASE + pd.Timedelta("5min")
    first = fs.get_online_features([{"user_id": "zero"}], feature_service="scoring", request_time=when,
                                   request_id="r-a").to_dict()
    fs.push("events", [{"user_id": "zero", "x": float("-inf"), "ts": when - pd.Timedelta("1s")}],
            to="online_and_offline")
    second = fs.get_online_features([{"user_id": "zero"}], feature_service="scoring", request_time=when,
                                    request_id="r-b").to_dict()
    assert bits(first["x_latest"][0]) == bits(-0.0) and bits(second["x_latest"][0]) == bits(float("-inf"))
    got = fs.training_set_from_logs(pd.DataFrame({"request_id": ["r-b", "r-a"], "user_id": ["zero", "zero"]}),
                                    "scoring")
    tie = fs.training_set_from_logs(pd.DataFrame({"user_id": ["zero"], "event_timestamp": [when]}), "scoring")
    for c in first:
        if c != "user_id":
            assert [bits(v) for v in got[c]] == [bits(second[c][0]), bits(first[c][0])], c
            assert bits(tie[c][0]) == bits(first[c][0]), c
    assert got["_from_log"].all() and tie["_from_log"].all()
