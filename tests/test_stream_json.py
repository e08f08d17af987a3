"""JSON values (Feast's Map, Json, Struct, Array) in the Flink jobs: the streaming job carries them like the batch
face and push (one Flink launch), and ``backfill --engine flink`` reads them like the DuckDB backfill (one more). Random events with nested values, hot keys, equal event times and nulls
are produced to Kafka as JSON records (objects and arrays as JSON, a Json document as a string of JSON text);
the offline table the stream writes holds the same values as a DuckDB backfill of the same events from Parquet
(batch = stream; values compared, the text of a number may be spelt differently: Jackson's ``1.0E-300`` for
DuckDB's ``1e-300``), online equals offline, a string that is not JSON text is a dead letter naming the column.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.test_json_values import FEATURES, T0_MS, _events, _write
from tests.test_stream import JOB_TIMEOUT_S, create_topic, dead_letters, drop_project, offline_table, produce

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

DEFS = '''\
from featurestore import Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
profiles = Source(
    schema={{"user_id": "string", "profile": "json", "embedding": "json", "tags": "json", "config": "json",
            "n": "int64", "ts": "timestamp"}},
    timestamp="ts",
    batch=ParquetFiles("data/profiles/*.parquet"),
    stream=KafkaTopic({topic!r}),
    tiebreak=("n",),
)
user_profile = FeatureView(entities=[user], source=profiles, features=[
    Latest("profile"), Latest("embedding"), Latest("tags"), Latest("config"), Latest("n")])
'''


def _repo(root, topic, project, events):
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "defs.py").write_text(DEFS.format(topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    _write(root, events)
    return root


def _record(row: dict) -> bytes:
    rec = {"user_id": row["user_id"], "profile": row["profile"], "embedding": row["embedding"],
           "tags": None if row["tags"] is None else {k: v for k, v in row["tags"]},  # a map: an object
           "config": row["config"], "n": row["n"], "ts": int(row["ts"].value // 1_000_000)}
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _values(table) -> list:
    rows = table.to_pandas().sort_values("n").to_dict("records")
    return [{c: (json.loads(r[c]) if isinstance(r[c], str) else r[c]) if c in FEATURES else r[c]
             for c in ("user_id", "n", *FEATURES)} for r in rows]


def test_stream_carries_json_values_like_the_backfill(tmp_path, redis_client, kafka_admin):
    topic = f"fs_json_{uuid.uuid4().hex[:10]}"
    project = f"t_sjson_{uuid.uuid4().hex[:8]}"
    events = _events(29, n=200)
    empty = events.iloc[:0]
    root = _repo(tmp_path / "repo", topic, project, empty)
    ref_root = _repo(tmp_path / "ref", topic, project, events)
    ref = FeatureStore(ref_root, config=dataclasses.replace(load_config(ref_root), offline_root=str(tmp_path / "ro")))
    ref.backfill()
    create_topic(kafka_admin, topic)
    bad = {**events.iloc[0].to_dict(), "config": "{nope", "n": 10_000}
    produce(topic, [(None, _record(r)) for r in events.to_dict("records")] + [(None, _record(bad))])
    try:
        store = FeatureStore(root)
        store.apply()
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=tmp_path / "ckpt",
                      checkpoint_interval_ms=1000)
        got, want = _values(offline_table(store, "user_profile")), _values(offline_table(ref, "user_profile"))
        assert len(got) == len(events) and got == want
        reasons = [r["reason"] for r in dead_letters(store, "profiles")]
        assert reasons == ["column 'config': not a json"], reasons
        users = [f"u{i}" for i in range(13)]
        q = pd.Timestamp(T0_MS + 41_000, unit="ms", tz="UTC")
        offline = pd.DataFrame(store.get_historical_features(
            pd.DataFrame({"user_id": users, "event_timestamp": [q] * len(users)}),
            features=[f"user_profile:{f}" for f in FEATURES]))
        online = store.get_online_features([{"user_id": u} for u in users],
                                           features=[f"user_profile:{f}" for f in FEATURES], request_time=q).to_dict()
        for f in FEATURES:
            assert online[f] == offline[f].tolist(), f
        assert sum(v is not None for v in online["profile"]) >= 10
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def test_flink_backfill_reads_json_values_like_the_duckdb_backfill(tmp_path):
    """``backfill --engine flink`` over nested Parquet columns (a struct, a list, a map: JSON_STRING of them) and
    a JSON-text column (kept as written): the same values as the DuckDB backfill, and the same dead letter for a
    text that is not JSON."""
    events = _events(31, n=200)
    roots = {}
    for engine in ("duckdb", "flink"):
        root = tmp_path / engine
        (root / "definitions").mkdir(parents=True)
        (root / "definitions" / "defs.py").write_text(DEFS.format(topic="unused").replace(
            "    stream=KafkaTopic('unused'),\n", ""))
        (root / "featurestore.yaml").write_text(f"project: t_fjson_{engine}\ndefinitions: definitions\n")
        _write(root, events, bad_config_row=True)
        roots[engine] = FeatureStore(root)
    results = {engine: store.backfill(engine=engine) for engine, store in roots.items()}
    for engine, (result,) in results.items():
        assert result.dead_letters == 1 and "column 'config': not a json" in result.reasons, (engine, result.reasons)
    got, want = (_values(offline_table(roots[e], "user_profile")) for e in ("flink", "duckdb"))
    assert len(got) == len(events) and got == want
