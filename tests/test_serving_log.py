"""Log-and-wait (SPEC §3.3, §7): served == logged == training set, exactly, on random traffic; labels
without a log are filled by the point-in-time join and flagged; shipping is idempotent and crash-safe;
mixed definition versions are reported."""

import random
import warnings

import pandas as pd
import pytest

from featurestore import serving_log
from featurestore.store import FeatureStore
from tests.compare import _py, assert_features_equal, is_null
from tests.randomrepo import BASE

pytestmark = [pytest.mark.redis]


@pytest.fixture
def store(materialized_store):
    return materialized_store(11)


def serve_traffic(fs, n=40, seed=0, service="logged_model", log=False):
    rng = random.Random(seed)
    served = []
    for i in range(n):
        users = rng.sample(["u0", "u1", "u2", "u3", "u4", "nobody"], rng.randint(1, 3))
        when = BASE + pd.Timedelta(milliseconds=rng.randint(0, 400_000))
        res = fs.get_online_features([{"user_id": u} for u in users], feature_service=service, request_time=when,
                                     log=log)
        assert res.request_id is not None
        data = res.to_dict()
        for j, u in enumerate(users):
            served.append({"request_id": res.request_id, "user_id": u, "event_timestamp": when,
                           "label": rng.random(), **{c: v[j] for c, v in data.items() if c != "user_id"}})
    return pd.DataFrame(served)


def feature_columns(fs, service="logged_model"):
    from featurestore.sdk.refs import output_names, resolve_features

    return list(output_names(resolve_features(fs.repo, feature_service=service), False).values())


def test_served_equals_logged_equals_training_set(store):
    served = serve_traffic(store)
    cols = feature_columns(store)
    labels = served[["request_id", "user_id", "event_timestamp", "label"]].sample(frac=1.0, random_state=1)
    got = store.training_set_from_logs(labels, "logged_model")
    assert got["_from_log"].all()
    expected = served.set_index(["request_id", "user_id"]).loc[list(zip(labels.request_id, labels.user_id))]
    for c in cols:  # exact equality, not approximate: these are the bytes that were served
        for a, e in zip(got[c], expected[c]):
            assert (is_null(a) and is_null(e)) or a == _py(e), (c, a, e)
    assert list(got["label"]) == list(labels["label"])
    # and what was served equals the offline point-in-time value at the request time
    pit = store.get_historical_features(served[["user_id", "event_timestamp"]], feature_service="logged_model")
    assert_features_equal(served, pit, cols, "served vs offline")


def test_labels_without_a_log_are_filled_and_flagged(store):
    served = serve_traffic(store, n=10, seed=3)
    unknown = served.head(4).copy()
    unknown["request_id"] = [f"never-served-{i}" for i in range(4)]
    labels = pd.concat([served.head(6), unknown], ignore_index=True)[["request_id", "user_id", "event_timestamp"]]
    got = store.training_set_from_logs(labels, "logged_model")
    assert list(got["_from_log"]) == [True] * 6 + [False] * 4
    pit = store.get_historical_features(labels[["user_id", "event_timestamp"]], feature_service="logged_model")
    assert_features_equal(got, pit, feature_columns(store), "filled rows equal the point-in-time join")


def test_join_by_entity_and_time_without_request_id(store):
    served = serve_traffic(store, n=12, seed=4)
    labels = served[["user_id", "event_timestamp", "label"]].drop_duplicates(["user_id", "event_timestamp"])
    got = store.training_set_from_logs(labels, "logged_model")
    assert got["_from_log"].all()


def test_shipping_is_idempotent_and_loses_nothing(store, monkeypatch):
    served = serve_traffic(store, n=15, seed=5)
    fresh = FeatureStore(store.repo_path)  # another process: nothing shared but Redis and disk
    calls = {"n": 0}
    real = fresh.online_store().client.xtrim

    def crash_once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("crash between append and trim")
        return real(*a, **k)

    monkeypatch.setattr(fresh.online_store().client, "xtrim", crash_once)
    with pytest.raises(RuntimeError):
        fresh.ship_logs()
    fresh.ship_logs()
    fresh.ship_logs()
    logs = serving_log.read_logs(fresh, "logged_model")
    assert len(logs) == len(served)  # every served row once: nothing lost, nothing twice
    assert sorted(logs["request_id"].unique()) == sorted(served["request_id"].unique())


def test_ad_hoc_logging_and_mixed_definition_versions_are_reported(store):
    res = store.get_online_features([{"user_id": "u1"}], features=["profile:last_tag"], log=True,
                                    request_id="my-id", request_time=BASE + pd.Timedelta("1min"))
    assert res.request_id == "my-id"
    served = serve_traffic(store, n=5, seed=6)
    defs = store.repo_path / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('ttl="45s"', 'ttl="50s"'))
    store.reload()
    store.materialize()
    served2 = serve_traffic(store, n=5, seed=7)
    labels = pd.concat([served, served2])[["request_id", "user_id"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = store.training_set_from_logs(labels, "logged_model")
    assert any("2 definition version(s)" in str(w.message) for w in caught)
    assert len(got.attrs["definition_versions"]) == 2
    assert got["_definitions"].nunique() == 2


@pytest.mark.parametrize("bad", [123, "", b"r1"])
def test_a_request_id_is_a_non_empty_string(store, bad):
    from featurestore.errors import RequestError

    with pytest.raises(RequestError, match="request_id must be a non-empty string"):
        store.get_online_features([{"user_id": "u1"}], feature_service="logged_model", request_id=bad)
    store.ship_logs()  # nothing unshippable was logged
