"""One rule in every job for an event on which DuckDB's evaluation of a view's expression fails (an integer overflow
in a feature input such as ``qty * 1000000000`` or in a projection such as ``qty * qty``, a division by zero in a
filter): the event is a **dead letter of that view**, one per (event, view), with the same reason in the streaming
job (``tables.view_failure_sql``) and both backfills (``duckdb_sql.backfill_sql``, ``VIEW_FAILED``), naming the view
and the part: it is neither stored in the view's offline table nor applied online, so online = offline holds and
no value DuckDB never computes (a NULL input silently skipped) is ever served; one bad event never halts a backfill.
Other views of the same source keep the event. Stream = DuckDB backfill = Flink backfill, rows and dead letters."""

from __future__ import annotations

import json
import math
import random
import shutil
import uuid
from collections import Counter

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import (JOB_TIMEOUT_S, assert_backfills_agree, assert_online_equals_offline, assert_same_rows,
                                  backfill_letters, create_topic, dead_letters, drop_project, offline_table, produce)

T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SCHEMA = {"user_id": "string", "qty": "int64", "ts": "timestamp"}
DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")

plain = FeatureView(entities=[user], source=events,
                    features=[Aggregation("qty", "sum", "1h", name="qty_1h"), Aggregation("*", "count", "1h", name="n_1h")])
scaled = FeatureView(entities=[user], source=events,
                     features=[Latest("qty * 1000000000", name="nano"),
                               Aggregation("qty * 1000000000", "max", "1h", name="nano_1h"),
                               Aggregation("*", "count", "1h", name="m_1h")])
squared = FeatureView(entities=[user], source=events, projections={{"sq": "qty * qty"}},
                      features=[Latest("sq"), Aggregation("sq", "max", None, name="top")])
picky = FeatureView(entities=[user], source=events, filter="100 % qty <> 1",
                    features=[Aggregation("qty", "sum", "1h", name="picked_1h")])
'''
FEATURE_FAILS = 10**10  # qty * 1e9 overflows BIGINT (and qty * qty)
PROJECTION_FAILS = 4 * 10**9  # qty * qty overflows, qty * 1e9 does not
FEATURE_PART = "feature 'nano', 'nano_1h' (qty * 1000000000): an integer overflow"
SCALED_REASON = f"view 'scaled': {FEATURE_PART}"
SQUARED_REASON = "view 'squared': projection 'sq' (qty * qty): an integer overflow"
PICKY_REASON = "view 'picky': filter (100 % qty <> 1): a division by zero"
VIEWS = ("plain", "scaled", "squared", "picky")


def expected_letters(events) -> Counter:
    """(reason prefix, event time) of every dead letter: one per event and view its expressions fail on."""
    out = Counter()
    for e in events:
        q = e["qty"]
        if q == FEATURE_FAILS:
            out[(SCALED_REASON, e["ts"])] += 1
        if q is not None and abs(q) > 3037000499:
            out[(SQUARED_REASON, e["ts"])] += 1
        if q == 0:
            out[(PICKY_REASON, e["ts"])] += 1
    return out


def by_prefix(letters: Counter) -> Counter:
    """``letters`` ((reason, event time) counts) with each reason cut to the prefix it starts with."""
    out = Counter()
    for (reason, at), n in letters.items():
        prefix = next((p for p in (SCALED_REASON, SQUARED_REASON, PICKY_REASON) if reason.startswith(p)), reason)
        out[(prefix, at)] += n
    return out


def _events(n: int = 80):
    rng = random.Random(3)
    out = []
    for i in range(n):
        qty = rng.choice([None, rng.randrange(-50, 50)])
        if i % 11 == 4:
            qty = PROJECTION_FAILS
        elif i % 13 == 6:
            qty = FEATURE_FAILS
        elif i % 17 == 9:
            qty = 0  # 100 % qty fails
        out.append({"user_id": f"u{rng.randrange(4)}", "qty": qty, "ts": T0_MS + rng.randrange(3_600_000)})
    return out


def _repo(root, topic: str, project: str, events) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(schema=SCHEMA, topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events],
                                                                                         pa.int64()),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_stream_and_both_backfills_dead_letter_an_event_per_view_it_fails_in_alike(tmp_path, redis_client, kafka_admin):
    events = _events()
    want = expected_letters(events)
    assert {p for p, _ in want} == {SCALED_REASON, SQUARED_REASON, PICKY_REASON}
    assert any(n > 0 for (p, at), n in want.items() if p == SCALED_REASON and (SQUARED_REASON, at) in want)  # 2 views
    suffix = uuid.uuid4().hex[:10]
    topic, project = f"fs_failing_{suffix}", f"t_failing_{suffix[:8]}"
    store = _repo(tmp_path / "stream", topic, project, events)
    create_topic(kafka_admin, topic, partitions=2)
    produce(topic, [(e["user_id"].encode(), datagen.to_json_record(e, "ts", list(SCHEMA))) for e in events])
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        # one dead letter per (event, view) a part fails on, naming the view and the part
        streamed = Counter((r["reason"], json.loads(r["payload"])["ts"]) for r in dead_letters(store))
        assert by_prefix(streamed) == want, streamed
        # the views store exactly the events their expressions do not fail on; another view keeps them all
        stored = {v: sorted(r["ts"] for r in offline_table(store, v).to_pylist()) for v in ("plain", "scaled", "squared")}
        ts = lambda rows: sorted(pd.Timestamp(e["ts"], unit="ms", tz="UTC") for e in rows)  # noqa: E731
        assert stored["plain"] == ts(events)
        assert stored["scaled"] == ts(e for e in events if e["qty"] != FEATURE_FAILS)
        assert stored["squared"] == ts(e for e in events if e["qty"] not in (FEATURE_FAILS, PROJECTION_FAILS))
        # SPEC 3.2 on the stream's data: online = offline, the failing events in neither
        users = sorted({e["user_id"] for e in events})
        times = [T0_MS + k * 600_000 for k in range(1, 8)]
        requests = pd.DataFrame({"user_id": [u for u in users for _ in times], "event_timestamp": pd.to_datetime(
            [q for _ in users for q in times], unit="ms", utc=True)})
        names = ["plain:qty_1h", "plain:n_1h", "scaled:nano", "scaled:nano_1h", "scaled:m_1h", "squared:sq", "squared:top",
                 "picky:picked_1h"]
        assert_online_equals_offline(store, requests, names, at_least=len(requests) // 2)
        # SPEC 3.1: both backfills of the same events store the same rows and dead letters as the stream
        duck = _repo(tmp_path / "duck", topic, project + "d", events)
        shutil.copytree(duck.repo_path, tmp_path / "flink")
        flink = FeatureStore(tmp_path / "flink")
        assert_backfills_agree(duck, flink)
        assert backfill_letters(duck) == streamed
        # the same dead-letter rows: reason and the event's record text (the stream's payload as produced)
        assert letter_rows(flink) == letter_rows(duck)
        assert Counter((r["reason"], r["payload"]) for r in dead_letters(store)) == Counter(
            {(reason, row): n for (reason, row, _), n in letter_rows(duck).items()})
        for view in VIEWS:
            assert_same_rows(offline_table(store, view), offline_table(duck, view), f"{view}: stream vs backfill")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def test_the_duckdb_backfill_dead_letters_an_event_a_view_fails_on_and_stores_the_rest(tmp_path):
    """Not only a later read: the backfill evaluates each computed feature input on the events it stores; the
    filter on the events, the projections on those it would store. Counted in the results and the summary."""
    events = _events()
    store = _repo(tmp_path / "d", "unused", "t_failingd", events)
    results = store.backfill()
    got = {r.view: (r.rows, r.failed) for r in results}
    want = expected_letters(events)
    failed = {v: sum(n for (p, _), n in want.items() if p.startswith(f"view '{v}'")) for v in VIEWS}
    assert got["plain"] == (len(events), 0)
    assert got["scaled"] == (len(events) - failed["scaled"], failed["scaled"]) and failed["scaled"]
    assert got["squared"] == (len(events) - failed["squared"], failed["squared"]) and failed["squared"]
    picked = sum(1 for e in events if e["qty"] and math.fmod(100, e["qty"]) != 1)  # DuckDB's %: the dividend's sign
    assert got["picky"] == (picked, failed["picky"]) and failed["picky"] and picked
    assert by_prefix(backfill_letters(store)) == want
    (line,) = results.summary()
    assert line.startswith(f"source 'events': {sum(want.values())} dead letters (") and SQUARED_REASON in line, line


@pytest.mark.flink
@pytest.mark.slow
def test_the_flink_backfill_keeps_out_what_a_filter_keeps_out(tmp_path):
    """As the DuckDB backfill: a feature input is evaluated on the stored events only, so a filter that keeps the
    failing events out leaves no dead letter."""
    events = _events()
    _repo(tmp_path / "f", "unused", "t_failingf", events)
    defs = tmp_path / "f" / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('scaled = FeatureView(entities=[user], source=events,',
                                             'scaled = FeatureView(entities=[user], source=events, filter="qty < 1000",'))
    for engine in ("flink", "duckdb"):
        fs = FeatureStore(tmp_path / "f")
        (got,) = fs.backfill(views=["scaled"], engine=engine)
        assert got.rows == sum(1 for e in events if e["qty"] is not None and e["qty"] < 1000), engine
        assert got.failed == 0 and not backfill_letters(fs), engine


def test_the_ingest_record_counts_each_event_once_and_a_dead_letter_per_event_and_view(tmp_path):
    """``record_ingest`` (what ``monitor`` reads): records = the source rows read, each once, even one failing in two
    views; dead letters = one per (event, view) (docs/monitoring.md). Was: records = dead letters + the rows of the
    view that kept the most, so an event failing in 'scaled' and 'squared' was two records (and stored in 'plain')."""
    from featurestore.engines.backfill import last_ingest

    events = _events()
    want = expected_letters(events)
    assert any((SQUARED_REASON, at) in want for (p, at) in want if p == SCALED_REASON)  # an event failing in 2 views
    store = _repo(tmp_path / "i", "unused", "t_ingest", events)
    store.backfill()
    got = last_ingest(store, "events")
    assert (got["dead_letters"], got["records"]) == (sum(want.values()), len(events))


def test_a_part_calling_a_volatile_function_backfills(tmp_path):
    """DuckDB refuses ``try`` around a volatile function (``random()``): the call runs once per row before the
    ``try`` (tests/test_backfill_failing_parts.py: an event such a part fails on is a dead letter), so a view
    calling one backfills as before."""
    events = [e for e in _events() if e["qty"] not in (FEATURE_FAILS, PROJECTION_FAILS)]
    _repo(tmp_path / "v", "unused", "t_volatile", events)
    defs = tmp_path / "v" / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('"qty * qty"', '"qty * qty + CAST(random() * 0 AS BIGINT)"'))
    (got,) = FeatureStore(tmp_path / "v").backfill(views=["squared"])
    assert (got.rows, got.failed) == (len(events), 0)


MISREAD_DEFINITIONS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "tag": "string", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
read = FeatureView(entities=[user], source=events, projections={"x": "TRY_CAST(tag AS DOUBLE)"}, features=[Latest("x")])
kept = FeatureView(entities=[user], source=events, filter="TRY_CAST(tag AS DOUBLE) IS NOT NULL",
                   features=[Latest("tag", name="kept_tag")])
branch = FeatureView(entities=[user], source=events,
                     projections={"y": "CASE WHEN tag LIKE '1%' THEN TRY_CAST(tag AS DOUBLE) ELSE 0 END",
                                  "z": "coalesce(TRY_CAST(tag AS BIGINT), IF(tag LIKE '-%', TRY_CAST(tag AS DOUBLE), 1))"},
                     features=[Latest("y"), Latest("z")])
'''
MISREAD = "1_000_000_000_000_000_000_1"  # '_' and over 19 digits: DuckDB reads a wrong float, the Flink jobs flag it
TAGS = [MISREAD, "1_000", "2.5", None, "abc", " 7 ", "-1_2345678901234567890", "12345678901234567890123"]


def _misread_repo(root, n: int = 40, topic: str = "", project: str = ""):
    """The misread views over ``n`` events (tags cycling through TAGS), a stream face on ``topic`` when given."""
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    defs = MISREAD_DEFINITIONS
    if topic:
        defs = defs.replace('batch=ParquetFiles("data/*.parquet"))', f'batch=ParquetFiles("data/*.parquet"), '
                                                                     f'stream=KafkaTopic({topic!r}), watermark_delay="2s")')
        defs = defs.replace("import Entity,", "import Entity, KafkaTopic,")
    (root / "definitions" / "features.py").write_text(defs)
    project = project or f"t_misread_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    tags = [TAGS[i % len(TAGS)] for i in range(n)]
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(n)], "tag": tags,
                             "ts": pa.array([T0_MS + 1000 * i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root), [T0_MS + 1000 * i for i in range(n) if tags[i] in (MISREAD, "-1_2345678901234567890")]


BRANCH_Y = "projection 'y' (CASE WHEN tag LIKE '1%' THEN TRY_CAST(tag AS DOUBLE) ELSE 0 END)"
BRANCH_Z = "projection 'z' (coalesce(TRY_CAST(tag AS BIGINT), IF(tag LIKE '-%', TRY_CAST(tag AS DOUBLE), 1)))"


def branch_letters(store) -> Counter:
    """(reason, event time) of the ``branch`` view's dead letters in the backfill's table."""
    return Counter({k: n for k, n in backfill_letters(store).items() if k[0].startswith("view 'branch'")})


def test_a_text_duckdb_misreads_is_a_dead_letter_of_the_view_in_the_duckdb_backfill_too(tmp_path):
    """A float read from a text with '_' and over 19 digits, which DuckDB misreads (even under TRY_CAST), is flagged by
    the Flink jobs (``TEXT_MISREAD``): the DuckDB backfill dead-letters the same events, in a projection and a filter,
    with the same reason (it stored the misread value)."""
    from featurestore.engines.flink.exprs import TEXT_MISREAD

    store, misread = _misread_repo(tmp_path / "m")
    results = {r.view: r for r in store.backfill()}
    assert [results[v].failed for v in ("read", "kept")] == [len(misread)] * 2 and misread
    want = Counter({(f"view 'read': projection 'x' (TRY_CAST(tag AS DOUBLE)): {TEXT_MISREAD}", at): 1 for at in misread})
    want.update({(f"view 'kept': filter (TRY_CAST(tag AS DOUBLE) IS NOT NULL): {TEXT_MISREAD}", at): 1 for at in misread})
    assert backfill_letters(store) - branch_letters(store) == want


def test_a_text_duckdb_misreads_in_a_branch_is_a_dead_letter_only_where_the_branch_is_taken(tmp_path):
    """A misread text in a CASE/IF branch or a later COALESCE argument: the DuckDB backfill flags it where DuckDB
    evaluates that branch, as the Flink jobs do (their guard, in DuckDB SQL): 'y' reads only texts starting with
    '1' (the misread one, not '-1_...'), 'z' only texts starting with '-' that are no BIGINT (the other way round).
    Was: not flagged in a branch at all, so the DuckDB backfill stored the misread value the stream refuses."""
    from featurestore.engines.flink.exprs import TEXT_MISREAD

    store, _ = _misread_repo(tmp_path / "m")
    (got,) = store.backfill(views=["branch"])
    tags = [TAGS[i % len(TAGS)] for i in range(40)]
    at = lambda tag: [T0_MS + 1000 * i for i in range(40) if tags[i] == tag]  # noqa: E731
    want = Counter({(f"view 'branch': {BRANCH_Y}: {TEXT_MISREAD}", ms): 1 for ms in at(MISREAD)})
    want.update({(f"view 'branch': {BRANCH_Z}: {TEXT_MISREAD}", ms): 1 for ms in at("-1_2345678901234567890")})
    assert branch_letters(store) == want and got.failed == sum(want.values()) == 10
    stored = store.offline.table("branch", "ts").read().to_pylist()
    assert len(stored) == 30 and not any(r["tag"] in (MISREAD, "-1_2345678901234567890") for r in stored)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_the_stream_and_both_backfills_agree_on_a_misread_text_in_a_branch(tmp_path, redis_client, kafka_admin):
    """The three jobs over the same events: the same dead letters (reason, the event's record) and the same rows of
    the views reading a misread text in a CASE/IF branch, a COALESCE argument, a projection and a filter."""
    suffix = uuid.uuid4().hex[:10]
    topic, project = f"fs_misread_{suffix}", f"t_misread_{suffix[:8]}"
    store, misread = _misread_repo(tmp_path / "s", topic=topic, project=project)
    events = pq.read_table(store.repo_path / "data" / "part.parquet").to_pylist()
    create_topic(kafka_admin, topic, partitions=2)
    produce(topic, [(e["user_id"].encode(), datagen.to_json_record(e, "ts", ["user_id", "tag", "ts"])) for e in events])
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        streamed = Counter((r["reason"], r["payload"]) for r in dead_letters(store))
        assert sum(streamed.values()) == 2 * len(misread) + 10 and misread, streamed  # read, kept; branch's 10
        duck, _ = _misread_repo(tmp_path / "d", topic=topic, project=project + "d")
        shutil.copytree(duck.repo_path, tmp_path / "f")
        flink = FeatureStore(tmp_path / "f")
        assert_backfills_agree(duck, flink)
        assert letter_rows(flink) == letter_rows(duck)
        assert Counter({(reason, row): n for (reason, row, _), n in letter_rows(duck).items()}) == streamed
        for view in ("read", "kept", "branch"):
            assert_same_rows(offline_table(store, view), offline_table(duck, view), f"{view}: stream vs backfill")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.flink
@pytest.mark.slow
def test_both_backfills_agree_on_a_text_duckdb_misreads(tmp_path):
    store, _ = _misread_repo(tmp_path / "d")
    shutil.copytree(store.repo_path, tmp_path / "f")
    assert_backfills_agree(store, FeatureStore(tmp_path / "f"))


ROWS_DEFINITIONS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "score": "float64", "at": "timestamp", "ts": "timestamp"},
                timestamp="ts", batch=ParquetFiles("data/*.parquet"))
squared = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty"}, features=[Latest("sq")])
'''


def _rows_repo(root):
    """Events whose every fourth overflows ``qty * qty``, with a float and a timestamp value (microseconds)."""
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(ROWS_DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: t_rows_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n")
    events = [{"user_id": f"u{i % 3}", "qty": PROJECTION_FAILS if i % 4 == 1 else i, "score": [2.5, 1e20, None, -0.125][i % 4],
               "at": pd.Timestamp(T0_MS * 1000 + 1234567 * i, unit="us", tz="UTC") if i % 3 else None,
               "ts": T0_MS + 1000 * i} for i in range(12)]
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events], pa.int64()),
                             "score": pa.array([e["score"] for e in events], pa.float64()),
                             "at": pa.array([e["at"] for e in events], pa.timestamp("us", tz="UTC")),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root), events


def letter_rows(store) -> Counter:
    """(reason, row text, event time) of every row of the backfill's dead-letter table of 'events'."""
    from featurestore.engines.backfill import dead_letter_table

    table = dead_letter_table(store, "events")
    return Counter((r["reason"], r["row"], r["event_time_ms"]) for r in table.read().to_pylist())


def test_the_duckdb_backfill_writes_a_dead_letter_row_as_the_stream_face_record_of_the_event(tmp_path):
    """The row text of a backfill dead letter is the event's JSON record on the stream face
    (``datagen.to_json_record``: schema order, the event time in epoch ms, a timestamp value ISO-8601 with its
    microseconds), so the stream's payload and both backfills' rows read alike. Was: DuckDB's to_json of the row
    (the event time as '2026-03-01 00:00:01+00'), Flink's JSON_OBJECT (keys sorted, raw integers)."""
    from featurestore.engines.flink.exprs import OVERFLOW

    store, events = _rows_repo(tmp_path / "r")
    store.backfill()
    want = Counter((f"view 'squared': projection 'sq' (qty * qty): {OVERFLOW}",
                    datagen.to_json_record(e, "ts", ["user_id", "qty", "score", "at", "ts"]).decode(), e["ts"])
                   for e in events if e["qty"] == PROJECTION_FAILS)
    assert letter_rows(store) == want and len(want) == 3


@pytest.mark.flink
@pytest.mark.slow
def test_both_backfills_write_the_same_dead_letter_rows(tmp_path):
    store, _ = _rows_repo(tmp_path / "d")
    shutil.copytree(store.repo_path, tmp_path / "f")
    flink = FeatureStore(tmp_path / "f")
    assert_backfills_agree(store, flink)
    assert letter_rows(flink) == letter_rows(store) and sum(letter_rows(store).values()) == 3


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_the_stream_shows_a_row_that_is_no_event_as_both_backfills_write_it(tmp_path, redis_client, kafka_admin):
    """A row that is no event (an event time out of range, a timestamp value beyond year 9999 or before year 1): the
    backfills' row (tests/test_event_times.py, one form for both) produced as the stream face's record is the
    stream's dead letter with the same reason and that text as its payload."""
    from tests.test_event_times import NOT_EVENTS, _not_events_repo

    suffix = uuid.uuid4().hex[:10]
    topic, project = f"fs_notev_{suffix}", f"t_notev_{suffix[:8]}"
    duck = _not_events_repo(tmp_path / "d")
    duck.backfill()
    rows = Counter((r["reason"], r["row"]) for r in dead_letter_rows(duck))
    (tmp_path / "s").mkdir()
    shutil.copytree(tmp_path / "d" / "definitions", tmp_path / "s" / "definitions")
    (tmp_path / "s" / "definitions" / "features.py").write_text(NOT_EVENTS.replace(
        'batch=ParquetFiles("data/*.parquet"))', f'batch=ParquetFiles("data/*.parquet"), stream=KafkaTopic({topic!r}), '
        'watermark_delay="2s")').replace("ParquetFiles, Source", "KafkaTopic, ParquetFiles, Source"))
    (tmp_path / "s" / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    store = FeatureStore(tmp_path / "s")
    create_topic(kafka_admin, topic, partitions=1)
    produce(topic, [(b"k", row.encode()) for (_, row) in sorted(rows)])
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert Counter((r["reason"], r["payload"]) for r in dead_letters(store)) == rows
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def dead_letter_rows(store):
    from featurestore.engines.backfill import dead_letter_table

    return dead_letter_table(store, "events").read().to_pylist()
