"""Monitoring (SPEC §8, issue 14 item 4): drift of served values against a training set (PSI and summaries),
`featurestore monitor` exiting 1 with one line per breach (freshness, skew, drift, dead letters, lag), the
gauges on /metrics, and the drift section of the catalog."""

from __future__ import annotations

import json
import math
import re
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore import drift, monitoring
from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink.commit import HOURS_SUFFIX
from featurestore.cli import app as cli
from featurestore.store import FeatureStore
from tests.served import drop_online, example_repo

runner = CliRunner()


# -- PSI and summaries, by hand ---------------------------------------------------------------------------------
def test_psi_by_hand():
    train = list(range(1, 11))  # deciles 1.9, 2.8, ..., 9.1: one value per bin
    same = drift.compare("x", train, list(reversed(train)))
    assert same.psi == 0.0
    shifted = drift.compare("x", train, [10] * 25)  # every served value in the top bin
    floor = 1e-4
    expected = 9 * (floor - 0.1) * math.log(floor / 0.1) + (1.0 - 0.1) * math.log(1.0 / 0.1)
    assert shifted.psi == pytest.approx(expected, rel=1e-12)
    assert [b[0] for b in shifted.bins][-1] == ">= 9.1" and shifted.bins[-1][2] == 1.0
    nulls = drift.compare("x", train + [None] * 10, [None] * 5 + [5] * 5)
    assert nulls.training.nulls == 10 and nulls.served.nulls == 5 and nulls.psi > 0
    cats = drift.compare("c", ["a"] * 6 + ["b"] * 4, ["a"] * 5 + ["z"] * 5)  # z: a category training never saw
    t = {label: (tr, sv) for label, tr, sv in cats.bins}
    assert t["a"] == (0.6, 0.5) and t["b"] == (0.4, 0.0) and t["(other)"] == (0.0, 0.5)
    want = ((0.5 - 0.6) * math.log(0.5 / 0.6) + (floor - 0.4) * math.log(floor / 0.4)
            + (0.5 - floor) * math.log(0.5 / floor))
    assert cats.psi == pytest.approx(want, rel=1e-12)
    assert drift.compare("x", train, []).psi is None


def test_extreme_values_have_their_own_bins():
    """inf, -inf and NaN are values (exact sums keep IEEE non-finite results): each its own bin, never
    hidden among the finite extremes nor taken for a null; summaries leave them out of mean and median."""
    train = [float(v) for v in range(1, 11)] + [float("inf")]
    drifted = drift.compare("x", train, [float("inf")] * 5 + [float("nan")] * 5)
    t = {label: (tr, sv) for label, tr, sv in drifted.bins}
    assert t["+inf"] == (1 / 11, 0.5) and t["NaN"] == (0.0, 0.5) and "(null)" not in t
    assert drifted.served.non_finite == 10 and drifted.served.nulls == 0 and drifted.served.mean is None
    assert (drifted.training.min, drifted.training.max, drifted.training.mean) == (1.0, float("inf"), 5.5)
    assert drift.compare("x", [float("inf")] * 4, [1.0] * 4).psi > 1  # all-infinite training: still a shift
    assert drift.compare("x", [-1e308, 1e308, 0.0], [-1e308, 1e308, 0.0]).psi == 0.0


def test_shares_and_psi_on_random_data():
    """On random numeric and categorical columns with nulls: each side's shares sum to one, the null share is
    the nulls' share, and PSI is its definition over the bins."""
    rng = np.random.default_rng(11)
    for _ in range(30):
        n, m = int(rng.integers(1, 200)), int(rng.integers(1, 200))
        if rng.random() < 0.5:
            train = [None if rng.random() < 0.1 else float(v) for v in rng.normal(0, 1, n).round(1)]
            served = [None if rng.random() < 0.2 else float(v) for v in rng.normal(rng.random(), 1, m).round(1)]
        else:
            train = [None if rng.random() < 0.1 else str(v) for v in rng.integers(0, 30, n)]
            served = [None if rng.random() < 0.2 else str(v) for v in rng.integers(0, 35, m)]
        d = drift.compare("x", train, served)
        got = {label: (tr, sv) for label, tr, sv in d.bins}
        assert sum(tr for tr, _ in got.values()) == pytest.approx(1.0) or not train
        assert sum(sv for _, sv in got.values()) == pytest.approx(1.0)
        want = sum((max(sv, 1e-4) - max(tr, 1e-4)) * math.log(max(sv, 1e-4) / max(tr, 1e-4))
                   for tr, sv in got.values())
        assert d.psi == pytest.approx(want, rel=1e-9, abs=1e-12)
        nulls = sum(v is None for v in served) / m
        assert got.get("(null)", (0.0, 0.0))[1] == pytest.approx(nulls)


def test_lines_read_backwards_equal_the_file_reversed(tmp_path):
    rng = np.random.default_rng(3)
    for block in (1, 2, 7, 64, 1 << 16):
        lines = ["x" * int(rng.integers(0, 40)) + str(i) for i in range(int(rng.integers(0, 50)))]
        path = tmp_path / f"h{block}.jsonl"
        path.write_text("".join(x + "\n" for x in lines) + ("\n" if block == 7 else ""))
        assert list(monitoring.lines_backwards(path, block)) == list(reversed(lines))
    (tmp_path / "no_newline").write_text("a\nb")
    assert list(monitoring.lines_backwards(tmp_path / "no_newline", 1)) == ["b", "a"]


def test_summaries_equal_numpy_on_random_data():
    rng = np.random.default_rng(5)
    for _ in range(20):
        values = [None if rng.random() < 0.1 else float(v) for v in rng.normal(3, 2, int(rng.integers(2, 300)))]
        s = drift.summary(values)
        present = np.array([v for v in values if v is not None])
        assert s.count == len(values) and s.nulls == len(values) - len(present)
        assert s.mean == pytest.approx(present.mean(), rel=1e-12) and s.p50 == np.median(present)
        assert s.std == pytest.approx(present.std(ddof=1), rel=1e-12)
        assert (s.min, s.max) == (present.min(), present.max())


# -- a served project ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = example_repo(tmp_path_factory.mktemp("monitor"), stream=False,
                        yaml_extra="monitor:\n  max_skew_rate: 0.0\n  max_psi: 0.2\n")
    views = (root / "definitions" / "payments.py").read_text()
    (root / "definitions" / "payments.py").write_text(views.replace(
        '    tags={"team": "risk", "domain": "payments"},\n)\n\nuser_profile',
        '    tags={"team": "risk", "domain": "payments"},\n    expected_freshness="1h",\n)\n\nuser_profile', 1))
    fs = FeatureStore(root)
    fs.apply()
    fs.backfill()
    fs.materialize()
    yield fs
    drop_online(fs)


def entity_rows(n=60, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": [f"u{int(i):04d}" for i in rng.integers(1, 200, n)],
                         "merchant_id": [f"m{int(i):03d}" for i in rng.integers(1, 40, n)],
                         "event_timestamp": pd.Timestamp("2026-10-31T12:00:00Z")
                         + pd.to_timedelta(rng.integers(0, 36_000, n), unit="s")})


def serve_rows(fs, df):
    """Online lookups of every row at its own time (logged: the service logs)."""
    for _, row in df.iterrows():
        fs.get_online_features([{"user_id": row.user_id, "merchant_id": row.merchant_id}],
                               feature_service="fraud_model_v1", request_time=row.event_timestamp)


@pytest.mark.redis
@pytest.mark.slow
def test_served_equal_to_trained_has_no_drift_and_a_shift_is_a_breach(store):
    df = entity_rows()
    store.get_historical_features(df, feature_service="fraud_model_v1", save_as="oct31")
    serve_rows(store, df)  # the same rows at the same times: online == offline, so the same values
    report = drift.drift(store, "fraud_model_v1", "oct31")
    assert report.served_rows == len(df) and report.training_rows == len(df)
    assert {f: d.psi for f, d in report.features.items()} == {f: 0.0 for f in report.features}
    assert len(report.features) == 15
    # Later lookups (a day after the data ends: every 1d window has slid past) turn the 1d sums to null
    late = df.assign(event_timestamp=df.event_timestamp + pd.Timedelta("2d"))
    serve_rows(store, late)
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--drift", "fraud_model_v1=oct31"])
    assert res.exit_code == 1
    lines = [x for x in res.stderr.splitlines() if x.startswith("breach: ")]
    assert "breach: service 'fraud_model_v1' feature 'spend_usd_1d': PSI" in res.stderr
    assert re.search(r"breach: view 'user_spend': newest event \d+d \d+h old, expected within 1h 0m", res.stderr)
    assert not any("user_profile" in x or "merchant_activity" in x for x in lines if "view '" in x)
    again = drift.last_report(store, "fraud_model_v1")
    assert again.features["spend_usd_1d"].psi > 0.2 and again.training_set == "oct31"
    assert again.features["spend_usd_1d"].served.nulls >= len(df)  # every late lookup: an empty window
    # --since: only the late lookups (their request times); every one of them serves a null 1d sum
    since = late.event_timestamp.min()
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--drift", "fraud_model_v1=oct31",
                              "--since", since.isoformat(), "--json"])
    recent = json.loads(res.stdout)["drift"][0]
    assert recent["served_rows"] == len(late) and recent["since_ms"] == since.value // 10**6
    assert recent["features"]["spend_usd_1d"]["served"]["nulls"] == len(late)
    assert drift.last_report(store, "fraud_model_v1").since_ms == recent["since_ms"]
    import time

    t0 = int(time.time() * 1000)
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--drift", "fraud_model_v1=oct31",
                              "--since", "1d", "--json"])  # a duration ago
    ago = json.loads(res.stdout)["drift"][0]["since_ms"]
    assert t0 - 86_400_000 <= ago <= int(time.time() * 1000) - 86_400_000
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--drift", "fraud_model_v1=oct31",
                              "--since", "yesterday"])
    assert res.exit_code == 1 and "error: --since 'yesterday': neither a duration" in res.output
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--since", "1d"])
    assert res.exit_code == 1 and "error: --since applies to --drift" in res.output
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--drift", "fraud_model_v1=nope"])
    assert res.exit_code == 1 and "error: no training set called 'nope'" in res.output


@pytest.mark.redis
@pytest.mark.slow
def test_skew_breach_and_metrics(store):
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    rows = [{"user_id": "u0007", "merchant_id": "m007"}]
    at = pd.Timestamp("2026-10-31T20:00:00Z")
    # An online-only push: online now disagrees with the offline recomputation, which verify must catch
    store.push("transactions", [{"event_id": f"skew-{uuid.uuid4().hex[:6]}", "user_id": "u0007", "merchant_id": "m007",
                                 "amount": 5.0, "currency": "USD", "country": "DE", "channel": "web",
                                 "card_present": True, "ts": at - pd.Timedelta("1min")}], to="online")
    store.get_online_features(rows, feature_service="fraud_model_v1", request_time=at)
    report = store.verify("fraud_model_v1")
    assert report.features["tx_count_1h"].mismatch >= 1
    # a command's own exit code is not a failure: one line, no "unexpected failure" trace (typer.Exit is not
    # click's Exit, and the CLI used to report it as an error with a logged traceback)
    res = runner.invoke(cli, ["verify", "fraud_model_v1", "--repo", str(store.repo_path), "--threshold", "0"])
    assert res.exit_code == 1 and "error: skew above 0.000% in" in res.stderr and "full trace" not in res.stderr
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    skewed = [b for b in out["breaches"] if b["kind"] == "skew"]
    assert {"kind": "skew", "subject": "fraud_model_v1:tx_count_1h",
            "text": f"service 'fraud_model_v1' feature 'tx_count_1h': skew "
                    f"{report.features['tx_count_1h'].skew_rate:.3%} in the last verify run (limit 0.000%)"} in skewed
    text = TestClient(create_app(store)).get("/metrics").text
    rate = report.features["tx_count_1h"].skew_rate
    assert f'featurestore_skew_rate{{feature="tx_count_1h",service="fraud_model_v1"}} {rate}' in text
    spend = store.repo.views["user_spend"].feature_names  # the view's features, counted by hand from the report
    bad = sum(report.features[f].mismatch + report.features[f].missing + report.features[f].extra for f in spend)
    rows = sum(report.features[f].rows for f in spend)
    assert bad >= 1
    assert f'featurestore_view_skew_rate{{service="fraud_model_v1",view="user_spend"}} {bad / rows}' in text
    assert re.search(r'featurestore_view_stale\{view="user_spend"\} 1\.0', text)
    assert 'featurestore_view_expected_freshness_seconds{view="user_spend"} 3600.0' in text
    last = max(m["max_ts"] for m in store.offline.table("user_spend").manifest()["file_stats"].values())
    got = re.search(r'featurestore_view_last_event_timestamp_seconds\{view="user_spend"\} (\S+)', text).group(1)
    assert float(got) == last / 1000
    assert re.search(r'featurestore_view_online_loaded_timestamp_seconds\{by="(materialize|push)",view="user_spend"\}',
                     text)
    if drift.last_report(store, "fraud_model_v1") is not None:  # after the drift test in this module
        assert 'featurestore_drift_psi{feature="spend_usd_1d",service="fraud_model_v1",training_set="oct31"}' in text


@pytest.mark.redis
@pytest.mark.slow
def test_broken_history_lines_are_skipped_and_metrics_never_fail(store, monkeypatch):
    """A verify or drift history line that is not a run (a crash mid-write, a hand edit) is skipped by every
    reader; a section of the gauges that cannot be computed is a read-error gauge, never a failed scrape."""
    from fastapi.testclient import TestClient

    from featurestore import verify
    from featurestore.server import create_app

    store.verify("fraud_model_v1")
    runs_before = verify.runs(store, "fraud_model_v1")
    history = store.config.state_path / "verify" / f"{store.config.project}.fraud_model_v1.jsonl"
    drift_file = store.config.state_path / "drift" / f"{store.config.project}.fraud_model_v1.jsonl"
    drift_file.parent.mkdir(parents=True, exist_ok=True)
    for path in (history, drift_file):
        with open(path, "a") as fh:
            fh.write('{"at": 1}\n{"at": 2, "rows": 3, "features": []}\n[1, 2]\n{"features": {"x": "y"}}\n{"trunc')
    assert verify.runs(store, "fraud_model_v1") == runs_before
    res = runner.invoke(cli, ["monitor", "--repo", str(store.repo_path), "--json"])
    assert res.exit_code == 1 and "unexpected" not in res.output and json.loads(res.stdout)["breaches"]
    client = TestClient(create_app(store))
    text = client.get("/metrics").text
    assert "featurestore_skew_rate{" in text and "featurestore_monitor_read_error{" not in text
    assert client.get("/ui/service/fraud_model_v1").status_code == 200

    def broken(*_a, **_k):
        raise OSError("offline store unreadable")

    monkeypatch.setattr(monitoring, "freshness", broken)
    res = client.get("/metrics")
    assert res.status_code == 200 and 'featurestore_monitor_read_error{section="freshness"} 1.0' in res.text
    assert "featurestore_skew_rate{" in res.text and "featurestore_view_stale{" not in res.text


@pytest.mark.redis
@pytest.mark.kafka
def test_stream_lag_and_dead_letters(tmp_path):
    """Lag from a real broker: records produced to the topic, part of them committed by the job's consumer
    group (as Flink commits on checkpoints); dead letters from the counters the job publishes in Redis."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    root = example_repo(tmp_path, events=200)
    topic = f"tx_{uuid.uuid4().hex[:8]}"
    sources = root / "definitions" / "sources.py"
    sources.write_text(sources.read_text().replace('KafkaTopic("transactions"', f'KafkaTopic("{topic}"'))
    fs = FeatureStore(root)
    assert monitoring.stream_state(fs) is None  # no stream has run: nothing to read, no Kafka call
    bootstrap = fs.config.kafka_bootstrap
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(50):
        producer.produce(topic, json.dumps({"i": i}).encode(), partition=0)
    producer.flush(30)
    group = streaming.job_name(fs, [n for n, v in fs.repo.views.items() if v.source.stream is not None])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 30)], asynchronous=False)
    consumer.close()
    client = fs.online_store().client
    key = streaming.metrics_key(fs.config.project, "transactions")
    # what Committer.publish writes: totals, and per hour of commit [dead letters, events]
    hour = int(time.time() * 1000) // 3_600_000 * 3_600_000
    client.hset(key, mapping={"dead_letters": 3, "null_key": 0, "events": 27})
    client.hset(key + HOURS_SUFFIX, mapping={str(hour): "[3, 27]"})
    try:
        state = monitoring.stream_state(fs)
        assert state.lag == {topic: 20} and state.problems == []
        assert state.dead_letter_rate("transactions") == 0.1
        (root / "featurestore.yaml").write_text((root / "featurestore.yaml").read_text()
                                                + "monitor:\n  max_stream_lag: 10\n  max_dead_letter_rate: 0.05\n")
        texts = [b.text for b in monitoring.breaches(FeatureStore(root))]
        assert f"topic '{topic}': the stream is 20 records behind (limit 10)" in texts
        assert "source 'transactions': 3 dead letters in the stream in the last 1d 0h, 10.000% of its records " \
               "(limit 5.000%)" in texts
    finally:
        client.delete(key, key + HOURS_SUFFIX)


@pytest.mark.redis
@pytest.mark.slow
def test_a_feature_added_to_a_service_later_is_not_null_in_the_older_logs(store):
    """Lookups logged before the service held a feature did not serve it: drift counts only the rows that did
    (they used to count as nulls, a drift that never happened)."""
    services = store.repo_path / "definitions" / "services.py"
    before = services.read_text()
    df = entity_rows(20, seed=7)
    serve_rows(store, df)  # logged without last_channel
    try:
        services.write_text(before.replace('user_profile.select("home_country", "last_amount")',
                                           'user_profile.select("home_country", "last_amount", "last_channel")', 1))
        fs = FeatureStore(store.repo_path)
        fs.apply()
        fs.get_historical_features(df, feature_service="fraud_model_v1", save_as="with_channel")
        serve_rows(fs, df)  # the same rows again, now with last_channel
        report = drift.drift(fs, "fraud_model_v1", "with_channel", record=False)
        channel = report.features["last_channel"]
        assert channel.served.count == len(df) and channel.served.nulls == channel.training.nulls
        assert channel.psi == 0.0  # the same rows at the same times: the same values
    finally:
        services.write_text(before)
        FeatureStore(store.repo_path).apply()


@pytest.mark.redis
def test_dead_letters_of_the_last_backfill_are_a_breach(tmp_path):
    """A batch face whose share of dead letters exceeds monitor.max_dead_letter_rate: `monitor` exits 1 naming
    the source (only the stream's counters were watched before); a backfill without them clears it."""
    from tests.randomrepo import random_events, write_events, write_repo

    root = write_repo(tmp_path / "r")
    (root / "featurestore.yaml").write_text((root / "featurestore.yaml").read_text().replace(
        "project: rnd", f"project: dl_{uuid.uuid4().hex[:8]}") + "monitor:\n  max_dead_letter_rate: 0.05\n")
    events = random_events(8, n=100)
    bad = events.iloc[:10].assign(ts=pd.Timestamp("1800-01-01T00:00:00Z"))  # outside the supported range
    write_events(root, pd.concat([events, bad], ignore_index=True))
    store = FeatureStore(root)
    store.backfill()
    res = runner.invoke(cli, ["monitor", "--repo", str(root), "--json"])
    assert res.exit_code == 1, res.output
    dead = [b for b in json.loads(res.stdout)["breaches"] if b["kind"] == "dead_letters"]
    assert dead == [{"kind": "dead_letters", "subject": "events",
                     "text": "source 'events': 10 dead letters in its last backfill, 9.091% of its rows "
                             "(limit 5.000%)"}]
    write_events(root, events)
    FeatureStore(root).backfill()
    res = runner.invoke(cli, ["monitor", "--repo", str(root), "--json"])
    assert not [b for b in json.loads(res.stdout)["breaches"] if b["kind"] == "dead_letters"], res.stdout


@pytest.mark.redis
def test_push_dead_letters_are_a_breach(tmp_path):
    """Rows pushed to a batch face that cannot be events are dead letters, counted and kept; their share of
    every row pushed so far is watched like the stream's and the backfill's (it was not: a push of nothing
    but bad rows left `monitor` green). Random pushes, four at once: each counted exactly once."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from tests.randomrepo import random_events, write_events, write_repo

    root = write_repo(tmp_path / "r")
    (root / "featurestore.yaml").write_text((root / "featurestore.yaml").read_text().replace(
        "project: rnd", f"project: pd_{uuid.uuid4().hex[:8]}") + "monitor:\n  max_dead_letter_rate: 0.05\n")
    write_events(root, random_events(4, n=50))
    store = FeatureStore(root)
    store.backfill()
    rng = random.Random(9)

    def batch(seed: int, bad: int) -> pd.DataFrame:
        rows = random_events(seed, n=rng.randint(20, 60)).reset_index(drop=True)
        for i in rng.sample(range(len(rows)), bad):  # outside the supported range / not a number
            if rng.random() < 0.5:
                rows.loc[i, "ts"] = pd.Timestamp("1800-01-01T00:00:00Z")
            else:
                rows["qty"] = rows["qty"].astype(object)
                rows.loc[i, "qty"] = "many"
        return rows

    def breaches():
        res = runner.invoke(cli, ["monitor", "--repo", str(root), "--json"])
        return [b for b in json.loads(res.stdout)["breaches"] if b["kind"] == "dead_letters"], res.exit_code

    good = [batch(10 + i, 0) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda rows: FeatureStore(root).push("events", rows, to="offline"), good))
    assert all(sum(r.dead_letters.values()) == 0 for r in results)
    pushed = sum(len(r) for r in good)
    assert breaches() == ([], 0)
    bad_rows = [batch(20 + i, rng.randint(1, 8)) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda rows: FeatureStore(root).push("events", rows, to="offline"), bad_rows))
    dead = sum(sum(r.dead_letters.values()) for r in results)
    total = pushed + sum(len(r) for r in bad_rows)
    assert dead >= 4
    if dead / total <= 0.05:  # push more bad rows until the share is over the limit
        extra = batch(30, 20)
        dead += sum(FeatureStore(root).push("events", extra, to="offline").dead_letters.values())
        total += len(extra)
    found, code = breaches()
    assert code == 1 and found == [{"kind": "dead_letters", "subject": "events",
                                    "text": f"source 'events': {dead} dead letters among its rows pushed in the "
                                            f"last 1d 0h, {dead / total:.3%} of them (limit 5.000%)"}], found


@pytest.mark.redis
def test_push_dead_letters_leave_the_window_and_are_on_metrics(tmp_path):
    """Push counters never reset (one bad push breached forever) and were not on /metrics. Now monitor watches
    the pushes of the last monitor.dead_letter_window (by the hour), /metrics exports every push so far as
    counters (push_records_total, push_dead_letters_total), the window's share and the last backfill's."""
    import random
    import time

    from fastapi.testclient import TestClient

    from featurestore.engines.backfill import PUSH_BUCKET_MS, add_pushed
    from featurestore.server import create_app
    from tests.randomrepo import random_events, write_events, write_repo

    root = write_repo(tmp_path / "r")
    (root / "featurestore.yaml").write_text((root / "featurestore.yaml").read_text().replace(
        "project: rnd", f"project: pw_{uuid.uuid4().hex[:8]}") + "monitor:\n  max_dead_letter_rate: 0.05\n"
                                                                "  dead_letter_window: 6h\n")
    write_events(root, random_events(4, n=50))
    store = FeatureStore(root)
    store.backfill()
    rng = random.Random(5)
    now = int(time.time() * 1000) - 40 * 86_400_000  # 40 days ago: a push today drops those hours, not the totals
    hours = {}  # hours ago -> (dead letters, rows) pushed then
    for _ in range(40):
        ago_h = rng.randint(0, 30)
        dead, rows = rng.randint(0, 3), rng.randint(3, 20)
        add_pushed(store, "events", dead, rows, now_ms=now - ago_h * PUSH_BUCKET_MS)
        d, r = hours.get(ago_h, (0, 0))
        hours[ago_h] = (d + dead, r + rows)

    def push_breach(at_ms):
        return [b.text for b in monitoring.breaches(store, now_ms=at_ms) if b.kind == "dead_letters"]

    def expected(at_ms):  # the pushes of the hours from the window's first on
        first = (at_ms - 6 * 3_600_000) // PUSH_BUCKET_MS * PUSH_BUCKET_MS
        got = [hours[h] for h in hours if now - h * PUSH_BUCKET_MS >= first]
        return sum(d for d, _ in got), sum(r for _, r in got)

    for later_h in (0, 3, 12, 40):
        at = now + later_h * 3_600_000
        dead, rows = expected(at)
        want = [f"source 'events': {dead:,} dead letters among its rows pushed in the last 6h 0m, "
                f"{dead / rows:.3%} of them (limit 5.000%)"] if rows and dead / rows > 0.05 else []
        assert push_breach(at) == want, (later_h, dead, rows)
    assert push_breach(now + 40 * 3_600_000) == []  # every bad push is out of the window: green again
    # a real push, then /metrics: the totals of every push, never reset; the window's share
    bad = random_events(7, n=20).assign(ts=pd.Timestamp("1800-01-01T00:00:00Z"))
    res = store.push("events", bad, to="offline")
    assert sum(res.dead_letters.values()) == 20
    total_dead = sum(d for d, _ in hours.values()) + 20
    total_rows = sum(r for _, r in hours.values()) + 20
    text = TestClient(create_app(FeatureStore(root))).get("/metrics").text
    assert f'featurestore_push_records_total{{source="events"}} {float(total_rows)}' in text, text[-2000:]
    assert f'featurestore_push_dead_letters_total{{source="events"}} {float(total_dead)}' in text
    assert 'featurestore_push_dead_letter_rate{source="events"} 1.0' in text  # only the real push is recent
    assert re.search(r'featurestore_backfill_records\{source="events"\} [1-9]', text)
    assert 'featurestore_backfill_dead_letters{source="events"} 0.0' in text
    code = runner.invoke(cli, ["monitor", "--repo", str(root)]).exit_code
    assert code == 1
