"""verify reports zero skew on clean traffic and finds skew injected on purpose."""

import json

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from tests.test_serving_log import serve_traffic, with_first_tag_served

pytestmark = [pytest.mark.redis]


@pytest.fixture
def store(materialized_store):
    return materialized_store(21)


def test_clean_traffic_has_zero_skew(store, tmp_path):
    served = serve_traffic(store, n=30, seed=1)
    report = store.verify("logged_model")
    assert report.rows == len(served)
    assert report.clean and report.exceeds(0.0) == []
    res = CliRunner().invoke(app, ["verify", "logged_model", "--repo", str(store.repo_path), "--html",
                                   str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "no skew" in (tmp_path / "r.html").read_text()


def test_injected_skew_is_found_and_gates(store, tmp_path):
    # Skew between the stores for one user (whatever the online layout): the offline profile table gets
    # an event of u0 that online never saw, 1 ms after its last one, with another tag and amount.
    table = store.offline.table("profile")
    events = table.read()
    mine = [i for i, u in enumerate(events.column("user_id").to_pylist()) if u == "u0"]
    last = max(mine, key=lambda i: events.column("ts")[i].value)
    extra = events.take([last]).to_pylist()[0]
    extra.update(ts=extra["ts"] + pd.Timedelta(milliseconds=1), tag="injected", amount=-12345.5)
    table.append(pa.Table.from_pylist([extra], schema=events.schema))
    served = serve_traffic(store, n=60, seed=2)
    report = store.verify("logged_model")
    skewed = {f for f, s in report.features.items() if s.skew_rate > 0}
    assert skewed and skewed <= {"last_amount", "last_tag", "last_qty_plus_one"}
    worst = report.features[sorted(skewed)[0]]
    assert all(e["entity"] == {"user_id": "u0"} for e in worst.examples)
    assert report.exceeds(0.0) and not report.exceeds(1.0)
    res = CliRunner().invoke(app, ["verify", "logged_model", "--repo", str(store.repo_path), "--html",
                                   str(tmp_path / "r.html")])
    assert res.exit_code == 1 and "skew above" in res.output
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "last_" in page and "skew in" in page
    assert len(served) == report.rows
    # --json: the same report for scripts, the same exit code
    res = CliRunner().invoke(app, ["verify", "logged_model", "--repo", str(store.repo_path), "--json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["rows"] == report.rows and sorted(data["exceeded"]) == sorted(report.exceeds(0.0))
    assert {f: d["skew_rate"] for f, d in data["features"].items()} == {f: s.skew_rate for f, s in report.features.items()}


def test_materialize_json_reports_every_online_view(store):
    res = CliRunner().invoke(app, ["materialize", "--repo", str(store.repo_path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert sorted(r["view"] for r in rows) == sorted(n for n, v in store.repo.views.items() if v.online)
    assert all(r["events"] > 0 and r["entities"] > 0 and r["events_per_second"] > 0 for r in rows), rows


def test_a_logged_key_that_does_not_fit_its_declared_type_is_a_one_line_error(store):
    """Logs keep the keys' declared types; a logged key of another type (written under an older
    definition of the key) is named, not coerced."""
    from featurestore import serving_log
    from featurestore.errors import RequestError
    from tests.randomrepo import BASE

    res = store.get_online_features([{"user_id": "u1"}], feature_service="logged_model",
                                    request_time=BASE + pd.Timedelta("1min"))
    record = serving_log.build_record(store, {**res.to_dict(), "user_id": [12]}, ["user_id"],
                                      {"profile": ["last_tag"]}, "logged_model", 0, "old-def")
    serving_log.write(store.online_store().client, store.config.project, record)
    with pytest.raises(RequestError, match=r"^verify 'logged_model': logged row \d has join key user_id=12, "
                                           r"not a string \(logged under another definition of the key\?\)$"):
        store.verify("logged_model")


@pytest.mark.parametrize("seed", [3, 4])
def test_rates_count_exactly_the_skew_written_into_random_logs(store, seed):
    """Random logged lookups (online == offline), then chosen served values rewritten in the log stream: a
    different value (mismatch), null for a value (missing), a value for a null (extra). verify counts exactly
    those, per feature, and nothing else."""
    import random

    from featurestore import serving_log

    served = serve_traffic(store, n=40, seed=seed)  # clean as logged (test_clean_traffic_has_zero_skew)
    client = store.online_store().client
    key = serving_log.stream_key(store.config.project, "logged_model")
    entries = client.xrange(key)
    assert entries, "the lookups are logged (and not yet shipped: verify ships them)"
    rng = random.Random(seed)
    want = {}  # feature -> Counter of kinds written
    rewritten = []
    for _, fields in entries:
        payload = json.loads(fields[b"r"])
        for row in payload["features"]:
            for feat, value in list(row.items()):
                if rng.random() > 0.15:
                    continue
                if value is None:
                    kind, row[feat] = "extra", "skewed" if isinstance(feat, str) and "tag" in feat else 12345
                elif rng.random() < 0.5:
                    kind, row[feat] = "missing", None
                elif isinstance(value, bool):
                    kind, row[feat] = "mismatch", not value
                elif isinstance(value, (int, float)):
                    kind, row[feat] = "mismatch", value + (1 if isinstance(value, int) else abs(value) * 0.01 + 1.0)
                elif isinstance(value, str):
                    kind, row[feat] = "mismatch", value + "!"
                else:
                    continue
                want.setdefault(feat, {"mismatch": 0, "missing": 0, "extra": 0})[kind] += 1
        rewritten.append({b"r": json.dumps(payload).encode()})
    assert sum(sum(c.values()) for c in want.values()) > 5
    client.delete(key)
    for fields in rewritten:
        client.xadd(key, fields)
    report = store.verify("logged_model")
    assert report.rows == len(served)
    got = {f: {"mismatch": s.mismatch, "missing": s.missing, "extra": s.extra}
           for f, s in report.features.items() if s.mismatch or s.missing or s.extra}
    assert got == want
    for f, s in report.features.items():
        assert s.rows == len(served) and s.skew_rate == sum(want.get(f, {}).values()) / len(served)



def test_a_feature_added_to_the_service_later_is_stale_in_older_rows_not_missing(store):
    """The service gains a feature after some lookups were logged: those rows served no value for it, and
    verify counted each as "missing" (a gate failing on clean traffic). Now they are stale for that feature
    (not in its rates); every other row and feature is checked exactly, and clean traffic stays clean."""
    before = serve_traffic(store, n=30, seed=5)
    changed = with_first_tag_served(store)
    after = serve_traffic(changed, n=20, seed=6)
    report = changed.verify("logged_model")
    assert report.rows == len(before) + len(after)
    for f, s in report.features.items():
        stale = len(before) if f == "first_tag" else 0
        assert (s.stale, s.rows) == (stale, len(before) + len(after) - stale), f
        assert (s.mismatch, s.missing, s.extra) == (0, 0, 0), (f, s.examples)
    assert any(v is not None for v in after["first_tag"])  # offline has values there: old rows were "missing"


def test_verify_tells_nan_from_null():
    """A served NaN is a value: against null offline it is 'extra', a served null against an offline NaN
    'missing', NaN against a number a mismatch; NaN against NaN and null against null agree. Before, NaN
    counted as null, so a row that served NaN where the offline join had no value read as clean."""
    from featurestore.verify import classify

    nan = float("nan")
    assert classify(nan, None) == "extra"
    assert classify(None, nan) == "missing"
    assert classify(nan, 1.5) == "mismatch" and classify(1.5, nan) == "mismatch"
    assert classify(nan, nan) is None and classify(None, None) is None
    assert classify(float("inf"), float("inf")) is None and classify(float("inf"), float("-inf")) == "mismatch"


def test_a_picked_value_must_match_bit_for_bit_and_a_sum_within_1e9(store):
    """SPEC §3: min/max/first/last and latest values are identical online and offline, float sums and means
    agree within 1e-9 (min/max: -0.0 and 0.0 are equal, docs/semantics.md). Served values nudged by one ulp in the log: the latest float ``last_amount`` is a
    mismatch on every nudged row, ``amount_sum_1m`` and ``amount_mean_1h`` stay clean. Before, every float
    was compared within 1e-9, so a one-bit (or -0.0 against 0.0) skew of a picked value read as clean."""
    import math

    from featurestore import serving_log
    from featurestore.verify import classify

    from featurestore.verify import BITS, EQUAL

    assert classify(-0.0, 0.0, BITS) == "mismatch" and classify(-0.0, 0.0, EQUAL) is None  # docs/semantics.md
    assert classify(-0.0, 0.0) is None and classify(1.5, 1.5, BITS) is None and classify(2, 2.0, BITS) is None
    assert classify(1.0, math.nextafter(1.0, 2.0), EQUAL) == "mismatch"
    assert classify(1.0, math.nextafter(1.0, 2.0)) is None

    serve_traffic(store, n=40, seed=5)
    client = store.online_store().client
    key = serving_log.stream_key(store.config.project, "logged_model")
    nudged = {"last_amount": 0, "amount_sum_1m": 0, "amount_mean_1h": 0}
    rewritten = []
    for _, fields in client.xrange(key):
        payload = json.loads(fields[b"r"])
        for row in payload["features"]:
            for feat in nudged:
                value = row.get(feat)
                if isinstance(value, float) and math.isfinite(value) and value != 0.0:
                    row[feat] = math.nextafter(value, math.inf)
                    nudged[feat] += 1
        rewritten.append({b"r": json.dumps(payload).encode()})
    assert all(nudged.values()), nudged
    client.delete(key)
    for fields in rewritten:
        client.xadd(key, fields)
    report = store.verify("logged_model")
    assert report.features["last_amount"].mismatch == nudged["last_amount"]
    assert report.features["amount_sum_1m"].mismatch == 0 and report.features["amount_mean_1h"].mismatch == 0
