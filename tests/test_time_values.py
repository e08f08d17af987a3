"""Timestamp values of columns other than the event time (SPEC §1 column types, docs/semantics.md): one rule
in every path (featurestore.semantics.time_value_supported: years 1 to 9999 UTC). A far sentinel such as
9999-12-31T23:59:59.999999 is a value whether it comes from a Parquet batch face or a push (push used to make
it a dead letter: pandas' nanosecond range); a time outside years 1-9999 is a dead letter ``column 'exp':
not a timestamp`` in both (the batch face used to keep it, and an online lookup then crashed with Python's
OverflowError). Random values around every bound; the kept ones read back exactly offline and online."""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import semantics
from featurestore.engines.backfill import dead_letter_table
from featurestore.store import FeatureStore
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "exp": "timestamp", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
expiry = FeatureView(entities=[user], source=events, features=[
    Latest("exp", name="exp_latest"), Aggregation("exp", "count", None, name="exp_n")])
'''
US_PER_YEAR = 365 * 86_400 * 10**6
BOUNDS = [semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US,
          -9_223_372_036_854_775, 9_223_372_036_854_775,  # pandas' nanosecond range, in µs
          -2_208_988_800_000_000, 7_258_118_400_000_000]  # the event times' range
SEEN = pd.Timestamp("2026-01-01T00:00:00Z")


def _values(seed: int):
    rng = random.Random(seed)
    out = [b + d for b in BOUNDS for d in (-1, 0, 1)]
    out += [253_402_300_799_999_999, 20_000 * US_PER_YEAR, -18_000 * US_PER_YEAR, 0, -1]
    out += [rng.randrange(-290_000 * US_PER_YEAR, 290_000 * US_PER_YEAR) for _ in range(10)]
    out += [rng.randrange(semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US) for _ in range(10)]
    rng.shuffle(out)
    return out


def _new_store(tmp_path, definitions: str) -> FeatureStore:
    """A repo at ``tmp_path / "repo"`` holding ``definitions``, its own project (dropped by the caller)."""
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(definitions)
    (root / "featurestore.yaml").write_text(f"project: tv_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    return FeatureStore(root)


@pytest.fixture
def store(tmp_path):
    fs = _new_store(tmp_path, DEFINITIONS)
    yield fs
    drop_project(fs.online_store().client, fs.config.project)


@pytest.mark.parametrize("seed", [0, 1])
def test_timestamp_values_follow_one_rule_in_the_batch_face_and_push(store, seed):
    values = _values(seed)
    n = len(values)
    ok = [semantics.time_value_supported(v) for v in values]
    assert any(ok) and not all(ok)
    ts = [SEEN + pd.Timedelta(milliseconds=i) for i in range(n)]
    # the batch face: users b0.., one event each
    pq.write_table(pa.table({"user_id": [f"b{i}" for i in range(n)], "exp": pa.array(values, pa.timestamp("us", tz="UTC")),
                             "ts": pa.array([t.to_pydatetime() for t in ts], pa.timestamp("us", tz="UTC"))}),
                   store.repo_path / "data" / "e.parquet")
    results = store.backfill()
    assert results[0].dead_letters == ok.count(False), results
    dead = dead_letter_table(store, "events").read().to_pylist()
    assert sorted(r["reason"] for r in dead) == ["column 'exp': not a timestamp"] * ok.count(False)
    store.materialize()
    # push: users p0.., the same values as numpy datetimes (what a DataFrame of such times holds)
    pushed = store.push("events", [{"user_id": f"p{i}", "exp": np.datetime64(v, "us"), "ts": ts[i]}
                                   for i, v in enumerate(values)])
    assert pushed.events == ok.count(True), pushed
    assert pushed.dead_letters == ({"column 'exp': not a timestamp": ok.count(False)} if ok.count(False) else {})
    requests = pd.DataFrame({"user_id": [f"{p}{i}" for p in "bp" for i in range(n)],
                             "event_timestamp": SEEN + pd.Timedelta("1h")})
    offline = store.get_historical_features(requests, features=["expiry:exp_latest", "expiry:exp_n"]).to_arrow()
    got_latest = pa.compute.cast(offline["exp_latest"], pa.int64()).to_pylist()
    want = [v if good else None for v, good in zip(values, ok)] * 2
    assert got_latest == want
    assert offline["exp_n"].to_pylist() == [int(good) for good in ok] * 2
    online = store.get_online_features([{"user_id": u} for u in requests["user_id"]],
                                       features=["expiry:exp_latest", "expiry:exp_n"], request_time=SEEN + pd.Timedelta("1h"))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    served = [None if v is None else (v - epoch) // dt.timedelta(microseconds=1) for v in online.to_dict()["exp_latest"]]
    assert served == want


COMPUTED = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "exp": "timestamp", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
later = FeatureView(entities=[user], source=events, features=[
    Latest("exp + INTERVAL 100 YEAR", name="later_latest"), Aggregation("exp + INTERVAL 100 YEAR", "max", None,
                                                                       name="later_max")])
moved = FeatureView(entities=[user], source=events, projections={"moved": "exp + INTERVAL 100 YEAR"},
                    features=[Latest("moved", name="moved_latest")])
'''


def _write_events(root, rows) -> None:
    """The batch face's one file: ``(user_id, exp in epoch us, ts)`` rows."""
    us = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({"user_id": [r[0] for r in rows], "exp": pa.array([r[1] for r in rows], us),
                             "ts": pa.array([r[2].to_pydatetime() for r in rows], us)}), root / "data" / "e.parquet")


def _stored_as_before_the_check(store, view: str, rows) -> None:
    """Write ``rows`` (``_write_events``' form) into the view's table as a backfill did before it evaluated the
    feature inputs on the events it stores."""
    from featurestore.engines.duckdb_engine import arrow_schema

    cv = store.compiled(view)
    schema = arrow_schema(cv)
    us = pa.timestamp("us", tz="UTC")
    table = pa.table({"user_id": [r[0] for r in rows], "exp": pa.array([r[1] for r in rows], us),
                      "ts": pa.array([r[2].to_pydatetime() for r in rows], us)}).select(schema.names).cast(schema)
    store.offline.table(view, ts_column=cv.ts_column).write_range(table, semantics.MIN_EVENT_TIME_MS, None,
                                                                  rows_key=cv.rows_fingerprint)


def test_a_computed_timestamp_outside_years_1_to_9999_fails_like_an_overflow_at_write_and_offline(tmp_path):
    """A feature input or projection computing a timestamp outside years 1-9999 from supported values (the
    range a lookup returns as a ``datetime``) fails on that event in one line, as an INT64 overflow does:
    materialize of a feature input, get_historical_features; a backfill or a push (of a projection or of a feature
    input) makes that event a dead letter of the view and stores the others. The
    old code stored it and every lookup of the entity, online (Python's OverflowError) and offline, crashed."""
    from featurestore.errors import FeatureStoreError, RequestError

    root = tmp_path / "repo"
    store = _new_store(tmp_path, COMPUTED)
    try:
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        last = dt.datetime(9899, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.timezone.utc)  # + 100 years: the last value
        edge = (last - epoch) // dt.timedelta(microseconds=1)
        values = {"fine": [edge], "far": [edge, semantics.MAX_TIME_VALUE_US - 1]}
        rows = [(u, v, SEEN + pd.Timedelta(milliseconds=i)) for u, vs in values.items() for i, v in enumerate(vs)]
        _write_events(root, rows)
        why = re.escape("'exp + INTERVAL 100 YEAR' is a timestamp outside years 1 to 9999 UTC, the supported "
                        "timestamp values")
        # a backfill makes the event a dead letter of the view (as the streaming job does), of a projection and of
        # a feature input alike (evaluated on the events it stores, as a read of the table does), and stores the rest
        from featurestore.engines.backfill import dead_letter_table
        from featurestore.engines.flink.exprs_time import TIME_OUT_OF_RANGE

        results = {r.view: r for r in store.backfill(views=["moved", "later"])}
        parts = {"moved": "projection 'moved'", "later": "feature 'later_latest', 'later_max'"}
        letters = sorted((d["reason"], d["event_time_ms"]) for d in dead_letter_table(store, "events").read().to_pylist())
        far_ms = int(rows[-1][2].value // 1_000_000)
        assert letters == sorted((f"view '{v}': {part} (exp + INTERVAL 100 YEAR): {TIME_OUT_OF_RANGE}", far_ms)
                                 for v, part in parts.items())
        for view in parts:
            assert (results[view].rows, results[view].failed) == (len(rows) - 1, 1), view
            stored = store.offline.table(view, ts_column="ts").read().to_pylist()
            assert sorted(r["user_id"] for r in stored) == ["far", "fine"], view  # far's supported event kept
        _stored_as_before_the_check(store, "later", rows)  # a table an earlier version wrote: reads fail alike
        with pytest.raises(FeatureStoreError, match=r"^materialize of view 'later' failed: .*" + why):
            store.materialize(views=["later"])
        requests = pd.DataFrame({"user_id": ["far", "fine"], "event_timestamp": SEEN + pd.Timedelta("1h")})
        with pytest.raises(RequestError, match=r"^feature view 'later': an expression of its filter, projections "
                                               r"or features fails on an event: .*" + why):
            store.get_historical_features(requests, features=["later:later_latest"])
        # without the far user's events: the values at the edge of the range, the same online and offline
        _write_events(root, [r for r in rows if r[0] == "fine"])
        store.backfill()
        store.materialize()
        q = SEEN + pd.Timedelta("1h")
        want = last.replace(year=9999)
        refs = ["later:later_latest", "later:later_max", "moved:moved_latest"]
        online = store.get_online_features([{"user_id": "fine"}], features=refs, request_time=q).to_dict()
        offline = store.get_historical_features(requests.iloc[1:], features=refs).to_arrow().to_pylist()[0]
        for ref in refs:
            name = ref.split(":")[1]
            assert online[name] == [want] and offline[name] == want, name
        # a push of the far value: a dead letter of each view it fails on, with the backfill's reason (docs/push.md
        # "Bad rows"); no view takes it, so the far user stays unknown online
        res = store.push("events", [{"user_id": "far", "exp": np.datetime64(semantics.MAX_TIME_VALUE_US - 1, "us"),
                                     "ts": SEEN}], to="online")
        assert res.events == 1 and res.dead_letters == {
            f"view '{v}': {part} (exp + INTERVAL 100 YEAR): {TIME_OUT_OF_RANGE}": 1 for v, part in parts.items()}
        got = store.get_online_features([{"user_id": "far"}], features=refs, request_time=q).to_dict()
        assert got["later_latest"] == [None] and got["moved_latest"] == [None]
    finally:
        drop_project(store.online_store().client, store.config.project)


def test_a_stored_timestamp_outside_years_1_to_9999_is_refused_in_one_line_never_a_traceback(tmp_path, monkeypatch):
    """Online state holding such a value (written before materialize checked computed timestamps: simulated
    with the old unchecked SQL) is REFUSED with a one-line reason, in get_online_features and the HTTP server,
    for that feature and entity only; the old code raised Python's OverflowError for the whole lookup."""
    from fastapi.testclient import TestClient

    from featurestore.engines import duckdb_sql as dsql
    from featurestore.server import create_app

    root = tmp_path / "repo"
    store = _new_store(tmp_path, COMPUTED)
    try:
        _write_events(root, [("far", semantics.MAX_TIME_VALUE_US - 1, SEEN), ("near", 0, SEEN)])
        monkeypatch.setattr(dsql, "input_sql", lambda expr, dtype: f"CAST(({expr}) AS {dsql.SQL_TYPES[dtype]})",
                            raising=False)  # (the old code: no check to undo)
        store.materialize(views=["later"])
        monkeypatch.undo()
        q = SEEN + pd.Timedelta("1h")
        rows = [{"user_id": "far"}, {"user_id": "near"}]
        got = store.get_online_features(rows, features=["later:later_latest", "later:later_max"], request_time=q)
        near = dt.datetime(2070, 1, 1, tzinfo=dt.timezone.utc)
        assert got.to_dict() == {"user_id": ["far", "near"], "later_latest": [None, near], "later_max": [None, near]}
        assert got.statuses() == {"later_latest": ["REFUSED", "PRESENT"], "later_max": ["REFUSED", "PRESENT"]}
        assert got.refusals == [semantics.time_value_reason("later", f) for f in ("later_latest", "later_max")]
        assert got.refusals[0] == ("feature view 'later': feature 'later_latest': a stored timestamp outside years 1 to "
                                   "9999 UTC; run 'featurestore materialize --view later' (it names the expression "
                                   "that computes it)")
        res = TestClient(create_app(store)).post("/get-online-features", json={
            "features": ["later:later_latest"], "entity_rows": rows, "request_time": int(q.value // 10**6)})
        assert res.status_code == 200, res.text
        assert res.json()["statuses"]["later_latest"] == ["REFUSED", "PRESENT"]
    finally:
        drop_project(store.online_store().client, store.config.project)
