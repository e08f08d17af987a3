"""No single bad record may halt, crash or change the data of the streaming job (SPEC §2, §4; issue 10
items 3 and 7), and the stream and both backfills agree on which rows are dead letters.

One random event set (tests/randomrepo.py) plus one event of every extreme-time kind
(randomrepo.extreme_times: epoch µs/ns/s mistakes, years 9999/10000/2100, int64 extremes, the range
bounds and one off, the future bound, pre-1970 and sub-millisecond digits), with malformed records of
every kind interleaved (trailing garbage, objects/arrays/strings/booleans where another type is
expected, huge integers, 1e400, NaN/Infinity tokens, duplicate keys, empty payloads, invalid UTF-8),
goes through the stream (real Kafka, Flink, Redis) and through the batch face (the same events, the
extreme times in files of three timestamp units) through the DuckDB and the Flink backfills. Then:
offline rows stream = backfill; dead letters with the same reasons and counts; online values equal to the
oracle for every other event; a second run over more records (extreme ones too) still commits.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.engines.backfill import dead_letter_table
from featurestore.errors import RequestError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_value
from tests.randomrepo import BASE, BASE_MS, extreme_events, extreme_times, random_events, write_batch_face
from tests.test_event_times import REASONS, extreme_requests
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, SCHEMA, assert_same_rows, create_topic, dead_letters, drop_project,
                               make_repo, offline_table, produce)

SEED = 31
N_EVENTS = 250
E = {"user_id": "u1", "shop": 1, "amount": 2.5, "qty": 3, "tag": "a", "flag": True}


def _obj(**over) -> bytes:
    rec = {**E, "ts": BASE_MS + 1234, **over}
    return json.dumps(rec, separators=(",", ":")).encode()


def _raw(text: str) -> bytes:
    return text.encode("utf-8")


GOOD_PREFIX = '{"user_id":"u1","shop":1,"amount":2.5,"qty":3,"tag":"a","flag":true,'
# (payload, reason): every way a record can be malformed, and its neighbours
MALFORMED = [
    (None, "empty record (null value)"),
    (b"", "not a JSON object"),
    (b"   \n", "not a JSON object"),
    (b"not json", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    (b'"just a string"', "not a JSON object"),
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS}'), "not a JSON object"),  # truncated
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS}}}garbage'), "trailing data after the JSON object"),
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS}}} {{"a":1}}'), "trailing data after the JSON object"),
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS}}}}}'), "trailing data after the JSON object"),
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS}}} // comment'), "trailing data after the JSON object"),
    (_raw(GOOD_PREFIX + f'"ts":{BASE_MS},}}'), "not a JSON object"),  # trailing comma
    (_raw(GOOD_PREFIX.replace('"amount":2.5', '"amount":NaN') + f'"ts":{BASE_MS}}}'), "not a JSON object"),
    (_raw(GOOD_PREFIX.replace('"amount":2.5', '"amount":Infinity') + f'"ts":{BASE_MS}}}'), "not a JSON object"),
    (_raw(GOOD_PREFIX.replace('"qty":3', '"qty":007') + f'"ts":{BASE_MS}}}'), "not a JSON object"),
    (_raw(GOOD_PREFIX.replace('"user_id":"u1"', "'user_id':'u1'") + f'"ts":{BASE_MS}}}'), "not a JSON object"),
    (_raw(GOOD_PREFIX + f'"user_id":"u2","ts":{BASE_MS}}}'), "duplicate key 'user_id'"),
    (_raw(GOOD_PREFIX + f'"meta":{{"a":1,"b":[{{"c":1,"c":2}}]}},"ts":{BASE_MS}}}'), "duplicate key 'c'"),
    (_obj(amount={"value": 2.5}), "column 'amount': not a float64"),
    (_obj(amount=[2.5]), "column 'amount': not a float64"),
    (_obj(amount="2.5"), "column 'amount': not a float64"),
    (_obj(amount=True), "column 'amount': not a float64"),
    (_raw(GOOD_PREFIX.replace('"amount":2.5', '"amount":1e400') + f'"ts":{BASE_MS}}}'), "column 'amount': not a float64"),
    (_raw(GOOD_PREFIX.replace('"amount":2.5', '"amount":-1e400') + f'"ts":{BASE_MS}}}'), "column 'amount': not a float64"),
    (_obj(qty=True), "column 'qty': not a int64"),
    (_obj(qty="3"), "column 'qty': not a int64"),
    (_obj(qty=3.0), "column 'qty': not a int64"),
    (_obj(qty=99999999999999999999), "column 'qty': not a int64"),
    (_obj(qty={"n": 3}), "column 'qty': not a int64"),
    (_obj(shop=[1]), "column 'shop': not a int64"),
    (_obj(user_id=["u1"]), "column 'user_id': not a string"),
    (_obj(user_id=7), "column 'user_id': not a string"),
    (_obj(tag=5), "column 'tag': not a string"),
    (_obj(flag=1), "column 'flag': not a bool"),
    (_obj(flag="true"), "column 'flag': not a bool"),
    (_obj(qty="x", amount="y"), "column 'amount': not a float64"),  # the first bad column in schema order
    (_obj(ts=None), "missing event time 'ts'"),
    (json.dumps(E).encode(), "missing event time 'ts'"),
    (_obj(ts=1.7e12), "event time 'ts': not an integer (epoch milliseconds)"),
    (_obj(ts=str(BASE_MS)), "event time 'ts': not an integer (epoch milliseconds)"),
    (_obj(ts=2**63), "event time 'ts': not an integer (epoch milliseconds)"),
    (_obj(ts={"ms": BASE_MS}), "event time 'ts': not an integer (epoch milliseconds)"),
    (_obj(ts=BASE_MS * 1000, qty="x"), REASONS["out of range"]),  # the time's problem before a column's
    # invalid UTF-8 in a key's value: two different byte strings must not become the same user
    (b'{"user_id":"u\xff1","shop":1,"ts":' + str(BASE_MS).encode() + b"}", "not valid UTF-8"),
    (b'{"user_id":"u\xfe1","shop":1,"ts":' + str(BASE_MS).encode() + b"}", "not valid UTF-8"),
    (b'{"user_id":"u\xed\xa0\x80","shop":1,"ts":' + str(BASE_MS).encode() + b"}", "not valid UTF-8"),  # a surrogate
]
# Records that look odd but are events (their rows are in the batch face too): unknown nested keys, an
# integer literal for a float column, -0, an escaped and a literal non-ASCII string.
ODD_BUT_GOOD = [
    ({"user_id": "u2", "shop": 0, "amount": 5.0, "qty": 0, "tag": "é", "flag": False, "ts": BASE_MS + 7},
     '{"user_id":"u2","extra":{"deep":[1,{"k":"v"}],"n":null},"shop":0,"amount":5,"qty":-0,"tag":"\\u00e9",'
     f'"flag":false,"ts":{BASE_MS + 7}}}'),
    ({"user_id": "u3", "shop": 2, "amount": None, "qty": None, "tag": "é", "flag": None, "ts": BASE_MS + 9},
     f'{{"user_id":"u3","shop":2,"amount":null,"tag":"é","ts":{BASE_MS + 9}}}'),
]


def _frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    return df.astype({"qty": "Int64", "flag": "boolean", "shop": "int64", "amount": "float64"})


def records(events: pd.DataFrame, extremes: pd.DataFrame, seed: int, malformed=MALFORMED, odd=ODD_BUT_GOOD):
    rng = random.Random(seed)
    out = [(None, datagen.to_json_record(r, "ts", SCHEMA)) for r in events.to_dict("records")]
    out += [(None, datagen.to_json_record({k: v for k, v in r.items() if k != "kind"}, "ts", SCHEMA))
            for r in extremes.to_dict("records")]
    out += [(None, payload.encode()) for _, payload in odd]
    rng.shuffle(out)
    for payload, _ in malformed:
        out.insert(rng.randrange(len(out) + 1), (None, payload))
    return out


@dataclasses.dataclass
class Run:
    root: Path
    topic: str
    project: str
    store: FeatureStore
    now_ms: int
    events: pd.DataFrame  # every good event (random + odd-but-good), pandas times
    extremes: pd.DataFrame
    first: streaming.StreamResult
    second: streaming.StreamResult = None
    more_events: pd.DataFrame = None
    more_extremes: pd.DataFrame = None


def _ref(root: Path, name: str) -> FeatureStore:
    return FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(root / name)))


@pytest.fixture(scope="module")
def run(tmp_path_factory, redis_client, kafka_admin):
    topic = f"fs_bad_{uuid.uuid4().hex[:10]}"
    project = f"t_bad_{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    events = pd.concat([random_events(SEED, n=N_EVENTS), _frame([r for r, _ in ODD_BUT_GOOD])], ignore_index=True)
    extremes = extreme_events(SEED, now)
    root = tmp_path_factory.mktemp("bad")
    make_repo(root, topic, project, events)
    write_batch_face(root, events, extremes)
    create_topic(kafka_admin, topic)
    produce(topic, records(events.iloc[: N_EVENTS], extremes, SEED))
    store = FeatureStore(root)
    try:
        first = streaming.run(store, bounded=True, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
        yield Run(root, topic, project, store, now, events, extremes, first)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def _text(payload):
    """A payload's text with each run of U+FFFD as one (Java replaces an invalid sequence once, Python per byte)."""
    return None if payload is None else re.sub("\ufffd+", "\ufffd", payload)


def _time_reasons(rows) -> Counter:
    return Counter(r["reason"] for r in rows if r["reason"].startswith("event time 'ts' "))


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_stream_dead_letters_every_bad_record_with_its_reason(run):
    rows = dead_letters(run.store)
    got = Counter((_text(r["payload"]), r["reason"]) for r in rows if not r["reason"].startswith("null join key"))
    want = Counter((None if p is None else _text(p.decode("utf-8", errors="replace")), reason) for p, reason in MALFORMED)
    for kind, ts, fate in extreme_times(run.now_ms):
        if fate:
            row = run.extremes[run.extremes["kind"] == kind].iloc[0].to_dict()
            row.pop("kind")
            want[(datagen.to_json_record(row, "ts", SCHEMA).decode(), REASONS[fate])] += 1
    assert got == want
    assert run.first.metrics["events"]["dead_letters"] == sum(want.values())
    # the two invalid-UTF-8 users were not merged into one (nor into anyone): they are no events at all
    stored = offline_table(run.store, "amount_stats").column("user_id").to_pylist()
    assert not any("\ufffd" in u for u in stored)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_stream_equals_duckdb_backfill_rows_and_dead_letters(run):
    ref = _ref(run.root, "ref_offline")
    results = ref.backfill()
    for view in run.store.repo.views:
        assert_same_rows(offline_table(run.store, view), offline_table(ref, view), f"view {view}, stream vs backfill")
    stream_dead = dead_letters(run.store)
    batch_dead = dead_letter_table(ref, "events").read().to_pylist()
    json_only = _time_reasons({"reason": r} for _, r in MALFORMED)  # malformed records not in the batch face
    assert _time_reasons(stream_dead) - json_only == _time_reasons(batch_dead) == Counter(
        REASONS[fate] for _, _, fate in extreme_times(run.now_ms) if fate)
    assert results[0].dead_letters == sum(_time_reasons(batch_dead).values())
    m = run.first.metrics["events"]
    kept = N_EVENTS + sum(1 for _, _, fate in extreme_times(run.now_ms) if fate is None) + len(ODD_BUT_GOOD)
    assert m["events:amount_stats"] == kept == {r.view: r for r in results}["amount_stats"].rows


def _online(store, row: dict, refs, q):
    """The online values of one entity row at ``q``; None when refused because ``q`` is before the view's
    retention horizon (an error, or a REFUSED status per value, depending on the online store's version)."""
    try:
        res = store.get_online_features([row], features=refs, request_time=q)
    except RequestError as exc:
        assert "before the online store's retention horizon" in str(exc), str(exc)
        return None
    statuses = res.statuses() if hasattr(res, "statuses") else {}
    if any("REFUSED" in s for s in statuses.values()):
        assert all("retention horizon" in r for r in res.refusals), res.refusals
        return None
    return res.to_dict()


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_online_equals_oracle_for_every_other_event(run):
    everything = pd.concat([run.events.astype({"ts": object}), run.extremes], ignore_index=True)
    requests = extreme_requests(SEED, run.events.iloc[:N_EVENTS], run.now_ms)
    store = run.store
    compared, refused = Counter(), defaultdict(list)
    for view in store.repo.views.values():
        expected = oracle.point_in_time(everything, view, requests, now_ms=run.now_ms)
        refs = [f"{view.name}:{f}" for f in view.feature_names]
        for i, r in enumerate(requests.to_dict("records")):
            got = _online(store, {k: r[k] for k in KEYS}, refs, r["event_timestamp"])
            if got is None:
                refused[view.name].append(r["event_timestamp"])
                continue
            for f in view.feature_names:
                e = expected[f].iloc[i]
                assert same_value(got[f][0], e), f"row {i} {view.name}.{f} at {r['event_timestamp']}: online " \
                                                 f"{got[f][0]!r}, oracle {e!r}"
            compared[view.name] += 1
    # Unbounded views refuse only requests long before the entity's events (the requests in 1900-1970 after
    # the accepted ancient events; the online store may keep only a prefix of such history).
    assert all(q < BASE for q in refused["amount_stats"] + refused["qty_stats"]), refused
    assert compared["amount_stats"] >= int((requests["event_timestamp"] >= BASE).sum())
    for name in ("profile", "profile_forever", "pair_stats"):
        assert compared[name] >= 20, compared
    # offline (from the streamed tables) = oracle as well
    offline = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert_features_equal(offline, oracle.point_in_time(everything, view, requests, now_ms=run.now_ms),
                              view.feature_names, f"offline vs oracle, view {view.name}")


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_later_run_still_commits_new_events_and_counts_new_dead_letters(run):
    before = run.first.metrics["events"]
    more = random_events(SEED + 1, n=60)
    more_extremes = extreme_events(SEED + 1, int(time.time() * 1000)).iloc[:8]  # out-of-range and future kinds
    bad = sum(1 for kind, _, fate in extreme_times(0) if fate and kind in set(more_extremes["kind"]))
    produce(run.topic, records(more, more_extremes, SEED + 1, malformed=MALFORMED[:5], odd=[]))
    second = streaming.run(run.store, bounded=True, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
    after = second.metrics["events"]
    good_extremes = len(more_extremes) - bad
    assert after["events:amount_stats"] == before["events:amount_stats"] + len(more) + good_extremes
    assert after["dead_letters"] == before["dead_letters"] + 5 + bad
    # the offline tables still equal a backfill of everything the topic holds
    write_batch_face(run.root, pd.concat([run.events, more], ignore_index=True),
                     pd.concat([run.extremes, more_extremes], ignore_index=True))
    ref = _ref(run.root, "ref_offline_2")
    ref.backfill()
    for view in run.store.repo.views:
        assert_same_rows(offline_table(run.store, view), offline_table(ref, view), f"view {view}, after a second run")


@pytest.mark.flink
@pytest.mark.slow
def test_flink_backfill_equals_duckdb_backfill_on_extreme_times(run, tmp_path):
    """``backfill --engine flink`` over the same batch face (three timestamp units, pre-1970 sub-ms digits,
    values beyond DuckDB's range, an unused struct column): the same rows and the same dead letters."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = run.root
    part = root / "data" / "events" / "part-0.parquet"
    table = pq.read_table(part)  # a column no view uses, of a type Flink's reader cannot map: ignored
    pq.write_table(table.append_column("meta", pa.array([{"a": i, "b": [i]} for i in range(table.num_rows)])), part)
    # real NaNs (pyarrow keeps them; pandas would write nulls) in a column without nulls: null at ingestion in
    # both engines (DuckDB folded its NaN test from the file's statistics, Calcite simplified Flink's x = x)
    rng = random.Random(SEED)
    nan_amounts = [math.nan if rng.random() < 0.4 else rng.uniform(-5, 5) for _ in range(40)]
    pq.write_table(pa.table({
        "user_id": [f"u{rng.randrange(3)}" for _ in nan_amounts], "shop": pa.array([1] * len(nan_amounts), pa.int64()),
        "amount": pa.array(nan_amounts, pa.float64(), from_pandas=False), "qty": pa.array([2] * len(nan_amounts), pa.int64()),
        "tag": ["a"] * len(nan_amounts), "flag": [True] * len(nan_amounts),
        "ts": pa.array([BASE_MS * 1000 + i * 7_001_000 for i in range(len(nan_amounts))], pa.int64()).cast(pa.timestamp("us", tz="UTC"))}),
        root / "data" / "events" / "nan-us.parquet")
    duck, flink = _ref(root, "duck_offline"), _ref(root, "flink_offline")
    want = {r.view: r for r in duck.backfill()}
    got = {r.view: r for r in flink.backfill(engine="flink")}
    for view in duck.repo.views:
        assert (got[view].rows, got[view].dead_letters, got[view].rejected_null_key, got[view].reasons) == \
            (want[view].rows, want[view].dead_letters, want[view].rejected_null_key, want[view].reasons), view
        assert_same_rows(offline_table(flink, view), offline_table(duck, view), f"view {view}, Flink backfill")
        stored = offline_table(flink, view)
        amounts = stored.column("amount").to_pylist() if "amount" in stored.column_names else []
        assert not any(a != a for a in amounts if a is not None), f"view {view}: a NaN amount is null at ingestion"
    a = dead_letter_table(flink, "events").read().to_pylist()
    b = dead_letter_table(duck, "events").read().to_pylist()
    assert sorted((r["reason"], r["event_time_ms"]) for r in a) == sorted((r["reason"], r["event_time_ms"]) for r in b)
