"""Each event once (SPEC §5): whatever the order of backfills, streams, restarts and definition changes, an
offline table holds each event of its source exactly once, against the real services.

One random event set (tests/test_stream.py's, malformed records interleaved) on a topic of its own; the
batch face starts with the events up to a cut (history), Kafka holds all of them. One chain of runs,
each step's tables compared row for row with a DuckDB backfill of every event (tests/test_stream.py's
``assert_same_rows``) and the online values with the oracle:

1. backfill the history, then stream (the bootstrap order): nothing doubled, the events after the cut
   come from the stream;
2. stream again with ``restore=False`` (fresh state re-reads the whole topic): nothing added;
3. change one view's definition, then stream: the other tables untouched, the changed view's streamed
   rows rebuilt under the new definition (its backfilled rows wait for the backfill the plan announces);
4. the batch face catches up with every event, backfill (stream, then backfill): every table equals the
   backfill under the new definitions.

And a backfill during a live stream (several, while events arrive and the committer commits).
Three Flink launches in the chain, one for the live run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.config import load_config
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import write_events
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, SEED, _wait_for, arrival, assert_same_rows,
                               create_topic, drop_project, make_repo, offline_table, produce, stream_events)

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

CHANGED = "qty_stats"
OLD_FILTER, NEW_FILTER = 'filter="flag"', 'filter="flag OR qty > 5"'  # a superset: every entity keeps values


def _ref(root: Path, events: pd.DataFrame, offline: Path) -> FeatureStore:
    """The same repo backfilled by DuckDB from every event (its own offline root)."""
    write_events(root, events)
    ref = FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(offline)))
    ref.backfill()
    return ref


def _change_definition(root: Path) -> None:
    path = root / "definitions" / "features.py"
    text = path.read_text()
    assert text.count(OLD_FILTER) == 1
    path.write_text(text.replace(OLD_FILTER, NEW_FILTER))


def _read_changed(store: FeatureStore, events: pd.DataFrame):
    """(the changed view's training set at random requests vs the oracle: the error's text, None when equal;
    its table's stream record)."""
    from featurestore.errors import OfflineStoreError
    from tests.randomrepo import random_requests

    view = store.repo.views[CHANGED]
    requests = random_requests(SEED, events, n=40)
    try:
        got = store.get_historical_features(requests, features=[f"{CHANGED}:{f}" for f in view.feature_names])
        assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, CHANGED)
        error = None
    except (OfflineStoreError, AssertionError) as exc:
        error = str(exc)
    return error, store.offline.table(CHANGED).manifest()["stream"]


def _tables(store: FeatureStore):
    """Per view: (rows, the latest version's files)."""
    return {v: (offline_table(store, v), store.offline.table(v).manifest()["files"]) for v in store.repo.views}


def _online_vs_oracle(store: FeatureStore, events: pd.DataFrame, what: str) -> None:
    """Every view's online values after the last event equal the oracle's."""
    q = events["ts"].max() + pd.Timedelta("1ms")
    users = sorted(events["user_id"].unique())
    rows = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q} for u in users for s in (0, 1, 2)])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    online = store.get_online_features(rows[KEYS], feature_service="everything", request_time=q).to_df()
    for view in store.repo.views.values():
        assert_features_equal(online, oracle.point_in_time(events, view, rows), view.feature_names,
                              f"{what}: online vs oracle, view {view.name}")


@dataclasses.dataclass
class Chain:
    events: pd.DataFrame
    cut: pd.Timestamp  # the batch face held the events before this until step 4
    claimed_end_ms: int  # where the first backfill's range ended (just after its last event)
    ref: FeatureStore  # old definitions, every event
    ref_new: FeatureStore  # new definitions, every event
    steps: dict  # step -> _tables(...)
    results: dict  # step -> StreamResult
    plan: object  # the plan after the definition change
    online_errors: dict  # step -> AssertionError of the online check (None: equal)
    reads: dict  # step -> (the changed view's training set vs the oracle: error text or None, its stream record)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, redis_client, kafka_admin):
    tmp = tmp_path_factory.mktemp("once")
    topic = f"fs_once_{uuid.uuid4().hex[:10]}"
    project = f"t_once_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    cut = events["ts"].sort_values().iloc[len(events) * 2 // 3].floor("s")
    history = events[events["ts"] < cut]
    root = make_repo(tmp / "repo", topic, project, history)
    ref = _ref(make_repo(tmp / "ref", topic, project, events), events, tmp / "ref_offline")
    create_topic(kafka_admin, topic)
    produce(topic, arrival(events, SEED))
    ckpt = tmp / "checkpoints"
    steps, results, online_errors, reads = {}, {}, {}, {}

    def check_online(step, store, evs):
        try:
            _online_vs_oracle(store, evs, step)
            online_errors[step] = None
        except AssertionError as exc:
            online_errors[step] = exc

    def run(store, **kw):
        return streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                             checkpoint_interval_ms=1000, **kw)

    try:
        store = FeatureStore(root)
        store.apply()
        store.backfill()
        claimed_end_ms = store.offline.table("amount_stats").manifest()["range"][1]
        results["bootstrap"] = run(store)
        steps["bootstrap"] = _tables(store)
        check_online("bootstrap", store, events)

        results["fresh"] = run(store, restore=False)
        steps["fresh"] = _tables(store)
        check_online("fresh", store, events)

        _change_definition(root)
        store = FeatureStore(root)
        plan = store.plan()
        ref_new_root = make_repo(tmp / "ref_new", topic, project, events)
        _change_definition(ref_new_root)
        ref_new = _ref(ref_new_root, events, tmp / "ref_new_offline")
        results["changed"] = run(store)
        steps["changed"] = _tables(store)
        check_online("changed", store, events)
        reads["changed"] = _read_changed(store, events)

        write_events(root, events)  # the batch face catches up
        store.backfill()
        steps["caught_up"] = _tables(store)
        reads["caught_up"] = _read_changed(store, events)
        yield Chain(events, cut, claimed_end_ms, ref, ref_new, steps, results, plan, online_errors, reads)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def _part(table, lo=None, hi=None):
    """Rows with lo <= ts < hi (epoch ms)."""
    import pyarrow.compute as pc

    ts = table.column("ts").cast("int64")
    lo, hi = -(2**62) if lo is None else lo, 2**62 if hi is None else hi
    mask = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))
    return table.filter(mask)


def test_backfill_then_stream_holds_each_event_once(chain):
    history = chain.events[chain.events["ts"] < chain.cut]
    assert chain.claimed_end_ms == history["ts"].max().floor("ms").value // 10**6 + 1  # just after its last event
    for view, (rows, _files) in chain.steps["bootstrap"].items():
        assert_same_rows(rows, offline_table(chain.ref, view), f"view {view}: backfill, then stream")
    metrics = chain.results["bootstrap"].metrics["events"]
    for view in chain.steps["bootstrap"]:  # the stream added exactly the events after the backfilled range
        after = _part(offline_table(chain.ref, view), chain.claimed_end_ms)
        assert metrics[f"events:{view}"] == after.num_rows > 0, view
    assert chain.online_errors["bootstrap"] is None, chain.online_errors["bootstrap"]


def test_restart_with_fresh_state_adds_nothing(chain):
    result = chain.results["fresh"]
    assert result.restored_from is None and result.records == chain.results["bootstrap"].records
    for view, (rows, files) in chain.steps["fresh"].items():
        assert_same_rows(rows, offline_table(chain.ref, view), f"view {view}: stream again from the first record")
        assert files == chain.steps["bootstrap"][view][1], f"{view}: a file was added or removed"
    assert result.metrics == chain.results["bootstrap"].metrics  # no event added twice
    assert chain.online_errors["fresh"] is None, chain.online_errors["fresh"]


def test_changing_one_definition_rebuilds_that_view_and_leaves_the_others_untouched(chain):
    from featurestore.plan import STREAM_CONTINUE, STREAM_REBUILD

    stream_stages = {s.target: s.reason for s in chain.plan.stages if s.kind == "stream"}
    assert stream_stages == {v: STREAM_REBUILD if v == CHANGED else STREAM_CONTINUE for v in chain.steps["fresh"]}
    assert ("backfill", CHANGED) in [(s.kind, s.target) for s in chain.plan.stages]
    for view, (rows, files) in chain.steps["changed"].items():
        if view == CHANGED:
            continue
        assert files == chain.steps["fresh"][view][1], f"{view}: unchanged, yet its table changed"
        assert_same_rows(rows, offline_table(chain.ref, view), f"view {view}: after another view changed")
    rows = chain.steps["changed"][CHANGED][0]
    end = chain.claimed_end_ms
    # streamed rows: every event after the backfilled range once, under the new definition
    assert_same_rows(_part(rows, end), _part(offline_table(chain.ref_new, CHANGED), end),
                     f"{CHANGED}: streamed rows after the definition change")
    # backfilled rows: the old definition's until the announced backfill runs
    assert_same_rows(_part(rows, None, end), _part(offline_table(chain.ref, CHANGED), None, end),
                     f"{CHANGED}: backfilled rows before the backfill")
    assert chain.online_errors["changed"] is None, chain.online_errors["changed"]
    # its training sets: the streamed rows are this definition's (recorded by the job), the backfilled ones
    # are not: refused until the announced backfill, then equal to the oracle
    error, record = chain.reads["changed"]
    assert error is not None and f"view '{CHANGED}': its offline table was backfilled under an earlier" in error, error
    assert record["rows_key"] == chain.ref_new.compiled(CHANGED).rows_fingerprint
    assert chain.reads["caught_up"][0] is None, chain.reads["caught_up"][0]


def test_stream_then_backfill_holds_each_event_once(chain):
    for view, (rows, _files) in chain.steps["caught_up"].items():
        assert_same_rows(rows, offline_table(chain.ref_new, view), f"view {view}: stream, then backfill")


def test_backfill_during_a_live_stream_holds_each_event_once(tmp_path, redis_client, kafka_admin):
    """Events arrive while the job runs (unbounded); backfills of the history commit meanwhile, racing the
    committer's commits (every 0.2 s)."""
    topic = f"fs_live_{uuid.uuid4().hex[:10]}"
    project = f"t_live_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    cut = events["ts"].sort_values().iloc[len(events) // 2].floor("s")
    root = make_repo(tmp_path / "repo", topic, project, events[events["ts"] < cut])
    ref = _ref(make_repo(tmp_path / "ref", topic, project, events), events, tmp_path / "ref_offline")
    create_topic(kafka_admin, topic)
    records = arrival(events, SEED)
    store = FeatureStore(root)
    handle = streaming.start(store, checkpoint_dir=tmp_path / "ckpt", checkpoint_interval_ms=500,
                             commit_interval_s=0.2)
    backfills = []

    def stream_versions():
        return [m for m in store.offline.table("amount_stats").history() if m["operation"] == "stream"]

    try:
        # the first half, until the stream has committed once (a loaded machine may start the job late)
        produce(topic, records[:len(records) // 2])
        _wait_for(lambda: len(stream_versions()) >= 1, JOB_TIMEOUT_S, "the stream's first commit")
        # then the second half while backfills commit: the stream commits again, racing them
        producer = threading.Thread(target=produce, args=(topic, records[len(records) // 2:]),
                                    kwargs={"pause_every": 40, "pause_s": 0.4})
        producer.start()
        while producer.is_alive() or len(backfills) < 3:
            backfills.append(store.backfill())
            time.sleep(0.3)
        producer.join()
        kafka = store.config.kafka_bootstrap
        ends = flink_offsets.end_offsets(kafka, [topic])
        _wait_for(lambda: flink_offsets.caught_up(kafka, handle.job_name, ends), JOB_TIMEOUT_S, "the job to catch up")
        handle.wait_online_flushed(int(time.time() * 1000), JOB_TIMEOUT_S)
        result = handle.stop()
    except BaseException:
        handle.cancel()
        raise
    try:
        assert len(backfills) >= 3
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(ref, view),
                             f"view {view}: backfills during a live stream")
        # the stream committed while the backfills ran (not only after them)
        versions = stream_versions()
        assert len(versions) >= 2 and result.metrics["events"]["events:amount_stats"] > 0
        _online_vs_oracle(store, events, "live")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
