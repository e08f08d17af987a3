"""SPEC §1-§3 on random definition repos (tests/randomdefs.py): random views, filters, projections, every
aggregation and window, TTLs and defaults over random events with hot keys, ties, nulls and extreme values,
from 1900 to 2199. Offline (batch face and backfilled table, every point-in-time plan) = oracle; online
(after materialize, sparse and tiled entities) = offline; a redefined view backfilled again in pieces; pushed
events online = offline = oracle; served = trained (training_set_from_logs, verify); the Flink backfill = the
DuckDB backfill."""

import dataclasses
import random
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from tests import oracle, randomdefs
from tests.compare import assert_features_equal
from tests.conftest import drop_project

FAST, SLOW = [0, 1], [2, 3, 4, 5, 6, 7]


def check_offline(store, events, requests, context):
    for plan, cost in [("per key", None), ("sweep", 0.0), ("range join", float("inf"))]:
        saved = duckdb_pit.HOT_KEY_COST
        duckdb_pit.HOT_KEY_COST = saved if cost is None else cost
        try:
            got = store.get_historical_features(requests, feature_service="everything")
        finally:
            duckdb_pit.HOT_KEY_COST = saved
        for view in store.repo.views.values():
            expected = oracle.point_in_time(events, view, requests, max_future_ms=None)
            assert_features_equal(got, expected, view.feature_names, f"{context} {plan} {view.name}")


def run(tmp_path, redis_client, monkeypatch, seed, adversarial=False):
    from featurestore.kernel import entity

    if seed % 2:  # every entity keeps tiles: the other read path
        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
        monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 0)
    rng, events = randomdefs.write_repo(tmp_path, seed, adversarial=adversarial)
    project = f"t_rdefs_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(tmp_path, config=dataclasses.replace(load_config(tmp_path), project=project))
    requests = randomdefs.random_requests(rng, events, n=60)
    try:
        check_offline(store, events, requests, f"seed {seed} batch face")
        store.backfill()
        store.backfill()  # a re-run replaces, never duplicates
        check_offline(store, events, requests, f"seed {seed} offline table")
        store.materialize()
        offline = store.get_historical_features(requests, feature_service="everything")
        rows = []
        for r in requests.to_dict("records"):
            key = {"k": r["k"], "g": None if pd.isna(r["g"]) else int(r["g"])}
            got = store.get_online_features([key], feature_service="everything",
                                            request_time=r["event_timestamp"]).to_dict()
            rows.append({k: v[0] for k, v in got.items()})
        names = [f for v in store.repo.views.values() for f in v.feature_names]
        assert_features_equal(pd.DataFrame(rows), offline, names, f"seed {seed} online")
    finally:
        drop_project(redis_client, project)


@pytest.mark.redis
@pytest.mark.parametrize("seed", FAST)
def test_random_definitions_offline_online_oracle(tmp_path, redis_client, monkeypatch, seed):
    run(tmp_path, redis_client, monkeypatch, seed)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW)
def test_random_definitions_offline_online_oracle_more_seeds(tmp_path, redis_client, monkeypatch, seed):
    run(tmp_path, redis_client, monkeypatch, seed)


@pytest.mark.redis
@pytest.mark.parametrize("seed", [0, 3, 5])  # seeds with min/max/first/last/count_distinct of s and k
def test_random_definitions_with_adversarial_texts_and_keys(tmp_path, redis_client, monkeypatch, seed):
    """Strings that look like JSON, numbers or null, NUL, 5000 characters, RTL, characters that UTF-16 orders
    otherwise than code points, and join keys with '{', '}', ':', newlines (the Redis key layout and its
    cluster hash tag): offline = oracle, online = offline (randomdefs.adversarial_text)."""
    run(tmp_path, redis_client, monkeypatch, seed, adversarial=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_definitions_redefined_and_backfilled_in_pieces(tmp_path, seed):
    """Overlapping backfills of random ranges, then another random definition backfilled again in shuffled
    overlapping pieces covering everything: each event once, the new definition's values."""
    rng, events = randomdefs.write_repo(tmp_path, 100 + seed)
    store = FeatureStore(tmp_path)
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    ms = lambda v: None if v is None else pd.Timestamp(v, unit="ms", tz="UTC")  # noqa: E731
    for _ in range(3):
        a, b = sorted(rng.sample(times, 2))
        store.backfill(start=ms(a), end=ms(b + rng.choice([0, 1])))
    (tmp_path / "definitions" / "features.py").write_text(randomdefs.random_defs(random.Random(seed + 999)))
    store.reload()
    cuts = sorted(rng.sample(times[5:-5], 3))
    pieces = [(None, cuts[0] + 1), (cuts[0] - 1000, cuts[1]), (cuts[1], cuts[2]), (cuts[2] - rng.choice([0, 1]), None)]
    rng.shuffle(pieces)
    for start, end in pieces:
        store.backfill(start=ms(start), end=ms(end))
    requests = randomdefs.random_requests(rng, events, n=60)
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests, max_future_ms=None)
        assert_features_equal(got, expected, view.feature_names, f"seed {seed} {view.name}")
        kept = oracle.apply_view_rows(oracle.events_ms(events, view.source, max_future_ms=None), view)
        want = sum(1 for r in kept if all(r.get(k) is not None for k in view.join_keys))
        assert store.offline.table(view.name, "ts").read().num_rows == want  # each event once


@pytest.mark.flink
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 3])
def test_random_definitions_flink_backfill_equals_duckdb_backfill(tmp_path, seed):
    """``backfill --engine flink`` on random definitions and events (hot keys, ties, nulls, int64 and float
    extremes, -0.0, times from 1900 to 2199): the same rows (signs of zero included), counts and dead letters
    as the DuckDB backfill of the same repo."""
    import shutil

    from tests.stream_helpers import assert_same_rows, offline_table

    randomdefs.write_repo(tmp_path / "flink", seed)
    shutil.copytree(tmp_path / "flink", tmp_path / "duckdb")
    flink, duck = FeatureStore(tmp_path / "flink"), FeatureStore(tmp_path / "duckdb")
    counts = lambda results: {r.view: (r.rows, r.dead_letters, r.rejected_null_key, r.reasons)  # noqa: E731
                              for r in results}
    assert counts(flink.backfill(engine="flink")) == counts(duck.backfill())
    for view in duck.repo.views:
        assert_same_rows(offline_table(flink, view), offline_table(duck, view), f"seed {seed} {view}",
                         signed_zeros=True)


def _online_rows(store, requests, service: str = "everything", log: bool = False):
    """One ``get_online_features`` per request row (its keys, at its time): the served dicts."""
    rows = []
    for i, r in enumerate(requests.to_dict("records")):
        key = {"k": r["k"], "g": None if pd.isna(r["g"]) else int(r["g"])}
        got = store.get_online_features([key], feature_service=service, request_time=r["event_timestamp"],
                                        **({"request_id": f"r{i}"} if log else {})).to_dict()
        rows.append({k: v[0] for k, v in got.items()})
    return rows


@pytest.mark.redis
@pytest.mark.parametrize("seed", [0, 3])
def test_random_definitions_pushed_online_equals_offline_equals_oracle(tmp_path, redis_client, seed):
    """push on random definitions: half the events backfilled and materialized, the rest pushed in two pushes to
    both stores; online = offline = oracle over all of them."""
    rng, events = randomdefs.write_repo(tmp_path, seed)
    project = f"t_rdefp_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(tmp_path, config=dataclasses.replace(load_config(tmp_path), project=project))
    try:
        randomdefs.write(tmp_path, events.iloc[: len(events) // 2])
        store.backfill()
        store.materialize()
        pushed = events.iloc[len(events) // 2:]
        for part in (pushed.iloc[:40], pushed.iloc[40:]):
            result = store.push("src", part, to="online_and_offline")
            assert not result.dead_letters and not result.refusals, (result.dead_letters, result.refusals)
        requests = randomdefs.random_requests(rng, events, n=60)
        check_offline(store, events, requests, f"seed {seed} pushed")
        offline = store.get_historical_features(requests, feature_service="everything")
        names = [f for v in store.repo.views.values() for f in v.feature_names]
        assert_features_equal(pd.DataFrame(_online_rows(store, requests)), offline, names, f"seed {seed} pushed online")
    finally:
        drop_project(redis_client, project)


@pytest.mark.redis
@pytest.mark.parametrize("seed", [1, 4])
def test_random_definitions_served_equals_trained(tmp_path, redis_client, seed):
    """SPEC 3.3 on random definitions (int64 and float extremes, -0.0, timestamps, null keys): every logged
    lookup comes back from ``training_set_from_logs`` value for value (signs of zero included), and ``verify``
    finds no skew."""
    import math

    rng, events = randomdefs.write_repo(tmp_path, seed)
    import re

    defs = tmp_path / "definitions" / "features.py"
    views = re.findall(r"^(v\d+) = FeatureView", defs.read_text(), re.M)
    assert views
    defs.write_text(defs.read_text() + "\nfrom featurestore import LoggingConfig\nlogged = FeatureService(name='logged', "
                    f"features=[{', '.join(views)}], logging=LoggingConfig(enabled=True, sample_rate=1.0))\n")
    project = f"t_rdefl_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(tmp_path, config=dataclasses.replace(load_config(tmp_path), project=project))
    try:
        store.backfill()
        store.materialize()
        requests = randomdefs.random_requests(rng, events, n=50)
        served = _online_rows(store, requests, "logged", log=True)
        store.ship_logs()
        labels = requests[["k", "g"]].copy()
        labels.insert(0, "request_id", [f"r{i}" for i in range(len(requests))])
        got = store.training_set_from_logs(labels, "logged")
        assert got["_from_log"].all()
        names = [f for v in store.repo.views.values() for f in v.feature_names]
        for i, row in enumerate(served):
            for f in names:
                a, b = row[f], got[f].iloc[i]
                b = None if b is pd.NaT or (isinstance(b, float) and math.isnan(b) and not isinstance(a, float)) else b
                b = b.item() if hasattr(b, "item") else b
                same = (a is None and b is None) or (isinstance(a, float) and isinstance(b, float) and (
                    (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)))) \
                    or (not isinstance(a, float) and a == b)
                assert same, (seed, i, f, a, got[f].iloc[i])
        report = store.verify("logged")
        assert report.clean, {f: (s.mismatch, s.missing, s.extra) for f, s in report.features.items() if s.skew_rate}
    finally:
        drop_project(redis_client, project)
