"""SPEC §3.1-§3.2 for the streaming job on random definition repos (tests/randomdefs.py): random views,
filters, projections, every aggregation and window, TTLs and defaults over random events (hot keys, ties,
nulls, extreme floats and int64s, times 1900-2199), their source given a Kafka face on a topic of its own.
The events go to Kafka as JSON (``datagen.to_json_record``) in shuffled order; ONE bounded Flink job per seed
consumes them; the same events are backfilled by DuckDB into a second offline root. Then:

* batch = stream: every view's offline table holds the same rows (and Arrow schema) in both roots;
* dead letters: the same reasons, counted alike, in the stream's dead-letter table and the backfill's
  (copies of random events at times just outside the supported range and beyond, null join keys);
* offline (the stream's tables) = oracle at random requests; online (the stream's Redis state) = offline
  at every request not earlier than the view's retention horizon (earlier ones must be refused saying
  so), and at requests after the last event for every key (never refused): identical values, float
  sums/means/variances to 1e-9 relative, NaN apart from null, first/last/latest to the sign of zero.

Every filter and projection of tests/randomdefs.py streams; a fast test checks that an expression the streaming
job cannot compile is refused at plan time in one line naming the view and the expression."""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.config import load_config
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests import oracle, randomdefs
from tests.compare import assert_features_equal, same_value
from tests.conftest import drop_project
from tests.stream_helpers import JOB_TIMEOUT_S, assert_same_rows, create_topic, offline_table, produce, read_file

FAST, SLOW = [0], [1, 2, 3, 4, 5, 16, 24]  # 4: a latest -0.0; 16: a view no event passes; 24: NaN rows
SOURCE_COLUMNS = ["k", "g", "a", "n", "s", "b", "t2", "big", "cr", "ts"]
UNSUPPORTED_TIMES = ["1899-12-31T23:59:59.999Z", "2200-01-01T00:00:00Z", "2262-04-01T00:00:00.5Z"]
OUT_OF_RANGE = "event time 'ts' out of range (supported: 1900-01-01 to 2199-12-31 UTC)"


@dataclasses.dataclass
class Streamed:
    seed: int
    events: pd.DataFrame
    rng: random.Random
    store: FeatureStore  # the streamed store (offline tables and Redis written by the stream job)
    ref: FeatureStore  # the same repo, its offline tables written by a DuckDB backfill
    backfill: object  # the backfill's BackfillResults


def kafka_records(events: pd.DataFrame, seed: int):
    """(key, JSON value) of every event, in a shuffled arrival order."""
    rows = events.sample(frac=1.0, random_state=seed).to_dict("records")
    return [(None if r["k"] is None else r["k"].encode(), datagen.to_json_record(r, "ts", SOURCE_COLUMNS))
            for r in rows]


def with_unsupported_times(events: pd.DataFrame, rng: random.Random) -> pd.DataFrame:
    """``events`` plus copies of random ones at the event times just outside the supported range, and beyond:
    dead letters of both jobs (``max_future: none`` bounds nothing else)."""
    extra = events.iloc[[rng.randrange(len(events)) for _ in UNSUPPORTED_TIMES]].copy()
    extra["ts"] = pd.to_datetime(UNSUPPORTED_TIMES, utc=True, format="ISO8601")
    return pd.concat([events, extra], ignore_index=True)


def stream_seed(root: Path, seed: int, kafka_admin, adversarial: bool = False) -> Streamed:
    topic = f"fs_rdefs_{uuid.uuid4().hex[:10]}"
    project = f"t_rdefs_stream_{uuid.uuid4().hex[:8]}"
    rng, events = randomdefs.write_repo(root, seed, stream_topic=topic, project=project, adversarial=adversarial)
    events = with_unsupported_times(events, rng)
    randomdefs.write(root, events)
    create_topic(kafka_admin, topic)
    produce(topic, kafka_records(events, seed))
    store = FeatureStore(root)
    ref = FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(root / "ref_offline")))
    # 500 ms mini-batches (a bounded run's default is 5 s): more batches per entity, so the online state's
    # incremental path (drains, trims, tiles settled across batches) runs more often
    streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000, flush_ms=500)
    return Streamed(seed, events, rng, store, ref, ref.backfill())


def check_offline_tables(s: Streamed):
    """Every view's rows alike (NaN = NaN, zeros to their sign); a view whose filter no event passes has no
    stream table (it never wrote one) and an empty backfilled one."""
    for view in s.store.repo.views:
        want = offline_table(s.ref, view)
        if s.store.offline.table(view, ts_column="ts").version is None:
            rows = 0 if want is None else want.num_rows
            assert rows == 0, f"seed {s.seed} {view}: no stream table, {rows} backfilled rows"
            continue
        got = offline_table(s.store, view)
        assert got.schema == want.schema, f"seed {s.seed} {view}: {got.schema} != {want.schema}"
        assert_same_rows(got, want, f"seed {s.seed} view {view}, stream vs backfill", signed_zeros=True)


def check_dead_letters(s: Streamed):
    table = streaming.dead_letter_table(s.store, "src")
    files = table.files(table.version) if table.version is not None else []
    rows = [r for f in files for r in read_file(table, f).to_pylist()]
    reasons = Counter(r["reason"] for r in rows)
    assert reasons == s.backfill.dead_letters.get("src", Counter()), f"seed {s.seed}"
    assert reasons[OUT_OF_RANGE] == len(UNSUPPORTED_TIMES), reasons
    assert any(r.startswith("null join key") for r in reasons), reasons  # 3% of keys are null


def check_offline_equals_oracle(s: Streamed, requests: pd.DataFrame) -> pd.DataFrame:
    offline = s.store.get_historical_features(requests, feature_service="everything")
    for view in s.store.repo.views.values():
        expected = oracle.point_in_time(s.events, view, requests, max_future_ms=None)
        assert_features_equal(offline, expected, view.feature_names, f"seed {s.seed} stream offline {view.name}")
    return offline


ROUNDED = {"sum", "mean", "stddev", "variance"}  # float results within 1e-9 relative (SPEC §3); the rest exact


def same_online(a, b, function: str) -> bool:
    """SPEC §3 equality of an online value ``a`` and the offline one ``b`` (from Arrow: null is None, NaN a
    float): float sums, means and variances to 1e-9 relative; every other value identical, NaN only equal to
    NaN, first/last/latest to the sign of zero (docs/semantics.md: the value as it is; min/max may return
    either zero)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            return False
        a, b = float(a), float(b)
        if a != a or b != b:
            return a != a and b != b
        if function in ROUNDED:
            return same_value(a, b)
        return a == b and (function not in ("first", "last", "latest") or math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def entity(row) -> dict:
    return {"k": row["k"], "g": None if pd.isna(row["g"]) else int(row["g"])}


def check_online(s: Streamed, requests: pd.DataFrame, offline: pd.DataFrame, refusable: bool):
    """Online at each request = the offline row = (through it) the oracle; a view's refusal must name its
    retention horizon, and only ``refusable`` requests may be refused."""
    compared, problems = Counter(), []
    exact = {name: col.to_pylist() for name, col in zip(offline.to_arrow().column_names, offline.to_arrow().columns)}
    for i, r in enumerate(requests.to_dict("records")):
        res = s.store.get_online_features([entity(r)], feature_service="everything", request_time=r["event_timestamp"])
        got, statuses = res.to_dict(), res.statuses()
        for view in s.store.repo.views.values():
            if statuses[view.feature_names[0]][0] == "REFUSED":
                assert refusable, f"seed {s.seed} row {i} {view.name} at {r['event_timestamp']}: {res.refusals}"
                assert any("before the online store's retention horizon" in why for why in res.refusals), res.refusals
                continue
            compared[view.name] += 1
            for feature in view.features:
                f = feature.name
                a, e = got[f][0], exact[f][i]
                if not same_online(a, e, getattr(feature, "function", "latest")):
                    problems.append(f"row {i} {view.name}.{f} at {r['event_timestamp']} {entity(r)}: "
                                    f"online {a!r}, offline {e!r}")
    assert not problems, f"seed {s.seed}: {len(problems)} online != offline, e.g.\n" + "\n".join(problems[:15])
    return compared


def after_the_last_event(events: pd.DataFrame) -> pd.DataFrame:
    """Every (k, g) of the events at 1 ms, 1 s and 1 h after the last event."""
    keys = events[["k", "g"]].drop_duplicates().to_dict("records")
    last = events["ts"].max().floor("ms")
    rows = [{**entity(k), "event_timestamp": last + pd.Timedelta(d)} for k in keys for d in ("1ms", "1s", "1h")]
    out = pd.DataFrame(rows)
    out["g"] = pd.array(out["g"].tolist(), dtype="Int64")
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    return out


def run(tmp_path, redis_client, kafka_admin, seed: int, adversarial: bool = False):
    s = stream_seed(tmp_path, seed, kafka_admin, adversarial)
    try:
        check_offline_tables(s)
        check_dead_letters(s)
        events = s.events.iloc[:-len(UNSUPPORTED_TIMES)]  # requests about the events (those the jobs take)
        requests = randomdefs.random_requests(s.rng, events, n=60)
        offline = check_offline_equals_oracle(s, requests)
        compared = check_online(s, requests, offline, refusable=True)
        end = after_the_last_event(events)
        check_online(s, end, check_offline_equals_oracle(s, end), refusable=False)
        assert sum(compared.values()) > 0, f"seed {s.seed}: every request refused"
    finally:
        drop_project(redis_client, s.store.config.project)
        kafka_admin.delete_topics([s.store.repo.sources["src"].stream.topic])


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.parametrize("seed", FAST)
def test_random_definitions_stream_equals_backfill_online_and_oracle(tmp_path, redis_client, kafka_admin, seed):
    run(tmp_path, redis_client, kafka_admin, seed)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW)
def test_random_definitions_stream_more_seeds(tmp_path, redis_client, kafka_admin, seed):
    run(tmp_path, redis_client, kafka_admin, seed)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("seed", [5])
def test_random_definitions_stream_with_adversarial_texts_and_keys(tmp_path, redis_client, kafka_admin, seed):
    """The texts and join keys of randomdefs.adversarial_text (JSON-looking, NUL, 5000 characters, UTF-16
    order unlike code-point order, '{', '}', ':' in keys) through Kafka JSON: stream = backfill = oracle, online."""
    run(tmp_path, redis_client, kafka_admin, seed, adversarial=True)


def test_an_expression_the_stream_cannot_compile_is_refused_in_one_line(tmp_path):
    """What the stream has no DuckDB-exact rendering of (here ``dayname``) is a plan-time Problem of one line
    naming the view and the expression, and building the job raises the same."""
    from featurestore.compiler.ir import compile_view
    from featurestore.engines.flink.exprs import StreamCompileError, check_repo, compile_view_exprs

    (tmp_path / "definitions").mkdir()
    view = ("v = FeatureView(name='v', entities=[user], source=src, filter=\"dayname(ts) = 'Sunday'\", "
            "features=[Latest('a', name='x')])\n")
    (tmp_path / "definitions" / "features.py").write_text(randomdefs.header("t") + view)
    (tmp_path / "featurestore.yaml").write_text("project: p\ndefinitions: definitions\n")
    store = FeatureStore(tmp_path)
    problems = check_repo(store.repo)
    assert len(problems) == 1 and "\n" not in problems[0].message, problems
    assert problems[0].obj == "v" and problems[0].message.startswith(
        "streaming: filter: expression \"dayname(ts) = 'Sunday'\" cannot run in the streaming job: function dayname() is not "
        "supported in the streaming job"), problems[0].message
    with pytest.raises(StreamCompileError, match=r"^feature view 'v', filter: expression .*dayname\(ts\).* cannot run"):
        compile_view_exprs(compile_view(store.repo.views["v"]))
