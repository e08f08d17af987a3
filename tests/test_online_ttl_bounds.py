"""SPEC §5: "Redis ... with TTLs so memory is bounded by the largest window and view TTL". Random views (finite
windows, unbounded windows, latest features with and without a TTL) are materialized and pushed to; then every
key of the project is measured with PEXPIRETIME against a bound derived here from the definitions alone (not
from the code's ``retention``):

* a view whose every window is finite (latest features count with their TTL) keeps no key beyond
  ``max(write time, the entity's last event) + R + 10 min``, R = its largest window or TTL, and every key of it
  expires (none without a TTL: memory bounded);
* a view with an unbounded window, or a latest feature without a TTL, needs its state forever: no TTL.
"""

from __future__ import annotations

import random
import time
import uuid

import pandas as pd
import pytest

pytestmark = pytest.mark.redis

SLACK_MS = 10 * 60 * 1000  # docs/online-store.md, "Retention": keys expire R + 10 min after the last event
WINDOWS = {"10m": 600_000, "1h": 3_600_000, "2h": 7_200_000, None: None}
TTLS = {None: None, "30m": 1_800_000, "3h": 10_800_000}


def random_views(rng: random.Random, n: int):
    """[(name, definition text, R in ms or None when the view keeps state forever)]"""
    out = []
    for i in range(n):
        windows = rng.sample(list(WINDOWS), rng.randint(0, 2))
        latest = rng.random() < 0.6 or not windows
        ttl = rng.choice(list(TTLS)) if latest else None  # (a TTL without latest features is an error)
        feats = [f'Aggregation("qty", "{rng.choice(["sum", "count", "max"])}", {w!r}, name="a{j}")'
                 for j, w in enumerate(windows)]
        if latest:
            feats.append('Latest("qty", name="q")')
        spans = [WINDOWS[w] for w in windows] + ([TTLS[ttl]] if latest else [])
        r = None if any(s is None for s in spans) else max(spans)
        ttl_arg = f", ttl={ttl!r}" if ttl else ""
        out.append((f"v{i}", f"v{i} = FeatureView(entities=[user], source=events, features=[{', '.join(feats)}]"
                             f"{ttl_arg})", r))
    return out


def check_keys(client, project: str, views, last_ms: dict, written: dict, context: str):
    """``written``: entity -> (ms before, ms after) the write that last wrote its keys."""
    for name, _, r in views:
        keys = list(client.scan_iter(match=f"fs:{project}:{name}:*", count=1000))
        assert keys, f"{context}: view {name} has no keys"
        for k in keys:
            at = client.pexpiretime(k)
            if r is None:
                assert at == -1, f"{context}: {k} of a view that keeps state forever expires at {at}"
                continue
            entity = k.decode().split("{", 1)[1].rsplit("}", 1)[0]
            last = last_ms[entity]
            t0, t1 = written[entity]
            lo, hi = max(t0, last) + r + SLACK_MS, max(t1, last) + r + SLACK_MS
            assert at != -1, f"{context}: {k} of view {name} (R {r} ms) never expires: memory unbounded"
            assert lo - 2000 <= at <= hi + 2000, (f"{context}: {k} of view {name} expires at {at}, not within "
                                                  f"[{lo}, {hi}] (last event {last}, R {r} ms)")


@pytest.mark.parametrize("seed", [1, 2])
def test_key_ttls_after_materialize_and_push_are_bounded_by_window_and_ttl(tmp_path, seed, redis_client):
    from featurestore.store import FeatureStore
    from tests.conftest import drop_project

    rng = random.Random(seed)
    views = random_views(rng, 6)
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    project = f"ttl_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    (root / "definitions" / "f.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        'events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts", '
        'batch=ParquetFiles("data/*.parquet"))\n' + "\n".join(text for _, text, _ in views) + "\n")
    now = pd.Timestamp.now(tz="UTC")
    rows = []
    for _ in range(300):
        user = "u0" if rng.random() < 0.3 else f"u{rng.randrange(1, 6)}"  # a hot entity
        ago = rng.choice([rng.uniform(0, 6 * 3600), rng.uniform(0, 600), -rng.uniform(0, 90)])  # a few ahead
        rows.append({"user_id": user, "qty": rng.randint(-3, 9), "ts": now - pd.Timedelta(seconds=ago)})
    pd.DataFrame(rows).to_parquet(root / "data" / "a.parquet")
    fs = FeatureStore(root)
    fs.backfill()
    last = {}
    for r in rows:
        key = f'["{r["user_id"]}"]'
        last[key] = max(last.get(key, -2**62), r["ts"].value // 1_000_000)
    try:
        t0 = int(time.time() * 1000)
        fs.materialize()
        t1 = int(time.time() * 1000)
        written = {e: (t0, t1) for e in last}
        check_keys(redis_client, project, views, last, written, f"seed {seed}, materialize")

        pushed = [{"user_id": u, "qty": 1, "ts": now + pd.Timedelta(seconds=rng.uniform(-7200, 60))}
                  for u in ("u1", "u7", "u7", "u0")]  # an existing entity, a new one, the hot one
        t0 = int(time.time() * 1000)
        fs.push("events", pushed, to="online")
        t1 = int(time.time() * 1000)
        for r in pushed:
            key = f'["{r["user_id"]}"]'
            last[key] = max(last.get(key, -2**62), r["ts"].value // 1_000_000)
            written[key] = (t0, t1)
        check_keys(redis_client, project, views, last, written, f"seed {seed}, push")
    finally:
        drop_project(redis_client, project)


def test_an_entity_whose_meta_hash_is_lost_is_refused_never_served_as_defaults(tmp_path, online_backend):
    """An entity's events stored without its meta hash (``:t`` evicted or deleted, its ``:r``/``:p`` still
    there) was read as NOT_FOUND: counts 0, sums null, although it has events. It is refused now, per entity
    and view; the other entities and views are answered. On a single node and on a Redis Cluster."""
    from featurestore.store import FeatureStore
    from tests.conftest import drop_project

    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    project = f"lost_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    (root / "definitions" / "f.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        'events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts", '
        'batch=ParquetFiles("data/*.parquet"))\n'
        'w = FeatureView(entities=[user], source=events, features=[Aggregation("qty", "count", "2h", name="n")])\n'
        'u = FeatureView(entities=[user], source=events, features=[Aggregation("qty", "count", None, name="n")])\n')
    now = pd.Timestamp.now(tz="UTC")
    rng = random.Random(4)
    pd.DataFrame([{"user_id": f"u{i % 3}", "qty": rng.randint(0, 9), "ts": now - pd.Timedelta(minutes=rng.randrange(1, 100))}
                  for i in range(60)]).to_parquet(root / "data" / "a.parquet")
    fs = FeatureStore(root)
    fs.backfill()
    fs.materialize()
    from featurestore.stores import online_redis

    redis_client = online_redis.for_store(fs).client  # the single node or the cluster (online_backend)
    try:
        for view in ("w", "u"):
            redis_client.delete(f'fs:{project}:{view}:{{["u1"]}}:t')
        resp = fs.get_online_features([{"user_id": "u0"}, {"user_id": "u1"}], features=["w:n", "u:n"],
                                      full_feature_names=True)
        got, statuses = resp.to_dict(), resp.statuses()
        assert got["w__n"][0] == 20 and got["u__n"][0] == 20  # u0 is intact
        assert got["w__n"][1] is None and got["u__n"][1] is None, got  # never 0 (a default)
        assert [statuses["w__n"][1], statuses["u__n"][1]] == ["REFUSED", "REFUSED"], statuses
        assert any("lost" in r and "materialize" in r for r in resp.refusals), resp.refusals
    finally:
        drop_project(redis_client, project)
