"""push (SPEC §6, issue 13 item 2): pushed rows are events of the source in the chosen stores, through the
same typing, filters and projections as any event, so online == offline == the oracle after a push, and
each pushed event is held once by every view table whatever the order of pushes and backfills.

Random event sets of the random repo (every aggregation, window, TTL, tie, filter and projection): part of
the events come from the batch face (backfilled and materialized), the rest are pushed in several pushes.
"""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.errors import RequestError
from featurestore.push.offline import PushedLog
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.conftest import drop_project
from tests.randomrepo import random_events, random_requests, write_events, write_repo

pytestmark = [pytest.mark.redis]
KEYS = ["user_id", "shop"]


@pytest.fixture
def make_store(tmp_path, redis_client, request):
    stores = []

    def make(where: str = "local"):
        root = write_repo(tmp_path / f"repo{len(stores)}")
        project = f"t_push_{uuid.uuid4().hex[:10]}"
        cfg = dataclasses.replace(load_config(root), project=project)
        if where == "s3":  # the offline tables and the pushed log on an s3:// root (the local S3 server)
            s3_root = request.getfixturevalue("s3_root")
            cfg = dataclasses.replace(cfg, offline_root=str(s3_root), offline_s3_endpoint=s3_root.endpoint)
        stores.append(FeatureStore(root, config=cfg))
        return stores[-1]

    yield make
    for fs in stores:  # on the Redis each store was configured with (the cluster under online_backend)
        drop_project(fs.online_store().client, fs.config.project)


def _online(store, requests):
    rows = []
    for r in requests.to_dict("records"):
        got = store.get_online_features([{k: r[k] for k in KEYS}], feature_service="everything",
                                        request_time=r["event_timestamp"]).to_dict()
        rows.append({k: v[0] for k, v in got.items()})
    return pd.DataFrame(rows)


def _check_against_oracle(store, events, seed, what):
    requests = random_requests(seed, events)
    offline = store.get_historical_features(requests, feature_service="everything")
    online = _online(store, requests)
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(offline, expected, view.feature_names, f"{what}: offline, view {view.name}")
        assert_features_equal(online, expected, view.feature_names, f"{what}: online, view {view.name}")


def _table_rows(store, view):
    return store.offline.table(view, ts_column="ts").read().num_rows


@pytest.mark.parametrize("seed,online_backend,where",
                         [(0, "single", "local"), (1, "single", "local"), (2, "single", "local"),
                          (3, "single", "local"), (1, "cluster", "local"), (0, "single", "s3")],
                         indirect=["online_backend"])
def test_pushed_events_online_equals_offline_equals_oracle(online_backend, make_store, seed, where, monkeypatch):
    """Backfilled history plus three pushes (one with every row of a burst, ties included), then the oracle
    of all events online and offline; a backfill afterwards keeps each pushed event once. On a cluster
    the pushed entities' slots are spread over the masters: one transaction per slot."""
    if seed % 2:  # both online forms: sparse entities and tiled ones
        from featurestore.kernel import entity

        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
    store = make_store(where)
    assert store.online_store().cluster == (online_backend == "cluster")
    assert str(store.offline.root).startswith("s3://") == (where == "s3")
    events = random_events(seed)
    history = events.iloc[: len(events) // 2]
    write_events(store.repo_path, history)
    store.backfill()
    store.materialize()
    pushed = events.iloc[len(events) // 2:]
    for i, part in enumerate([pushed.iloc[:10], pushed.iloc[10:80], pushed.iloc[80:]]):
        form = [part, part.to_dict("records"), {c: part[c].tolist() for c in part.columns}][i]
        result = store.push("events", form, to="online_and_offline")
        assert result.events == len(part) and not result.dead_letters and not result.refusals
        assert result.push_seq == i + 1
    _check_against_oracle(store, events, seed, f"seed {seed} after pushes")
    counts = {v: _table_rows(store, v) for v in store.repo.views}
    store.backfill()  # the batch face has only the history; the pushed events stay, once
    assert {v: _table_rows(store, v) for v in store.repo.views} == counts
    store.materialize()
    _check_against_oracle(store, events, seed, f"seed {seed} after a backfill and materialize")


def test_each_pushed_event_once_whatever_the_order(make_store):
    """Push before any table exists, a backfill of part of the range, a push that crashed between its log
    and the view tables, then a backfill: every pushed event once, equal to a table built from scratch."""
    store = make_store()
    events = random_events(7)
    history, later = events.iloc[:150], events.iloc[150:]
    write_events(store.repo_path, history)
    store.materialize()  # from the batch face: no view table yet
    store.push("events", later.iloc[:50], to="online_and_offline")  # no table: the log alone holds them
    assert store.offline.table("amount_stats").version is None
    _check_against_oracle(store, pd.concat([history, later.iloc[:50]]), 7, "pushed before any table")
    mid = events["ts"].sort_values().iloc[100]
    store.backfill(end=mid)  # a part of the range: pushed events inside and outside it, each once
    log = PushedLog(store, store.repo.sources["events"])
    from featurestore.push.rows import parse

    log.append(parse(store.repo.sources["events"], later.iloc[50:]).table)  # "crashed" before the view tables
    store.backfill()  # catches up: the crashed push's events are added too
    store.materialize()
    _check_against_oracle(store, events, 7, "after a crashed push and backfills")
    fresh = make_store()
    write_events(fresh.repo_path, events)
    fresh.backfill()
    for view in store.repo.views:
        got = store.offline.table(view).read().to_pandas()
        got = got.sort_values(list(got.columns))
        want = fresh.offline.table(view).read().to_pandas().sort_values(list(got.columns))
        assert len(got) == len(want), view
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want[got.columns].reset_index(drop=True),
                                      check_dtype=False, obj=view)


def test_online_only_and_offline_only(make_store):
    store = make_store()
    events = random_events(5)
    history, extra = events.iloc[:200], events.iloc[200:]
    write_events(store.repo_path, history)
    store.backfill()
    store.materialize()
    store.push("events", extra.iloc[:40], to="online")
    store.push("events", extra.iloc[40:], to="offline")
    requests = random_requests(5, events)
    online = _online(store, requests)
    offline = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert_features_equal(online, oracle.point_in_time(pd.concat([history, extra.iloc[:40]]), view, requests),
                              view.feature_names, f"online only: {view.name}")
        assert_features_equal(offline, oracle.point_in_time(pd.concat([history, extra.iloc[40:]]), view, requests),
                              view.feature_names, f"offline only: {view.name}")


def test_bad_rows_are_dead_letters_with_reasons_and_the_rest_goes_in(make_store):
    store = make_store()
    write_events(store.repo_path, random_events(1, n=50))
    store.backfill()
    store.materialize()
    t = "2026-03-01T00:01:00"
    rows = [
        {"user_id": "u1", "shop": 1, "amount": 5.0, "qty": 2, "tag": "a", "flag": True, "ts": t},  # naive: UTC
        {"user_id": "u1", "shop": 1, "amount": "abc", "ts": t},
        {"user_id": "u1", "shop": 1.5, "ts": t},
        {"user_id": "u1", "shop": True, "ts": t},
        {"user_id": "u1", "ts": None},
        {"user_id": "u1", "ts": "yesterday"},
        {"user_id": "u1", "ts": 1.5},
        {"user_id": "u1", "ts": "3000-01-01T00:00:00Z"},
        {"user_id": 7, "ts": t},
        {"user_id": None, "shop": 2, "amount": float("nan"), "ts": 1772323260000},  # epoch ms; null key: no user views
        {"user_id": "u1", "ts": "1899-12-31T23:59:59.999Z"},  # the supported range and the future bound of
        {"user_id": "u1", "ts": "2100-01-01T00:00:00Z"},  # every job (docs/semantics.md)
    ]
    result = store.push("events", rows, to="online_and_offline")
    assert result.rows == 12 and result.events == 2
    assert result.dead_letters == {
        "column 'amount': not a float64": 1, "column 'shop': not a int64": 2, "missing event time 'ts'": 1,
        "event time 'ts': not a timestamp (a datetime, an ISO-8601 string or epoch milliseconds)": 2,
        "event time 'ts' out of range (supported: 1900-01-01 to 2199-12-31 UTC)": 2,
        "event time 'ts' too far in the future (more than 1h after ingestion)": 1,
        "column 'user_id': not a string": 1}
    from featurestore.push import dead_letter_table

    kept = dead_letter_table(store, "events").read().to_pylist()
    assert len(kept) == 10 and {r["row_index"] for r in kept} == {1, 2, 3, 4, 5, 6, 7, 8, 10, 11}
    assert '"amount": "abc"' in kept[0]["row"]
    with pytest.raises(RequestError, match="to='both' is not one of online, offline, online_and_offline"):
        store.push("events", rows, to="both")
    with pytest.raises(RequestError, match="no event-time column 'ts'"):
        store.push("events", [{"user_id": "u1"}])
    with pytest.raises(RequestError, match="no source called 'event'"):
        store.push("event", rows)


def test_a_view_without_online_state_is_refused_not_half_loaded(make_store):
    store = make_store()
    write_events(store.repo_path, random_events(2, n=40))
    store.backfill()
    result = store.push("events", random_events(3, n=5), to="online_and_offline")
    assert result.events == 5 and all(n == 0 for n in result.online.values())
    assert any("no online state" in r for r in result.refusals)
    assert store.online_store().markers(["profile"])["profile"] is None  # nothing written, no marker


CREATED_DEFS = '''\
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

driver = Entity(join_keys=["driver_id"])
stats = Source(schema={"driver_id": "int64", "rate": "float64", "ts": "timestamp", "created": "timestamp"},
               timestamp="ts", batch=ParquetFiles("data/stats.parquet"), tiebreak=("created",))
driver_stats = FeatureView(entities=[driver], source=stats, features=[Latest("rate"), Latest("created")])
'''


def test_sub_millisecond_created_times_are_kept_by_backfill_and_push(tmp_path, redis_client):
    """A timestamp column other than the event time (Feast's ``created``) with sub-millisecond values: the
    backfill and a push keep it to the microsecond (the offline writer used to refuse such a row) and it breaks
    ties of equal event times the same way offline and online, on random data."""
    import numpy as np

    rng = np.random.default_rng(7)
    base = pd.Timestamp("2026-03-01", tz="UTC")
    n = 300
    ts = base + pd.to_timedelta(rng.integers(0, 20, n) * 1000, unit="ms")  # few distinct times: ties
    created = base + pd.to_timedelta(rng.integers(0, 10**9, n), unit="us")  # sub-millisecond, distinct
    events = pd.DataFrame({"driver_id": rng.integers(1, 6, n), "rate": rng.random(n), "ts": ts, "created": created})
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "defs.py").write_text(CREATED_DEFS)
    (root / "data").mkdir()
    batch, pushed = events.iloc[:200], events.iloc[200:]
    batch.to_parquet(root / "data" / "stats.parquet", index=False)
    project = f"t_push_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    try:
        store.backfill()
        store.materialize()
        res = store.push("stats", pushed)
        assert res.events == len(pushed) and not res.dead_letters
        q = base + pd.Timedelta(seconds=30)
        drivers = sorted(events["driver_id"].unique())
        offline = pd.DataFrame(store.get_historical_features(
            pd.DataFrame({"driver_id": drivers, "event_timestamp": [q] * len(drivers)}), features=[
                "driver_stats:rate", "driver_stats:created"]))
        online = store.get_online_features([{"driver_id": int(d)} for d in drivers],
                                           features=["driver_stats:rate", "driver_stats:created"],
                                           request_time=q).to_dict()
        for i, d in enumerate(drivers):
            mine = events[events["driver_id"] == d]
            want = mine.sort_values(["ts", "created"]).iloc[-1]  # latest event; ties: the greatest created
            assert offline["rate"][i] == want["rate"] == online["rate"][i], d
            assert pd.Timestamp(offline["created"][i]) == want["created"] == pd.Timestamp(online["created"][i]), d
    finally:
        drop_project(store.online_store().client, project)


@pytest.mark.parametrize("seed", [11, 12])
def test_a_float_at_or_beyond_2_53_in_an_integer_column_is_a_dead_letter_on_every_push_path(make_store, seed):
    """The rule of entity frames' integer join keys (tests/test_caller_inputs.py KEY_MISTAKES): a float at or
    beyond 2^53 may be another integer than the one meant (123456789012345678 -> ...680.0), so a pushed row
    with one in an integer key ('shop') or column ('qty') is a dead letter naming the column, never an event
    with another key; integral floats below 2^53 (a pandas column with a gap) are the integers they hold."""
    import random

    from fastapi.testclient import TestClient

    from featurestore.push import dead_letter_table
    from featurestore.server import create_app

    rng = random.Random(seed)
    inexact = [float(123456789012345678), 2.0**53, -(2.0**53), -(2.0**53) - 2, float(2**63 - 1), -(2.0**63), 2.0**62]
    exact = [0.0, 3.0, -7.0, 2.0**53 - 1, -(2.0**53) + 1, float(2**40)]
    store = make_store()
    rows, want = [], {}
    for i in range(60):
        shop = rng.choice(inexact) if rng.random() < 0.25 else rng.choice(exact)
        qty = rng.choice(inexact) if rng.random() < 0.25 else (None if rng.random() < 0.2 else rng.choice(exact))
        rows.append({"user_id": f"u{rng.randint(0, 3)}", "shop": shop, "qty": qty, "amount": 1.5,
                     "ts": f"2026-03-01T00:{i // 60:02d}:{i % 60:02d}Z"})
        bad = [c for c in ("shop", "qty") if rows[-1][c] in inexact]  # schema order: shop before qty
        if bad:
            want[i] = (f"column '{bad[0]}': a float at or beyond 2^53 is not a trusted int64 (pandas turns an integer "
                       "column with a missing value into float64; pass integers or pandas' nullable Int64)")
    assert want and len(want) < len(rows)
    counts = {}
    for reason in want.values():
        counts[reason] = counts.get(reason, 0) + 1
    good = [i for i in range(len(rows)) if i not in want]

    frame = pd.DataFrame(rows)
    assert frame["shop"].dtype == "float64"  # the form an integer column with a gap takes in pandas
    result = store.push("events", frame, to="offline")
    assert (result.rows, result.events, result.dead_letters) == (len(rows), len(good), counts)
    kept = dead_letter_table(store, "events").read().to_pylist()
    assert {r["row_index"]: r["reason"] for r in kept} == want  # every refused row kept, with its reason
    from featurestore.push.rows import parse

    parsed = parse(store.repo.sources["events"], frame)
    assert parsed.index == good
    assert parsed.table.column("shop").to_pylist() == [int(rows[i]["shop"]) for i in good]  # exactly the integers
    assert parsed.table.column("qty").to_pylist() == [None if rows[i]["qty"] is None else int(rows[i]["qty"])
                                                      for i in good]

    client = TestClient(create_app(store))  # the HTTP route: JSON numbers with a fraction or exponent are floats
    res = client.post("/push", json={"source": "events", "rows": rows, "to": "offline"})
    assert res.status_code == 200, res.text
    assert (res.json()["events"], res.json()["dead_letters"]) == (len(good), counts)
    kept = dead_letter_table(store, "events").read().to_pylist()
    assert len(kept) == 2 * len(want)
