"""Materialize's vectorised path (members packed by DuckDB: ``featurestore.stores.online_packed``, tiles
from DuckDB partials, hot entities staged in chunks) leaves the very Redis image the per-entity path
(``FEATURESTORE_MATERIALIZE_VECTOR=0``: every member formatted by Python, every entity built by the
kernel event by event) leaves: every key, field, member, score and expiry, byte for byte, for every
view of the random repo, on random events with hot keys, ties, nulls, +-0.0, NaN, infinities, huge and
tiny floats, and unicode / escaped strings in count_distinct, first/last and latest; with staging
chunks small enough that hot entities are written in many chunks.
"""

import random
import time

import pandas as pd
import pytest

from featurestore.kernel import entity as kentity
from featurestore.kernel.partials import _SPLICE, Encoded, dumps_row
from featurestore.store import FeatureStore
from featurestore.stores import online_materialize as om
from featurestore.stores import online_redis as orr
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


def _image(client, project: str) -> dict:
    out = {}
    prefix = f"fs:{project}:"
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode()[len(prefix):]
        if name == "_views":
            continue
        kind = client.type(key)
        content = client.hgetall(key) if kind == b"hash" else client.zrange(key, 0, -1, withscores=True)
        out[name] = (kind, sorted(content.items()) if isinstance(content, dict) else content,
                     client.pexpiretime(key))
    return out


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
