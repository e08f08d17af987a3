"""Log-and-wait whatever names a lookup asked for (SPEC §3.3, §6, §7): a lookup logs its values under the
column names it returned (``view__feature`` with ``full_feature_names=True``, as Feast's clients ask), and a
feature service may hold two views' features of one name (Feast's driver example: ``conv_rate`` in two views,
which needs full names). ``training_set_from_logs`` gives back exactly the served values and ``verify`` finds
no skew in clean traffic and exactly the skew written into the log, for every mix of names.

Before: a lookup logged with full names came back from ``training_set_from_logs`` as all nulls flagged
``_from_log=True`` (served != trained, silently) and ``verify`` counted every value as missing; a service whose
views share a feature name could not be joined or verified at all.
"""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest

from featurestore import FeatureStore, serving_log
from featurestore.errors import RequestError
from tests import logrepo
from tests.compare import _py, is_null

pytestmark = [pytest.mark.redis]

# a view whose features share names with account_stats', and a service over both (full names needed)
TWINS = '''
account_recent = FeatureView(
    entities=[account],
    source=payments,
    features=[Aggregation("*", "count", "10s", name="n_1m"),
              Aggregation("amount", "max", "5m", name="amount_sum_1h"),
              Latest("tag", name="last_tag_1h")],
)

twins = FeatureService(features=[account_stats, account_recent, region_stats],
                       logging=LoggingConfig(enabled=True, sample_rate=1.0))
'''


@pytest.fixture
def store(tmp_path, redis_client):
    from tests.conftest import drop_project

    root = logrepo.write_repo(tmp_path / "repo")
    (root / "definitions" / "features.py").write_text(logrepo.DEFINITIONS + TWINS)
    fs = FeatureStore(root)
    events = logrepo.random_payments(5, n=200)
    logrepo.write_payments(root, events)
    fs.backfill()
    fs.materialize()
    fs.events = events
    yield fs
    drop_project(redis_client, fs.config.project)


def _serve(fs, seed: int, service: str, always_full: bool):
    """Random logged lookups, each with full feature names or not (at random unless ``always_full``); the
    served values of every (request id, row) by (view, feature)."""
    from featurestore.sdk.refs import output_names, resolve_features

    rng = random.Random(seed)
    selection = resolve_features(fs.repo, feature_service=service)
    served = []
    for lookup in logrepo.random_lookups(seed, fs.events, n=25):
        full = always_full or rng.random() < 0.5
        res = fs.get_online_features(lookup["rows"], feature_service=service, request_time=lookup["request_time"],
                                     full_feature_names=full, request_id=lookup["request_id"])
        data = res.to_dict()
        names = output_names(selection, full)
        for j, row in enumerate(lookup["rows"]):
            served.append({"request_id": res.request_id, "row": row, "when": lookup["request_time"],
                           "values": {vf: _py(data[col][j]) for vf, col in names.items()}})
    return served, output_names(selection, True)


def _labels(served, rng):
    picked = [s for s in served if rng.random() < 0.8]
    rng.shuffle(picked)
    return picked, pd.DataFrame({
        "request_id": [s["request_id"] for s in picked],
        "account_id": pd.array([s["row"]["account_id"] for s in picked], dtype="Int64"),
        "region": pd.Series([s["row"]["region"] for s in picked], dtype=object),
        "label": range(len(picked))})


def _same(a, b) -> bool:
    return (is_null(a) and is_null(b)) or a == b


@pytest.mark.parametrize("seed", [1, 2])
def test_logged_values_come_back_whatever_names_the_lookup_asked_for(store, seed):
    from featurestore.sdk.refs import output_names, resolve_features

    rng = random.Random(seed)
    for service in ("scoring", "twins"):
        served, full_names = _serve(store, seed, service, always_full=service == "twins")
        picked, labels = _labels(served, rng)
        selection = resolve_features(store.repo, feature_service=service)
        namings = [True] if service == "twins" else [False, True]
        if service == "twins":  # one column name for two features: the caller must say full names
            with pytest.raises(RequestError, match="pass full_feature_names=True"):
                store.training_set_from_logs(labels, service)
        for full in namings:
            got = store.training_set_from_logs(labels, service, full_feature_names=full)
            assert got["_from_log"].all() and list(got["label"]) == list(labels["label"])
            for vf, col in output_names(selection, full).items():
                for i, s in enumerate(picked):
                    assert _same(_py(got[col].iloc[i]), s["values"][vf]), (service, full, col, i)
        # a label whose request was never logged is filled by the point-in-time join and flagged
        lone = pd.DataFrame({"request_id": ["never-logged"], "account_id": pd.array([logrepo.ACCOUNTS[0]], "Int64"),
                             "region": ["eu"], "event_timestamp": [logrepo.BASE + pd.Timedelta("2min")]})
        filled = store.training_set_from_logs(lone, service, full_feature_names=True)
        pit = store.get_historical_features(lone[["account_id", "region", "event_timestamp"]], feature_service=service,
                                            full_feature_names=True)
        assert not filled["_from_log"].iloc[0]
        for col in full_names.values():
            assert _same(_py(filled[col].iloc[0]), _py(pit[col].iloc[0])), col

        report = store.verify(service)  # online == offline: no skew, every served row checked
        assert report.rows == len(served)
        want_cols = set(output_names(selection, service == "twins").values())
        assert set(report.features) == want_cols
        assert {c: (s.mismatch, s.missing, s.extra) for c, s in report.features.items()} == \
            {c: (0, 0, 0) for c in want_cols}, service


def test_verify_counts_exactly_the_skew_written_into_full_named_logs(store):
    """Lookups logged with full names (both services), then chosen served values rewritten in the stream:
    verify counts exactly those, per feature (full names when the service's views share a feature name)."""
    rng = random.Random(7)
    for service in ("scoring", "twins"):
        _serve(store, 7, service, always_full=True)
        client = store.online_store().client
        key = serving_log.stream_key(store.config.project, service)
        entries = client.xrange(key)
        assert entries
        want = {}
        rewritten = []
        for _, fields in entries:
            payload = json.loads(fields[b"r"])
            for row in payload["features"]:
                for col, value in list(row.items()):
                    if (rng.random() > 0.2 or not isinstance(value, (int, float)) or isinstance(value, bool)
                            or not math.isfinite(value)):
                        continue
                    changed = value + 1 if isinstance(value, int) else value + abs(value) * 0.01 + 1.0
                    kind, row[col] = ("missing", None) if rng.random() < 0.5 else ("mismatch", changed)
                    reported = col if service == "twins" else col.split("__", 1)[1]
                    want.setdefault(reported, {"mismatch": 0, "missing": 0, "extra": 0})[kind] += 1
            rewritten.append({b"r": json.dumps(payload).encode()})
        assert sum(sum(c.values()) for c in want.values()) > 3
        client.delete(key)
        for fields in rewritten:
            client.xadd(key, fields)
        report = store.verify(service)
        got = {f: {"mismatch": s.mismatch, "missing": s.missing, "extra": s.extra}
               for f, s in report.features.items() if s.mismatch or s.missing or s.extra}
        assert got == want, service
