"""Latest features without the tie step: the DuckDB backfill records that no two events of a view share
(join keys, ms time) (``unique_on`` in the table version), reads of such a version take the values of
the event a plain ASOF join finds, and every write that could add a tie drops the record, so the tie
rule of SPEC §2 stays exact whenever duplicates exist."""

import pandas as pd
import pyarrow as pa
import pytest

from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from featurestore.stores.offline import OfflineTable
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import random_events, random_requests, write_events, write_repo

LATEST_VIEWS = {"profile": ["user_id"], "profile_forever": ["user_id"], "pair_stats": ["user_id", "shop"]}


@pytest.fixture
def store(tmp_path):
    return FeatureStore(write_repo(tmp_path / "repo"))


@pytest.fixture
def plans(monkeypatch):
    """The ``unique`` argument of every point-in-time query, by view."""
    seen = {}
    real = duckdb_pit.point_in_time

    def spy(con, cv, events, requests, prefix="", unique=False, **options):
        seen[cv.name] = unique
        return real(con, cv, events, requests, prefix, unique=unique, **options)

    monkeypatch.setattr("featurestore.sdk.historical.point_in_time", spy)
    return seen


def without_ties(events: pd.DataFrame, keys) -> pd.DataFrame:
    ms = events["ts"].dt.floor("ms")
    return events[~pd.DataFrame({**{k: events[k] for k in keys}, "ms": ms}).duplicated(keep="first")]


def has_ties(events: pd.DataFrame, keys) -> bool:
    return bool(pd.DataFrame({**{k: events[k] for k in keys}, "ms": events["ts"].dt.floor("ms")}).duplicated().any())


def check(store, events, requests, views):
    got = store.get_historical_features(requests, feature_service="everything")
    for name in views:
        view = store.repo.views[name]
        assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, name)


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_unique_is_recorded_only_without_ties_and_latest_equals_oracle(store, plans, seed):
    events = random_events(seed)
    for data in (events, without_ties(events, ["user_id", "shop"])):
        data = data.reset_index(drop=True)
        write_events(store.repo_path, data)
        store.backfill()
        for name, keys in LATEST_VIEWS.items():
            recorded = store.offline.table(name).manifest().get("unique_on")
            assert recorded == (None if has_ties(data, keys) else keys), name
        assert store.offline.table("amount_stats").manifest().get("unique_on") is None  # no latest feature
        requests = random_requests(seed, data)
        check(store, data, requests, LATEST_VIEWS)
        assert plans == {n: store.offline.table(n).manifest().get("unique_on") is not None
                         for n in store.repo.views}
    assert any(plans.values()) and not all(plans.values())  # both forms ran (pair_stats: unique by shop)


def test_a_tie_added_after_the_backfill_keeps_the_tie_rule(store, plans):
    """A later write (the stream's commits, an append) may add an event at the time of another one of
    the same entity: the version no longer claims uniqueness and the greatest event in event order wins."""
    events = without_ties(random_events(3), ["user_id"]).reset_index(drop=True)
    write_events(store.repo_path, events)
    store.backfill(views=["profile"])
    table = store.offline.table("profile")
    assert table.manifest()["unique_on"] == ["user_id"]
    twin = events.sort_values("ts").iloc[[len(events) // 2]].copy()
    twin["ts"] = twin["ts"].dt.floor("ms")
    twin["tag"] = "zz"  # greater than every tag: the twin is the greater event of the tie
    twin["amount"] = 12345.5
    stored = table.read()
    row = pa.Table.from_pandas(twin[[c for c in stored.column_names if c in twin]], preserve_index=False)
    table.append(row.cast(pa.schema([stored.schema.field(c) for c in row.column_names])))
    assert table.manifest()["unique_on"] is None
    both = pd.concat([events, twin], ignore_index=True)
    q = twin["ts"].iloc[0] + pd.Timedelta(milliseconds=1)
    requests = pd.DataFrame({"user_id": [twin["user_id"].iloc[0]] * 2, "shop": 0, "event_timestamp": [q, q]})
    got = store.get_historical_features(requests, features=["profile:last_amount", "profile:last_tag"])
    assert got["last_amount"].tolist() == [12345.5, 12345.5] and got["last_tag"].tolist() == ["zz", "zz"]
    assert plans == {"profile": False}
    view = store.repo.views["profile"]
    assert_features_equal(got, oracle.point_in_time(both, view, requests), ["last_amount", "last_tag"], "profile")


def test_a_pushed_tie_keeps_the_tie_rule(store, plans):
    """Pushed events (docs/push.md) reach the view tables beside the backfill's rows: a push whose event
    ties with a backfilled one drops ``unique_on``, and a later backfill carrying the pushed event too."""
    events = without_ties(random_events(4), ["user_id"]).reset_index(drop=True)
    write_events(store.repo_path, events)
    store.backfill(views=["profile"])
    assert store.offline.table("profile").manifest()["unique_on"] == ["user_id"]
    twin = events.sort_values("ts").iloc[[len(events) // 3]].copy()
    twin["ts"] = twin["ts"].dt.floor("ms")
    twin["tag"], twin["amount"] = "zz", 777.25
    assert store.push("events", twin, to="offline").events == 1
    q = twin["ts"].iloc[0] + pd.Timedelta(milliseconds=1)
    requests = pd.DataFrame({"user_id": [twin["user_id"].iloc[0]], "shop": 0, "event_timestamp": [q]})
    for _ in range(2):  # after the push, and after a backfill that writes the pushed event again
        assert store.offline.table("profile").manifest()["unique_on"] is None
        got = store.get_historical_features(requests, features=["profile:last_amount", "profile:last_tag"])
        assert got["last_amount"].tolist() == [777.25] and got["last_tag"].tolist() == ["zz"]
        assert plans == {"profile": False}
        store.backfill(views=["profile"])


def test_unique_on_survives_only_checked_writes(tmp_path):
    t = OfflineTable(tmp_path, "t", ts_column="ts")

    def rows(times, k="a"):
        return pa.table({"k": [k] * len(times), "ts": pa.array(times, pa.timestamp("ms", tz="UTC"))})

    t.write_range(rows([10, 20, 30]), 0, 100, unique_on=["k"])
    assert t.manifest()["unique_on"] == ["k"]
    t.write_range(rows([50, 60]), 40, 80, unique_on=["k"])  # kept rows were unique: still unique
    assert t.manifest()["unique_on"] == ["k"]
    t.write_range(rows([200]), 100, 300, unique_on=["other"])  # kept rows unique on another key only
    assert t.manifest()["unique_on"] is None
    t.write_range(rows([210]), 200, 300, unique_on=["k"])  # kept rows' uniqueness unknown
    assert t.manifest()["unique_on"] is None
    t.write_range(rows([5, 6]), -1000, 1000, unique_on=["k"])  # nothing kept: unique again
    assert t.manifest()["unique_on"] == ["k"]
    t.write_range(rows([7]), 7, 8)  # unchecked data
    assert t.manifest()["unique_on"] is None
    t.write_range(rows([5, 6, 7]), -1000, 1000, unique_on=["k"])
    t.append(rows([2000]))  # any other write drops it
    assert t.manifest()["unique_on"] is None


def test_a_unique_version_reads_like_the_tie_rule(store):
    """Same values, bit for bit, from the plain ASOF form and the tie form on data without ties."""
    events = without_ties(random_events(7), ["user_id"]).reset_index(drop=True)
    write_events(store.repo_path, events)
    store.backfill()
    requests = random_requests(7, events)
    fast = store.get_historical_features(requests, feature_service="everything").to_arrow()
    for name in LATEST_VIEWS:
        assert store.offline.table(name).manifest()["unique_on"] is not None
    con = store._connect()
    for name in LATEST_VIEWS:
        cv = store.compiled(name)
        vi = store._view_input(con, cv)
        assert vi.unique
        req = pa.table({"__row": pa.array(range(len(requests)), pa.int64()),
                        "__q_ms": pa.array(requests["event_timestamp"].astype("int64") // 1_000_000, pa.int64()),
                        **{k: pa.array(requests[k]) for k in cv.join_keys}})
        con.register("req", req)
        plain = duckdb_pit.point_in_time(con, cv, vi.events_relation, "req", unique=True).sort_by("__row")
        ties = duckdb_pit.point_in_time(con, cv, vi.events_relation, "req", unique=False).sort_by("__row")
        for s in cv.latest:
            assert plain[s.name].equals(ties[s.name]), s.name
            assert plain[s.name].to_pylist() == fast[s.name].to_pylist()
