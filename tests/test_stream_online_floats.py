"""Floats on the streaming job's online path as they are (SPEC §3.2; docs/semantics.md, non-finite values).

A source column never holds NaN or an infinity (JSON cannot carry one), but a projection or feature
expression can compute one (``a / 0``, ``a * a`` past 1e308). The JVM writes the online rows the way Flink's
``JSON_ARRAY`` does, a non-finite DOUBLE as the *string* ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``
(tests/test_stream_json_array.py); the Python operator must hold the float again (it kept the string: a
``max`` over finite and non-finite values raised ``TypeError`` at lookup). And ``JSON_ARRAY`` writes -0.0 as
``0.0``: a latest/first/last of -0.0 was 0.0 online, -0.0 offline (``fs_json_array`` writes ``-0.0`` now).
Both found by tests/test_random_definitions_stream.py."""

from __future__ import annotations

import json
import math
import uuid

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.engines.flink import online
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests import oracle, randomdefs
from tests.compare import assert_features_equal
from tests.conftest import drop_project
from tests.stream_helpers import JOB_TIMEOUT_S, create_topic, produce

VIEW = '''
v = FeatureView(name="v", entities=[user], source=src, projections={"q": "a / 0", "sq": "a * a"},
    features=[Latest("q", name="latest_q"), Latest("sq", name="latest_sq"), Latest("s", name="latest_s"),
              Aggregation("q", "max", None, name="max_q"), Aggregation("q", "sum", None, name="sum_q"),
              Aggregation("q", "last", None, name="last_q"), Aggregation("q", "count_distinct", None, name="nq"),
              Aggregation("sq", "max", None, name="max_sq"), Aggregation("sq", "min", None, name="min_sq"),
              Aggregation("sq", "max", "1s", name="max_sq_1s"), Aggregation("sq", "last", None, name="last_sq"),
              Aggregation("sq", "first", "1m", name="first_sq"), Aggregation("sq", "sum", None, name="sum_sq"),
              Aggregation("sq", "sum", "2s", name="sum_sq_2s"), Aggregation("sq", "mean", None, name="mean_sq"),
              Aggregation("sq", "stddev", "3s", name="sd_sq_3s"), Aggregation("sq", "count_distinct", None, name="nsq"),
              Latest("a", name="latest_a"), Aggregation("a", "last", None, name="last_a"),
              Aggregation("a", "first", "1ms", name="first_a_1ms"),
              Latest("TRY_CAST(a AS FLOAT)", name="latest_a32"), Aggregation("TRY_CAST(a AS FLOAT)", "last", None, name="last_a32"),
              Aggregation("TRY_CAST(a AS FLOAT)", "first", "1ms", name="first_a32_1ms"),
              Aggregation("TRY_CAST(a AS FLOAT)", "count_distinct", None, name="na32")])
'''
COLUMNS = ["k", "g", "a", "n", "s", "b", "t2", "big", "cr", "ts"]
BASE = pd.Timestamp("2026-03-01T00:00:00Z")


def write_repo(root, topic: str = "t", project: str = "p"):
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(randomdefs.header(topic) + VIEW)
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    return root


def jvm_text(view: "online._View", eid: int, ts: int, values: list) -> str:
    """The view's event array as the JVM writes it (fs_json_array = JSON_ARRAY: a non-finite double as a string)."""
    def value(x):
        if isinstance(x, float) and not math.isfinite(x):
            return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
        return x

    arr = [None] * (max(view.flag, *view.inputs, *view.order) + 1)
    arr[0], arr[1], arr[view.flag] = eid, ts, True
    for slot, x in zip(view.inputs, values):
        arr[slot] = value(x)
    return json.dumps(arr, ensure_ascii=False)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


def test_the_operator_holds_non_finite_float_inputs_as_floats_and_strings_as_strings(tmp_path):
    store = FeatureStore(write_repo(tmp_path))
    (group,) = streaming.plan(store).online
    spec = group.to_dict()
    (view,) = [online._View(v, spec["n_order"]) for v in spec["views"]]
    types = [dtype for _, dtype in view.layout.inputs]
    for i, x in enumerate([math.inf, -math.inf, math.nan, 1.5, None]):
        # every input: the float x in the float inputs, its text (or "NaN") in the string ones
        values = [x if dtype in ("float64", "float32") else (None if x is None else "NaN" if i % 2 else "Infinity")
                  for dtype in types]
        text = jvm_text(view, 7 + i, 1000 + i, values)
        events, plain = online.parse_batch(text)
        eid, order, inputs, member = view.event(events[0], plain)
        assert all(same(got, want) for got, want in zip(inputs, values)), (text, inputs)
        stored = json.loads(member)  # what the readers parse (NaN/Infinity tokens)
        assert all(same(got, want) for got, want in zip(view.members.decode(stored)[2], values)), member


@pytest.mark.parametrize("arrays, plain", [
    (['[1,1000,"é",1.5,true]', '[2,1001,"x",-0.0,false]'], True),  # non-ASCII text, -0.0
    (['[3,1002,"NaN",2.5]', '[4,1003,"y","Infinity"]'], False),  # a value may be non-finite
    (['[5,1004,"z",-9223372036854775808,9223372036854775807]'], True),  # BIGINT's ends
    # beyond 64 bits (orjson would read them as floats, not raise): exact, through json
    (['[6,1005,"w",18446744073709551616,-9223372036854775809]', '[7,1006,"v",9223372036854775808,1.5]'], False),
    (['[8,1007,"u",-123456789012345678901234567890]'], False),
])
def test_a_batch_parses_the_same_as_bytes_and_as_text(arrays, plain):
    """OnlineBatches emits a batch as UTF-8 bytes; keyed state restored from a checkpoint taken before holds
    it as text: both give the same events and plainness."""
    text = ",".join(arrays)
    want = (json.loads("[" + text + "]"), plain)
    assert online.parse_batch(text.encode()) == online.parse_batch(text) == want


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_online_values_of_non_finite_expressions_equal_offline_and_oracle(tmp_path, redis_client, kafka_admin):
    topic, project = f"fs_nonfinite_{uuid.uuid4().hex[:10]}", f"t_nonfinite_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(write_repo(tmp_path, topic, project))
    amounts = [1.0, -2.0, 0.0, 1e308, -1e308, None, 5.0, -0.0, 2.5, 1e200]
    rows = [{"k": f"u{i % 3}", "a": a, "s": ["NaN", "Infinity", "x"][i % 3],
             "ts": BASE + pd.Timedelta(milliseconds=700 * i)} for i, a in enumerate(amounts * 2)]
    events = pd.DataFrame(rows).astype({"a": "float64"})
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    for c, dtype in [("g", "Int64"), ("n", "Int64"), ("big", "Int64"), ("b", "boolean")]:
        events[c] = pd.array([None] * len(events), dtype=dtype)
    for c in ("t2", "cr"):
        events[c] = pd.to_datetime(pd.Series([None] * len(events)), utc=True)
    randomdefs.write(tmp_path, events)
    create_topic(kafka_admin, topic)
    produce(topic, [(r["k"].encode(), datagen.to_json_record(r, "ts", COLUMNS)) for r in events.to_dict("records")])
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        times = sorted({t.floor("ms") + pd.Timedelta(d) for t in events["ts"] for d in ("1ms", "1s")})
        requests = pd.DataFrame([{"k": k, "event_timestamp": q} for k in ("u0", "u1", "u2") for q in times])
        requests["event_timestamp"] = pd.to_datetime(requests["event_timestamp"], utc=True)
        view = store.repo.views["v"]
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(store.get_historical_features(requests, feature_service=None, features=[
            f"v:{f}" for f in view.feature_names]), expected, view.feature_names, "offline (stream tables)")
        got = []
        for r in requests.to_dict("records"):
            res = store.get_online_features([{"k": r["k"]}], features=[f"v:{f}" for f in view.feature_names],
                                            request_time=r["event_timestamp"])
            assert res.refusals == []
            got.append({f: vals[0] for f, vals in res.to_dict().items()})
        assert_features_equal(pd.DataFrame(got), expected, view.feature_names, "online (stream state) vs oracle")
        signs = [(i, f, a, e) for f in ("latest_a", "last_a", "first_a_1ms", "latest_a32", "last_a32", "first_a32_1ms")
                 for i, (a, e) in enumerate(zip([g[f] for g in got], expected[f].tolist()))
                 if a == 0.0 and math.copysign(1, a) != math.copysign(1, e)]  # the value as it is: -0.0 too
        assert not signs, f"online loses the sign of zero: {signs[:5]}"
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
