"""SPEC §6 public surface, read literally: Arrow results online as offline, an empty push, the CLI's verify gate.

* ``get_online_features(...).to_arrow()`` (Feast's ``OnlineResponse.to_arrow``; there was none): every column
  of its declared type, equal to ``get_historical_features(...).to_arrow()`` at the same time (int64 keys and
  values beyond 2^53 with nulls, timestamps, strings), on random lookups.
* ``push(source, [])`` (a batch that came out empty) was an error ("no event-time column"): it pushes
  nothing, in every mode, from Python and over HTTP, and writes no table version.
* (``featurestore verify --threshold`` outside 0..1, which gated on a meaningless rate, is a usage error now:
  tests/test_cli_mistakes.py.)
"""

from __future__ import annotations

import random

import pandas as pd
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from tests import logrepo
from tests.compare import same_value  # floats to 1e-9 relative (SPEC §3), all else exact

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def store(tmp_path_factory, redis_client):
    from tests.conftest import drop_project

    root = logrepo.write_repo(tmp_path_factory.mktemp("surface") / "repo")
    fs = FeatureStore(root)
    fs.events = logrepo.random_payments(8, n=200)
    logrepo.write_payments(root, fs.events)
    fs.backfill()
    fs.materialize()
    yield fs
    drop_project(redis_client, fs.config.project)


def test_online_arrow_results_have_the_declared_types_and_equal_offline(store):
    rng = random.Random(4)
    for lookup in logrepo.random_lookups(4, store.events, n=15):
        rows = [r for r in lookup["rows"] if r["account_id"] is not None and r["region"] is not None]
        if not rows:
            continue
        full = rng.random() < 0.5
        online = store.get_online_features(rows, feature_service="scoring", request_time=lookup["request_time"],
                                           full_feature_names=full).to_arrow()
        entity_df = pd.DataFrame({"account_id": pd.array([r["account_id"] for r in rows], dtype="Int64"),
                                  "region": [r["region"] for r in rows],
                                  "event_timestamp": [lookup["request_time"]] * len(rows)})
        offline = store.get_historical_features(entity_df, feature_service="scoring",
                                                full_feature_names=full).to_arrow()
        assert online.column_names[:2] == ["account_id", "region"]
        assert online.schema.field("account_id").type == pa.int64()
        for name in online.column_names:
            want = offline.column(name)
            if pa.types.is_timestamp(want.type):  # offline frames hold ns; the declared type is us, UTC
                want = want.cast(pa.timestamp("us", tz="UTC"))
            assert online.schema.field(name).type == want.type, name
            got, exp = online.column(name).to_pylist(), want.to_pylist()
            assert all(same_value(g, e) for g, e in zip(got, exp)) and len(got) == len(exp), (name, got, exp)
        assert online.schema.field("echo_account" if not full else "account_stats__echo_account").type == pa.int64()


@pytest.mark.parametrize("to", ["online", "offline", "online_and_offline"])
def test_an_empty_push_pushes_nothing(store, to):
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    before = {n: store.offline.table(n).version for n in store.repo.views}
    empty_frame = pd.DataFrame({"account_id": pd.Series([], dtype="Int64"),
                                "ts": pd.Series([], dtype="datetime64[us, UTC]")})
    for rows in ([], {}, {"account_id": [], "ts": []}, pd.DataFrame(), empty_frame):
        result = store.push("payments", rows, to=to)
        assert (result.rows, result.events, result.dead_letters, result.offline, result.online) == (0, 0, {}, {}, {})
    client = TestClient(create_app(store))
    for body in ({"push_source_name": "payments", "df": {}, "to": to},
                 {"source": "payments", "rows": [], "to": to}):
        res = client.post("/push", json=body)
        assert res.status_code == 200 and res.json()["events"] == 0, res.text
    assert {n: store.offline.table(n).version for n in store.repo.views} == before



@pytest.mark.slow
def test_a_script_that_read_offline_tables_exits_zero(tmp_path):
    """A Python script that reads an offline table and ends must exit 0. Read through Python file objects,
    pyarrow 16 aborted such a process at exit about 4 times in 10 ("terminate called without an active
    exception", exit code 134): a scheduler saw a job that did everything right fail. Twelve runs: the old
    code fails this with probability 1 - 0.6^12 > 0.99."""
    import subprocess
    import sys
    from pathlib import Path

    from featurestore.stores.offline import OfflineTable

    rng = random.Random(3)
    ts = [logrepo.BASE + pd.Timedelta(seconds=rng.randrange(86_400 * 3)) for _ in range(500)]
    OfflineTable(tmp_path, "t").append(pa.table({"k": [rng.randrange(50) for _ in ts], "ts": pa.array(
        ts, type=pa.timestamp("us", tz="UTC"))}))
    script = ("from featurestore.stores.offline import OfflineTable; "
              f"assert OfflineTable({str(tmp_path)!r}, 't').read().num_rows == 500")
    repo_dir = Path(__file__).resolve().parents[1]
    codes = [subprocess.run([sys.executable, "-c", script], cwd=repo_dir, capture_output=True, text=True,
                            timeout=120).returncode for _ in range(12)]
    assert codes == [0] * 12, codes


def test_views_may_be_one_name_and_a_name_twice_counts_once(store):
    """backfill(views="account_stats") read the string as a list of one-letter views ("unknown feature view
    'a'"), and a name given twice rewrote its table twice."""
    before = store.offline.table("account_stats").version
    results = store.backfill(views="account_stats")
    assert [r.view for r in results] == ["account_stats"]
    results = store.backfill(views=["account_stats", "region_stats", "account_stats"])
    assert [r.view for r in results] == ["account_stats", "region_stats"]
    assert store.offline.table("account_stats").version == before + 2
    assert [r.view for r in store.materialize(views="region_stats")] == ["region_stats"]


def test_feature_columns_come_in_request_order_offline_as_online(store, tmp_path):
    """docs/coming-from-feast.md "Column order": by view in the order of first reference, the request's order
    within a view, in get_historical_features (pandas and Arrow) and get_online_features alike. Offline used
    to give a view's features in its definition order (latest features first), whatever was asked. A training
    set saved before (manifest format 1) still re-creates its own order, byte for byte."""
    import json

    from featurestore.sdk import training_sets

    refs = [f"account_stats:{f}" for f in ("n_1m", "qty_sum_1m", "qty_max", "amount_sum_1h", "amount_mean_30s",
                                           "last_tag_1h", "tags_ever", "last_seen", "echo_account")]
    refs += [f"region_stats:{f}" for f in ("pair_n_10m", "pair_qty_sum", "pair_tag", "pair_qty")]
    rng = random.Random(11)
    row = next(r for lookup in logrepo.random_lookups(4, store.events, n=15) for r in lookup["rows"]
               if r["account_id"] is not None and r["region"] is not None)
    q = pd.Timestamp("2026-01-02T00:00:00Z")
    entity_df = pd.DataFrame({"account_id": pd.array([row["account_id"]], dtype="Int64"), "region": [row["region"]],
                              "event_timestamp": [q]})
    for _ in range(6):
        asked = rng.sample(refs, rng.randint(2, len(refs)))
        views = list(dict.fromkeys(r.split(":")[0] for r in asked))
        want = [r.split(":")[1] for v in views for r in asked if r.startswith(v + ":")]
        offline = store.get_historical_features(entity_df, features=asked)
        assert list(offline.columns) == ["account_id", "region", "event_timestamp", *want]
        assert offline.to_arrow().column_names == ["account_id", "region", "event_timestamp", *want]
        online = store.get_online_features([{"account_id": row["account_id"], "region": row["region"]}],
                                           features=asked, request_time=q)
        assert [c for c in online.to_dict() if c not in ("account_id", "region")] == want
    # a set saved in the view's order (format 1) re-creates in that order
    asked = ["account_stats:echo_account", "account_stats:n_1m", "account_stats:last_seen"]
    name = f"order_{rng.randrange(10**9)}"
    saved = store.get_historical_features(entity_df, features=asked, save_as=name)
    folder = training_sets.training_set_dir(store._offline_root, name)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == 2 and list(saved.columns)[3:] == ["echo_account", "n_1m", "last_seen"]
    assert store.recreate_training_set(name).to_arrow().equals(saved.to_arrow())
    manifest["format"] = 1
    training_sets.write_manifest(folder, manifest)
    old = store.recreate_training_set(name).to_arrow()
    assert old.column_names[3:] == ["last_seen", "echo_account", "n_1m"]  # the view's order: latest features first
    assert old.equals(saved.to_arrow().select(old.column_names))
