"""SPEC §3.3 served = trained, as a property on random traffic: int64 keys beyond 2^53 and at the int64
edges, a composite (string, int64) key, null keys, hot keys, ties, the same entity twice in a request,
shipping at random points. What was served equals the brute-force reference, comes back from
``training_set_from_logs`` value for value and type for type, keeps its key types in the offline log
table, and ``verify`` finds zero skew."""

import json
import math
import random
import uuid

import pandas as pd
import pytest

from featurestore import serving_log
from featurestore.store import FeatureStore
from tests import logrepo as lr
from tests import oracle
from tests.compare import same_value
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis]

SERVICE = "scoring"
KEYS = ["account_id", "region"]


@pytest.fixture
def log_store(tmp_path, redis_client, request, monkeypatch):
    made = []

    def make(seed: int, where: str = "local") -> FeatureStore:
        if where == "s3":  # offline tables (and the serving log) on an s3:// root: the local S3 server
            s3_root = request.getfixturevalue("s3_root")
            monkeypatch.setenv("FEATURESTORE_OFFLINE_ROOT", str(s3_root))
            monkeypatch.setenv("FEATURESTORE_OFFLINE_S3_ENDPOINT", s3_root.endpoint)
        root = lr.write_repo(tmp_path / f"repo{len(made)}")
        events = lr.random_payments(seed)
        lr.write_payments(root, events)
        fs = FeatureStore(root)
        fs.backfill()
        fs.materialize()
        fs.events = events
        made.append(fs)
        return fs

    yield make
    for fs in made:  # on the Redis each store was configured with (the cluster under online_backend)
        drop_project(fs.online_store().client, fs.config.project)  # serving logs (fs:<project>:_log:*) too


def identical(a, b) -> bool:
    """Served = trained: same value and same Python type (an int never comes back as a float), floats bit for
    bit (a sign of zero too: -0.0 is not 0.0)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    return type(a) is type(b) and a == b


def serve(fs, lookups, rng, ship_every=7):
    """Log every lookup; ship at random points in between. Returns one dict per served row."""
    served = []
    for n, lk in enumerate(lookups):
        res = fs.get_online_features(lk["rows"], feature_service=SERVICE, request_time=lk["request_time"],
                                     request_id=lk["request_id"])
        if lk["request_id"] is not None:
            assert res.request_id == lk["request_id"]
        data = res.to_dict()
        for j in range(len(lk["rows"])):
            served.append({"request_id": res.request_id, "row": j, "request_time": lk["request_time"],
                           **{c: v[j] for c, v in data.items()}})
        if rng.random() < 1 / ship_every:
            fs.ship_logs()
    return served


def feature_columns(fs):
    from featurestore.sdk.refs import output_names, resolve_features

    return list(output_names(resolve_features(fs.repo, feature_service=SERVICE), False).values())


@pytest.mark.parametrize("seed,online_backend,where",
                         [(1, "single", "local"), (2, "single", "local"), (3, "single", "local"),
                          (1, "cluster", "local"), (1, "single", "s3")],
                         indirect=["online_backend"])
def test_served_equals_trained_on_random_traffic(online_backend, log_store, seed, where):
    fs = log_store(seed, where)
    assert fs.online_store().cluster == (online_backend == "cluster")
    rng = random.Random(seed)
    served = serve(fs, lr.random_lookups(seed, fs.events, n=45), rng)
    cols = feature_columns(fs)
    served_df = pd.DataFrame(served, dtype=object)

    # What was served is the reference's value at the request time (keys exact: no float in between).
    requests = served_df[KEYS + ["request_time"]].rename(columns={"request_time": "event_timestamp"})
    for view in fs.repo.views.values():
        expected = oracle.point_in_time(fs.events, view, requests)
        for i, row in enumerate(served):
            for f in view.feature_names:
                assert same_value(row[f], expected[f].iloc[i]), (seed, view.name, f, row, expected[f].iloc[i])

    # The offline log table keeps the keys' types: int64 beyond 2^53 exact, nulls null, strings strings.
    fs.ship_logs()
    table = serving_log.log_table(fs, SERVICE)
    assert table.files()[0].startswith("s3://" if where == "s3" else "/")
    raw = table.read()
    logged = {(r["request_id"], r["row"]): json.loads(r["entity"]) for r in raw.to_pylist()}
    assert len(logged) == raw.num_rows == len(served)  # one offline row per served row, none twice
    for row in served:
        ent = logged[(row["request_id"], row["row"])]
        for k in KEYS:
            assert identical(ent[k], row[k]), (k, ent, row)

    # Labels: every served row (shuffled), joined back by request id and entity.
    labels = served_df[["request_id"] + KEYS].copy()
    labels["label"] = [rng.random() for _ in range(len(labels))]
    order = list(range(len(labels)))
    rng.shuffle(order)
    labels = labels.iloc[order].reset_index(drop=True)
    labels["account_id"] = pd.array(labels["account_id"].tolist(), dtype="Int64")  # a user's usual key column
    got = fs.training_set_from_logs(labels, SERVICE)
    assert got["_from_log"].all()
    for r, src in enumerate(order):
        for c in cols:
            assert identical(got[c].iloc[r], served[src][c]), (seed, c, got[c].iloc[r], served[src][c])
    assert got["label"].tolist() == labels["label"].tolist()

    # ... and by entity and request time, without request ids (first logged of equal ones: same values).
    by_time = served_df[KEYS + ["request_time"]].rename(columns={"request_time": "event_timestamp"})
    by_time["event_timestamp"] = pd.to_datetime(by_time["event_timestamp"], utc=True)
    got = fs.training_set_from_logs(by_time, SERVICE)
    assert got["_from_log"].all()
    for r, row in enumerate(served):
        for c in cols:
            assert identical(got[c].iloc[r], row[c]), (seed, c, got[c].iloc[r], row[c])

    # verify recomputes every logged row offline: zero skew.
    report = fs.verify(SERVICE)
    assert report.rows == len(served)
    assert report.clean, {f: (s.mismatch, s.missing, s.extra, s.examples[:2]) for f, s in report.features.items()
                          if s.skew_rate}


def test_labels_for_entities_a_request_did_not_serve_are_filled_and_flagged(log_store):
    """Issue 9.3: a label naming a logged request but an entity that request did not serve gets the
    point-in-time value (at the label's time, or at the request's time without one), flagged."""
    fs = log_store(4)
    rng = random.Random(4)
    served = serve(fs, lr.random_lookups(4, fs.events, n=30), rng)
    cols = feature_columns(fs)
    by_request = {}
    for row in served:
        by_request.setdefault(row["request_id"], (row["request_time"], set()))[1].add(
            (row["account_id"], row["region"]))
    labels, expect_log = [], []
    for rid, (when, entities) in by_request.items():
        for _ in range(3):
            ent = lr.random_entity(rng)
            labels.append({"request_id": rid, **ent, "when": when})
            expect_log.append((ent["account_id"], ent["region"]) in entities)
    labels = pd.DataFrame(labels, dtype=object)
    assert 0 < sum(expect_log) < len(expect_log)
    got = fs.training_set_from_logs(labels[["request_id"] + KEYS], SERVICE)  # no timestamp: the request's time
    assert got["_from_log"].tolist() == expect_log
    served_at = {(r["request_id"], r["account_id"], r["region"]): r for r in served}
    pit_df = labels[KEYS].copy()
    pit_df["account_id"] = pd.array(pit_df["account_id"].tolist(), dtype="Int64")
    pit_df["event_timestamp"] = pd.to_datetime(labels["when"], utc=True)
    pit = fs.get_historical_features(pit_df, feature_service=SERVICE).to_arrow()
    for r in range(len(labels)):
        for c in cols:
            want = (served_at[(labels["request_id"][r], labels["account_id"][r], labels["region"][r])][c]
                    if expect_log[r] else pit.column(c)[r].as_py())
            assert identical(got[c].iloc[r], want), (r, c, got[c].iloc[r], want, expect_log[r])

    from featurestore.errors import RequestError

    with pytest.raises(RequestError, match=r"has join key column\(s\) \['account_id'\] but not \['region'\]"):
        fs.training_set_from_logs(labels[["request_id", "account_id"]], SERVICE)

    # With a timestamp column, unmatched labels are filled at the label's own time.
    labels["ts"] = pd.to_datetime(labels["when"], utc=True) + pd.Timedelta("17s")
    got = fs.training_set_from_logs(labels[["request_id"] + KEYS + ["ts"]], SERVICE, timestamp_column="ts")
    pit_df["event_timestamp"] = labels["ts"]
    pit = fs.get_historical_features(pit_df, feature_service=SERVICE).to_arrow()
    for r in [r for r in range(len(labels)) if not expect_log[r]]:
        for c in cols:
            assert identical(got[c].iloc[r], pit.column(c)[r].as_py()), (r, c)


def test_verify_keeps_int64_keys_after_a_null_key(log_store):
    """Issue 9.2: one logged lookup with a null key made verify rebuild the key column as float64, so
    2^53 + 1 became 2^53 (another entity) and 2^63 - 1 overflowed."""
    fs = log_store(5)
    when = lr.BASE + pd.Timedelta("250s")
    for acct in [lr.TWO53 + 1, lr.TWO53, None, 2 ** 63 - 1]:
        fs.get_online_features([{"account_id": acct, "region": "eu"}], feature_service=SERVICE, request_time=when,
                               request_id=f"r-{uuid.uuid4().hex}")
    report = fs.verify(SERVICE)
    assert report.rows == 4 and report.clean, {f: s.examples for f, s in report.features.items() if s.skew_rate}
