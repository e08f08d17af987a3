"""Materialize's vectorised path (members packed by DuckDB: ``featurestore.stores.online_packed``, tiles
from DuckDB partials, hot entities staged in chunks) leaves the very Redis image the per-entity path
(``FEATURESTORE_MATERIALIZE_VECTOR=0``: every member formatted by Python, every entity built by the
kernel event by event) leaves: every key, field, member, score and expiry, byte for byte, for every
view of the random repo, on random events with hot keys, ties, nulls, +-0.0, NaN, infinities, huge and
tiny floats, and unicode / escaped strings in count_distinct, first/last and latest; with staging
chunks small enough that hot entities are written in many chunks. On a single node each write is a
transaction of plain commands: the write script's effect, for any arguments, and a plain entity's
transaction is built byte for byte as that of its arguments.
"""

import random
import time

import pandas as pd
import pyarrow as pa
import pytest

from types import SimpleNamespace

from featurestore.kernel import entity as kentity
from featurestore.kernel.entity import Changes
from featurestore.kernel.partials import _SPLICE, Encoded, dumps_row
from featurestore.store import FeatureStore
from featurestore.stores import online_materialize as om
from featurestore.stores import online_redis as orr
from featurestore.stores.online_packed import PackedRaw, command, transaction, write_calls
from tests.randomrepo import random_events, write_events, write_repo

AMOUNTS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 5e-324, 1e-300, 0.1, 3.0,
           1.7976931348623157e308, 123456789.125]
TAGS = ["é", "日本", "a\"b", "back\\slash", "new\nline", "tab\tx", "\x01ctl", "emoji 😀", "/slash", "\u2028", "",
        "\x7f", "ümlaut", "\x1fus", "\x0bvt"]


SPREAD_VIEW = '''
spread = FeatureView(
    entities=[user],
    source=events,
    features=[Aggregation("tag", "count_distinct", "6h", name="tags_6h"),
              Aggregation("qty", "count_distinct", None, name="qtys_ever"),
              Aggregation("flag", "count_distinct", "1h", name="flags_1h")],
)
'''


def _events(seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    span = [300, 6 * 3600, 3 * 86_400][seed % 3]
    df = random_events(seed, n=2_000, users=5, span_s=span)
    ix = rng.sample(range(len(df)), len(df) // 3)
    burst = df["ts"].iloc[ix[0]]
    for j, i in enumerate(ix):
        if rng.random() < 0.6:
            df.loc[i, "amount"] = rng.choice(AMOUNTS)
        if rng.random() < 0.6:
            df.loc[i, "tag"] = rng.choice(TAGS)
        if j % 5 == 0:
            df.loc[i, "ts"] = burst
    return df


def _key_image(client, key) -> tuple:
    kind = client.type(key)
    content = client.hgetall(key) if kind == b"hash" else client.zrange(key, 0, -1, withscores=True)
    return kind, sorted(content.items()) if isinstance(content, dict) else content, client.pexpiretime(key)


def _image(client, project: str) -> dict:
    prefix = f"fs:{project}:"
    return {key.decode()[len(prefix):]: _key_image(client, key)
            for key in client.scan_iter(match=f"{prefix}*", count=1000) if key.decode()[len(prefix):] != "_views"}


def test_a_spliced_row_is_the_rows_json_whatever_its_other_values_hold():
    """``dumps_row`` encodes a row once with a placeholder for each Encoded slot; a value of the row that
    encodes like the placeholder (here: the placeholder itself) must not be taken for one."""
    enc = orr._ENC.encode
    for row in ([1, Encoded('["a","b"]'), None, [3, "x"], Encoded("[]")],
                [_SPLICE, Encoded("[1,2]"), "\u0000", _SPLICE], [Encoded("[true]")], [0.1, {"k": _SPLICE}]):
        want = "[" + ",".join(v if type(v) is Encoded else enc(v) for v in row) + "]"
        assert dumps_row(row, enc) == want


def test_packed_members_parse_back_to_their_pairs():
    from featurestore.stores.online_packed import PackedRaw, pack_counted

    pairs = [(1, "[-1,1,\"a\\r\\nb\"]"), (-5, "é😀"), (2**40, ""), (7, "$3\r\nx")]
    packed = [pack_counted(p)[1] for p in pairs]
    assert pack_counted(pairs[0]) == (2, b"$1\r\n1\r\n$15\r\n" + pairs[0][1].encode() + b"\r\n")
    raw = PackedRaw([(2, packed[0] + packed[1]), (0, b""), (2, packed[2] + packed[3])])
    assert len(raw) == 4
    assert list(raw) == pairs


@pytest.mark.redis
@pytest.mark.parametrize("seed", range(3))
def test_the_vectorised_packed_path_writes_the_per_entity_paths_redis_image(tmp_path, monkeypatch, redis_client,
                                                                            seed):
    rng = random.Random(500 + seed)
    monkeypatch.setattr(kentity, "DENSE_EVENTS", rng.choice([5, 40]))
    monkeypatch.setattr(kentity, "TILE_MIN_EVENTS", rng.choice([0, 2, 16]))
    monkeypatch.setattr(orr, "STAGE_ITEMS", rng.choice([7, 50]))  # hot entities in many staged chunks
    monkeypatch.setattr(om, "VECTOR_EVENTS", 0)  # the vectorised build however few the events
    monkeypatch.setattr(om, "EVENT_ROWS", rng.choice([7, 100]))  # entities' rows split across batches
    events = _events(seed)
    root = write_repo(tmp_path / "repo")
    with open(root / "definitions" / "features.py", "a") as f:  # distinct sets of strings / integers / booleans
        f.write(SPREAD_VIEW)  # held in tiles of many levels (DuckDB writes them as JSON text) and in prefixes
    write_events(root, events)
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    now = int(time.time() * 1000)  # (staging keys expire an hour after it: a real clock)
    compared = 0
    for end in (None, times[len(times) // 2]):
        images = {}
        for path in ("1", "0"):
            monkeypatch.setenv("FEATURESTORE_MATERIALIZE_VECTOR", path)
            project = f"pk{seed}_{path}_{rng.randrange(10**9)}"
            store = FeatureStore(root)
            store.config = store.config.__class__(**{**store.config.__dict__, "project": project})
            online = orr.for_store(store)
            con = store._connect()
            try:
                for name, view in store.repo.views.items():
                    cv = store.compiled(name)
                    relation = store._view_input(con, cv).events_relation
                    online.materialize_view(con, cv, relation, end, None, now_ms=now)
                images[path] = _image(redis_client, project)
            finally:
                keys = list(redis_client.scan_iter(match=f"fs:{project}:*", count=1000))
                if keys:
                    redis_client.delete(*keys)
        assert images["1"].keys() == images["0"].keys(), end
        for key, want in images["0"].items():
            assert images["1"][key] == want, (end, key)
            compared += 1
    assert compared > 50


@pytest.mark.redis
def test_kernel_entities_with_few_events_are_built_entity_by_entity(tmp_path, monkeypatch, redis_client):
    """Below ``VECTOR_EVENTS`` events in a pass, the kernel entities skip the vectorised build (its tiles
    query costs more than the per-entity build on so few events); at or above it, they take it."""
    monkeypatch.setattr(kentity, "DENSE_EVENTS", 5)
    events = _events(0)
    root = write_repo(tmp_path / "repo")
    write_events(root, events)
    calls = []
    kernel = om._kernel
    monkeypatch.setattr(om, "_kernel", lambda *a, **k: (calls.append(1), kernel(*a, **k)))
    monkeypatch.setenv("FEATURESTORE_MATERIALIZE_VECTOR", "1")
    counts = {}
    for threshold in (len(events) + 1, 0):
        monkeypatch.setattr(om, "VECTOR_EVENTS", threshold)
        store = FeatureStore(root)
        project = f"pkv_{threshold}_{random.randrange(10**9)}"
        store.config = store.config.__class__(**{**store.config.__dict__, "project": project})
        try:
            store.materialize()
        finally:
            keys = list(redis_client.scan_iter(match=f"fs:{project}:*", count=1000))
            if keys:
                redis_client.delete(*keys)
        counts[threshold], calls[:] = len(calls), []
    assert counts[len(events) + 1] == 0 and counts[0] > 0, counts


def _packed(pairs) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for ts, m in pairs for x in (b"%d" % ts, m.encode()))


def _random_args(rng: random.Random, now: int) -> list:
    """Random write script arguments (as write_args lays them out): full or not, meta, dense flag,
    trims, tiles set and deleted (one maybe both), raw members as pairs or packed segments, prefixes."""
    tiles = {f"{rng.randrange(3)}:{rng.randrange(20)}": f"[{rng.randrange(9)}]" for _ in range(rng.randrange(6))}
    dels = [f"{rng.randrange(3)}:{rng.randrange(20)}" for _ in range(rng.randrange(3))]
    raw = [(rng.randrange(100), f'[-{j},"é{rng.randrange(50)}"]') for j in range(rng.randrange(8))]
    args = [rng.choice(["1", ""]), rng.choice(['{"fp":"x","h":null,"v":4}', ""]), rng.choice(["1", ""]),
            rng.choice(["", rng.randrange(100)]), rng.choice(["", rng.randrange(100)]),
            rng.choice(["", now + rng.randrange(10**6)]), len(tiles)]
    for name, row in tiles.items():
        args += [name, row]
    args += [len(dels), *dels, len(raw)]
    if raw and rng.random() < 0.5:
        cut = rng.randrange(len(raw) + 1)
        args += PackedRaw([(len(c), _packed(c)) for c in (raw[:cut], raw[cut:]) if c]).segments()
    else:
        for ts, member in raw:
            args += [ts, member]
    prefixes = {rng.randrange(100): f"[{rng.randrange(9)}]" for _ in range(rng.randrange(3))}
    args.append(len(prefixes))
    for b, row in prefixes.items():
        args += [b, f"[{b},{row}]"]
    return args


@pytest.mark.redis
def test_a_writes_transaction_leaves_what_the_write_script_leaves(redis_client):
    rng = random.Random(77)
    now = int(time.time() * 1000)
    sha = redis_client.script_load(orr.WRITE_LUA)
    project = f"tx{rng.randrange(10**9)}"
    try:
        for case in range(400):
            images = []
            args = _random_args(rng, now)
            prior = rng.random() < 0.7
            for how in ("script", "tx"):
                base = f"fs:{project}:{how}:{{{case}}}"
                keys = orr.entity_keys(base)
                if prior:  # a previous state the write replaces or changes
                    state = random.Random(case)
                    redis_client.hset(keys[0], mapping={"_": "old", "0:1": "[1]", "1:3": "[2]"})
                    redis_client.zadd(keys[1], {f"[-{j}]": state.randrange(100) for j in range(20)})
                    redis_client.zadd(keys[2], {f"[{b},[1]]": b for b in state.sample(range(100), 5)})
                    redis_client.pexpireat(keys[1], now + 10**7)
                if how == "script":  # packed as the writer packed it (a segment is many arguments)
                    call, n = command([b"EVALSHA", sha, 3, *keys, *args]), 1
                else:
                    call = transaction(write_calls([k.encode() for k in keys], args))
                    n = call.replies
                conn = redis_client.connection_pool.get_connection()
                try:
                    conn.send_packed_command([bytes(call)])
                    replies = [conn.read_response() for _ in range(n)]
                finally:
                    redis_client.connection_pool.release(conn)
                assert replies[-1] == 1 if how == "script" else len(replies[-1]) == n - 2
                images.append([_key_image(redis_client, k) for k in keys])
            assert images[0] == images[1], (case, args)
    finally:
        keys = list(redis_client.scan_iter(match=f"fs:{project}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def test_a_plain_entitys_transaction_is_the_one_of_its_write_arguments():
    store = SimpleNamespace(project="p")
    cv = SimpleNamespace(name="v", data_fingerprint="fp1")
    pairs = [(1700000000000 + j, f'[-{j + 1},{1700000000000 + j},"é"]') for j in range(3)]
    for expires in (False, True):
        writer = object.__new__(om._Writer)
        writer.__dict__.update(store=store, cv=cv, now=5, expires=expires, ttl_extra=1000, commands=[], written=set(),
                               size=0, entities=0, events=0, _plain_meta=None)
        writer.add_plain(["u1"], 1700000000002, len(pairs), _packed(pairs))
        base = orr.entity_base("p", "v", ["u1"])
        args = orr.write_args(Changes(True, None, False, raw_add=PackedRaw([(len(pairs), _packed(pairs))])), "fp1",
                              1700000000002 + 1000 if expires else None)
        want = transaction(write_calls([k.encode() for k in orr.entity_keys(base)], args))
        assert writer.commands == [want]
        assert writer.commands[0].replies == want.replies


def _runs_batches(rng, entities, cut):
    """Rows of ``entities`` (each a list of times) sorted by entity and rank, as record batches cut at
    random rows, and the expected (last, events, kept, packed chunks of 3) per entity."""
    from featurestore.stores.online_packed import pack_counted

    ids, ranks, tss, texts, want = [], [], [], [], []
    for e, times in enumerate(entities):
        kept = []
        for r, ts in enumerate(times, 1):
            text = pack_counted((ts, f"[-{r},{e}]"))[1] if cut is None or ts >= cut else None
            ids.append(e), ranks.append(r), tss.append(ts), texts.append(text)
            if text is not None:
                kept.append((r, text))
        chunks = {}
        for r, text in kept:
            chunks.setdefault((r - 1) // 3, []).append(text)
        want.append((times[-1], len(times), len(kept), [(len(c), b"".join(c)) for _, c in sorted(chunks.items())]))
    table = pa.table({"__fs_e": ids, "__fs_r": pa.array(ranks, pa.int64()), "__fs_ts": pa.array(tss, pa.int64()),
                      "__fs_p": pa.array([None if x is None else x.decode() for x in texts], pa.string())})
    cuts = sorted(rng.sample(range(1, len(ids)), min(len(ids) - 1, rng.randrange(0, 12))))
    return [table.slice(a, b - a).to_batches()[0] for a, b in zip([0] + cuts, cuts + [len(ids)])], want


@pytest.mark.parametrize("seed", range(30))
def test_entity_runs_give_each_entitys_kept_members_in_chunks_whatever_the_batch_boundaries(seed):
    """``entity_blocks`` regroups batches split anywhere (mid-entity, at an entity's first row, one row
    per batch) into whole entities, and ``EntityRuns`` finds each one's last time, event count, kept
    suffix and its members' bytes in chunks of the ranks ``3j+1..3j+3``."""
    from featurestore.stores.online_packed import EntityRuns, entity_blocks

    rng = random.Random(seed)
    entities = [sorted(rng.randrange(0, 20) for _ in range(rng.choice([1, 2, 3, 4, 7, 10]))) for _ in range(rng.randrange(1, 8))]
    cut = rng.choice([None, 0, 5, 10, 25])
    batches, want = _runs_batches(rng, entities, cut)
    got = []
    for block in entity_blocks(iter(batches)):
        runs = EntityRuns(block, cut)
        ids = block.column("__fs_e").to_pylist()
        assert [ids[s] for s in runs.starts] == list(range(len(got), len(got) + len(runs.starts)))
        for i in range(len(runs.starts)):
            chunks = runs.chunks(i, 3)
            assert runs.packed(i) == b"".join(c for _, c in chunks)
            got.append((runs.last[i], runs.counts[i], runs.kept[i], chunks))
    assert got == want


def test_entity_runs_refuse_rows_out_of_entity_and_rank_order():
    from featurestore.stores.online_packed import EntityRuns, entity_blocks

    def batch(ranks):
        n = len(ranks)
        return pa.record_batch({"__fs_r": pa.array(ranks, pa.int64()), "__fs_ts": pa.array([0] * n, pa.int64()),
                                "__fs_p": pa.array(["x"] * n, pa.string())})

    with pytest.raises(ValueError):
        list(entity_blocks(iter([batch([2, 3])])))
    with pytest.raises(ValueError):
        EntityRuns(batch([1, 2, 4, 1]), None)
