"""Offline point-in-time values keep the sign of zero where docs/semantics.md promises the value as it is:
latest, first and last of -0.0 are -0.0 (SPEC §3: identical; the online store and the oracle keep it).

DuckDB's ``arg_max`` over a struct (or by one) writes -0.0 as 0.0: the latest plan that picks the greatest
event among equal times (events of the batch face, or a table with ties) and the created-time filter lost the
sign. Found by tests/test_random_definitions_stream.py (online -0.0, offline 0.0). A FLOAT's (float32) arg_max
and arg_min lose it by any order, struct or integer: first/last of a float32 input read 0.0 offline (found by an
adversarial audit; the online store kept -0.0). Every plan, the batch face
and the backfilled table, events with and without ties, against the oracle."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from featurestore.engines import duckdb_pit
from featurestore.store import FeatureStore
from tests import oracle, randomdefs

VIEWS = '''
lat = FeatureView(name="lat", entities=[user], source=src, ttl="1m",
    features=[Latest("a", name="latest_a"), Latest("-a", name="latest_neg_a"), Latest("n", name="latest_n"),
              Latest("CAST(a AS FLOAT)", name="latest_a32")])
agg = FeatureView(name="agg", entities=[user], source=src,
    features=[Latest("a", name="agg_latest_a"), Aggregation("a", "last", None, name="last_a"),
              Aggregation("a", "first", None, name="first_a"), Aggregation("a", "last", "2s", name="last_a_2s"),
              Aggregation("a", "first", "2s", name="first_a_2s"),
              Aggregation("CAST(a AS FLOAT)", "last", None, name="last_a32"),
              Aggregation("CAST(a AS FLOAT)", "first", None, name="first_a32"),
              Aggregation("CAST(a AS FLOAT)", "last", "2s", name="last_a32_2s"),
              Aggregation("CAST(a AS FLOAT)", "first", "2s", name="first_a32_2s")])
'''
# float32 inputs too: DuckDB's arg_max/arg_min of a FLOAT write -0.0 as 0.0 even by a plain integer order
SIGNED = ["latest_a", "latest_neg_a", "agg_latest_a", "last_a", "first_a", "last_a_2s", "first_a_2s",
          "latest_a32", "last_a32", "first_a32", "last_a32_2s", "first_a32_2s"]
BASE = pd.Timestamp("2026-03-01T00:00:00Z")


def events_of(seed: int, ties: bool) -> pd.DataFrame:
    """Zeros of both signs (and a few other values, nulls) on three keys; ``ties``: bursts of equal times."""
    rng = random.Random(seed)
    rows, t = [], 0
    for i in range(80):
        t += rng.choice([0, 0, 1, 700]) if ties else rng.choice([1, 700, 1500])
        rows.append({"k": rng.choice(["u1", "u2", "u3"]), "a": rng.choice([0.0, -0.0, -0.0, 0.0, 2.5, None]),
                     "n": i, "ts": BASE + pd.Timedelta(milliseconds=t),
                     "cr": BASE + pd.Timedelta(milliseconds=t + rng.choice([0, 5, 900]))})
    ev = pd.DataFrame(rows).astype({"a": "float64"})
    for c, dtype in [("g", "Int64"), ("big", "Int64"), ("b", "boolean")]:
        ev[c] = pd.array([None] * len(ev), dtype=dtype)
    ev["n"] = pd.array(ev["n"].tolist(), dtype="Int64")
    ev["s"] = None
    ev["t2"] = pd.to_datetime(pd.Series([None] * len(ev)), utc=True)
    for c in ("ts", "cr"):
        ev[c] = pd.to_datetime(ev[c], utc=True)
    return ev


def requests_of(events: pd.DataFrame) -> pd.DataFrame:
    times = sorted({t.floor("ms") + pd.Timedelta(d) for t in events["ts"] for d in ("1ms", "2s")})
    out = pd.DataFrame([{"k": k, "event_timestamp": q} for q in times for k in ("u1", "u2", "u3")])
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    return out


def assert_signs(got, expected: pd.DataFrame, names, context: str):
    """Each value equal to the oracle's, zeros to their sign."""
    problems = []
    for name in names:
        for i, (a, e) in enumerate(zip(got.column(name).to_pylist(), expected[name].tolist())):
            e = None if e is None or e != e else e
            if (a is None) != (e is None) or (a is not None and (a != e or math.copysign(1, a) != math.copysign(1, e))):
                problems.append(f"row {i} {name}: got {a!r}, expected {e!r}")
    assert not problems, f"{context}: {len(problems)} differences, e.g. {problems[:5]}"


@pytest.mark.parametrize("ties", [False, True])
def test_latest_first_last_keep_the_sign_of_zero_in_every_plan(tmp_path, monkeypatch, ties):
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "features.py").write_text(randomdefs.header() + VIEWS)
    (tmp_path / "featurestore.yaml").write_text("project: p\ndefinitions: definitions\n")
    events = events_of(7, ties)
    randomdefs.write(tmp_path, events)
    store = FeatureStore(tmp_path)
    requests = requests_of(events)
    views = store.repo.views
    expected = {name: oracle.point_in_time(events, view, requests) for name, view in views.items()}
    for face in ("batch face", "table"):
        if face == "table":
            store.backfill()
        for plan, cost in [("per key", None), ("sweep", 0.0), ("range join", float("inf"))]:
            if cost is not None:
                monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", cost)
            got = store.get_historical_features(requests, features=[
                f"{v}:{f}" for v in views for f in views[v].feature_names]).to_arrow()
            for name, view in views.items():
                assert_signs(got, expected[name], [f for f in view.feature_names if f in SIGNED],
                             f"{face}, {plan}, view {name}")
            monkeypatch.undo()
        # the created-time filter's plan (Feast's filter_by_created_timestamp; latest features only)
        some = requests.sample(40, random_state=1).reset_index(drop=True)
        got = store.get_historical_features(some, features=[f"lat:{f}" for f in views["lat"].feature_names],
                                            filter_by_created_timestamp=True).to_arrow()
        want = _created_oracle(events, views["lat"], some.to_dict("records"))
        assert_signs(got, want, ["latest_a", "latest_neg_a"], f"{face}, created-time filter")
        assert sum(1 for v in got.column("latest_a").to_pylist() if v == 0 and math.copysign(1, v) < 0) >= 3


def _created_oracle(events: pd.DataFrame, view, requests) -> pd.DataFrame:
    """The latest features when an event is also hidden until its created time: the oracle over, per request,
    the events created before it."""
    rows = []
    for r in requests:
        q = r["event_timestamp"]
        seen = events[events["cr"] < q]
        one = pd.DataFrame([r])
        one["event_timestamp"] = pd.to_datetime(one["event_timestamp"], utc=True)
        rows.append(oracle.point_in_time(seen, view, one).iloc[0].to_dict())
    return pd.DataFrame(rows)
