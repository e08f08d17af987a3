"""Log-and-wait (SPEC §3.3, §7): served == logged == training set, exactly, on random traffic; labels
without a log are filled by the point-in-time join and flagged; shipping is idempotent and crash-safe;
mixed definition versions are reported."""

import json
import random
import warnings

import pandas as pd
import pytest

from featurestore import serving_log
from featurestore.store import FeatureStore
from tests.compare import _py, assert_features_equal, is_null, same_value
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
    expected = served.drop_duplicates(["user_id", "event_timestamp"])  # the first logged of each (entity, time)
    for c in feature_columns(store):  # the served values themselves, not only a flag
        for a, e in zip(got[c], expected[c]):
            assert (is_null(a) and is_null(e)) or a == _py(e), (c, a, e)
    # an (entity, time) served by two requests gets the first one logged; one at another time is filled
    t = BASE + pd.Timedelta("123.456s")
    first = store.get_online_features([{"user_id": "u2"}], feature_service="logged_model", request_time=t)
    store.get_online_features([{"user_id": "u2"}, {"user_id": "u1"}], feature_service="logged_model",
                              request_time=t)
    labels = pd.DataFrame({"user_id": ["u2", "u2", "u1"], "event_timestamp": [t, t + pd.Timedelta("1ms"), t]})
    got = store.training_set_from_logs(labels, "logged_model")
    assert got["_from_log"].tolist() == [True, False, True]
    assert got["_definitions"].iloc[0] is not None
    assert got["events_all"].iloc[0] == first.to_dict()["events_all"][0]
    pit = store.get_historical_features(labels, feature_service="logged_model")
    assert_features_equal(got, pit, feature_columns(store), "by entity and time: served = point in time here")


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


def test_a_label_gets_the_row_served_for_its_entity_never_another_entitys(store):
    """Issue 9.3: labels are matched by request id AND entity. A label whose entity the request did not
    serve is filled by the point-in-time join and flagged, never given the request's first row."""
    t = BASE + pd.Timedelta("200s")
    r1 = store.get_online_features([{"user_id": "u0"}], feature_service="logged_model", request_time=t).request_id
    r2 = store.get_online_features([{"user_id": "u0"}, {"user_id": "u2"}], feature_service="logged_model",
                                   request_time=t).request_id
    labels = pd.DataFrame({"request_id": [r1, r2, r2, r1], "user_id": ["u1", "u1", "u2", "u0"]})
    got = store.training_set_from_logs(labels, "logged_model")
    assert got["_from_log"].tolist() == [False, False, True, True]
    pit = store.get_historical_features(labels[["user_id"]].assign(event_timestamp=t), feature_service="logged_model")
    assert_features_equal(got, pit, feature_columns(store), "each row holds its own entity's values")

    rng = random.Random(9)
    rows, requests = [], []
    for i in range(30):  # random traffic: repeats of an entity within a request included
        users = [rng.choice(["u0", "u1", "u2", "u3", "nobody"]) for _ in range(rng.randint(1, 4))]
        when = BASE + pd.Timedelta(milliseconds=rng.randint(0, 400_000))
        res = store.get_online_features([{"user_id": u} for u in users], feature_service="logged_model",
                                        request_time=when)
        data = res.to_dict()
        served = {u: {c: data[c][j] for c in data} for j, u in reversed(list(enumerate(users)))}
        requests.append((res.request_id, when, served))
    for rid, when, served in requests:
        for u in ["u0", "u1", "u2", "u3", "nobody"]:
            rows.append({"request_id": rid, "user_id": u, "event_timestamp": when, "served": served.get(u)})
    labels = pd.DataFrame(rows).sample(frac=1.0, random_state=2).reset_index(drop=True)
    got = store.training_set_from_logs(labels.drop(columns="served"), "logged_model")
    assert got["_from_log"].tolist() == [s is not None for s in labels["served"]]
    pit = store.get_historical_features(labels[["user_id", "event_timestamp"]], feature_service="logged_model")
    expected = pit.copy()
    for r, s in enumerate(labels["served"]):
        if s is not None:
            for c in feature_columns(store):
                expected.loc[r, c] = s[c]
    assert_features_equal(got, expected, feature_columns(store), "served where served, point-in-time elsewhere")


def test_labels_without_join_keys_match_by_request_id_when_it_names_one_entity(store):
    t = BASE + pd.Timedelta("100s")
    one = store.get_online_features([{"user_id": "u1"}, {"user_id": "u1"}], feature_service="logged_model",
                                    request_time=t)
    two = store.get_online_features([{"user_id": "u1"}, {"user_id": "u2"}], feature_service="logged_model",
                                    request_time=t)
    got = store.training_set_from_logs(pd.DataFrame({"request_id": [one.request_id]}), "logged_model")
    assert got["_from_log"].tolist() == [True]
    assert got["events_all"].iloc[0] == one.to_dict()["events_all"][0]
    from featurestore.errors import RequestError

    with pytest.raises(RequestError, match=r"row 0: request '.*' served 2 entities; add the join key columns"):
        store.training_set_from_logs(pd.DataFrame({"request_id": [two.request_id]}), "logged_model")
    with pytest.raises(RequestError, match="row 0: request_id 'never' has no logged row to match"):
        store.training_set_from_logs(pd.DataFrame({"request_id": ["never"]}), "logged_model")
    with pytest.raises(RequestError, match="request_id 'never' was never logged and labels_df has no timestamp"):
        store.training_set_from_logs(pd.DataFrame({"request_id": ["never"], "user_id": ["u1"]}), "logged_model")


def test_a_request_id_logged_twice_counts_once_as_its_last_lookup(store):
    """A lookup retried with the same request_id (or a log write Redis took twice): one served vector per
    request id, the last one logged, in read_logs, training sets and verify."""
    t1, t2 = BASE + pd.Timedelta("100s"), BASE + pd.Timedelta("250s")
    store.get_online_features([{"user_id": "u0"}], feature_service="logged_model", request_time=t1, request_id="r")
    last = store.get_online_features([{"user_id": "u1"}, {"user_id": "u2"}], feature_service="logged_model",
                                     request_time=t2, request_id="r")
    store.ship_logs()
    assert serving_log.log_table(store, "logged_model").read().num_rows == 3  # both entries, each once
    logs = serving_log.read_logs(store, "logged_model")
    assert logs["row"].tolist() == [0, 1] and (logs["request_id"] == "r").all()
    got = store.training_set_from_logs(pd.DataFrame({"request_id": ["r", "r"], "user_id": ["u2", "u0"],
                                                     "event_timestamp": [t2, t2]}), "logged_model")
    assert got["_from_log"].tolist() == [True, False]
    assert got["events_all"].iloc[0] == last.to_dict()["events_all"][1]
    assert store.verify("logged_model").rows == 2


def test_a_log_write_redis_refuses_fails_the_lookup_and_leaves_the_connection_usable(store):
    """Durable (docs/log-and-wait.md): a lookup whose log entry Redis does not take fails with one line, never
    returns an unlogged vector; the connection it used is not left with a reply pending (the next lookups
    are answered and logged, each once)."""
    from featurestore.errors import InfraError

    client = store.online_store().client
    key = serving_log.stream_key(store.config.project, "logged_model")
    client.delete(key)
    client.set(key, "not a stream")
    when = BASE + pd.Timedelta("120s")
    for _ in range(3):
        with pytest.raises(InfraError, match="WRONGTYPE"):
            store.get_online_features([{"user_id": "u1"}], feature_service="logged_model", request_time=when)
    client.delete(key)
    ids = [store.get_online_features([{"user_id": u}], feature_service="logged_model", request_time=when).request_id
           for u in ("u0", "u1", "u2")]
    entries = [json.loads(fields[b"r"]) for _, fields in client.xrange(key)]
    assert [e["request_id"] for e in entries] == ids
    assert [e["entities"] for e in entries] == [[{"user_id": u}] for u in ("u0", "u1", "u2")]


@pytest.mark.parametrize("bad", [123, "", b"r1"])
def test_a_request_id_is_a_non_empty_string(store, bad):
    from featurestore.errors import RequestError

    with pytest.raises(RequestError, match="request_id must be a non-empty string"):
        store.get_online_features([{"user_id": "u1"}], feature_service="logged_model", request_id=bad)
    store.ship_logs()  # nothing unshippable was logged


def test_request_ids_that_are_not_strings_in_labels_are_a_one_line_error(store, tmp_path):
    """Request ids of digits (chosen by the caller) come back from a CSV as integers: matching them against
    the logged strings found nothing, and every label was silently filled by the point-in-time join
    (_from_log False) instead of getting the served values. Now one line naming the row; a null id is
    still an unlogged label."""
    from featurestore.errors import RequestError

    ids = [str(10 ** 6 + i) for i in range(3)]
    for rid, user in zip(ids, ["u0", "u1", "u2"]):
        store.get_online_features([{"user_id": user}], feature_service="logged_model",
                                  request_time=BASE + pd.Timedelta("90s"), request_id=rid)
    labels = pd.DataFrame({"request_id": ids, "user_id": ["u0", "u1", "u2"], "label": [1, 0, 1]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    read_back = pd.read_csv(tmp_path / "labels.csv").assign(event_timestamp=BASE + pd.Timedelta("90s"))
    with pytest.raises(RequestError, match=r"^labels_df row 0: request_id 1000000 is of type int, not a string"):
        store.training_set_from_logs(read_back, "logged_model")
    got = store.training_set_from_logs(pd.read_csv(tmp_path / "labels.csv", dtype={"request_id": str}), "logged_model")
    assert got["_from_log"].all()
    with_null = labels.assign(request_id=[ids[0], None, ids[2]], event_timestamp=BASE + pd.Timedelta("90s"))
    assert store.training_set_from_logs(with_null, "logged_model")["_from_log"].tolist() == [True, False, True]


@pytest.mark.parametrize("seed", range(5))
def test_a_logged_record_reads_back_the_served_values_exactly(seed):
    """Records of finite floats are written by orjson, the others by json: either way the entry reads back
    (json.loads, as shipping reads it) as the very values served — NaN and infinities stay themselves
    (orjson would write null), integers beyond 64 bits, times, subclasses, numpy scalars too."""
    import json
    import math
    from datetime import datetime, timedelta, timezone

    import numpy as np

    class Text(str):
        pass

    rng = random.Random(800 + seed)
    pool = [None, 0.1, -0.0, 1e300, 5e-324, 2**63 - 1, -2**63, True, "é\n\"x\"", "", 3,
            datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=rng.randint(0, 10**12))]
    odd = [math.nan, math.inf, -math.inf, 2**64, Text("t"), np.float64(0.25), np.int64(7), np.float64(math.nan)]
    n = rng.randint(1, 6)
    columns = {"k": [rng.choice(pool[1:]) for _ in range(n)]}
    for c in range(rng.randint(1, 4)):
        columns[f"f{c}"] = [rng.choice(pool + (odd if rng.random() < 0.5 else [])) for _ in range(n)]
    request = {"r": [rng.choice(pool + odd[:3]) for _ in range(n)]} if rng.random() < 0.5 else None

    def plain(v):  # a value as json.loads gives it back: a number (NaN as a marker), text, or null
        if isinstance(v, float) and math.isnan(v):
            return "NaN"
        if isinstance(v, datetime):
            return v.isoformat()
        return v.item() if hasattr(v, "item") else (str(v) if isinstance(v, str) else v)

    record = serving_log.build_record(None, columns, ["k"], [], None, 5, "req", request)
    doc = json.loads(record.fields["r"])
    got = {c: [plain(row[c]) for row in doc["features"]] for c in columns if c != "k"}
    got["k"] = [plain(e["k"]) for e in doc["entities"]]
    assert got == {c: [plain(v) for v in col] for c, col in columns.items()}
    assert all(type(a) is type(b) for c, col in columns.items() for a, b in
               zip(got[c], [plain(v) for v in col])), got
    if request is not None:
        assert [plain(r["r"]) for r in doc["request_data"]] == [plain(v) for v in request["r"]]


def with_first_tag_served(store) -> FeatureStore:
    """The store after ``logged_model`` gained the feature ``qty_stats:first_tag`` (its definitions edited)."""
    defs = store.repo_path / "definitions" / "features.py"
    text = defs.read_text()
    assert text.count('"qty_stats:tags_1m"') == 1
    defs.write_text(text.replace('"qty_stats:tags_1m"', '"qty_stats:tags_1m", "qty_stats:first_tag"'))
    return FeatureStore(store.repo_path)


def test_a_feature_that_joined_the_service_later_is_filled_and_flagged_in_older_logged_rows(store):
    """A lookup logged before the service gained a feature served no value for it. Its training-set row gave
    that feature None with ``_from_log=True``: a silent null passed off as served (verify already counts it
    as stale). Now the unserved feature is filled by the point-in-time join at the logged request's time and
    the row is flagged (``_from_log=False``); its served features keep their served values, and rows logged
    after the change are exactly what they served."""
    before = serve_traffic(store, n=12, seed=31)
    changed = with_first_tag_served(store)
    after = serve_traffic(changed, n=8, seed=32)
    labels = pd.concat([before, after], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two definition versions: reported, checked elsewhere
        got = changed.training_set_from_logs(labels[["request_id", "user_id", "label"]], "logged_model")
    old = len(before)
    assert not got["_from_log"].iloc[:old].any() and got["_from_log"].iloc[old:].all()
    assert got["_definitions"].notna().all()  # every row still names the log it came from
    expected = changed.get_historical_features(
        labels[["user_id", "event_timestamp"]].iloc[:old], features=["qty_stats:first_tag"]).to_df()
    assert got["first_tag"].iloc[:old].tolist() == expected["first_tag"].tolist()
    assert any(v is not None for v in expected["first_tag"])  # the fill is not vacuously null
    for c in feature_columns(store):  # the features those rows did serve come back exactly as served
        assert _exact(got[c].iloc[:old].tolist(), before[c].tolist()), c
    for c in feature_columns(changed):
        assert _exact(got[c].iloc[old:].tolist(), after[c].tolist()), c
    # Labels without join keys (matched by request id alone) are filled at the served row's keys.
    single = before[before.groupby("request_id")["user_id"].transform("size") == 1]
    assert len(single)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_id = changed.training_set_from_logs(single[["request_id", "label"]], "logged_model")
    assert not by_id["_from_log"].any()
    want = expected["first_tag"].iloc[list(single.index)].tolist()
    assert by_id["first_tag"].tolist() == want


def _exact(got, want):
    """Value for value equal, with no tolerance (nulls of any kind equal; the frames built from served dicts
    turn int columns holding nulls into float)."""
    return len(got) == len(want) and all(same_value(_py(a), _py(b), rel=0.0, abs_tol=0.0) for a, b in zip(got, want))
