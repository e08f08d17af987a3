"""Online serving: lookup latency (1 entity x 50 features from 5 views; 100 entities) and materialize rate.

Data (numpy, seeded): ``entities`` int64 users, ~12 events each over the 3 days before ``END``, the
latest one within the last 12 h (so every feature is visible under the 1 d TTL at request time), ten
float columns ``f0..f9``. Five views ``v0..v4``, each 10 ``Latest`` features (TTL 1 d) - the shape of
the Feast measurement in FIELD-NOTES. Our repo and a Feast 0.67 repo read the same Parquet file.

Contenders, all in this process, against the same Redis (``FEATURESTORE_REDIS_URL`` or
redis://127.0.0.1:6390/0):

* ours: ``FeatureStore.get_online_features(rows, features=[50 refs], request_time=q).to_dict()`` after
  ``materialize(end=END)``: one pipeline of the views' markers and one read script per (view, entity),
  decoding, request-time computation.
* floor: raw redis-py ``pipeline(transaction=False)`` of the same data with plain commands: per (view,
  entity) ``HMGET`` of the meta and ``ZRANGE`` of the raw events (every entity here is sparse, so that is
  what the read script returns), plus the markers; executed, bytes back, no decoding.
* the read scripts alone: what ours sends (markers + one ``EVALSHA`` per (view, entity)), not decoded.
* Feast 0.67: ``get_online_features(features=..., entity_rows=..., full_feature_names=True).to_dict()``
  with its ``redis`` online store (after ``materialize``); sqlite if the redis store cannot be set up.

Latency: per call ``perf_counter`` around the whole call; ``lookups`` calls per round after a warm-up,
rounds interleaved between contenders; p50/p99 per round, reported as the median over rounds. The
garbage collector is left on (as in a server); its share of the tail shows in the p99.
Materialize: ours ``materialize(end=None)`` (every offline event lands in Redis) and
``materialize(end=END)`` (the production form: events of the last TTL only), rows/s = stored events per
second; floor = the very keys, fields and members ours wrote (read back, untimed), written again with
pipelined plain commands (``DEL``, ``HSET``/``ZADD``, ``PEXPIREAT``), no computation; Feast
``materialize(start, end)`` (one row per entity and view: Feast keeps only the latest).
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import (DATA_ROOT, compare_numeric, drop_keys, interleaved, latencies, log, percentile,  # noqa: F401
                          redis_url, summarize, timed)

SCALES = {
    "tiny": dict(entities=2_000, events_per_entity=12, lookups=300, rounds=2, feast_rounds_100=1),
    "small": dict(entities=20_000, events_per_entity=12, lookups=1_000, rounds=3, feast_rounds_100=1),
    "full": dict(entities=100_000, events_per_entity=12, lookups=2_000, rounds=3, feast_rounds_100=1),
}
SEED = 4242
END_MS = int(pd.Timestamp("2026-10-01T00:00:00Z").value // 1_000_000)
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
VIEWS, COLS = 5, 10
REQUEST_MS = END_MS + 60_000
FLOOR_READ = "floor: redis-py pipeline HMGET + ZRANGE per (view, entity)"
FLOOR_WRITE = "floor: pipelined DEL/HSET/ZADD/PEXPIREAT of the same keys"

DEFINITIONS = '''\
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
profile = Source(
    schema={{"user_id": "int64", {cols}, "ts": "timestamp"}},
    timestamp="ts",
    batch=ParquetFiles({path!r}),
)
{views}
'''
VIEW = '''
v{i} = FeatureView(entities=[user], source=profile, ttl="1d",
                   features=[{feats}])
'''

FEAST_DEFS = '''\
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
profile = FileSource(name="profile", path={path!r}, timestamp_field="ts")
VIEWS = [FeatureView(name=f"v{{i}}", entities=[user], ttl=timedelta(days=1), source=profile,
                     schema=[Field(name=f"f{{j}}", dtype=Float64) for j in range({cols})])
         for i in range({views})]
'''

FEAST_YAML = """\
project: {project}
registry: {repo}/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
{online}
entity_key_serialization_version: 3
"""


def feature_refs() -> List[str]:
    return [f"v{i}:v{i}_f{j}" for i in range(VIEWS) for j in range(COLS)]


def feast_refs() -> List[str]:
    return [f"v{i}:f{j}" for i in range(VIEWS) for j in range(COLS)]


# -- data ---------------------------------------------------------------------------------------------
def generate(path: Path, entities: int, per: int, seed: int = SEED) -> int:
    if path.exists():
        return pq.ParquetFile(path).metadata.num_rows
    rng = np.random.default_rng(seed)
    n = entities * per
    key = np.repeat(np.arange(entities, dtype=np.int64), per)
    ts = END_MS - rng.integers(1, 3 * DAY_MS, n, dtype=np.int64)
    last = np.arange(entities) * per  # one event per entity within the last 12 h
    ts[last] = END_MS - rng.integers(1, 12 * HOUR_MS, entities, dtype=np.int64)
    _, first = np.unique(key * (4 * DAY_MS) + (END_MS - ts), return_index=True)  # no ties
    key, ts = key[first], ts[first]
    order = np.argsort(ts, kind="stable")
    key, ts = key[order], ts[order]
    m = len(key)
    cols = {f"f{j}": pa.array(rng.random(m).round(6), pa.float64()) for j in range(COLS)}
    table = pa.table({"user_id": pa.array(key, pa.int64()), **cols,
                      "ts": pa.array(ts * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return m


def make_store(work: Path, path: Path, project: str):
    from featurestore import FeatureStore
    from featurestore.config import load_config

    repo = work / "ours"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "definitions").mkdir(parents=True)
    cols = ", ".join(f'"f{j}": "float64"' for j in range(COLS))
    views = "".join(VIEW.format(i=i, feats=", ".join(f'Latest("f{j}", name="v{i}_f{j}")' for j in range(COLS)))
                    for i in range(VIEWS))
    (repo / "definitions" / "bench_online.py").write_text(DEFINITIONS.format(cols=cols, path=str(path), views=views))
    (repo / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    cfg = dataclasses.replace(load_config(repo), project=project, redis_url=redis_url())
    return FeatureStore(repo, config=cfg)


def make_feast(work: Path, path: Path, project: str, online_kind: str):
    import warnings

    import feast

    # ibis 12 on duckdb 2.0 calls the deprecated fetch_arrow_table(); importing feast resets filters.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    repo = work / f"feast_{online_kind}"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    defs = repo / "bench_defs.py"
    defs.write_text(FEAST_DEFS.format(path=str(path), cols=COLS, views=VIEWS))
    if online_kind == "redis":
        from urllib.parse import urlsplit

        u = urlsplit(redis_url())
        db = (u.path or "/0").strip("/") or "0"
        online = f"  type: redis\n  connection_string: \"{u.hostname}:{u.port or 6379},db={db}\""
    else:
        online = f"  type: sqlite\n  path: {repo}/online.db"
    (repo / "feature_store.yaml").write_text(FEAST_YAML.format(project=project, repo=repo, online=online))
    spec = importlib.util.spec_from_file_location(f"bench_online_feast_{online_kind}", defs)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = feast.FeatureStore(repo_path=str(repo))
    store.apply([module.user, module.profile, *module.VIEWS])
    return store


# -- latency ------------------------------------------------------------------------------------------
def read_back(client, pattern: str):
    """Every key under ``pattern`` as ``(key, type, content, pexpireat)`` (hash: field -> value; zset:
    member -> score), and the bytes of its fields and members."""
    keys = list(client.scan_iter(match=pattern, count=5000))
    image, size = [], 0
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        pipe = client.pipeline(transaction=False)
        for k in chunk:
            pipe.type(k)
            pipe.pexpiretime(k)
        meta = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for j, k in enumerate(chunk):
            if meta[2 * j] == b"hash":
                pipe.hgetall(k)
            else:
                pipe.zrange(k, 0, -1, withscores=True)
        for j, (k, content) in enumerate(zip(chunk, pipe.execute())):
            kind = meta[2 * j]
            if kind == b"hash":
                size += sum(len(f) + len(v) for f, v in content.items())
            else:
                content = dict(content)
                size += sum(len(m) for m in content)
            image.append((k, kind, content, meta[2 * j + 1]))
    return image, size


def write_image(client, image, batch: int = 500) -> None:
    """Write ``image`` (see :func:`read_back`) with pipelined plain commands, ``batch`` keys per round trip."""
    pipe = client.pipeline(transaction=False)
    for i, (k, kind, content, at) in enumerate(image):
        pipe.delete(k)
        if kind == b"hash":
            pipe.hset(k, mapping=content)
        else:
            pipe.zadd(k, content)
        if at is not None and at > 0:
            pipe.pexpireat(k, at)
        if i % batch == batch - 1:
            pipe.execute()
    pipe.execute()


def run(scale: str, repeat: int = 3, with_feast: bool = True, profile: bool = True) -> Dict[str, object]:
    import redis

    from featurestore import online as ol
    from featurestore.stores import online_redis as orr

    p = SCALES[scale]
    work = DATA_ROOT / f"online-{scale}"
    path = work / "data" / "profile.parquet"
    n_events = generate(path, p["entities"], p["events_per_entity"])
    project = f"bench_online_{os.getpid()}"
    client = redis.Redis.from_url(redis_url())
    client.ping()
    out: Dict[str, object] = {"scale": scale, "params": {**p, "events": n_events, "views": VIEWS,
                                                         "features_per_view": COLS, "seed": SEED, "repeat": repeat},
                              "redis_url": redis_url(), "project": project}
    fs = make_store(work, path, project)
    try:
        t_bf, _ = timed(lambda: fs.backfill())
        log(f"online: backfill (setup) {t_bf:.1f}s; {n_events:,} events x {VIEWS} views, {p['entities']:,} entities")

        # ---- materialize ----
        mat = {}
        last = {}

        def ours_all():
            r = fs.materialize(end=None)
            last["all"] = r
            return r

        def ours_end():
            r = fs.materialize(end=END_MS)
            last["end"] = r
            return r

        timings = interleaved({"ours materialize(end=None)": ours_all}, repeat)
        rows_all = sum(r.events for r in last["all"])
        # The floor: the same keys, fields and members, written with pipelined plain commands (read back
        # once, untimed): per entity key DEL, then HSET (tiles hash) or ZADD (raw and prefix zsets), and
        # PEXPIREAT where ours set an expiry. No computation.
        image, value_bytes = read_back(client, f"{orr.KEY_PREFIX}:{project}:*")
        keys = [k for k, *_ in image]

        def floor_write():
            write_image(client, image)

        timings.update(interleaved({"ours materialize(end=END)": ours_end, FLOOR_WRITE: floor_write}, repeat))
        rows_end = sum(r.events for r in last["end"])
        mat["timings"] = {k: v.as_json() for k, v in timings.items()}
        mat["rows"] = {"ours materialize(end=None)": rows_all, "ours materialize(end=END)": rows_end,
                       FLOOR_WRITE: rows_all}
        mat["keys"] = len(keys)
        mat["value_bytes_end_none"] = value_bytes
        mat["rows_per_second"] = {k: round(mat["rows"][k] / timings[k].best) for k in timings}
        mat["keys_per_second"] = {"ours materialize(end=None)": round(len(keys) / timings["ours materialize(end=None)"].best),
                                  FLOOR_WRITE: round(len(keys) / timings[FLOOR_WRITE].best)}
        mat["source_rows_per_second_end"] = round(n_events * VIEWS / timings["ours materialize(end=END)"].best)
        del image
        if profile:
            from bench.pit import cprofile

            mat["cprofile_ours_end_none"] = cprofile(lambda: fs.materialize(end=None), top=30)
        fs.materialize(end=END_MS)  # the state the lookups read
        out["materialize"] = mat

        # ---- lookups ----
        rng = np.random.default_rng(SEED + 1)
        refs = feature_refs()
        n_l = p["lookups"]
        batches = {1: [rng.integers(0, p["entities"], 1).tolist() for _ in range(n_l)],
                   100: [rng.integers(0, p["entities"], 100).tolist() for _ in range(n_l)]}
        view_names = [f"v{i}" for i in range(VIEWS)]

        def ours_lookup(ids):
            return fs.get_online_features([{"user_id": k} for k in ids], features=refs,
                                          request_time=REQUEST_MS).to_dict()

        views_key = orr.views_key(project)
        windows = {v: ol.view_windows(fs.compiled(v)) for v in view_names}
        online = orr.for_store(fs)

        def floor_lookup(ids):
            # the same data with plain commands: every entity here is sparse (12 events), so the read
            # script returns its meta and its whole raw zset
            pipe = client.pipeline(transaction=False)
            pipe.hmget(views_key, view_names)
            for k in ids:
                for v in view_names:
                    t_key, r_key, _ = orr.entity_keys(orr.entity_base(project, v, [k]))
                    pipe.hmget(t_key, "_", "T")
                    pipe.zrange(r_key, 0, -1)
            return pipe.execute()

        def ours_sends(ids):
            args = {v: ol.read_plan(windows[v], REQUEST_MS).script_args() for v in view_names}
            return online.read(view_names, [(orr.entity_base(project, v, [k]), args[v])
                                            for k in ids for v in view_names])

        contenders = {"ours": ours_lookup, FLOOR_READ: floor_lookup, "read scripts alone (what ours sends)": ours_sends}
        feast_store = None
        if with_feast:
            try:
                import feast  # noqa: F401

                for kind in ("redis", "sqlite"):
                    try:
                        feast_store = make_feast(work, path, f"bench_online_feast_{os.getpid()}", kind)
                        import contextlib
                        import io

                        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress
                            t_fm, _ = timed(lambda: feast_store.materialize(
                                start_date=pd.Timestamp(END_MS - 4 * DAY_MS, unit="ms", tz="UTC").to_pydatetime(),
                                end_date=pd.Timestamp(END_MS + 1000, unit="ms", tz="UTC").to_pydatetime()))
                        out["feast_online_store"] = kind
                        mat["feast_materialize"] = {
                            "online_store": kind, "seconds": round(t_fm, 3),
                            "source_rows": n_events * VIEWS, "entity_rows_written": p["entities"] * VIEWS,
                            "source_rows_per_second": round(n_events * VIEWS / t_fm),
                            "entity_rows_written_per_second": round(p["entities"] * VIEWS / t_fm)}
                        log(f"  Feast materialize ({kind}): {t_fm:.2f}s")
                        break
                    except Exception as exc:  # noqa: BLE001
                        out.setdefault("feast_errors", {})[kind] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                        log(f"  Feast {kind} online store failed: {out['feast_errors'][kind]}")
                        feast_store = None
            except ImportError as exc:
                out["feast_errors"] = {"import": str(exc)}
        frefs = feast_refs()
        if feast_store is not None:
            def feast_lookup(ids, _s=feast_store):
                return _s.get_online_features(features=frefs, entity_rows=[{"user_id": k} for k in ids],
                                              full_feature_names=True).to_dict()
            contenders["Feast 0.67"] = feast_lookup

        # equality: ours vs Feast on 200 entities (Feast does not enforce the TTL on reads; the data keeps
        # every entity's latest event inside it, so both must agree), and ours vs a decoded floor read.
        checks = {}
        ids = rng.integers(0, p["entities"], 200).tolist()
        mine = ours_lookup(ids)
        nonnull = sum(1 for r in refs for v in mine[r.split(":")[1]] if v is not None)
        checks["ours_nonnull_values"] = f"{nonnull}/{len(refs) * len(ids)}"
        if feast_store is not None:
            theirs = contenders["Feast 0.67"](ids)
            per = [compare_numeric(mine[f"v{i}_f{j}"], theirs[f"v{i}__f{j}"])
                   for i in range(VIEWS) for j in range(COLS)]
            checks["ours_vs_feast"] = {"equal": all(c["equal"] for c in per),
                                       "mismatches": sum(c["mismatches"] for c in per),
                                       "values": len(refs) * len(ids)}
        out["checks"] = checks

        lat: Dict[str, Dict[str, object]] = {}
        for size in (1, 100):
            rounds: Dict[str, List[List[float]]] = {k: [] for k in contenders}
            for r in range(p["rounds"]):
                for name, fn in contenders.items():
                    if name == "Feast 0.67" and size == 100 and r >= p["feast_rounds_100"]:
                        continue
                    gc.collect()
                    xs = latencies(fn, batches[size])
                    rounds[name].append(xs)
                    log(f"  {size} entit{'y' if size == 1 else 'ies'} {name}: p50 {percentile(xs, 50) * 1e3:.3f} ms,"
                        f" p99 {percentile(xs, 99) * 1e3:.3f} ms (round {r + 1})")
            lat[str(size)] = {k: summarize(v) for k, v in rounds.items() if v}
        out["lookups"] = lat
        if profile:
            from bench.pit import cprofile

            out["cprofile_ours_1_entity_x1000"] = cprofile(lambda: [ours_lookup(b) for b in batches[1]], top=25)
            out["cprofile_ours_100_entities_x100"] = cprofile(lambda: [ours_lookup(b) for b in batches[100][:100]],
                                                              top=25)
        if feast_store is not None:
            try:
                feast_store.teardown()
            except Exception as exc:  # noqa: BLE001
                out["feast_teardown_error"] = str(exc)[:200]
    finally:
        out["keys_deleted_after"] = drop_keys(client, f"{orr.KEY_PREFIX}:{project}:*")
        client.close()
    return out
