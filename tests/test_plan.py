"""plan and apply: added, removed, value changes vs metadata-only changes, stages."""

import json
import shutil
from pathlib import Path

import pytest

from featurestore.config import load_config
from featurestore.plan import (ADDED, CHANGED_DATA, CHANGED_META, REMOVED, STREAM_CONTINUE, STREAM_NEW,
                               STREAM_REBUILD, UNCHANGED)
from featurestore.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    shutil.copytree(ROOT / "definitions", tmp_path / "definitions")
    (tmp_path / "featurestore.yaml").write_text("project: t\ndefinitions: definitions\n")
    return tmp_path


def actions(plan):
    return {(c.kind, c.name): (c.action, c.fields) for c in plan.changes}


def test_first_plan_adds_everything_and_apply_records_it(repo):
    fs = FeatureStore(repo)
    plan = fs.plan()
    assert {a for a, _ in actions(plan).values()} == {ADDED}
    assert [(s.kind, s.target) for s in plan.stages] == [
        ("backfill", "user_spend"), ("materialize", "user_spend"),
        ("backfill", "user_profile"), ("materialize", "user_profile"),
        ("backfill", "merchant_activity"), ("materialize", "merchant_activity"),
        ("stream", "user_spend"), ("stream", "user_profile"), ("stream", "merchant_activity"),
        ("record", "registry"),
    ]
    assert {s.reason for s in plan.stages if s.kind == "stream"} == {STREAM_NEW}
    fs.apply()
    registry = json.loads((repo / ".featurestore" / "registry.json").read_text())
    assert "feature view:user_spend" in registry["objects"]
    assert len(registry["history"]) == 1
    again = fs.plan()
    assert {a for a, _ in actions(again).values()} == {UNCHANGED} and again.stages == []


def test_value_change_metadata_change_and_removal(repo):
    fs = FeatureStore(repo)
    fs.apply()
    payments = repo / "definitions" / "payments.py"
    text = payments.read_text()
    text = text.replace('filter="amount > 0"', 'filter="amount >= 0"')
    text = text.replace('description="Merchant-side velocity."', 'description="Merchant velocity."')
    start = text.index("user_profile = FeatureView(")
    end = text.index("merchant_activity = FeatureView(")
    payments.write_text(text[:start] + text[end:])
    services = repo / "definitions" / "services.py"
    services.write_text(services.read_text().replace('        user_profile.select("home_country", "last_amount"),\n', "")
                        .replace("merchant_activity, user_profile, user_spend", "merchant_activity, user_spend"))
    got = actions(fs.plan())
    assert got[("feature view", "user_spend")] == (CHANGED_DATA, ("filter",))
    assert got[("feature view", "merchant_activity")] == (CHANGED_META, ("description",))
    assert got[("feature view", "user_profile")] == (REMOVED, ())
    assert got[("feature service", "fraud_model_v1")] == (CHANGED_DATA, ("features",))
    assert got[("source", "transactions")] == (UNCHANGED, ())
    stages = [(s.kind, s.target) for s in fs.plan().stages]
    assert stages == [("backfill", "user_spend"), ("materialize", "user_spend"), ("drop", "user_profile"),
                      ("stream", "user_spend"), ("stream", "merchant_activity"), ("record", "registry")]


def test_plan_says_what_the_stream_does_with_each_table(repo):
    """After a definition change the stream rebuilds the changed view's table and continues the others,
    as the tables' stream records say (the same records the stream decides by)."""
    from featurestore.engines.flink.commit import rebuilds

    fs = FeatureStore(repo)
    fs.apply()
    for name in ("user_spend", "user_profile", "merchant_activity"):  # tables the stream wrote
        cv = fs.compiled(name)
        fs.offline.table(name, ts_column=cv.ts_column).commit_stream(
            [], app_id="job", seq=1, topic="transactions", fingerprint=cv.data_fingerprint,
            partition_column="p", offset_column="o")
    assert fs.plan().stages == []
    payments = repo / "definitions" / "payments.py"
    payments.write_text(payments.read_text().replace('filter="amount > 0"', 'filter="amount >= 0"'))
    plan = fs.plan()
    assert [(s.kind, s.target, s.reason) for s in plan.stages if s.kind == "stream"] == [
        ("stream", "user_spend", STREAM_REBUILD), ("stream", "user_profile", STREAM_CONTINUE),
        ("stream", "merchant_activity", STREAM_CONTINUE)]
    assert list(rebuilds(fs, ["user_spend", "user_profile", "merchant_activity"])) == ["user_spend"]


def test_config_file_and_env_overrides(repo):
    (repo / "featurestore.yaml").write_text(
        "project: p\nonline_store:\n  redis_url: redis://h:1/0\n  tls: true\noffline_store:\n  root: /data/off\n")
    cfg = load_config(repo, env={"FEATURESTORE_REDIS_URL": "redis://env:2/1"})
    assert cfg.project == "p" and cfg.redis_url == "redis://env:2/1" and cfg.redis_tls is True
    assert cfg.offline_path == Path("/data/off")
    assert cfg.sources["redis_url"] == "env" and cfg.sources["project"] == "file"
    assert cfg.definitions_path == repo / "definitions"


def test_config_errors(repo):
    from featurestore.errors import ConfigError

    (repo / "featurestore.yaml").write_text("projekt: p\n")
    with pytest.raises(ConfigError, match=r"unknown key 'projekt'"):
        load_config(repo, env={})
    (repo / "featurestore.yaml").write_text("online_store:\n  tls: maybe\n")
    with pytest.raises(ConfigError, match="redis tls must be true or false, got 'maybe'"):
        load_config(repo, env={})


def test_feast_repo_project_name_is_reused(tmp_path):
    (tmp_path / "feature_store.yaml").write_text("project: driver_ranking\nprovider: local\n")
    cfg = load_config(tmp_path, env={})
    assert cfg.project == "driver_ranking" and cfg.definitions_path == tmp_path


def test_plan_announces_the_hand_off_of_a_fresh_stream_start(repo):
    """A view whose next stream start is fresh (the stream never wrote its table) and whose offline table
    holds a backfilled range: plan says, in one line, that a start on a topic that lost its records before
    the range's end seeds the online values from that table (the hand-off); not before the backfill, not
    once the stream wrote the table, not for offline-only views."""
    import pandas as pd

    from featurestore import datagen
    from featurestore.plan import STREAM_HANDOFF

    fs = FeatureStore(repo)
    fs.apply()
    assert fs.plan().stages == []
    end = pd.Timestamp("2026-01-08T00:00:00", tz="UTC")
    df = datagen.generate_transactions(events=300, users=20, merchants=5, days=7, seed=3, end=end)
    datagen.write_parquet(repo / "data" / "transactions", df=df, files=1)
    fs.backfill(views=["user_spend", "merchant_activity"])
    last = df["ts"].max().floor("ms") + pd.Timedelta("1ms")
    stages = [(s.kind, s.target, s.reason) for s in fs.plan().stages]
    want = STREAM_HANDOFF.format(end=last.isoformat().replace("+00:00", "Z"), topic="transactions")
    assert stages == [("stream", "user_spend", want), ("stream", "merchant_activity", want)]
    cv = fs.compiled("user_spend")
    fs.offline.table("user_spend", ts_column=cv.ts_column).commit_stream(
        [], app_id="job", seq=1, topic="transactions", fingerprint=cv.data_fingerprint,
        partition_column="p", offset_column="o")
    assert [s.target for s in fs.plan().stages] == ["merchant_activity"]
