"""Online = offline (SPEC §3.2): after ``materialize``, ``get_online_features(k, request_time=q)`` equals the
point-in-time value of ``get_historical_features`` at ``(k, q)`` for every entity and every request time not
earlier than the retention horizon, on random event sets covering every aggregation, window, TTL and tie.

Also: decay by request time, one Redis round trip per lookup, missing entities, key TTLs of bounded views,
pruning at a horizon, stale-definition detection, and the error texts. Needs the project's Redis
(``bash infra/up.sh``); every test writes under its own project name and deletes its keys.
"""

import dataclasses
import json
import random
import time
import uuid

import orjson
import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.errors import InfraError, RequestError
from featurestore.kernel import entity as kentity
from featurestore.online import compute, plan_features
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests import oracle
from tests.compare import assert_features_equal
from tests.conftest import drop_project
from tests.randomrepo import BASE, DEFINITIONS, random_events, random_requests, write_events, write_repo

pytestmark = [pytest.mark.redis]

SEEDS = list(range(8))
KEYS = ["user_id", "shop"]


# -- fixtures -----------------------------------------------------------------------------------------
_drop_project = drop_project


@pytest.fixture
def make_store(tmp_path, redis_client):
    """A random-repo FeatureStore under a project name of its own (so tests never share keys), on the
    Redis its config names (the single one, or the cluster under ``online_backend``)."""
    stores = []

    def make(definitions=None, **config):
        root = write_repo(tmp_path / f"repo{len(stores)}")
        if definitions is not None:
            (root / "definitions" / "features.py").write_text(definitions)
        project = f"t_online_{uuid.uuid4().hex[:10]}"
        cfg = dataclasses.replace(load_config(root), project=project, **config)
        stores.append(FeatureStore(root, config=cfg))
        return stores[-1]

    yield make
    import redis

    for fs in stores:
        try:
            _drop_project(fs.online_store().client, fs.config.project)
        except (InfraError, redis.exceptions.RedisError):  # a test's own unreachable Redis
            pass


def online_frame(store, requests, **kwargs):
    """One lookup per request row, at that row's own time."""
    rows = []
    for r in requests.to_dict("records"):
        got = store.get_online_features([{k: r[k] for k in KEYS}], feature_service="everything",
                                        request_time=r["event_timestamp"], **kwargs).to_dict()
        rows.append({k: v[0] for k, v in got.items()})
    return pd.DataFrame(rows)


def feature_columns(store):
    return [f for v in store.repo.views.values() for f in v.feature_names]


@pytest.fixture(params=["sparse", "tiled", "mixed"])
def layout_mode(request, monkeypatch):
    """Every read path of the online state: sparse entities (raw events), tiled ones (every entity with
    more than 0 events keeps tiles and prefixes, every tile stored) and mixed ones (only tiles of more
    than 2 events stored: the read script answers the others with their raw events; and materialize
    writes every entity of more than 7 members or fields in chunks to staging keys swapped in at the end,
    as it writes a hot entity)."""
    from featurestore.kernel import entity

    if request.param in ("tiled", "mixed"):
        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
        monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 0 if request.param == "tiled" else 2)
    if request.param == "mixed":
        monkeypatch.setattr(orr, "STAGE_ITEMS", 7)
    return request.param


# -- online = offline ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_online_equals_offline(make_store, seed, layout_mode):
    _check_online_equals_offline(make_store(), seed)


@pytest.mark.parametrize("seed", [0])
def test_online_equals_offline_on_a_cluster(make_store, seed, monkeypatch, redis_cluster_url):
    """The same on the Redis Cluster, entities of mixed layouts (sparse, tiled with tiles in the hash,
    tiled with tiles answered from raw events): every read path of the read script, across slots."""
    from featurestore.kernel import entity

    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_cluster_url)
    monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
    monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 2)
    store = make_store()
    assert store.online_store().cluster
    _check_online_equals_offline(store, seed)


def _check_online_equals_offline(store, seed):
    events = random_events(seed)
    write_events(store.repo_path, events)
    if seed % 2 == 0:
        store.backfill()  # materialize reads the offline tables; odd seeds read the batch face
    requests = random_requests(seed, events)
    offline = store.get_historical_features(requests, feature_service="everything")
    results = store.materialize()
    assert [r.view for r in results] == list(store.repo.views)
    by_view = {r.view: r for r in results}
    assert by_view["amount_stats"].events == len(events)  # end=None keeps every event
    assert by_view["amount_stats"].entities == events["user_id"].nunique()
    assert by_view["pair_stats"].entities == len(events.groupby(KEYS))
    assert all(r.horizon is None and r.deleted == 0 for r in results)
    online = online_frame(store, requests)
    assert_features_equal(online, offline, feature_columns(store), f"seed {seed}")


@pytest.mark.parametrize("seed,online_backend", [(1, "single"), (5, "single"), (5, "cluster")],
                         indirect=["online_backend"])
def test_many_entities_in_one_lookup_equal_offline(online_backend, make_store, seed):
    store = make_store()
    events = random_events(seed)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events)
    store.materialize()
    for q in [BASE + pd.Timedelta("61s"), BASE + pd.Timedelta("150.5s"), BASE + pd.Timedelta("299s")]:
        at_q = requests.assign(event_timestamp=q)
        offline = store.get_historical_features(at_q, feature_service="everything")
        got = store.get_online_features(at_q[KEYS], feature_service="everything", request_time=q)
        online = got.to_df()
        assert online["user_id"].tolist() == at_q["user_id"].tolist()  # one row per entity row, in order
        assert_features_equal(online, offline, feature_columns(store), f"seed {seed} q {q}")


def test_online_equals_oracle(online_backend, make_store):
    store = make_store()
    seed = 3
    events = random_events(seed)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events)
    store.materialize()
    online = online_frame(store, requests)
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(online, expected, view.feature_names, f"oracle seed {seed} view {view.name}")


def test_decay_by_request_time(make_store):
    store = make_store()
    events = random_events(4)
    write_events(store.repo_path, events)
    store.materialize()
    q = BASE + pd.Timedelta("1d")  # every finite window and every TTL slid past the events
    got = store.get_online_features([{"user_id": "u0", "shop": 1}], feature_service="everything", request_time=q)
    row = {k: v[0] for k, v in got.to_dict().items()}
    for label in ("10s", "1m", "1h"):
        assert row[f"events_{label}"] == 0 and row[f"amount_count_{label}"] == 0
        assert row[f"amount_count_distinct_{label}"] == 0
        assert row[f"amount_sum_{label}"] is None and row[f"amount_last_{label}"] is None
    assert row["qty_sum_30s"] == -1 and row["amount_mean_30s"] == 0.5 and row["amount_std_30s"] == 0.0
    assert isinstance(row["amount_mean_30s"], float) and isinstance(row["qty_sum_30s"], int)
    assert row["last_amount"] is None and row["last_tag"] is None and row["pair_last_qty"] is None  # TTL
    u0 = events[events["user_id"] == "u0"]
    assert row["events_all"] == len(u0)  # unbounded: never decays
    assert row["amount_count_all"] == int(u0["amount"].notna().sum())
    offline = store.get_historical_features(pd.DataFrame({"user_id": ["u0"], "shop": [1], "event_timestamp": [q]}),
                                            feature_service="everything")
    assert_features_equal(got.to_df(), offline, feature_columns(store), "decay")


def test_missing_entity_and_null_key_read_empty_windows(make_store):
    store = make_store()
    write_events(store.repo_path, random_events(2))
    store.materialize()
    q = BASE + pd.Timedelta("100s")
    got = store.get_online_features(
        pd.DataFrame({"user_id": ["nobody", None, "u0"], "shop": [0, 1, None]}),
        feature_service="everything", request_time=q).to_dict()
    for i in (0, 1):
        assert got["events_all"][i] == 0 and got["tags_1m"][i] == 0 and got["amount_count_distinct_all"][i] == 0
        assert got["amount_sum_1h"][i] is None and got["tag_ever"][i] is None and got["first_tag"][i] is None
        assert got["qty_sum_30s"][i] == -1 and got["amount_std_30s"][i] == 0.0
    assert got["pair_sum_1m"][2] is None and got["pair_last_qty"][2] is None  # null shop: no pair entity
    assert got["events_all"][2] > 0
    assert got["user_id"] == ["nobody", None, "u0"] and got["shop"] == [0, 1, None]


@pytest.mark.parametrize("seed", range(3))
def test_latest_only_lookups_read_the_latest_time_and_keep_every_status(make_store, layout_mode, seed):
    """A lookup of latest features alone (view ``profile``, TTL 45 s) reads only the events of an entity's
    latest time before q (ties compared in full): values equal offline, and each status follows the events:
    PRESENT/NULL_VALUE inside the TTL, OUTSIDE_MAX_AGE with only older events, NULL_VALUE with only events
    at or after q, NOT_FOUND without any state. Several entities per lookup (computed together)."""
    store = make_store()
    events = random_events(seed, n=150)
    write_events(store.repo_path, events)
    store.materialize()
    features = ["profile:last_amount", "profile:last_tag", "profile:last_qty_plus_one"]
    users = ["u0", "u1", "u2", "u5", "nobody"]
    times = sorted(events["ts"])
    qs = [times[0].floor("ms"), times[len(times) // 2].floor("ms"), times[-1].floor("ms"),
          times[-1] + pd.Timedelta("44s"), times[-1] + pd.Timedelta("46s"), times[3] + pd.Timedelta("45s")]
    for q in qs:
        got = store.get_online_features([{"user_id": u} for u in users], features=features, request_time=q)
        offline = store.get_historical_features(pd.DataFrame({"user_id": users, "event_timestamp": [q] * len(users)}),
                                                features=features)
        assert_features_equal(got.to_df(), offline, ["last_amount", "last_tag", "last_qty_plus_one"], f"q={q}")
        statuses = got.statuses()
        for i, u in enumerate(users):
            ts = events.loc[events["user_id"] == u, "ts"]
            inside = ts[(ts < q) & (ts >= q - pd.Timedelta("45s"))]
            if len(ts) == 0:
                want = {"NOT_FOUND"}
            elif len(inside):
                want = {"PRESENT", "NULL_VALUE"}
            elif (ts < q).any():
                want = {"OUTSIDE_MAX_AGE"}
            else:
                want = {"NULL_VALUE"}
            for f in ("last_amount", "last_tag", "last_qty_plus_one"):
                assert statuses[f][i] in want, (u, q, f, statuses[f][i], want)
                if want == {"PRESENT", "NULL_VALUE"}:
                    assert (statuses[f][i] == "PRESENT") == (got.to_dict()[f][i] is not None)


# -- retention ----------------------------------------------------------------------------------------
def test_retention_of_each_view():
    cv = {name: None for name in ("amount_stats", "qty_stats", "profile", "profile_forever", "pair_stats")}
    store = FeatureStore(write_repo(__import__("pathlib").Path(__import__("tempfile").mkdtemp())))
    for name in cv:
        cv[name] = orr.retention(store.compiled(name))
    assert cv["amount_stats"] == orr.Retention(True, 3_600_000, False)  # events_all is unbounded
    assert cv["qty_stats"].keep_base  # first_tag is unbounded
    assert cv["profile"] == orr.Retention(False, 45_000, True)
    assert cv["profile_forever"] == orr.Retention(True, 0, False)  # latest without TTL
    assert cv["pair_stats"] == orr.Retention(False, 120_000, True)


def test_key_ttl_bounds_memory_of_bounded_views(online_backend, make_store):
    store = make_store()
    redis_client = store.online_store().client
    events = random_events(6)
    write_events(store.repo_path, events)
    store.materialize()
    p = store.config.project
    for view, expires, retention_ms in [("profile", True, 45_000), ("pair_stats", True, 120_000),
                                        ("amount_stats", False, None), ("qty_stats", False, None),
                                        ("profile_forever", False, None)]:
        keys = list(redis_client.scan_iter(match=f"fs:{p}:{view}:*"))
        assert keys, view
        for k in keys:
            ttl = redis_client.pttl(k)
            if expires:  # events are in the past: the key lives retention + slack from the write
                assert 0 < ttl <= retention_ms + orr.SLACK_MS, (view, ttl)
            else:
                assert ttl == -1, (view, ttl)
    base = orr.entity_base(p, "pair_stats", ["u0", 1])
    assert base == f'fs:{p}:pair_stats:{{["u0",1]}}'
    from redis.crc import key_slot  # a cluster's slot of a key: its hash tag's, the entity (one script call)

    assert len({key_slot(k.encode()) for k in orr.entity_keys(base)}) == 1
    tkey, rkey, _ = orr.entity_keys(base)
    meta = json.loads(redis_client.hget(tkey, "_"))
    assert meta == {"fp": store.compiled("pair_stats").data_fingerprint, "h": None, "v": orr.FORMAT_VERSION}
    members = redis_client.zrange(rkey, 0, -1, withscores=True)
    events = [json.loads(m) for m, _ in members]
    assert events and all(ev[1] == score for ev, (_, score) in zip(events, members))
    # format 4: [id, ts, inputs (qty, amount), order values (tag, flag: not the join keys, nor amount and
    # qty, which the inputs hold)]
    assert all(len(ev) == 2 + 2 + 2 for ev in events)
    assert sorted(ev[0] for ev in events) == list(range(-len(events), 0))  # unique ids
    marker = json.loads(redis_client.hget(orr.views_key(p), "pair_stats"))
    assert marker["v"] == orr.FORMAT_VERSION and marker["by"] == "materialize" and marker["h"] is None


def test_materialize_with_end_prunes_and_stays_exact_after_the_horizon(online_backend, make_store):
    store = make_store()
    seed = 7
    events = random_events(seed)
    write_events(store.repo_path, events)
    end = BASE + pd.Timedelta("200s")
    end_ms = end.value // 1_000_000
    results = {r.view: r for r in store.materialize(end=end)}
    ts_ms = events["ts"].astype("int64") // 1_000_000
    assert all(r.horizon == end_ms for r in results.values())
    assert results["profile"].events == int((ts_ms >= end_ms - 45_000).sum())
    assert results["pair_stats"].events == int((ts_ms >= end_ms - 120_000).sum())
    # views with an unbounded window keep the raw events after the cut (a top tile boundary) and a prefix
    for view in ("amount_stats", "profile_forever"):
        cut = orr.cut_for(store.compiled(view), end_ms)
        assert cut % (60_000 << 14) == 0 and results[view].events == int((ts_ms >= cut).sum())
    recent_users = set(events.loc[ts_ms >= end_ms, "user_id"])
    assert recent_users  # the test means something

    requests = random_requests(seed, events)
    late = requests[requests["event_timestamp"] >= end].reset_index(drop=True)
    assert len(late) > 20
    offline = store.get_historical_features(late, feature_service="everything")
    assert_features_equal(online_frame(store, late), offline, feature_columns(store), "after horizon")

    early = end - pd.Timedelta("1ms")
    # every entity of the view is refused before the horizon, whether it has a key or not (issue 9)
    gone = [u for u in set(events["user_id"].dropna()) if u not in recent_users][:1] + ["never-seen"]
    got = store.get_online_features([{"user_id": u} for u in ["u0", *gone]], features=["profile:last_tag"],
                                    request_time=early)
    assert got.to_dict()["last_tag"] == [None] * (1 + len(gone))
    assert got.statuses()["last_tag"] == ["REFUSED"] * (1 + len(gone))
    assert got.refusals == [
        "feature view 'profile': request_time 2026-03-01T00:03:19.999000+00:00 is before the online store's "
        "retention horizon 2026-03-01T00:03:20+00:00 (online state answers request times at or after it); use "
        "get_historical_features for the past"]


def test_materialize_deletes_entities_that_fell_behind_the_horizon(online_backend, make_store):
    store = make_store()
    redis_client = store.online_store().client
    events = random_events(2)
    write_events(store.repo_path, events)
    store.materialize(views=["pair_stats"])
    p = store.config.project
    before = len(list(redis_client.scan_iter(match=f"fs:{p}:pair_stats:*")))
    end = BASE + pd.Timedelta("1d")
    (result,) = store.materialize(views=["pair_stats"], end=end)
    assert result.entities == 0 and result.events == 0 and result.deleted == before > 0
    assert list(redis_client.scan_iter(match=f"fs:{p}:pair_stats:*")) == []


def test_stale_definition_is_refused_until_materialized(make_store):
    store = make_store()
    write_events(store.repo_path, random_events(1))
    store.materialize()
    q = BASE + pd.Timedelta("100s")
    store.get_online_features([{"user_id": "u0"}], features=["profile:last_tag"], request_time=q)
    (store.repo_path / "definitions" / "features.py").write_text(DEFINITIONS.replace('ttl="45s"', 'ttl="50s"'))
    store.reload()
    got = store.get_online_features([{"user_id": "u0"}], features=["profile:last_tag", "amount_stats:events_all"],
                                    request_time=q)
    fp = store.compiled("profile").data_fingerprint
    (msg,) = got.refusals
    assert msg.startswith("feature view 'profile': online state was written by another definition (fingerprint ")
    assert msg.endswith(f", current {fp[:12]}); run 'featurestore materialize --view profile'")
    # other views are untouched by the change and still served
    assert got.statuses() == {"last_tag": ["REFUSED"], "events_all": ["PRESENT"]}
    assert got.to_dict()["last_tag"] == [None] and got.to_dict()["events_all"][0] > 0
    store.materialize(views=["profile"])
    got = store.get_online_features([{"user_id": "u0"}], features=["profile:last_tag"], request_time=q)
    assert got.refusals == [] and got.statuses()["last_tag"][0] in ("PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE")


@pytest.mark.parametrize("seed", [2, 6])
def test_rows_changing_definition_refusal_names_backfill_then_materialize(make_store, seed, tmp_path):
    """A filter change after a backfill: the online refusal names every step in order, and those exact commands
    (run by the CLI) make the view answer again, equal to the offline value. Before, it said only 'run
    materialize', and materialize then refused the stale offline table ('backfill it again')."""
    import re
    import shlex

    from typer.testing import CliRunner

    from featurestore.cli import app

    store = make_store()
    events = random_events(seed)
    write_events(store.repo_path, events)
    store.backfill()
    store.materialize()
    (store.repo_path / "definitions" / "features.py").write_text(
        DEFINITIONS.replace('    filter="flag",\n', '    filter="flag AND qty > 0",\n'))
    store.reload()
    requests = random_requests(seed, events).head(8)
    rows = [{"user_id": u} for u in requests["user_id"]]
    q = requests["event_timestamp"].max()
    got = store.get_online_features(rows, features=["qty_stats:qty2_sum_1m"], request_time=q)
    (msg,) = got.refusals
    assert msg.endswith("; run 'featurestore backfill --view qty_stats' (the whole range: its offline table holds "
                        "rows of an earlier definition), then 'featurestore materialize --view qty_stats'"), msg
    with pytest.raises(Exception, match="backfill it again"):  # materialize alone refuses the stale table
        store.materialize(views=["qty_stats"])
    env = {"FEATURESTORE_PROJECT": store.config.project}
    for command in re.findall(r"'(featurestore [^']+)'", msg):
        args = shlex.split(command)[1:] + ["--repo", str(store.repo_path)]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, (command, result.output)
    store.reload()
    got = store.get_online_features(rows, features=["qty_stats:qty2_sum_1m"], request_time=q)
    assert got.refusals == [] and set(got.statuses()["qty2_sum_1m"]) <= {"PRESENT", "NULL_VALUE", "NOT_FOUND"}
    offline = store.get_historical_features(requests.assign(event_timestamp=q), features=["qty_stats:qty2_sum_1m"])
    assert got.to_dict()["qty2_sum_1m"] == [None if pd.isna(v) else v for v in offline["qty2_sum_1m"]]


def test_lost_online_state_is_refused_and_reported_never_served_as_defaults(make_store, redis_client):
    """Redis losing its data (FLUSHALL, a failover without persistence: here the project's keys deleted)
    makes every lookup of the lost views REFUSED, and /health unhealthy, until materialize (issue 10.6)."""
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    store = make_store()
    write_events(store.repo_path, random_events(2))
    store.materialize()
    q = BASE + pd.Timedelta("100s")
    rows = [{"user_id": "u0", "shop": 1}, {"user_id": "u1", "shop": 0}]
    before = store.get_online_features(rows, feature_service="everything", request_time=q)
    assert before.refusals == [] and "REFUSED" not in str(before.statuses())
    client = TestClient(create_app(store))
    assert client.get("/health").status_code == 200
    _drop_project(redis_client, store.config.project)  # the data is gone
    after = store.get_online_features(rows, feature_service="everything", request_time=q)
    features = [c for c in after.to_dict() if c not in ("user_id", "shop")]
    assert all(after.to_dict()[f] == [None, None] for f in features)  # not 0, not defaults
    assert all(after.statuses()[f] == ["REFUSED", "REFUSED"] for f in features)
    assert len(after.refusals) == len(store.repo.views)
    assert all("no online state (never materialized or streamed, or Redis lost its data)" in r for r in after.refusals)
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["missing_online_state"] == sorted(store.repo.views)
    res = client.post("/get-online-features", json={"feature_service": "everything", "entity_rows": rows,
                                                    "request_time": int(q.value // 1_000_000)})
    assert res.status_code == 200 and set(res.json()["statuses"]["events_all"]) == {"REFUSED"}
    store.materialize()  # the documented recovery
    again = store.get_online_features(rows, feature_service="everything", request_time=q)
    assert again.to_dict() == before.to_dict() and again.statuses() == before.statuses()
    assert client.get("/health").status_code == 200


def test_response_shape(make_store):
    store = make_store()
    write_events(store.repo_path, random_events(0))
    store.materialize()
    q = int((BASE + pd.Timedelta("100s")).value // 1_000_000)  # epoch ms works too
    got = store.get_online_features([{"user_id": "u0", "shop": 2, "extra": 1}],
                                    features=["pair_stats:pair_sum_1m", "profile:last_tag"],
                                    request_time=q, full_feature_names=True)
    assert got.request_id is None
    assert list(got.to_dict()) == ["user_id", "shop", "pair_stats__pair_sum_1m", "profile__last_tag"]
    df = got.to_df()
    assert list(df.columns) == list(got.to_dict()) and len(df) == 1
    now = store.get_online_features([{"user_id": "u0"}], features=["amount_stats:events_1h"])  # request_time=now
    assert now.to_dict()["events_1h"] == [0]


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,message", [
    (dict(features=["profile:nope"]), RequestError, "feature view 'profile' has no feature 'nope'"),
    (dict(features=["profil:last_tag"]), RequestError,
     "unknown feature view 'profil' in 'profil:last_tag' (did you mean 'profile'?)"),
    (dict(feature_service="nope"), RequestError, "unknown feature service 'nope'"),
    (dict(features=["pair_stats:pair_sum_1m"], entity_rows=[{"user_id": "u0", "shop": 1}, {"user_id": "u1"}]),
     RequestError, "entity row 1 has no join key 'shop' (needed by feature view 'pair_stats')"),
    (dict(features=["pair_stats:pair_sum_1m"], entity_rows=[{"user_id": "u0", "shop": "x"}]), RequestError,
     "entity row 0: join key 'shop' expects an integer (int64), got 'x' (str)"),
    (dict(features=["profile:last_tag"], request_time=pd.Timestamp("2026-03-01")), RequestError,
     "request_time: Timestamp('2026-03-01 00:00:00') is timezone-naive; give a UTC time (e.g. '2026-01-01T00:00:00Z')"),
    (dict(features=["profile:last_tag"], entity_rows={"user_id": "u0"}), RequestError,
     "entity_rows must be a list of dicts (one per entity) or a pandas DataFrame, got a single dict; wrap it in a list"),
])
def test_request_errors(make_store, kwargs, error, message):
    store = make_store()
    kwargs.setdefault("entity_rows", [{"user_id": "u0"}])
    kwargs.setdefault("request_time", BASE)
    with pytest.raises(error) as info:
        store.get_online_features(**kwargs)
    assert str(info.value) == message


def test_redis_down_is_an_infra_error(make_store):
    store = make_store(redis_url="redis://:secret@127.0.0.1:1/0")
    with pytest.raises(InfraError) as info:
        store.get_online_features([{"user_id": "u0"}], features=["profile:last_tag"], request_time=BASE)
    msg = str(info.value)
    assert msg.startswith("cannot reach Redis at redis://:***@127.0.0.1:1/0: ") and "secret" not in msg
    assert msg.endswith(" (run bash infra/up.sh)")
    write_events(store.repo_path, random_events(0, n=20))
    with pytest.raises(InfraError, match=r"^cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1:1/0: "):
        store.materialize()


def test_password_and_tls_reach_the_client():
    client = orr.connect("redis://127.0.0.1:6390/0", password="pw", tls=True)
    pool = client.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["password"] == "pw"
    plain = orr.connect("redis://127.0.0.1:6390/0").connection_pool
    assert plain.connection_class.__name__ == "Connection" and "password" not in plain.connection_kwargs
    assert orr.redact("rediss://user:pw@host:6380/1") == "rediss://user:***@host:6380/1"


# -- the request-time functions -----------------------------------------------------------------------
def test_compute_on_a_hand_made_state():
    from featurestore.kernel.partials import order_of
    from featurestore.online import view_layout

    store = FeatureStore(write_repo(__import__("pathlib").Path(__import__("tempfile").mkdtemp())))
    cv = store.compiled("qty_stats")
    names = ["qty2_sum_1m", "qty2_mean_1m", "qty2_variance_1m", "qty2_stddev_1m", "qty2_last_1m", "qty2_first_1m",
             "qty2_min_1m", "qty2_max_1m", "qty2_count_1m", "tags_1m", "qty_sum_30s", "amount_std_30s"]
    plans = plan_features(cv, names)
    layout = view_layout(cv)
    cols = {e: i for i, (e, _) in enumerate(orr.input_columns(cv))}
    n = 4
    state_cols = [[None] * n for _ in cols]
    state_cols[cols["qty2"]] = [2, None, 6, 4]
    state_cols[cols["tag"]] = ["a", "a", None, "b"]
    state_cols[cols["qty"]] = [1, None, 3, 2]
    state_cols[cols["amount"]] = [1.5, None, None, None]
    times = [1000, 2000, 2000, 61_000]
    from featurestore.online_reply import EntityReply

    events = [(order_of(ts, [i]), [c[i] for c in state_cols]) for i, ts in enumerate(times)]
    reply = EntityReply({}, False, None, None, {}, events)
    values, statuses = compute(layout, plans, reply, 61_000)  # window [1000, 61000): the first three
    got = dict(zip(names, values))
    assert got == {"qty2_sum_1m": 8, "qty2_mean_1m": 4.0, "qty2_variance_1m": 8.0, "qty2_stddev_1m": 8 ** 0.5,
                   "qty2_last_1m": 6, "qty2_first_1m": 2, "qty2_min_1m": 2, "qty2_max_1m": 6, "qty2_count_1m": 2,
                   "tags_1m": 1, "qty_sum_30s": -1, "amount_std_30s": 0.0}
    assert isinstance(got["qty2_sum_1m"], int) and isinstance(got["amount_std_30s"], float)
    assert statuses == ["PRESENT"] * len(names)


TYPED_DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(
    schema={"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int64", "tag": "string",
            "flag": "bool", "ts": "timestamp"},
    timestamp="ts",
    tiebreak=["qty"],
    batch=ParquetFiles("data/events/*.parquet"),
)
typed = FeatureView(
    entities=[user],
    source=events,
    projections={"f32": "CAST(amount AS FLOAT)", "i32": "CAST(qty AS INTEGER)"},
    features=[Latest("ts", name="last_ts"), Latest("qty * 1.5", name="last_dec"), Latest("f32", name="last_f32"),
              Aggregation("ts", "max", "1m", name="ts_max_1m"), Aggregation("ts", "first", None, name="ts_first"),
              Aggregation("f32", "sum", "1m", name="f32_sum_1m"), Aggregation("f32", "min", "1m", name="f32_min_1m"),
              Aggregation("f32", "count_distinct", "1m", name="f32_nd_1m"),
              Aggregation("i32", "sum", "1m", name="i32_sum_1m", default=-7),
              Aggregation("i32", "mean", "1m", name="i32_mean_1m", default=1),
              Aggregation("qty * 1.5", "sum", "1m", name="dec_sum_1m"),
              Aggregation("flag", "last", "1m", name="flag_last_1m"),
              Aggregation("tag", "max", "1m", name="tag_max_1m")],
    ttl="90s",
)
everything = FeatureService(features=[typed])
'''


@pytest.mark.parametrize("seed", [0, 9])
def test_other_types_and_tiebreak_equal_offline(make_store, seed):
    store = make_store(definitions=TYPED_DEFINITIONS)
    events = random_events(seed)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events).drop(columns=["shop"])
    offline = store.get_historical_features(requests, feature_service="everything")
    store.materialize()
    rows = []
    for r in requests.to_dict("records"):
        got = store.get_online_features([{"user_id": r["user_id"]}], feature_service="everything",
                                        request_time=r["event_timestamp"]).to_dict()
        rows.append({k: v[0] for k, v in got.items()})
    online = pd.DataFrame(rows)
    assert_features_equal(online, offline, feature_columns(store), f"typed seed {seed}")
    assert any(isinstance(v, __import__("datetime").datetime) for v in online["last_ts"])
    assert online["i32_sum_1m"].map(type).isin([int]).all()


def test_materialize_in_several_passes_and_progress(make_store, monkeypatch, redis_client):
    store = make_store()
    events = random_events(8)
    write_events(store.repo_path, events)
    store.materialize()
    p = store.config.project
    one_pass = _contents(redis_client, p)
    _drop_project(redis_client, p)
    monkeypatch.setattr(orr, "PASS_ROWS", 70)  # 300 events: 5 passes over disjoint key-hash ranges
    seen = {}
    results = store.materialize(progress=lambda view: lambda n: seen.__setitem__(view, seen.get(view, 0) + n))
    assert seen == {r.view: r.events for r in results}
    assert _contents(redis_client, p) == one_pass


def _contents(client, project):
    """Every online key of ``project`` and what it holds (markers' write times left out)."""
    out = {}
    for k in client.scan_iter(match=f"fs:{project}:*"):
        kind = client.type(k)
        if kind == b"hash":
            value = client.hgetall(k)
            if k.endswith(b":_views"):
                value = {f: {**json.loads(v), "at": None} for f, v in value.items()}
            out[k] = value
        elif kind == b"zset":
            out[k] = client.zrange(k, 0, -1, withscores=True)
        else:
            out[k] = client.get(k)
    return out


def test_feast_style_materialize_call_loads_everything(make_store):
    from datetime import datetime, timezone

    store = make_store()
    write_events(store.repo_path, random_events(3, n=50))
    results = store.materialize(datetime(2020, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))
    assert {r.view for r in results} == set(store.repo.views)
    assert all(r.horizon is None for r in results)  # every request time answered exactly


def test_staged_write_of_a_large_entity_is_all_or_nothing(make_store, redis_client, monkeypatch):
    """A hot entity is written in bounded chunks to staging keys and swapped in by one script: until the
    swap (or when the writer died before it, or the staging is not whole) readers see the entity's
    previous state, never part of the new one; after it, exactly what one write would leave."""
    import redis as redis_py

    from featurestore.stores import online_staged

    monkeypatch.setattr(orr, "STAGE_ITEMS", 5)
    store = make_store()
    events = random_events(3)
    write_events(store.repo_path, events)
    store.materialize()
    online = store.online_store()
    user = events["user_id"].dropna().value_counts().index[0]
    base = orr.entity_base(online.project, "amount_stats", [user])
    live = orr.entity_keys(base)

    def snapshot():
        return (redis_client.hgetall(live[0]), redis_client.zrange(live[1], 0, -1, withscores=True),
                redis_client.zrange(live[2], 0, -1, withscores=True))

    before = snapshot()
    assert before[0] and before[1]
    requests = random_requests(3, events)
    requests = requests[requests["user_id"] == user].reset_index(drop=True)
    assert len(requests) > 3
    values = online_frame(store, requests)

    members = redis_client.zrange(live[1], 0, -1, withscores=True)
    assert len(members) > 10  # several chunks
    fp = store.compiled("amount_stats").data_fingerprint
    new = kentity.Changes(True, None, False, raw_add=[(int(s), m) for m, s in members[:-3]], meta=True)
    calls = online_staged.staged_commands(online, base, new, fp, None, int(time.time() * 1000))
    assert len(calls) > 3
    online._write_packed(calls[:-1])  # the writer dies before the swap
    assert snapshot() == before
    assert_features_equal(online_frame(store, requests), values, feature_columns(store), "staged, not swapped")
    redis_client.zremrangebyrank(orr.entity_keys(base, staged=True)[1], 0, 0)  # a staging that is not whole
    with pytest.raises(redis_py.exceptions.ResponseError, match="incomplete"):
        online._write_packed(calls[-1:])
    assert snapshot() == before

    online._write_packed(calls)  # a whole write: swapped in at once
    assert not any(redis_client.exists(k) for k in orr.entity_keys(base, staged=True))
    got = redis_client.zrange(live[1], 0, -1, withscores=True)
    assert got == members[:-3]
    assert redis_client.hgetall(live[0]) == {b"_": orjson.dumps({"fp": fp, "h": None, "v": orr.FORMAT_VERSION})}


@pytest.mark.parametrize("seed,base", [(0, "1969-12-31T23:58:00Z"), (1, "2026-03-01T00:00:00Z")])
def test_sub_millisecond_request_times_floor_like_event_times(make_store, seed, base):
    """SPEC §2: a request time is truncated to the millisecond like an event time (floored, also before
    1970), then ``ts < q``: requests at an event's time give or take 1 ns .. 1 ms, at its window edges,
    offline and online equal the oracle."""
    store = make_store()
    events = random_events(seed, n=200, span_s=240)
    events["ts"] = events["ts"] - BASE + pd.Timestamp(base)
    write_events(store.repo_path, events)
    store.backfill()
    store.materialize()
    rng = random.Random(seed)
    times = list(events["ts"])
    rows = []
    for _ in range(50):
        q = rng.choice(times) + pd.Timedelta(nanoseconds=rng.choice([0, 1, -1, 500_000, 999_999, -999_999, 10**6]))
        rows.append({"user_id": rng.choice(["u0", "u1", "u2", "nobody"]), "shop": rng.randint(0, 2),
                     "event_timestamp": q + pd.Timedelta(rng.choice(["0s", "10s", "30s", "45s", "1min", "2min"]))})
    requests = pd.DataFrame(rows)
    requests["event_timestamp"] = pd.to_datetime(requests["event_timestamp"], utc=True)
    offline = store.get_historical_features(requests, feature_service="everything")
    online = online_frame(store, requests)
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(offline, expected, view.feature_names, f"offline, view {view.name}")
        assert_features_equal(online, expected, view.feature_names, f"online, view {view.name}")


def test_materialize_never_loads_rows_of_an_earlier_definition(make_store):
    """After a change to a view's filter, the online state is refused (another definition's) and
    materialize refuses the offline rows backfilled under the old filter (it loaded them, marked with the
    new definition, and lookups served the old filter's values as PRESENT); backfill, then materialize:
    online equals the oracle under the new filter."""
    from featurestore.errors import OfflineStoreError

    store = make_store()
    events = random_events(6)
    write_events(store.repo_path, events)
    store.backfill()
    store.materialize()
    defs = store.repo_path / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('filter="flag"', 'filter="NOT flag"'))
    store.reload()
    requests = random_requests(6, events, n=40)
    features = [f"qty_stats:{f}" for f in store.repo.views["qty_stats"].feature_names]
    got = store.get_online_features(requests[KEYS], features=features, request_time=BASE + pd.Timedelta("200s"))
    assert set(got.statuses()["tags_1m"]) == {"REFUSED"}
    with pytest.raises(OfflineStoreError, match="view 'qty_stats': its offline table was backfilled under an earlier"):
        store.materialize(views=["qty_stats"])
    store.backfill(views=["qty_stats"])
    store.materialize(views=["qty_stats"])
    view = store.repo.views["qty_stats"]
    rows = []
    for r in requests.to_dict("records"):
        one = store.get_online_features([{k: r[k] for k in KEYS}], features=features, request_time=r["event_timestamp"])
        rows.append({k: v[0] for k, v in one.to_dict().items()})
    assert_features_equal(pd.DataFrame(rows), oracle.point_in_time(events, view, requests), view.feature_names,
                          "online under the new filter")
