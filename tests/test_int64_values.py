"""int64 values at their extremes (SPEC §1 column types, §3 "identical for integers"): every online read path
(raw events, tiles, prefixes, push's rebuild of an entity) reads integers exactly, and an integer ``sum`` whose
exact value leaves int64 is never served as another number: offline a one-line RequestError naming the view and
feature, online the value REFUSED with that line in ``refusals`` (featurestore.semantics.int64_overflow_reason).

Random int64 values drawn around 2**63 - 1, -2**63, 2**62 and 2**53 make tile and prefix partial sums beyond 64
bits (which orjson reads as a float) while many window sums stay in range. Needs the project's Redis.
"""

import dataclasses
import random
import uuid

import json

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from featurestore import cli
from featurestore.config import load_config
from featurestore.errors import RequestError
from featurestore.online_reply import loads_exact, may_hold_wide_integers
from featurestore.store import FeatureStore
from tests import oracle
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
sums = FeatureView(entities=[user], source=events, features=[
    Aggregation("qty", "sum", None, name="qty_sum"), Aggregation("qty", "sum", "2m", name="qty_sum_2m")])
others = FeatureView(entities=[user], source=events, features=[
    Aggregation("qty", "mean", None, name="qty_mean"), Aggregation("qty", "mean", "2m", name="qty_mean_2m"),
    Aggregation("qty", "variance", None, name="qty_var"), Aggregation("qty", "min", "2m", name="qty_min"),
    Aggregation("qty", "max", None, name="qty_max"), Aggregation("qty", "last", "2m", name="qty_last"),
    Aggregation("qty", "count_distinct", None, name="qty_nd"), Latest("qty", name="qty_latest")])
sums_svc = FeatureService(features=[sums])
others_svc = FeatureService(features=[others])
both_svc = FeatureService(features=[sums, others])
'''

BASE = pd.Timestamp("2026-03-01T00:00:00Z")
EXTREMES = [2**63 - 1, -(2**63), 2**63 - 2, -(2**63) + 1, 2**62, -(2**62), 2**53 + 1, 0, -1]


def _events(seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(90):
        if rng.random() < 0.5:
            qty = rng.choice(EXTREMES)
        elif rng.random() < 0.8:
            qty = rng.randrange(-(2**63), 2**63)
        else:
            qty = None
        rows.append({"user_id": f"u{rng.randrange(3)}", "qty": qty,
                     "ts": BASE + pd.Timedelta(milliseconds=rng.randrange(0, 8 * 60_000))})
    # a user whose sums come back into range: minutes of large positives, then as many large negatives
    for i in range(6):
        rows.append({"user_id": "back", "qty": (2**63 - 1) if i < 3 else -(2**63),
                     "ts": BASE + pd.Timedelta(seconds=10 * i + (200 if i >= 3 else 0))})
    df = pd.DataFrame(rows)
    df["qty"] = pd.array([r["qty"] for r in rows], dtype="Int64")
    return df


def _requests(seed: int, events: pd.DataFrame) -> pd.DataFrame:
    rng = random.Random(seed + 1)
    users = sorted(set(events["user_id"]))
    return pd.DataFrame({"user_id": [rng.choice(users) for _ in range(30)] + ["back", "back"],
                         "event_timestamp": [BASE + pd.Timedelta(milliseconds=rng.randrange(0, 10 * 60_000))
                                             for _ in range(30)] + [BASE + pd.Timedelta("5m"), BASE + pd.Timedelta("1h")]})


@pytest.fixture
def store(tmp_path, redis_client):
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: big\ndefinitions: definitions\n")
    cfg = dataclasses.replace(load_config(root), project=f"t_int64_{uuid.uuid4().hex[:10]}")
    fs = FeatureStore(root, config=cfg)
    yield fs
    drop_project(fs.online_store().client, cfg.project)


def test_partial_rows_read_integers_beyond_64_bits_exactly():
    rng = random.Random(7)
    values = [2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**40)]
    values += [rng.randrange(-(2**130), 2**130) for _ in range(50)]
    for v in values:
        assert loads_exact(f"[{v},1.5,\"x\"]".encode()) == [v, 1.5, "x"]
        assert loads_exact(f"[{v},NaN]")[0] == v  # the NaN fallback keeps it exact too
    assert loads_exact(b'["12345678901234567890123"]') == ["12345678901234567890123"]  # digits in a string
    # what orjson reads exactly (every int64 and uint64) needs no slower parse but at 20 digits
    assert not any(may_hold_wide_integers(str(v).encode()) for v in (-(2**63), 2**63 - 1, -(10**18), 99, -5))
    assert all(may_hold_wide_integers(f"[1,{v}]".encode()) for v in (-(2**63) - 1, -(10**19), 2**64, 2**64 - 1))


@pytest.mark.parametrize("mode", ["sparse", "tiled"])
@pytest.mark.parametrize("seed", [0, 1])
def test_int64_extremes_online_equal_oracle_and_overflow_is_refused(store, monkeypatch, mode, seed):
    from featurestore.kernel import entity

    if mode == "tiled":
        monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
        monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 0)
    events = _events(seed)
    (store.repo_path / "data").mkdir()
    events.to_parquet(store.repo_path / "data" / "events.parquet")
    requests = _requests(seed, events)
    store.materialize()
    views = store.repo.views
    expected = {name: oracle.point_in_time(events, views[name], requests) for name in ("sums", "others")}
    overflowed = set()
    for i, r in enumerate(requests.to_dict("records")):
        for name, svc in (("sums", "sums_svc"), ("others", "others_svc")):
            got = store.get_online_features([{"user_id": r["user_id"]}], feature_service=svc,
                                            request_time=r["event_timestamp"])
            values, statuses = got.to_dict(), got.statuses()
            for f in views[name].feature_names:
                want = expected[name][f][i]
                where = f"{mode} seed {seed} request {i} {f}"
                if name == "sums" and want is not None and not -(2**63) <= want < 2**63:
                    overflowed.add(i)
                    assert values[f] == [None] and statuses[f] == ["REFUSED"], where
                    assert (f"feature view 'sums': feature '{f}': the integer sum is outside int64"
                            in "\n".join(got.refusals)), where
                    continue
                have = values[f][0]
                if isinstance(want, float) and isinstance(have, float) and want != want:
                    assert have != have, where
                else:
                    assert have == want and type(have) is type(want), (where, have, want)
    assert overflowed and len(overflowed) < len(requests)  # both kinds of sums were checked
    # offline: the same values where every sum is in range; a one-line error naming the feature where one is not
    fine = requests.drop(index=sorted(overflowed)).reset_index(drop=True)
    offline = store.get_historical_features(fine, feature_service="sums_svc").to_arrow()  # the exact int64 column
    want = oracle.point_in_time(events, views["sums"], fine)
    for f in views["sums"].feature_names:
        assert offline[f].to_pylist() == list(want[f]), f
    with pytest.raises(RequestError, match=r"^feature view 'sums': feature 'qty_sum(_2m)?': the integer sum is "
                                           r"outside int64 \(-9223372036854775808 to 9223372036854775807\)"):
        store.get_historical_features(requests.iloc[sorted(overflowed)[:1]], feature_service="sums_svc")


@pytest.mark.parametrize("plan", ["range join", "sweep"])
@pytest.mark.parametrize("seed", [0, 3])
def test_verify_reports_refused_sums_and_checks_every_other_value(store, monkeypatch, seed, plan):
    """verify of a service with an integer sum outside int64 for some rows: those cells are refused offline
    as online (served null agrees, the reason reported), every other value is still checked; a served number
    where offline refuses or differs is a mismatch (old code: the whole run was the one-line error)."""
    from featurestore.engines import duckdb_pit

    if plan == "sweep":  # every key hot: the point-in-time query's other plan
        monkeypatch.setattr(duckdb_pit, "HOT_KEY_COST", 0.0)
    events = _events(seed)
    (store.repo_path / "data").mkdir()
    events.to_parquet(store.repo_path / "data" / "events.parquet")
    requests = _requests(seed, events)
    store.backfill()
    store.materialize()
    want = oracle.point_in_time(events, store.repo.views["sums"], requests)
    for r in requests.to_dict("records"):
        store.get_online_features([{"user_id": r["user_id"]}], feature_service="both_svc",
                                  request_time=r["event_timestamp"], log=True)
    overflow = {f: sum(1 for v in want[f] if v is not None and not -(2**63) <= v < 2**63)
                for f in ("qty_sum", "qty_sum_2m")}
    assert sum(overflow.values()) and min(len(requests) - n for n in overflow.values())  # both kinds
    report = store.verify("both_svc")
    assert report.rows == len(requests)
    assert set(report.features) == set(store.repo.views["sums"].feature_names) | set(
        store.repo.views["others"].feature_names)
    assert report.clean, {f: (s.mismatch, s.missing, s.extra) for f, s in report.features.items()}
    for f, s in report.features.items():
        assert s.rows == len(requests), f
        assert s.refused == overflow.get(f, 0), f
        if s.refused:
            assert s.refused_reason.startswith(f"feature view 'sums': feature '{f}': the integer sum is outside")
    monkeypatch.setattr(cli, "_store", lambda repo: store)  # the fixture's own project
    res = CliRunner().invoke(cli.app, ["verify", "both_svc", "--repo", str(store.repo_path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["features"]
    assert {f: d["refused"] for f, d in data.items() if d["refused"]} == {f: n for f, n in overflow.items() if n}
    # Skew now: the offline sums table gets a huge event of one user before its requests; the served sums of
    # that user after it (numbers or refused) now differ offline: mismatches, the other view stays clean.
    table = store.offline.table("sums")
    stored = table.read()
    user = "back"
    extra = {**stored.slice(0, 1).to_pylist()[0], "user_id": user, "qty": 2**63 - 1,
             "ts": BASE - pd.Timedelta(milliseconds=1)}
    table.append(pa.Table.from_pylist([extra], schema=stored.schema))
    report = store.verify("both_svc")
    assert report.features["qty_sum"].mismatch >= 1
    assert all(s.skew_rate == 0 for f, s in report.features.items() if f in store.repo.views["others"].feature_names)
    assert {e["entity"]["user_id"] for e in report.features["qty_sum"].examples} == {user}
