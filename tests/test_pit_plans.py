"""The point-in-time plans (range join for light keys, sweep for hot keys, and the per-key choice between
them) equal the brute-force oracle for every aggregation, window and tie; variance and stddev are exact
offline in every plan (issue 9.1: values with a large offset and a tiny spread)."""

import math

import pandas as pd
import pytest

from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import BASE, offset_events, random_events, random_requests, write_events, write_repo

# HOT_KEY_COST: 0 sends every key with requests and events through the sweep, inf none of them.
PLANS = {"range join": math.inf, "sweep": 0.0, "per key": None}


@pytest.fixture(params=list(PLANS))
def plan(request, monkeypatch):
    if PLANS[request.param] is not None:
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", PLANS[request.param])
    return request.param


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore(write_repo(tmp_path_factory.mktemp("plans")))


def hot_users(store, view: str, requests: pd.DataFrame) -> list:
    """The keys the per-key choice sends through the sweep, asked the same way the engine asks."""
    cv = store.compiled(view)
    con = store._connect()
    con.register("req", pd.DataFrame({"__row": range(len(requests)), "__q_ms": 0, "user_id": requests["user_id"]}))
    events = store._view_input(con, cv).events_relation
    return sorted(r[0] for r in con.sql(duckdb_pit.hot_keys_sql(cv, events, "req")).fetchall())


def check(store, events, requests, abs_tol):
    got = store.get_historical_features(requests, feature_service="everything")
    assert got["label"].tolist() == requests["label"].tolist()  # input order kept
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"view {view.name}", abs_tol=abs_tol)


ISSUE_9_1 = [123456789.123, 123456789.125, 123456789.126, 123456789.129]


def test_issue_9_1_variance_is_exact(store, plan):
    same = 1e15 + 0.125  # and a user whose values are all equal: exactly 0, not rounding noise
    events = pd.DataFrame({
        "user_id": ["u0"] * 4 + ["u1"] * 3, "shop": 0, "amount": ISSUE_9_1 + [same] * 3,
        "qty": pd.array(range(7), "Int64"), "tag": "a", "flag": pd.array([True] * 7, "boolean"),
        "ts": [BASE + pd.Timedelta(minutes=i) for i in [0, 1, 2, 3, 0, 1, 2]],
    })
    write_events(store.repo_path, events, files=1)
    requests = pd.DataFrame({"user_id": ["u0", "u1"], "event_timestamp": [BASE + pd.Timedelta(minutes=4)] * 2})
    got = store.get_historical_features(requests, features=["amount_stats:amount_variance_1h",
                                                            "amount_stats:amount_stddev_all"])
    exact = 6.249993046140527e-06  # DuckDB's var_samp: 6.250012500430557e-06
    assert got["amount_variance_1h"][0] == pytest.approx(exact, rel=1e-12, abs=0)
    assert got["amount_stddev_all"][0] == pytest.approx(math.sqrt(exact), rel=1e-12, abs=0)
    assert got["amount_variance_1h"][1] == 0.0 and got["amount_stddev_all"][1] == 0.0
    if plan == "sweep":  # exact prefix moments: correctly rounded, bit for bit
        assert got["amount_variance_1h"][0] == exact


@pytest.mark.parametrize("seed", range(4))
def test_large_offsets_tiny_spread_equal_oracle(store, plan, seed):
    """1e8, +-1e15 and epoch-ms-like values (drifting with time), int64 values beyond 2**53, one hot user,
    ties and nulls: every feature equals the exact reference to 1e-9 relative (no absolute slack)."""
    events = offset_events(seed)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events, n=150, users=["u0", "u0", "u0", "u1", "u2", "u3", "nobody"])
    if plan == "per key":  # the data must exercise both plans in one query
        assert hot_users(store, "amount_stats", requests) == ["u0"]
    check(store, events, requests, abs_tol=0.0)


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_random_events_equal_oracle(store, plan, seed):
    """The random event sets of tests/test_historical_oracle.py, through each plan."""
    events = random_events(seed)
    write_events(store.repo_path, events)
    check(store, events, random_requests(seed, events), abs_tol=1e-12)


def test_window_edges_of_the_first_and_last_request(store, plan):
    """The lower edge ``q - W`` is inclusive and ``q`` exclusive, also for the earliest request of a key
    (where the sweep starts reading the key's events) and at equal request times (one sequence row)."""
    n = 61
    events = pd.DataFrame({
        "user_id": "u0", "shop": 0, "amount": [float(i + 1) for i in range(n)], "qty": pd.array(range(n), "Int64"),
        "tag": "a", "flag": pd.array([True] * n, "boolean"), "ts": [BASE + pd.Timedelta(seconds=i) for i in range(n)],
    })
    write_events(store.repo_path, events, files=1)
    q = [BASE + pd.Timedelta(seconds=60), BASE + pd.Timedelta(seconds=60), BASE + pd.Timedelta(milliseconds=60_001),
         BASE + pd.Timedelta(seconds=61)]
    requests = pd.DataFrame({"user_id": "u0", "shop": 0, "event_timestamp": q})
    got = store.get_historical_features(requests, features=["pair_stats:pair_sum_1m", "qty_stats:qty2_count_1m"])
    assert got["pair_sum_1m"].tolist() == [1830.0, 1830.0, 1890.0, 1890.0]  # 1..60, 1..60, 2..61, 2..61
    assert got["qty2_count_1m"].tolist() == [60, 60, 60, 60]


def test_keys_with_many_events_take_the_exact_plan_in_views_with_a_variance(store, monkeypatch):
    """The range join's shifted variance is within 1e-9 up to EXACT_VARIANCE_EVENTS values per window;
    a key with more events goes through the sweep (exact) when the view has a variance, whatever its
    request count."""
    events = random_events(3)
    write_events(store.repo_path, events)
    requests = random_requests(3, events)
    monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", math.inf)
    assert hot_users(store, "amount_stats", requests) == []
    monkeypatch.setattr(duckdb_pit, "EXACT_VARIANCE_EVENTS", 20)
    many = sorted(u for u, n in events["user_id"].value_counts().items() if n > 20 and u in set(requests["user_id"]))
    assert many and hot_users(store, "amount_stats", requests) == many  # amount_stats has variances
    check(store, events, requests, abs_tol=1e-12)
