"""Format 4 of the online store's values (``featurestore.stores.online_format``): raw-event members store
only what a view's features need, and a value of another format is refused, never read.

* A view without first / last / latest features stores no order values (``[id, ts, inputs...]``), and is
  still exact: online = offline on random events with ties of time, in every storage form (sparse,
  tiled, mixed), and materialize's vectorised build writes what the per-entity build writes, byte for
  byte (the random repo's other views all compare orders: ``tests/test_online.py`` and
  ``tests/test_materialize_vector.py`` cover those).
* An entity (or a view marker) left in format 3 is refused with a one-line message by lookups and by
  push, and ``materialize`` brings it back.
"""

import json

import pandas as pd
import pytest

from featurestore.kernel import entity as kentity
from featurestore.online import view_layout
from featurestore.stores import online_format as ofmt
from featurestore.stores import online_materialize as om
from featurestore.stores import online_redis as orr
from tests.compare import assert_features_equal
from tests.randomrepo import BASE, DEFINITIONS, random_events, random_requests, write_events, write_repo
from tests.test_materialize_vector import Capture, _bytes, _events
from tests.test_online import layout_mode, make_store  # noqa: F401 (fixtures)

PLAIN_FUNCS = ["count", "sum", "mean", "min", "max", "stddev", "variance", "count_distinct"]
PLAIN = DEFINITIONS + '''

plain_stats = FeatureView(
    entities=[user],
    source=events,
    features=[Aggregation("amount", f, w, name=f"plain_{f}_{label}") for f in %r
              for label, w in (("10s", "10s"), ("1h", "1h"), ("all", None))]
    + [Aggregation("*", "count", "1m", name="plain_events_1m"), Aggregation("tag", "count_distinct", "1m",
                                                                            name="plain_tags_1m")],
)
''' % (PLAIN_FUNCS,)


def test_members_hold_only_the_order_values_a_view_compares(tmp_path):
    from featurestore.store import FeatureStore

    root = write_repo(tmp_path / "repo")
    (root / "definitions" / "features.py").write_text(PLAIN)
    store = FeatureStore(root)
    assert ofmt.order_columns(store.compiled("plain_stats")) == ()  # no first/last/latest: time only
    # join keys are equal within an entity: never stored
    assert ofmt.order_columns(store.compiled("pair_stats")) == ("amount", "qty", "tag", "flag")
    assert ofmt.order_columns(store.compiled("profile")) == ("shop", "amount", "qty", "tag", "flag")
    # values the view's inputs hold already (the input is the column itself) are not repeated
    assert ofmt.order_sources(store.compiled("pair_stats")) == (1, 0, -1, -1)  # inputs qty, amount
    assert ofmt.order_sources(store.compiled("profile")) == (-1, 0, -1, 1, -1)  # amount, tag ("qty + 1": no)


def test_encode_decode_round_trip():
    from featurestore.online_reply import loads

    order = [1_700_000_000_123, [], ["a"], [0.0], [True]]
    for sources in ((-1, -1, -1, -1), (-1, 1, -1, -1), (0, -1, 2, -1)):
        codec = ofmt.Members(4, sources)
        for plain, last in ((True, 2**62), (False, float("nan")), (False, float("-inf"))):
            inputs = [None, "a", 0.0, last]  # input j equals order column k where sources[k] == j
            arr = loads(codec.encode(-3, order, inputs, plain))
            assert len(arr) == 2 + 4 + sum(s < 0 for s in sources)  # values an input holds are not repeated
            eid, got_order, got_inputs = codec.decode(arr)
            assert eid == -3 and got_order == order
            assert [repr(x) for x in got_inputs] == [repr(x) for x in inputs]
    assert ofmt.Members(2).encode(7, [5], [1, 2]) == "[7,5,1,2]"  # no order values: [id, ts, inputs]


@pytest.mark.parametrize("seed", range(5))
def test_raw_events_of_many_entities_parsed_together_equal_each_parsed_alone(seed):
    """A lookup parses the raw events of a view's entities without tiles in one call
    (online_reply.raw_events_many): each entity's times, columns and orders equal its own parse, with empty
    entities, one-event ones, strings holding commas and escaped newlines, and NaN (the slower parser)."""
    import random

    from featurestore.online_reply import raw_events, raw_events_many

    rng = random.Random(seed)
    codec = ofmt.Members(3, (-1, 1, -1))
    values = [None, 0.0, -0.0, 1e308, 5e-324, 2**62, "a,b", "x\ny", "]", True]
    blobs = []
    for _ in range(rng.choice([1, 2, 7, 30])):
        n = rng.choice([0, 0, 1, 3, 40])
        ts = sorted(rng.randint(0, 10**6) for _ in range(n))
        members = []
        for k, t in enumerate(ts):
            inputs = [rng.choice(values) for _ in range(3)]
            order = [t, [rng.choice(["u", "v"])], [] if inputs[1] is None else [inputs[1]], [rng.choice([1, 2])]]
            plain = rng.random() > 0.1
            if not plain:
                inputs[0] = float("nan")
            members.append(codec.encode(-k, order, inputs, plain))
        blobs.append("\n".join(members).encode())
    together = raw_events_many(blobs, codec)
    assert len(together) == len(blobs)
    for blob, got in zip(blobs, together):
        want = raw_events(blob, codec) if len(blobs) > 1 else got
        alone = json.loads(b"[" + blob.replace(b"\n", b",") + b"]") if blob else []
        assert got.times == want.times == [m[1] for m in alone]
        assert repr(got.cols) == repr(want.cols) == repr([[m[2 + c] for m in alone] for c in range(3)])
        assert [got.order(j) for j in range(len(got))] == [codec.order_of(m) for m in alone]


@pytest.mark.redis
@pytest.mark.parametrize("seed", [0, 3])
def test_a_view_without_orders_is_exact_online(make_store, layout_mode, seed):  # noqa: F811
    store = make_store(definitions=PLAIN)
    events = random_events(seed, n=400)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events)
    features = [f"plain_stats:{f}" for f in store.repo.views["plain_stats"].feature_names]
    offline = store.get_historical_features(requests, features=features)
    store.materialize(views=["plain_stats"])
    client = store.online_store().client
    p = store.config.project
    members = [m for k in client.scan_iter(match=f"fs:{p}:plain_stats:*:r") for m in client.zrange(k, 0, -1)]
    assert members and all(len(json.loads(m)) == 2 + 2 for m in members)  # [id, ts, amount, tag]
    rows = []
    for r in requests.to_dict("records"):
        got = store.get_online_features([{"user_id": r["user_id"]}], features=features,
                                        request_time=r["event_timestamp"]).to_dict()
        rows.append({k: v[0] for k, v in got.items()})
    online = pd.DataFrame(rows)
    assert_features_equal(online, offline, store.repo.views["plain_stats"].feature_names, f"seed {seed}")


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_build_of_a_view_without_orders_equals_the_per_entity_build(tmp_path, monkeypatch, seed):
    from featurestore.store import FeatureStore

    monkeypatch.setattr(kentity, "DENSE_EVENTS", [0, 5, 40, 128][seed])
    monkeypatch.setattr(kentity, "TILE_MIN_EVENTS", [0, 2, 16, 0][seed])
    events = _events(seed)
    root = write_repo(tmp_path / "repo")
    (root / "definitions" / "features.py").write_text(PLAIN)
    write_events(root, events)
    store = FeatureStore(root)
    con = store._connect()
    cv = store.compiled("plain_stats")
    relation = store._view_input(con, cv).events_relation
    layout = view_layout(cv)
    ret = orr.retention(cv)
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    compared = 0
    for end in (None, times[len(times) // 2], times[-1] + 1):
        cut = orr.cut_for(cv, end)
        con.execute(om.hot_sql(cv, relation, None, cut, ret.keep_base))
        vec, ref = Capture(), Capture()
        om._kernel(con, cv, relation, layout, cut, ret.keep_base, vec, None)
        om._plain(con, cv, relation, None, layout, cut, ret, ref, None, only=om.HOT)
        assert sorted(vec.got) == sorted(ref.got), end
        for key, (last, want) in ref.got.items():
            assert vec.got[key][0] == last
            assert _bytes(vec.got[key][1]) == _bytes(want), (end, key)
            compared += 1
    assert compared >= 3


def _to_format_3(client, base: str) -> None:
    """Rewrite one entity as format 3 stored it: meta without "v", members ``[id, [ts, ...], [inputs]]``."""
    t_key, r_key, _ = orr.entity_keys(base)
    meta = json.loads(client.hget(t_key, orr.META_FIELD))
    del meta["v"]
    client.hset(t_key, orr.META_FIELD, json.dumps(meta))
    old = client.zrange(r_key, 0, -1, withscores=True)
    client.delete(r_key)
    for m, score in old:
        ev = json.loads(m)
        client.zadd(r_key, {json.dumps([ev[0], [ev[1], *([] if v is None else [v] for v in ev[5:])], ev[2:5]]): score})


@pytest.mark.redis
def test_an_entity_of_an_old_format_is_refused_never_read(make_store):  # noqa: F811
    store = make_store()
    events = random_events(2)
    write_events(store.repo_path, events)
    store.backfill()
    store.materialize()
    client = store.online_store().client
    q = BASE + pd.Timedelta("100s")
    rows = [{"user_id": "u0"}, {"user_id": "u1"}]
    features = ["profile:last_amount", "profile:last_tag", "profile:last_qty_plus_one"]
    before = store.get_online_features(rows, features=features, request_time=q)
    assert before.refusals == []
    _to_format_3(client, orr.entity_base(store.config.project, "profile", ["u0"]))
    got = store.get_online_features(rows, features=features, request_time=q)
    assert got.refusals == ["feature view 'profile': an entity's online state has format version 3, this library "
                            "reads 4; run 'featurestore materialize --view profile'"]
    assert all(got.statuses()[f.split(":")[1]] == ["REFUSED", before.statuses()[f.split(":")[1]][1]] for f in features)
    assert got.to_dict()["last_tag"] == [None, before.to_dict()["last_tag"][1]]
    # push does not add format-4 events to it either (nothing written)
    row = {"user_id": "u0", "shop": 1, "amount": 5.0, "qty": 2, "tag": "a", "flag": True, "ts": "2026-03-01T00:01:00Z"}
    result = store.push("events", [row], to="online")
    assert any("format version 3" in r for r in result.refusals)
    # the marker of an old format refuses the whole view
    marker = json.loads(client.hget(orr.views_key(store.config.project), "profile"))
    client.hset(orr.views_key(store.config.project), "profile", json.dumps({**marker, "v": 3}))
    got = store.get_online_features(rows, features=features, request_time=q)
    assert got.refusals == ["feature view 'profile': online state has format version 3, this library reads 4; "
                            "run 'featurestore materialize --view profile'"]
    store.materialize(views=["profile"])  # the documented fix
    again = store.get_online_features(rows, features=features, request_time=q)
    assert again.refusals == [] and again.to_dict() == before.to_dict()


STREAM_DEFS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(
    schema={"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int64", "tag": "string",
            "flag": "bool", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/events/*.parquet"),
    stream=KafkaTopic("events", format="json"),
)
sums = FeatureView(entities=[user], source=events,
                   features=[Aggregation("amount", f, w, name=f"a_{f}_{label}") for f in ("count", "sum", "min", "stddev")
                             for label, w in (("1m", "1m"), ("all", None))])
lasts = FeatureView(entities=[user], source=events,
                    features=[Aggregation("tag", "last", "1h", name="last_tag"), Latest("amount", name="last_amount")])
'''


def _state(client, project: str) -> dict:
    """Every entity key of a project, raw members without their ids (the stream's are Kafka offsets)."""
    out = {}
    for key in client.scan_iter(match=f"fs:{project}:*:{{*", count=1000):
        k = key.decode().split(":", 2)[2]
        if client.type(key) == b"hash":
            out[k] = client.hgetall(key)
        else:
            out[k] = sorted((json.dumps(json.loads(m)[1:]), s) for m, s in client.zrange(key, 0, -1, withscores=True))
    return out


@pytest.mark.redis
@pytest.mark.parametrize("seed", [4, 9])
def test_the_stream_operator_writes_what_materialize_writes(tmp_path, redis_client, monkeypatch, seed):
    """The Flink state operator (run outside Flink, as tests/test_stream_writes.py does) encodes members
    and tile orders with the same format as materialize: a view without orders (``sums``: time only)
    and one with last/latest (``lasts``: order values without the join key), sparse and tiled entities,
    key for key (event ids aside). The end-to-end stream = batch tests run the random repo's views."""
    import uuid

    from bench.stream_online import _Context, _Keyed
    from featurestore.engines.flink import stream as streaming
    from featurestore.engines.flink.online import OnlineState
    from featurestore.online import input_columns
    from featurestore.store import FeatureStore
    from tests.conftest import drop_project
    from tests.test_stream_writes import _Ctx

    monkeypatch.setattr(kentity, "DENSE_EVENTS", 20)
    monkeypatch.setattr(kentity, "TILE_MIN_EVENTS", 2)
    projects = [f"t_fmt_{uuid.uuid4().hex[:8]}", f"t_fmt_{uuid.uuid4().hex[:8]}"]
    stores = []
    for i, project in enumerate(projects):
        root = write_repo(tmp_path / f"repo{i}")
        (root / "definitions" / "features.py").write_text(STREAM_DEFS)
        (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
        stores.append(FeatureStore(root))
    events = random_events(seed, n=400)
    write_events(stores[1].repo_path, events)
    try:
        stores[1].materialize()
        plan = streaming.plan(stores[0])
        (group,) = plan.online
        cvs = {v.name: stores[0].compiled(v.name) for v in group.views}
        width = 1 + max(max(v.inputs) for v in group.views)
        assert ofmt.order_columns(cvs["sums"]) == () and group.views[[v.name for v in group.views].index("sums")].order == ()
        rows = events.astype(object).where(events.notna(), None).to_dict("records")
        by_key: dict = {}
        for off, r in enumerate(rows):
            if r["user_id"] is None:
                continue
            v = [None] * width
            v[0], v[1] = off, int(r["ts"].value // 1_000_000)
            for j, c in enumerate(cvs["sums"].order_columns[1:]):
                v[2 + j] = r[c]
            for ov in group.views:
                v[ov.flag] = True
                for slot, (expr, _) in zip(ov.inputs, input_columns(cvs[ov.name])):
                    v[slot] = r[expr]
            key = str(group.gid) + json.dumps([r["user_id"]], separators=(",", ":"))
            by_key.setdefault(key, []).append(json.dumps(v))
        keyed = _Keyed()
        op = OnlineState([group.to_dict()], 5_000, redis=streaming.redis_options(stores[0].config),
                         progress_key=f"fs:{projects[0]}:_stream:_progress:test", write_ms=50, write_rows=10**9)
        op.open(_Context(keyed))
        ctx = _Ctx(keyed, [])
        for key, texts in by_key.items():
            for i in range(0, len(texts), 50):  # mini-batches
                keyed.key = key
                op.process_element((key, ",".join(texts[i:i + 50])), ctx)
        op.out.flush()
        op.close()
        streamed, materialized = _state(redis_client, projects[0]), _state(redis_client, projects[1])
        assert streamed == materialized
        assert any(k.endswith(":t") and b"T" in v for k, v in materialized.items())  # tiled entities too
        raw = [json.loads(m) for k, ms in materialized.items() if k.startswith("sums:") and k.endswith(":r")
               for m, _ in ms]
        assert raw and all(len(m) == 1 + 1 for m in raw)  # (without the id) ts and the amount
    finally:
        for project in projects:
            drop_project(redis_client, project)


def test_a_hand_off_seed_of_another_format_is_refused_on_restore(tmp_path):
    """A restored stream rebuilds entities from its hand-off seed file: one written before format 4 (no
    user_version) is refused with one line, never parsed as format 4."""
    import sqlite3

    from featurestore.engines.flink import handoff
    from featurestore.errors import FeatureStoreError

    path = tmp_path / "seed-old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE seed (view TEXT NOT NULL, entity TEXT NOT NULL, members TEXT NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(FeatureStoreError, match=r"holds online format 3 members, this library reads 4: start the "
                                                 r"stream afresh \(--no-restore\)"):
        handoff._check_format(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {ofmt.FORMAT_VERSION}")  # what write_seed sets
    db.commit()
    db.close()
    handoff._check_format(path)


def test_entity_keys_written_directly_equal_the_json_encoders():
    """encode_entity writes plain strings and integers without the JSON encoder (a lookup encodes one key
    per row and view): the text must be the encoder's, for every character JSON escapes or not."""
    import random

    from featurestore.stores.online_redis import _ENC, encode_entity

    rng = random.Random(5)
    chars = [chr(i) for i in range(0, 300)] + ["\u2028", "\ud800", "\U0001f600", "é", '"', "\\", "}", "{"]
    for _ in range(20_000):
        values = [rng.choice(["".join(rng.choice(chars) for _ in range(rng.randint(0, 4))),
                              rng.randint(-2**63, 2**63 - 1), True, False, None, 1.5, 0, -1])
                  for _ in range(rng.randint(1, 3))]
        assert encode_entity(values) == _ENC.encode(values), values
