"""The supported range of event times and bad source rows in the DuckDB backfill (SPEC §2: an event outside
the supported range is a dead letter with a reason, never a crash, a stall or a change to other events'
values). Random event sets plus one event of every extreme kind (tests/randomrepo.extreme_times: epoch
µs/ns/s mistakes, years 9999/10000/2100, int64 extremes, the range bounds and one off, the future bound,
pre-1970 and sub-millisecond digits) in files of three timestamp units; the brute-force oracle (which
re-states the range) judges every feature value. The streaming job is held to the same cases in
tests/test_stream_bad_input.py."""

from __future__ import annotations

import math
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.backfill import dead_letter_table
from featurestore.errors import ConfigError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import (BASE, OUT_OF_RANGE, SUPPORTED_FROM_MS, TOO_FAR_AHEAD, extreme_events, extreme_times,
                              random_events, random_requests, write_batch_face, write_events, write_repo)

REASONS = {
    OUT_OF_RANGE: "event time 'ts' out of range (supported: 1900-01-01 to 2199-12-31 UTC)",
    TOO_FAR_AHEAD: "event time 'ts' too far in the future (more than 1h after ingestion)",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def extreme_requests(seed: int, events: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    """Random requests plus requests right after each accepted extreme time, for every user."""
    requests = random_requests(seed, events)
    times = [pd.Timestamp(SUPPORTED_FROM_MS + 1, unit="ms", tz="UTC"), pd.Timestamp("1970-01-01T00:00:00Z"),
             pd.Timestamp("1970-01-21T12:18:44Z"), pd.Timestamp("1955-05-05T05:05:05.001Z"), BASE,
             pd.Timestamp(now_ms + 3_600_000, unit="ms", tz="UTC")]
    users = ["u0", "u1", "u2", "u3", "u4", "u5", "u_future"]
    extra = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q, "label": 0.0}
                          for q in times for u in users for s in (0, 1)])
    out = pd.concat([requests, extra], ignore_index=True)
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    return out


def dead_rows(store: FeatureStore, source: str = "events"):
    table = dead_letter_table(store, source)
    return table.read().to_pylist() if table.version is not None else []


@pytest.mark.parametrize("seed", [5, 6])
def test_extreme_event_times_are_dead_letters_and_change_no_other_value(tmp_path, seed):
    store = FeatureStore(write_repo(tmp_path))
    now = _now_ms()
    events, extremes = random_events(seed, n=200), extreme_events(seed, now)
    write_batch_face(store.repo_path, events, extremes)
    results = store.backfill()
    everything = pd.concat([events.astype({"ts": object}), extremes], ignore_index=True)
    expected_dead = [(REASONS[fate], kind) for kind, _, fate in extreme_times(now) if fate]
    kept = len(events) + len(extremes) - len(expected_dead)
    by_view = {r.view: r for r in results}
    assert by_view["amount_stats"].rows == kept
    for r in results:
        assert r.dead_letters == len(expected_dead) and r.rejected_null_time == 0, r
    # the dead-letter table: one row per bad source row, with its reason and event time as read
    rows = dead_rows(store)
    ts_of = {kind: ts for kind, ts, _ in extreme_times(now)}
    got = sorted((r["reason"], r["event_time_ms"]) for r in rows)
    assert got == sorted((reason, ts_of[kind]) for reason, kind in expected_dead)
    assert all(r["backfill_start_ms"] is None and r["backfill_end_ms"] is None for r in rows)
    assert results.summary() == [
        f"source 'events': {len(expected_dead)} dead letters ({sum(1 for r, _ in expected_dead if r == REASONS[OUT_OF_RANGE])} "
        f"{REASONS[OUT_OF_RANGE]}, {sum(1 for r, _ in expected_dead if r == REASONS[TOO_FAR_AHEAD])} "
        f"{REASONS[TOO_FAR_AHEAD]}) -> {dead_letter_table(store, 'events').path}"]
    # every other value: the oracle over all rows (it drops unsupported times itself)
    requests = extreme_requests(seed, events, now)
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        expected = oracle.point_in_time(everything, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"seed {seed} view {view.name}")
    # the stored event times, exactly (floored, before 1970 too)
    stored = store.offline.table("amount_stats", "ts").read()
    ms = set(pa.compute.cast(stored.column("ts"), pa.int64()).to_pylist())
    for kind, ts, fate in extreme_times(now):
        want = oracle.to_ms(ts)
        assert (want in ms) == (fate is None), (kind, want)
    assert -1 in ms  # 1969-12-31T23:59:59.9995 and -1 ns both floor to -1 (not round to 0)


def test_re_running_replaces_the_dead_letters_and_a_partial_range_counts_only_its_own(tmp_path):
    store = FeatureStore(write_repo(tmp_path))
    now = _now_ms()
    write_batch_face(store.repo_path, random_events(8, n=100), extreme_events(8, now))
    first = store.backfill(views=["amount_stats"])
    again = store.backfill(views=["amount_stats"])
    assert first[0].dead_letters == again[0].dead_letters == len(dead_rows(store)) > 0
    # a range: dead letters whose (readable) event time falls inside it, nothing else
    start, end = pd.Timestamp("2099-01-01T00:00:00Z"), pd.Timestamp("2101-01-01T00:00:00Z")
    part = store.backfill(start=start, end=end, views=["amount_stats"])
    assert part[0].rows == 0
    assert part[0].reasons == {REASONS[TOO_FAR_AHEAD]: 1}  # year_2100
    rows = dead_rows(store)
    assert [(r["reason"], r["backfill_start_ms"], r["backfill_end_ms"]) for r in rows] == [
        (REASONS[TOO_FAR_AHEAD], start.value // 1_000_000, end.value // 1_000_000)]


@pytest.mark.parametrize("bound,accepted,refused", [
    ("none", {"year_2100", "range_max_minus_1", "in_2h", "in_30m"}, set()),
    ("10m", set(), {"year_2100", "range_max_minus_1", "in_2h", "in_30m"}),
])
def test_the_future_bound_is_configurable(tmp_path, bound, accepted, refused):
    root = write_repo(tmp_path)
    (root / "featurestore.yaml").write_text(f"project: rnd\ndefinitions: definitions\nevent_time:\n  max_future: {bound}\n")
    store = FeatureStore(root)
    now = _now_ms()
    write_batch_face(root, random_events(9, n=50), extreme_events(9, now))
    store.backfill(views=["amount_stats"])
    dead = {r["event_time_ms"] for r in dead_rows(store)}
    for kind, ts, fate in extreme_times(now):
        if kind in accepted:
            assert oracle.to_ms(ts) not in dead, kind
        elif kind in refused:
            assert oracle.to_ms(ts) in dead, kind
    if bound == "10m":
        assert REASONS[TOO_FAR_AHEAD].replace("1h", "10m") in {r["reason"] for r in dead_rows(store)}


def test_the_future_bound_must_be_a_duration_or_none(tmp_path):
    root = write_repo(tmp_path)
    (root / "featurestore.yaml").write_text("project: rnd\nevent_time:\n  max_future: soon\n")
    with pytest.raises(ConfigError, match=r"event_time.max_future: cannot parse 'soon'.*\(or 'none' for no bound\)"):
        FeatureStore(root)


def test_one_bad_value_in_a_batch_face_is_a_dead_letter_not_a_crash(tmp_path):
    """Values that do not convert to the declared type, a missing or unparseable event time: dead letters
    with their reasons; every other row is an event (today: the whole backfill failed on the first one)."""
    store = FeatureStore(write_repo(tmp_path))
    events = random_events(10, n=80)
    write_events(store.repo_path, events)
    bad = pd.DataFrame([
        {"user_id": "u1", "shop": "1", "amount": "2.5", "qty": "12x", "tag": "a", "flag": "true", "ts": "2026-03-01 00:00:01"},
        {"user_id": "u1", "shop": "99999999999999999999", "amount": "1", "qty": "1", "tag": "a", "flag": "true",
         "ts": "2026-03-01 00:00:02"},
        {"user_id": "u2", "shop": "1", "amount": "abc", "qty": "1", "tag": "a", "flag": "true", "ts": "2026-03-01 00:00:03"},
        {"user_id": "u2", "shop": "1", "amount": "1", "qty": "1", "tag": "a", "flag": "maybe", "ts": "2026-03-01 00:00:04"},
        {"user_id": "u3", "shop": "1", "amount": "1", "qty": "1", "tag": "a", "flag": "true", "ts": None},
        {"user_id": "u3", "shop": "1", "amount": "1", "qty": "1", "tag": "a", "flag": "true", "ts": "yesterday"},
        {"user_id": "u4", "shop": "2", "amount": "NaN", "qty": "3", "tag": "b", "flag": "false", "ts": "2026-03-01 00:00:05.5"},
    ])
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), store.repo_path / "data" / "events" / "strings.parquet")
    results = {r.view: r for r in store.backfill()}
    assert results["amount_stats"].reasons == {
        "column 'qty': not a int64": 1, "column 'shop': not a int64": 1, "column 'amount': not a float64": 1,
        "column 'flag': not a bool": 1, "missing event time 'ts'": 1, "event time 'ts': not a timestamp": 1}
    assert results["amount_stats"].rejected_null_time == 1
    assert results["amount_stats"].rows == len(events) + 1  # the string row that converts is an event (NaN -> null)
    rows = {r["reason"]: r for r in dead_rows(store)}
    assert rows["column 'qty': not a int64"]["row"] == (
        '{"user_id":"u1","shop":"1","amount":"2.5","qty":"12x","tag":"a","flag":"true","ts":"2026-03-01 00:00:01"}')
    assert rows["missing event time 'ts'"]["event_time_ms"] is None
    good = pd.concat([events, pd.DataFrame([{"user_id": "u4", "shop": 2, "amount": math.nan, "qty": 3, "tag": "b",
                                             "flag": False, "ts": pd.Timestamp("2026-03-01 00:00:05.5", tz="UTC")}])],
                     ignore_index=True)
    requests = random_requests(10, events)
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert_features_equal(got, oracle.point_in_time(good, view, requests), view.feature_names, view.name)


def test_cli_backfill_reports_the_dead_letters_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from featurestore.cli import app

    root = write_repo(tmp_path)
    write_batch_face(root, random_events(11, n=40), extreme_events(11, _now_ms()))
    res = CliRunner().invoke(app, ["backfill", "--repo", str(root), "--view", "amount_stats"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("source 'events': ")]
    assert len(lines) == 1 and "dead letters (" in lines[0] and lines[0].endswith("_backfill_dead_letters/events"), \
        res.output


def test_flink_backfill_reads_only_declared_columns_and_names_file_and_column_it_cannot_read(tmp_path):
    """(No JVM: the Flink backfill's reading plan.) A column no definition uses is never declared, whatever
    its type; event times are read as raw integers with their unit; what Flink cannot read is one line
    naming the file and the column."""
    from featurestore.engines.flink.backfill import _file_columns
    from featurestore.errors import FeatureStoreError

    store = FeatureStore(write_repo(tmp_path))
    source = store.repo.views["amount_stats"].source
    ok = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "meta": pa.array([{"a": 1}]), "amount": [1.0], "qty": pa.array([1], pa.int32()),
                             "ts": pa.array([-1], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))}), ok)
    ddl, types, divisor = _file_columns(ok, source)
    assert ddl == [("user_id", "STRING"), ("amount", "DOUBLE"), ("qty", "INT"), ("ts", "BIGINT")]
    assert (types["qty"], divisor) == ("int32", 1_000_000)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "qty": pa.array([[1]]), "ts": pa.array([0], pa.int64())}), bad)
    with pytest.raises(FeatureStoreError) as err:
        _file_columns(bad, source)
    assert str(err.value) == f"{bad}: column 'qty' of type list<element: int64> cannot be read by the Flink backfill"
    text_ts = tmp_path / "text.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "ts": ["2026-03-01"]}), text_ts)
    with pytest.raises(FeatureStoreError, match=r"text.parquet: event-time column 'ts' of type string cannot be read by "
                                                r"the Flink backfill \(it reads timestamps and integers of epoch milliseconds\)$"):
        _file_columns(text_ts, source)


def random_ns_events(seed: int, n: int = 160) -> pd.DataFrame:
    """Random events whose times have every nanosecond digit: around the epoch (-1 ns, -999_999 ns, ...),
    before 1970 and 1900's bound, around ms boundaries (k ms +- 1 ns) and at random ns of a recent day."""
    import random

    rng = random.Random(seed)
    anchors = [0, pd.Timestamp("1955-05-05T05:05:05Z").value, oracle.SUPPORTED_FROM_MS * 1_000_000 + 7_000_000_000,
               BASE.value, pd.Timestamp("1969-12-31T23:59:59Z").value]
    events = random_events(seed, n=n)
    times = []
    for _ in range(n):
        anchor = rng.choice(anchors)
        kind = rng.random()
        if kind < 0.4:  # +- 1 ns of a millisecond boundary near the anchor
            t = anchor + rng.randint(-90_000, 90_000) * 1_000_000 + rng.choice([-1, 0, 1])
        elif kind < 0.5:  # a few ns either side of the anchor itself (-1 ns before 1970 ...)
            t = anchor + rng.randint(-3, 3)
        else:
            t = anchor + rng.randint(-90_000_000_000, 90_000_000_000)
        times.append(max(t, oracle.SUPPORTED_FROM_MS * 1_000_000))
    events["ts"] = pd.to_datetime(pd.Series(times, dtype="int64"), unit="ns", utc=True)
    return events


@pytest.mark.parametrize("reader,tz", [("duckdb", "UTC"), ("duckdb", None), ("arrow", "UTC"), ("arrow", None)])
def test_nanosecond_event_times_are_floored_exactly_whatever_the_duckdb_release(tmp_path, monkeypatch, reader, tz):
    """DuckDB before 2.0 (1.5.6 is the newest for Python 3.10) reads a Parquet TIMESTAMP(NANOS, UTC) column as
    microseconds truncated toward zero: an event at -1 ns was stored at 1970-01-01 00:00:00.000 and a request
    at midnight missed it. Random ns times (pre-1970, +-1 ns around ms boundaries, the 1900 bound), UTC and
    naive, read by DuckDB when it reads nanoseconds exactly and through Arrow otherwise (``reader=arrow``
    forces that path here): every stored time and every feature value matches the brute-force oracle."""
    from featurestore.engines import duckdb_batch

    if reader == "arrow":
        monkeypatch.setattr(duckdb_batch, "_reads_ns_exactly", lambda *_: False)  # as DuckDB 1.5 reads UTC ns
    store = FeatureStore(write_repo(tmp_path))
    events = random_ns_events(7 if tz else 8)
    events.loc[len(events) // 2, "ts"] = pd.Timestamp("2250-01-01T00:00:00.000000001Z")  # a dead letter
    out = tmp_path / "data" / "events"
    out.mkdir(parents=True)
    table = pa.Table.from_pandas(events, preserve_index=False)
    ts = table.column("ts").cast(pa.int64()).cast(pa.timestamp("ns", tz))
    pq.write_table(table.set_column(table.schema.get_field_index("ts"), "ts", ts), out / "ns.parquet")
    assert "nanoseconds" in pq.ParquetFile(out / "ns.parquet").metadata.schema.column(6).logical_type.to_json()
    results = store.backfill()
    assert all(r.dead_letters == 1 for r in results), results.summary()
    (dead,) = dead_rows(store)  # the row as read: the same text on either path
    assert dead["event_time_ms"] == 8_835_955_200_000 and '"ts":"2250-01-01 00:00:00.000000001' in dead["row"], dead
    stored = store.offline.table("amount_stats", "ts").read()
    got_ms = sorted(pa.compute.cast(stored.column("ts"), pa.int64()).to_pylist())
    want_ms = sorted(int(t) // 1_000_000 for t in events["ts"].astype("int64"))
    assert got_ms == [t for t in want_ms if t != 8_835_955_200_000], "stored event times"
    requests = random_requests(9, events, n=100)
    edges = [t.floor("ms") + pd.Timedelta(d) for t in events["ts"][:40] for d in ("0ms", "1ms", "10s", "10001ms")]
    requests = pd.concat([requests, pd.DataFrame({"user_id": [u for u in events["user_id"][:40] for _ in range(4)],
                                                  "shop": 0, "event_timestamp": edges, "label": 0.0})], ignore_index=True)
    requests["event_timestamp"] = pd.to_datetime(requests["event_timestamp"], utc=True)
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"view {view.name}, {reader}, tz={tz}")


def test_a_changed_future_bound_is_a_rows_change_and_equal_bounds_are_not(tmp_path, monkeypatch):
    """event_time.max_future decides which source rows are events: an offline table backfilled under one bound
    is stale under another (reads refuse, naming the setting, until a backfill), like a filter change; the same
    bound spelled otherwise ('60m' for the default '1h') and metadata are no change."""
    from featurestore.errors import FeatureStoreError

    store = FeatureStore(write_repo(tmp_path))
    now = _now_ms()
    events = random_events(3, n=60)
    ahead = events.iloc[[0]].assign(ts=pd.Timestamp(now + 2 * 3_600_000, unit="ms", tz="UTC"), user_id="u_future")
    write_events(store.repo_path, pd.concat([events, ahead], ignore_index=True))
    store.backfill()
    requests = random_requests(3, events)
    rows = store.offline.table("amount_stats").read().num_rows
    baseline = store.get_historical_features(requests, feature_service="everything")
    for bound, stale in (("60m", False), ("3600s", False), ("none", True), ("3h", True), ("59m", True)):
        monkeypatch.setenv("FEATURESTORE_EVENT_TIME_MAX_FUTURE", bound)
        other = FeatureStore(store.repo_path)
        if not stale:
            got = other.get_historical_features(requests, feature_service="everything")
            pd.testing.assert_frame_equal(got, baseline)
            continue
        with pytest.raises(FeatureStoreError, match=r"view '\w+': its offline table was backfilled under an earlier "
                                                    r"definition .*event_time\.max_future"):
            other.get_historical_features(requests, feature_service="everything")
    monkeypatch.setenv("FEATURESTORE_EVENT_TIME_MAX_FUTURE", "none")
    unbounded = FeatureStore(store.repo_path)
    unbounded.backfill()  # the rows under the new bound: the future event is one now
    assert unbounded.offline.table("amount_stats").read().num_rows == rows + 1
    unbounded.get_historical_features(requests, feature_service="everything")


NOT_EVENTS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "meta": "json", "at": "timestamp", "ts": "timestamp"},
                timestamp="ts", batch=ParquetFiles("data/*.parquet"))
plain = FeatureView(entities=[user], source=events, features=[Latest("qty")])
'''


def _not_events_repo(root):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(NOT_EVENTS)
    (root / "featurestore.yaml").write_text("project: t_not_events\ndefinitions: definitions\n")
    t0, year_10000_us, bc_us = 1_772_323_200_000, 253_402_300_800_005_000, -62_135_683_200_000_001
    ms = lambda v: pa.array(v, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))  # noqa: E731
    pq.write_table(pa.table({
        "user_id": ["u1", "u2", "u3", "u4", "u5"], "qty": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "meta": pa.array([{"a": 1, "b": "x"}] * 5),
        "at": pa.array([t0 * 1000, (t0 + 1) * 1000, year_10000_us, bc_us, t0 * 1000], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "ts": ms([t0, 8_835_955_200_000, t0 + 2, t0 + 3, -62_198_755_200_000])}), root / "data" / "a.parquet")
    return FeatureStore(root)


@pytest.mark.flink
def test_a_row_that_is_no_event_reads_the_same_in_both_backfills_and_as_its_record(tmp_path):
    """A dead letter that is no event (its time or a value could not be read) has one row in the DuckDB backfill and
    ``backfill --engine flink``: DuckDB writes a time as its TIMESTAMPTZ text and a nested column as an object, the
    Flink backfill raw integers and JSON text; both now write the stream face's record form (what the streaming job
    shows for the record), for any year: the event time as epoch ms, a timestamp value as ISO text with microseconds
    (years 10000 and 1 BC too), JSON as its value. Was: ``"at":"10000-01-01 00:00:00.005+00"`` against
    ``"at":253402300800005000``, ``"meta":{"a":1,...}`` against ``"meta":"{\\"a\\":1,...}"``."""
    import shutil

    from featurestore import datagen
    from tests.stream_helpers import assert_backfills_agree

    duck = _not_events_repo(tmp_path / "duck")
    shutil.copytree(tmp_path / "duck", tmp_path / "flink")
    assert_backfills_agree(duck, FeatureStore(tmp_path / "flink"))
    rows = {s: sorted((r["reason"], r["row"]) for r in dead_rows(s)) for s in (duck, FeatureStore(tmp_path / "flink"))}
    assert len(set(map(repr, rows.values()))) == 1, rows
    meta = '{"a":1,"b":"x"}'
    out_of_range = {"user_id": "u2", "qty": 2, "meta": {"a": 1, "b": "x"},
                    "at": pd.Timestamp(1_772_323_200_001, unit="ms", tz="UTC"), "ts": 8_835_955_200_000}
    assert rows[duck] == sorted([
        ("column 'at': not a timestamp",
         '{"user_id":"u3","qty":3,"meta":%s,"at":"10000-01-01T00:00:00.005000Z","ts":1772323200002}' % meta),
        ("column 'at': not a timestamp",
         '{"user_id":"u4","qty":4,"meta":%s,"at":"0000-12-30T23:59:59.999999Z","ts":1772323200003}' % meta),
        (REASONS[OUT_OF_RANGE], datagen.to_json_record(out_of_range, "ts", list(out_of_range)).decode()),
        (REASONS[OUT_OF_RANGE],
         '{"user_id":"u5","qty":5,"meta":%s,"at":"2026-03-01T00:00:00.000000Z","ts":-62198755200000}' % meta)])
