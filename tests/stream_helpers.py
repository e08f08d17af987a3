"""Shared pieces of the streaming tests (tests/test_stream*.py): the random event set and its stream-face
repo, producing to Kafka, reading offline tables and dead letters back, comparing rows, waiting."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import pandas as pd

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.randomrepo import DEFINITIONS, random_events, write_events, write_repo

REPO_DIR = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("FEATURESTORE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
SEED = 23
N_EVENTS = 400
SCHEMA = ["user_id", "shop", "amount", "qty", "tag", "flag", "ts"]
JOB_TIMEOUT_S = 300
KEYS = ["user_id", "shop"]


# -- services -------------------------------------------------------------------------------------------
# -- a streamed random repo -------------------------------------------------------------------------------
def stream_definitions(topic: str) -> str:
    defs = DEFINITIONS.replace("from featurestore import Aggregation,", "from featurestore import KafkaTopic, Aggregation,")
    out = defs.replace('batch=ParquetFiles("data/events/*.parquet"),',
                       f'batch=ParquetFiles("data/events/*.parquet"),\n    stream=KafkaTopic("{topic}"), watermark_delay="2s",')
    assert out != defs
    return out


def make_repo(root: Path, topic: str, project: str, events: pd.DataFrame, offline: Optional[tuple] = None) -> Path:
    """``offline``: (s3:// root, endpoint) for an offline root on object storage; None: the local default."""
    write_repo(root)
    (root / "definitions" / "features.py").write_text(stream_definitions(topic))
    extra = f"offline_store:\n  root: {offline[0]}\n  s3_endpoint: {offline[1]}\n" if offline else ""
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n{extra}")
    write_events(root, events)
    return root


BASE_MS = 1772323200000  # 2026-03-01T00:00:00Z (tests/randomrepo.BASE)
# (payload, reasons of the dead-letter rows it makes) beyond datagen.malformed_records
EXTRA_BAD = [
    (None, ["empty record (null value)"]),
    (b"", ["not a JSON object"]),
    (b'{"user_id": "u1", "shop": 1.5, "ts": 1772323200000}', ["column 'shop': not a int64"]),
    (b'{"user_id": "u1", "flag": "yes", "ts": 1772323200001}', ["column 'flag': not a bool"]),
    (b'{"user_id": "u1", "qty": "12x", "ts": 1772323200002}', ["column 'qty': not a int64"]),
    (b'{"user_id": "u1", "ts": 1772323200003.5}', ["event time 'ts': not an integer (epoch milliseconds)"]),
    (b'{"shop": 1, "amount": 5.0, "ts": 1772323201000}',
     ["null join key user_id (views amount_stats, qty_stats, profile, profile_forever)",
      "null join key user_id (views pair_stats)"]),
]
# An event with a user but no shop: an event of the user views, a null join key of pair_stats (both faces).
NULL_SHOP_EVENT = {"user_id": "u2", "shop": None, "amount": None, "qty": None, "tag": None, "flag": None,
                   "ts": pd.Timestamp("2026-03-01T00:00:02.000123Z")}


def stream_events() -> pd.DataFrame:
    events = random_events(SEED, n=N_EVENTS)
    extra = pd.DataFrame([NULL_SHOP_EVENT]).astype({"shop": "Int64", "qty": "Int64", "flag": "boolean",
                                                     "amount": "float64", "tag": "object"})
    out = pd.concat([events, extra], ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out
DATAGEN_REASONS = {
    "not_json": "not a JSON object", "truncated": "not a JSON object", "empty": "not a JSON object",
    "not_object": "not a JSON object", "missing_ts": "missing event time 'ts'",
    "ts_not_number": "event time 'ts': not an integer (epoch milliseconds)",
    "amount_not_number": "column 'amount': not a float64",
}


def bad_records():
    """(payload or None, [reasons]) of every malformed record sent."""
    out = [(payload, [DATAGEN_REASONS[kind]]) for kind, payload in datagen.malformed_records(14, SEED, with_kinds=True)]
    return out + EXTRA_BAD


def produce(topic: str, records, pause_every: int = 0, pause_s: float = 0.0):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 5, "enable.idempotence": True})
    errors = []
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _m: err and errors.append(err))
        if pause_every and i % pause_every == pause_every - 1:
            producer.flush(30)
            time.sleep(pause_s)
    assert producer.flush(60) == 0 and not errors, f"Kafka delivery failed: {errors[:3]}"


def arrival(events: pd.DataFrame, seed: int):
    """Kafka (key, value) records: the events in shuffled order, malformed records interleaved."""
    rng = random.Random(seed)
    good = [(None if r["user_id"] is None else r["user_id"].encode(), datagen.to_json_record(r, "ts", SCHEMA))
            for r in events.sample(frac=1.0, random_state=seed).to_dict("records")]
    out = list(good)
    for payload, _ in bad_records():
        out.insert(rng.randrange(len(out) + 1), (None, payload))
    return out


def create_topic(admin, topic: str, partitions: int = 3):
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def drop_project(client, project: str):
    keys = list(client.scan_iter(match=f"fs:{project}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


def offline_table(store: FeatureStore, view: str, ts_column: str = "ts"):
    import pyarrow as pa

    table = store.offline.table(view, ts_column=ts_column)
    version = table.version
    assert version is not None, f"no offline table for view {view}"
    files = table.files(version)
    return pa.concat_tables([read_file(table, f) for f in files]) if files else None


def read_file(table, f: str):
    """One file of an offline table as stored, read as an outside reader would (pyarrow; on an s3:// root
    through the root's ``pyarrow.fs.S3FileSystem``)."""
    import pyarrow.parquet as pq

    if table.filesystem is not None:
        return pq.read_table(f.removeprefix("s3://"), filesystem=table.filesystem)
    return pq.read_table(f)


def sorted_table(t):
    return t.sort_by([(c, "ascending") for c in t.column_names])


def assert_same_rows(got, want, what: str, signed_zeros: bool = False):
    """Equal as multisets of rows, schemas equal (a NaN equals NaN; ``signed_zeros``: -0.0 is not 0.0); the
    message shows the rows only one side has."""
    if not signed_zeros and got.num_rows == want.num_rows and sorted_table(got).equals(sorted_table(want)):
        return
    a = Counter(_row_key(r, signed_zeros) for r in got.to_pylist())
    b = Counter(_row_key(r, signed_zeros) for r in want.to_pylist())
    if a == b and got.schema.equals(want.schema):
        return
    extra, missing = list((a - b).elements()), list((b - a).elements())
    raise AssertionError(f"{what}: {got.num_rows} rows vs {want.num_rows}; only in the first: {extra[:5]}; "
                         f"only in the second: {missing[:5]}")


def _row_key(row: dict, signed_zeros: bool) -> tuple:
    """A row as a hashable key that compares floats as values: every NaN alike, zeros by sign if asked."""
    def value(v):
        if isinstance(v, float) and (v != v or (signed_zeros and v == 0)):
            return ("NaN",) if v != v else ("zero", math.copysign(1.0, v))
        return v

    return tuple(sorted((k, value(v)) for k, v in row.items()))


def dead_letters(store: FeatureStore, source: str = "events"):
    import pyarrow as pa

    table = streaming.dead_letter_table(store, source)
    files = table.files(table.version) if table.version is not None else []
    return pa.concat_tables([read_file(table, f) for f in files]).to_pylist() if files else []


def backfill_letters(store: FeatureStore, source: str = "events") -> Counter:
    """(reason, event time in ms) of every row of the backfill's dead-letter table of ``source``."""
    from featurestore.engines.backfill import dead_letter_table

    table = dead_letter_table(store, source)
    rows = table.read().to_pylist() if table.version is not None else []
    return Counter((r["reason"], r["event_time_ms"]) for r in rows)


def assert_backfills_agree(duck: FeatureStore, flink: FeatureStore, views=None, source: str = "events") -> dict:
    """Backfill ``duck`` with DuckDB and ``flink`` (a copy of the repo) with Flink: the same counts per view
    (rows, dead letters, null keys, failing events), the same rows in each view's table and the same dead letters
    (reason, event time). Returns the DuckDB results by view."""
    want = {r.view: r for r in duck.backfill(views=views)}
    got = {r.view: r for r in flink.backfill(views=views, engine="flink")}
    counts = lambda r: (r.rows, r.dead_letters, r.rejected_null_key, r.failed, r.reasons)  # noqa: E731
    assert {v: counts(r) for v, r in got.items()} == {v: counts(r) for v, r in want.items()}
    for view in want:
        a, b = duck.offline.table(view, "ts").read().to_pylist(), flink.offline.table(view, "ts").read().to_pylist()
        assert sorted(map(repr, a)) == sorted(map(repr, b)), view
    assert backfill_letters(flink, source) == backfill_letters(duck, source)
    return want


def expected_dead_letters():
    out = Counter()
    for payload, reasons in bad_records():
        text = None if payload is None else payload.decode("utf-8", errors="replace")
        for reason in reasons:
            out[(text, reason)] += 1
    null_shop = datagen.to_json_record(NULL_SHOP_EVENT, "ts", SCHEMA).decode()
    out[(null_shop, "null join key shop (views pair_stats)")] += 1
    return out


# -- batch = stream ---------------------------------------------------------------------------------------


def _wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"stream job exited ({proc.returncode}) before {what}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _online_values(client, project: str):
    """What every online key of ``project`` holds, by key after the project (entity metas without the
    fingerprint: it names the topic; raw events without their ids), markers, slot sentinels and stream
    progress left out."""
    out = {}
    for key in client.scan_iter(match=f"fs:{project}:*", count=1000):
        k = key.decode()
        if ":_stream:" in k or k.endswith(":_views") or ":_slot:" in k:  # (slot sentinels: a cluster's)
            continue
        if client.type(key) == b"hash":
            value = {f.decode(): v.decode() for f, v in client.hgetall(key).items()}
            meta = json.loads(value.pop("_"))
            meta.pop("fp")
            value["_"] = meta
        else:  # raw events (without their ids: Kafka offsets differ between topics) and prefixes
            value = sorted((json.dumps(json.loads(m)[1:]), score) for m, score in client.zrange(key, 0, -1, withscores=True))
        out[k.split(":", 2)[2]] = value
    return out


def _flink_like_file(path: Path, rows):
    """A view sink's file: (user_id, ts ms, kafka partition, kafka offset) rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table({"user_id": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], pa.timestamp("ms")),
                  "__kafka_partition": pa.array([r[2] for r in rows], pa.int32()),
                  "__kafka_offset": pa.array([r[3] for r in rows], pa.int64())})
    pq.write_table(t, path)


def assert_online_equals_offline(store, requests: pd.DataFrame, names, at_least: int) -> None:
    """SPEC §3.2 per request row: ``get_online_features`` of its entity at its time equals the row of
    ``get_historical_features`` (``tests.compare.same_value``; NaN and NaT read as null); rows the online
    store refuses (before a horizon) are skipped, but at least ``at_least`` rows must be compared."""
    from tests.compare import same_value

    offline = store.get_historical_features(requests, features=names)
    keys = [c for c in requests.columns if c != "event_timestamp"]
    compared = 0
    for i, r in enumerate(requests.to_dict("records")):
        res = store.get_online_features([{k: r[k] for k in keys}], features=names, request_time=r["event_timestamp"])
        if res.refusals:
            continue
        got = res.to_dict()
        for ref in names:
            f = ref.split(":")[1]
            a, e = got[f][0], offline[f].iloc[i]
            e = None if e is pd.NaT or (isinstance(e, float) and e != e) else e
            assert same_value(a, e), f"row {i} {ref} at {r['event_timestamp']}: online {a!r}, offline {e!r}"
        compared += 1
    assert compared >= at_least, f"only {compared} rows answered online (at least {at_least} expected)"


def assert_online_equals_oracle(store, events: pd.DataFrame, what: str) -> None:
    """Every (user, shop 0-2) pair's online values 1 ms after the last event equal the oracle's, view by view."""
    from tests import oracle
    from tests.compare import assert_features_equal

    q = events["ts"].max() + pd.Timedelta("1ms")
    rows = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q}
                         for u in sorted(events["user_id"].dropna().unique()) for s in (0, 1, 2)])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    online = store.get_online_features(rows[KEYS], feature_service="everything", request_time=q).to_df()
    for view in store.repo.views.values():
        assert_features_equal(online, oracle.point_in_time(events, view, rows), view.feature_names,
                              f"online {what}, view {view.name}")
