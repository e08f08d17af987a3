"""Restores across a changed job without a JOB_FORMAT bump: integer + - * (unary minus, abs, // and %) now run as
exact Java functions in the streaming job's SQL (NULL on an overflow; before: Flink's wrapping operators, under the
same definitions and JOB_FORMAT 5). A view whose SQL uses them streams under ``tables.stream_fingerprint`` (its
data fingerprint with ``EXACT_ARITHMETIC`` folded in): a new job name (a snapshot of the former job is not
restored) and a new offline identity (a table the former job wrote is rebuilt by the changed-definition path:
no doubled, no wrapped rows). Other views keep their fingerprint: their restores and tables go on unchanged."""

from __future__ import annotations

import math
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.engines.flink import commit as stream_commit
from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink import tables
from featurestore.store import FeatureStore
from tests.stream_helpers import JOB_TIMEOUT_S, create_topic, dead_letters, drop_project, produce

T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SCHEMA = {"user_id": "string", "qty": "int64", "amount": "float64", "ts": "timestamp"}
DEFINITIONS = '''
from featurestore import Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")

plain = FeatureView(entities=[user], source=events, online=False, projections={{"twice": "amount * 2.0"}},
                    features=[Latest("twice")])
exact = FeatureView(entities=[user], source=events, online=False, filter="qty % 7 <> 3",
                    projections={{"tripled": "qty * 3", "neg": "-qty"}}, features=[Latest("tripled"), Latest("neg")])
'''
BIG = 4_000_000_000_000_000_000  # qty * 3 overflows BIGINT: a dead letter of the view (Flink's operator wrapped it)
N = 40


def _wrap(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def _events():
    return [{"user_id": f"u{i % 5}", "qty": BIG if i in (4, 30) else i - 10, "amount": i / 4, "ts": T0_MS + 1000 * i}
            for i in range(N)]


def _repo(root, topic: str, project: str) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(schema=SCHEMA, topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    return FeatureStore(root)


def _values(view: str, e: dict, wrapping: bool) -> dict:
    """The stored values of event ``e`` in ``view`` (None: not one of its events); ``wrapping``: as the former
    job computed them (Flink's BIGINT operators wrap around)."""
    if view == "plain":
        return {"twice": e["amount"] * 2.0}
    if math.fmod(e["qty"], 7) == 3:  # DuckDB's % has the sign of the dividend (Python's, of the divisor)
        return None
    exact = lambda v: _wrap(v) if wrapping else (v if -2**63 <= v < 2**63 else None)  # noqa: E731
    values = {"tripled": exact(e["qty"] * 3), "neg": exact(-e["qty"])}
    if not wrapping and None in values.values():  # the exact job: a dead letter of the view (DuckDB fails on it)
        return None
    return values


def _former_job_file(store, view: str, path, events) -> None:
    """A Parquet file as the former job's sink wrote for ``view``: its stored columns, partition and offset."""
    from featurestore.engines.duckdb_engine import arrow_schema

    schema = arrow_schema(store.compiled(view))
    rows = []
    for offset, e in enumerate(events):
        values = _values(view, e, wrapping=True)
        if values is not None:
            rows.append({**e, **values, "__kafka_partition": 0, "__kafka_offset": offset})
    cols = {f.name: pa.array([r[f.name] if f.name != "ts" else r["ts"] for r in rows],
                             pa.int64() if f.name == "ts" else f.type) for f in schema}
    cols["ts"] = cols["ts"].cast(pa.timestamp("ms", tz="UTC"))
    cols["__kafka_partition"] = pa.array([0] * len(rows), pa.int32())
    cols["__kafka_offset"] = pa.array([r["__kafka_offset"] for r in rows], pa.int64())
    pq.write_table(pa.table(cols), path)


def _former_fingerprint(monkeypatch):
    """Make the store compute identities as the former job did (its data fingerprint only)."""
    monkeypatch.setattr(tables, "stream_fingerprint", lambda cv: cv.data_fingerprint, raising=False)


def test_only_views_using_exact_integer_functions_get_a_new_stream_fingerprint(tmp_path, monkeypatch):
    store = _repo(tmp_path / "r", "unused", "t_jobfmt_unit")
    plain, exact = store.compiled("plain"), store.compiled("exact")
    assert not tables.uses_exact_arithmetic(plain) and tables.uses_exact_arithmetic(exact)
    assert tables.stream_fingerprint(plain) == plain.data_fingerprint
    assert tables.stream_fingerprint(exact) not in (exact.data_fingerprint, tables.stream_fingerprint(plain))
    assert tables.stream_fingerprint(exact) == tables.stream_fingerprint(store.compiled("exact"))  # stable
    assert streaming.JOB_FORMAT == 5  # not bumped: other views' snapshots stay restorable
    ident = stream_commit.view_identity(store, "exact")
    assert ident.fingerprint == tables.stream_fingerprint(exact)
    assert streaming.staging_dir(store, "exact").name == tables.stream_fingerprint(exact)[:12]
    layout = streaming.staged_layout_of(store, "events", ["plain", "exact"])
    assert [v["fingerprint"] for v in layout["views"]] == [plain.data_fingerprint, tables.stream_fingerprint(exact)]
    new_names = streaming.job_name(store, ["plain", "exact"]), streaming.job_name(store, ["plain"])
    _former_fingerprint(monkeypatch)
    # a job with an exact view is another job (its former snapshots are not restored); one without keeps its name
    assert streaming.job_name(store, ["plain", "exact"]) != new_names[0]
    assert streaming.job_name(store, ["plain"]) == new_names[1]


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_a_former_jobs_snapshot_and_rows_are_not_restored_into_the_exact_job(tmp_path, monkeypatch, redis_client,
                                                                             kafka_admin):
    topic, project = f"fs_jobfmt_{uuid.uuid4().hex[:10]}", f"t_jobfmt_{uuid.uuid4().hex[:8]}"
    store = _repo(tmp_path / "r", topic, project)
    events = _events()
    create_topic(kafka_admin, topic, partitions=1)
    produce(topic, [(e["user_id"].encode(), datagen.to_json_record(e, "ts", list(SCHEMA))) for e in events])
    # the former job (same definitions, JOB_FORMAT 5, wrapping arithmetic) streamed the first half: its offline
    # rows under the data fingerprints, and a snapshot in its checkpoint folder
    with monkeypatch.context() as m:
        _former_fingerprint(m)
        former_name = streaming.job_name(store, ["plain", "exact"])
        for view in ("plain", "exact"):
            path = tmp_path / f"former-{view}.parquet"
            _former_job_file(store, view, path, events[:N // 2])
            table = store.offline.table(view, ts_column="ts")
            table.commit_stream([path], app_id=f"former-{view}", seq=1, topic=topic,
                                fingerprint=store.compiled(view).data_fingerprint,
                                partition_column=stream_commit.PARTITION_COLUMN,
                                offset_column=stream_commit.OFFSET_COLUMN, rows_key=store.compiled(view).rows_fingerprint)
    snapshot = streaming.checkpoint_root(store, former_name) / "savepoints" / "savepoint-former"
    snapshot.mkdir(parents=True)
    (snapshot / "_metadata").write_bytes(b"a snapshot of the former job's operators")  # restoring it would fail
    assert stream_commit.stream_states(store) == {"plain": "continue", "exact": "rebuild"}
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.restored_from is None and result.job_name != former_name
        for view in ("plain", "exact"):
            table = store.offline.table(view, ts_column="ts")
            record = table.manifest()["stream"]
            assert record["fingerprint"] == tables.stream_fingerprint(store.compiled(view))
            cols = ["twice"] if view == "plain" else ["tripled", "neg"]
            rows = sorted((int(r["ts"].timestamp() * 1000), tuple(r[c] for c in cols)) for r in table.read().to_pylist())
            want = sorted((e["ts"], tuple(v[c] for c in cols)) for e in events
                          if (v := _values(view, e, wrapping=False)) is not None)
            assert rows == want, view  # each event once (no doubles), the exact job's values (no wrapped ones)
        letters = [r["reason"] for r in dead_letters(store)]
        assert len(letters) == sum(e["qty"] == BIG for e in events) and all(
            r.startswith("view 'exact': projection 'tripled' (qty * 3): an integer overflow") for r in letters), letters
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
