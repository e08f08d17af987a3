"""Float sums and means are exact offline where compensated (Kahan) summation is not, and follow IEEE for
infinities and NaN, in every point-in-time plan (range join, sweep, unbounded windows, and the exact
recomputation of ill-conditioned windows); min/max/first/last/count_distinct of +-inf, NaN, -0.0 and tiny
values follow the reference's rules. Offline == oracle == online (both storage forms), compared strictly:
NaN is a value (never equal to null), infinities equal only themselves, floats to SPEC 3's 1e-9 relative
with no absolute slack.

Infinities reach a view through the batch face (Parquet carries them) and through expressions
(``x / 0`` is +-inf in DuckDB, ``0 / 0`` and ``inf - inf`` are NaN, ``1e308 * 10`` overflows to inf).
"""

import dataclasses
import math
import random
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.engines import duckdb_exact, duckdb_pit
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests import oracle
from tests.randomrepo import BASE, write_events

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])

events = Source(
    schema={"user_id": "string", "amount": "float64", "qty": "int64", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/events/*.parquet"),
)

FUNCS = ["count", "sum", "mean", "min", "max", "last", "first", "stddev", "variance", "count_distinct"]
WINDOWS = {"10s": "10s", "1m": "1m", "all": None}

wild = FeatureView(
    entities=[user],
    source=events,
    projections={"ratio": "amount / qty"},  # x / 0 = +-inf, 0 / 0 = NaN, 1e16 / 3 ...
    features=[Aggregation(c, f, w, name=f"{c}_{f}_{label}")
              for c in ("amount", "ratio", "qty") for f in FUNCS for label, w in WINDOWS.items()]
    + [Aggregation("amount * 1e300", "sum", "1m", name="overflow_sum_1m"),
       Aggregation("amount * 1e300", "mean", "10s", name="overflow_mean_10s")],
)

everything = FeatureService(features=[wild])
'''

# Values that break compensated summation or IEEE handling, and ordinary ones.
CANCELLING = [1e16, -1e16, 1.0, -1.0, 3.0, 0.5, 2.0**60, -(2.0**60), 1e-3]
HUGE = [1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308]
TINY = [5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1e-300]
ZEROS = [0.0, -0.0]
INFS = [math.inf, -math.inf]
BIG_INT = 2**53 + 1  # beyond a double's integers: a mean through doubles loses it


def wild_events(seed: int, n: int = 400, span_s: int = 300) -> pd.DataFrame:
    """One hot user (``u0``, ~60% of the events) and a few light ones; bursts of equal timestamps; nulls.
    Seeds 0 mod 3 have no infinities in ``amount`` (cancellation alone), the others a few percent."""
    rng = random.Random(seed)
    p_inf = 0.0 if seed % 3 == 0 else 0.03
    rows, t = [], 0.0
    for _ in range(n):
        t += rng.choice([0.0, 0.0, 0.001]) if rng.random() < 0.3 else rng.expovariate(n / span_s)
        r = rng.random()
        if r < 0.08:
            amount = None
        elif r < 0.08 + p_inf:
            amount = rng.choice(INFS)
        elif r < 0.13 + p_inf:
            amount = rng.choice(HUGE)
        elif r < 0.5:
            amount = rng.choice(CANCELLING)
        elif r < 0.6:
            amount = rng.choice(TINY)
        elif r < 0.7:
            amount = rng.choice(ZEROS)
        else:
            amount = round(rng.uniform(-50, 200), rng.choice([0, 2]))
        q = rng.random()
        qty = None if q < 0.08 else (0 if q < 0.25 else rng.choice([BIG_INT, -BIG_INT + 1, 3, -1, 7]))
        rows.append({"user_id": "u0" if rng.random() < 0.6 else f"u{rng.randint(1, 4)}", "amount": amount,
                     "qty": qty, "ts": BASE + pd.Timedelta(microseconds=int(t * 1e6))})
    df = pd.DataFrame(rows)
    df["amount"] = df["amount"].astype("float64")
    df["qty"] = df["qty"].astype("Int64")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def wild_requests(seed: int, events: pd.DataFrame, n: int = 120) -> pd.DataFrame:
    rng = random.Random(seed + 7)
    times = list(events["ts"])
    rows = []
    for _ in range(n):
        k = rng.random()
        if k < 0.4:
            q = rng.choice(times).floor("ms") + pd.Timedelta(rng.choice(["0s", "1ms", "10s", "1min"]))
        else:
            q = BASE + pd.Timedelta(milliseconds=rng.randint(-2_000, 320_000))
        rows.append({"user_id": rng.choice(["u0", "u0", "u0", "u1", "u2", "u3", "nobody"]), "event_timestamp": q})
    df = pd.DataFrame(rows)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


# -- strict comparison ------------------------------------------------------------------------------
def same(a, b) -> bool:
    """None only equals None, NaN only NaN, an infinity only itself; ints exactly; floats to 1e-9 relative
    (no absolute slack: a sum that is exactly 0 must read 0)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def assert_same(got: dict, expected: dict, context: str) -> None:
    problems = [f"row {i} {col}: got {a!r}, expected {e!r}"
                for col in expected for i, (a, e) in enumerate(zip(got[col], expected[col])) if not same(a, e)]
    assert not problems, f"{context}: {len(problems)} mismatches, e.g.\n" + "\n".join(problems[:20])


def reference(store, events, requests) -> dict:
    view = store.repo.views["wild"]
    expected = oracle.point_in_time(events, view, requests)
    return {f: list(expected[f]) for f in view.feature_names}


def offline(store, requests) -> dict:
    table = store.get_historical_features(requests, feature_service="everything").to_arrow()
    return {f: table[f].to_pylist() for f in store.repo.views["wild"].feature_names}


def make_repo(root):
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: wild\ndefinitions: definitions\n")
    return root


# -- offline == oracle, every plan --------------------------------------------------------------------
# HOT_KEY_COST: inf = every key through the range join, 0 = every key through the sweep, None = per key.
# EXACT_CONDITION 0 recomputes every non-empty float sum and mean exactly (the repair path alone).
PLANS = {"range join": (math.inf, None), "sweep": (0.0, None), "per key": (None, None),
         "range join, all exact": (math.inf, 0.0), "sweep, all exact": (0.0, 0.0)}


@pytest.fixture(params=list(PLANS))
def plan(request, monkeypatch):
    cost, condition = PLANS[request.param]
    if cost is not None:
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", cost)
    if condition is not None:  # every float sum checked and recomputed, whatever its values' signs
        monkeypatch.setattr(duckdb_exact, "EXACT_CONDITION", condition)
        monkeypatch.setattr(duckdb_exact, "checked_inputs",
                            lambda con, cv, events: {a.expr for a in cv.aggregations if duckdb_exact.is_float_sum(a)})
    return request.param


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore(make_repo(tmp_path_factory.mktemp("wild")))


@pytest.mark.parametrize("seed", range(4))
def test_offline_equals_oracle(store, plan, seed):
    events = wild_events(seed)
    write_events(store.repo_path, events)
    requests = wild_requests(seed, events)
    assert_same(offline(store, requests), reference(store, events, requests), f"{plan}, seed {seed}")


def test_minimal_cases(store, plan):
    """The cases of the defect, one user each: fsum(1e16, 1, -1e16) = 0 and fsum(inf, 1) = NaN before."""
    cases = {"cancel": [1e16, 1.0, -1e16], "inf": [math.inf, 1.0], "-inf": [1.0, -math.inf, -math.inf],
             "both": [math.inf, -math.inf, 2.0], "overflow": [1e308, 1e308, -1e308], "over": [1e308, 1e308],
             "zero": [5.0, -5.0], "tiny": [5e-324, 1e16, -1e16], "signed zero": [-0.0, 0.0, -0.0]}
    rows = [{"user_id": u, "amount": x, "qty": 1, "ts": BASE + pd.Timedelta(seconds=i)}
            for u, xs in cases.items() for i, x in enumerate(xs)]
    events = pd.DataFrame(rows).astype({"qty": "Int64"})
    write_events(store.repo_path, events, files=1)
    requests = pd.DataFrame({"user_id": list(cases), "event_timestamp": BASE + pd.Timedelta(seconds=5)})
    got = offline(store, requests)
    assert got["amount_sum_1m"][0] == 1.0 and got["amount_mean_1m"][0] == 1 / 3
    assert got["amount_sum_1m"][1] == math.inf and got["amount_mean_1m"][1] == math.inf
    assert got["amount_sum_1m"][2] == -math.inf
    assert math.isnan(got["amount_sum_1m"][3]) and math.isnan(got["amount_variance_all"][1])
    assert got["amount_sum_1m"][4] == 1e308 and got["amount_sum_1m"][5] == math.inf
    assert got["amount_sum_1m"][6] == 0.0 and got["amount_mean_1m"][6] == 0.0
    assert got["amount_sum_1m"][7] == 5e-324
    assert got["amount_count_distinct_1m"][8] == 1
    assert_same(got, reference(store, events, requests), plan)


def test_only_inputs_with_mixed_signs_or_non_finite_values_are_checked(store):
    """Windows of one-signed finite inputs all have condition number 1: plain fsum, no check, no flag."""
    events = pd.DataFrame({"user_id": "u0", "amount": [3.5, 0.0, -0.0, 1e280], "qty": pd.array([1, 2, 3, 0], "Int64"),
                           "ts": [BASE + pd.Timedelta(seconds=i) for i in range(4)]})
    write_events(store.repo_path, events, files=1)
    cv = store.compiled("wild")
    con = store._connect()
    relation = store._view_input(con, cv).events_relation
    assert duckdb_exact.checked_inputs(con, cv, relation) == {"ratio", "amount * 1e300"}  # 1e280 / 0, 1e580
    assert "__ab" not in duckdb_pit.pit_sql(cv, relation, "rq", checked=set())
    requests = pd.DataFrame({"user_id": ["u0"], "event_timestamp": [BASE + pd.Timedelta(seconds=9)]})
    got = offline(store, requests)
    assert got["amount_sum_1m"] == [1e280 + 3.5] and got["ratio_sum_1m"] == [math.inf]
    assert got["overflow_sum_1m"] == [math.inf]


# -- online == offline == oracle ----------------------------------------------------------------------
@pytest.fixture(params=["sparse", "tiled"])
def layout_mode(request, monkeypatch):
    from featurestore.kernel import entity

    if request.param == "tiled":
        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
    return request.param


@pytest.mark.redis
@pytest.mark.parametrize("seed", [1, 2])
def test_online_equals_offline_and_oracle(tmp_path, redis_client, layout_mode, seed):
    root = make_repo(tmp_path / "repo")
    project = f"t_wild_{uuid.uuid4().hex[:10]}"
    fs = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    try:
        events = wild_events(seed)
        write_events(root, events)
        fs.backfill()
        requests = wild_requests(seed, events, n=60)
        expected = reference(fs, events, requests)
        assert_same(offline(fs, requests), expected, f"offline, seed {seed}")
        fs.materialize()
        online = {f: [] for f in expected}
        for r in requests.to_dict("records"):
            got = fs.get_online_features([{"user_id": r["user_id"]}], feature_service="everything",
                                         request_time=r["event_timestamp"]).to_dict()
            for f in online:
                online[f].append(got[f][0])
        assert_same(online, expected, f"online ({layout_mode}), seed {seed}")
    finally:
        keys = list(redis_client.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*", count=1000))
        for i in range(0, len(keys), 500):
            redis_client.delete(*keys[i:i + 500])
