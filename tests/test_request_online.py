"""Request feature views online: values equal to get_historical_features and to a brute-force evaluation on
random data; request data from ``request_data=``, the entity rows (Feast) and HTTP; refused inputs refuse;
logged and verified like any feature (served = trained); saved training sets re-created."""

import random

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestore.errors import FeatureStoreError, RequestError
from featurestore.server import create_app
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests import oracle
from tests import requestrepo as rr
from tests.compare import same_value

pytestmark = [pytest.mark.redis]

FEATURES = [f for names in rr.FEATURES.values() for f in names]


@pytest.fixture
def request_store(tmp_path, redis_client):
    made = []

    def make(seed: int, materialize: bool = True) -> FeatureStore:
        root = rr.write_repo(tmp_path / f"repo{len(made)}")
        events = rr.random_events(seed)
        rr.write_events(root, events)
        fs = FeatureStore(root)
        fs.backfill()
        if materialize:
            fs.materialize()
        fs.events = events
        made.append(fs)
        return fs

    yield make
    for fs in made:
        keys = list(redis_client.scan_iter(match=f"{orr.KEY_PREFIX}:{fs.config.project}:*"))
        keys += list(redis_client.scan_iter(match=f"fs:{fs.config.project}:*"))
        for i in range(0, len(keys), 500):
            redis_client.delete(*keys[i:i + 500])


def _online_rows(fs, entity_df, how="request_data"):
    """One lookup per row of ``entity_df`` (its time, its account, its request data) -> served dicts."""
    out = []
    for row in entity_df.to_dict("records"):
        data = rr.request_dict(row)
        if how == "request_data":
            res = fs.get_online_features([{"account_id": row["account_id"]}], feature_service=rr.SERVICE,
                                         request_time=row["event_timestamp"],
                                         request_data={c: [v] for c, v in data.items()})
        else:  # Feast: request columns inside the entity rows
            res = fs.get_online_features([{"account_id": row["account_id"], **data}], feature_service=rr.SERVICE,
                                         request_time=row["event_timestamp"])
        got = {c: v[0] for c, v in res.to_dict().items()}
        statuses = {c: v[0] for c, v in res.statuses().items()}
        for c in FEATURES:
            assert statuses[c] == ("NULL_VALUE" if got[c] is None else "PRESENT"), (c, statuses[c], got[c])
        out.append(got)
    return out


def _brute(fs, entity_df):
    base = oracle.point_in_time(fs.events, fs.repo.views["acct"], entity_df)
    return [rr.brute_force(rr.request_dict(row), {c: rr.clean(row[c]) for c in base.columns})
            for row in base.to_dict("records")]


def _assert_same(got, want, context):
    bad = [f"row {i} {c}: got {g[c]!r}, want {w[c]!r}" for i, (g, w) in enumerate(zip(got, want))
           for c in FEATURES if not same_value(rr.clean(g[c]), rr.clean(w[c]))]
    assert not bad, f"{context}: {len(bad)} mismatches, e.g.\n" + "\n".join(bad[:12])


@pytest.mark.parametrize("seed", [21, 22])
def test_online_equals_offline_equals_brute_force(request_store, seed):
    fs = request_store(seed)
    entity_df = rr.random_requests(seed, fs.events, n=40)
    online = _online_rows(fs, entity_df)
    offline = fs.get_historical_features(entity_df, feature_service=rr.SERVICE).to_arrow().to_pylist()
    brute = _brute(fs, entity_df)
    _assert_same(online, offline, "online vs offline")
    _assert_same(online, brute, "online vs brute force")
    # Feast's way of passing request data (inside the entity rows) gives the same values
    _assert_same(_online_rows(fs, entity_df.head(10), how="entity_rows"), online[:10], "entity rows")


def test_many_rows_in_one_lookup(request_store):
    fs = request_store(23)
    rng = random.Random(23)
    q = rr.BASE + pd.Timedelta("40min")
    rows = [{"account_id": rng.choice(rr.ACCOUNTS), "event_timestamp": q, **rr.random_request_data(rng)}
            for _ in range(25)]
    entity_df = rr.frame(rows)
    res = fs.get_online_features([{"account_id": r["account_id"]} for r in rows], feature_service=rr.SERVICE,
                                 request_time=q,
                                 request_data=[rr.request_dict(r) for r in entity_df.to_dict("records")])
    data = res.to_dict()
    assert list(data) == ["account_id", "n_10m", *FEATURES]
    online = [{c: data[c][i] for c in data} for i in range(len(rows))]
    _assert_same(online, _brute(fs, entity_df), "one lookup, 25 rows")


def test_only_request_features_are_returned_and_inputs_are_fetched(request_store):
    fs = request_store(24)
    q = rr.BASE + pd.Timedelta("30min")
    res = fs.get_online_features([{"account_id": 1}], features=["risk_row:share", "only_request:amount_cents"],
                                 request_time=q, request_data={"amount": [12.5], "channel": ["web"], "limit": [1],
                                                               "paid_at": [q], "vip": [True], "score": [0.5],
                                                               "small": [3]})
    assert list(res.to_dict()) == ["account_id", "share", "amount_cents"]
    total = fs.get_online_features([{"account_id": 1}], features=["acct:amount_sum_1h"], request_time=q).to_dict()
    assert res.to_dict()["share"] == [12.5 / total["amount_sum_1h"][0]]
    full = fs.get_online_features([{"account_id": 1}], features=["risk_row:share"], request_time=q,
                                  full_feature_names=True,
                                  request_data={c: [None] for c in rr.REQUEST_COLUMNS})
    assert list(full.to_dict()) == ["account_id", "risk_row__share"] and full.statuses() == {
        "risk_row__share": ["NULL_VALUE"]}


def test_missing_or_doubled_request_data_is_one_line(request_store):
    fs = request_store(25, materialize=False)
    with pytest.raises(RequestError) as info:
        fs.get_online_features([{"account_id": 1}], features=["only_request:amount_cents"],
                               request_data={"amount": [1.0]})
    assert str(info.value) == ("request data has no column 'channel' (request source 'txn', read by request feature "
                               "view 'only_request'); pass request_data={'channel': [...]}")
    data = {c: [None] for c in rr.REQUEST_COLUMNS}
    with pytest.raises(RequestError, match="request column 'amount' is given both in request_data and in the entity"):
        fs.get_online_features([{"account_id": 1, "amount": 2.0}], features=["only_request:amount_cents"],
                               request_data=data)
    with pytest.raises(RequestError, match=r"request data row 0: request column 'small' expects an integer \(int32\), "
                                           r"got 2147483648 \(out of range\)"):
        fs.get_online_features([{"account_id": 1}], features=["only_request:amount_cents"],
                               request_data={**data, "small": [2 ** 31]})
    with pytest.raises(RequestError, match="column 'amount' has 2 values for 1 entity rows"):
        fs.get_online_features([{"account_id": 1}], features=["only_request:amount_cents"],
                               request_data={**data, "amount": [1.0, 2.0]})


def test_refused_inputs_refuse_the_request_features(request_store):
    """No online state for the view read: its values are refused, and so are the request features computed
    from them (never a value computed from a gap); a view of request data only is still answered."""
    fs = request_store(26, materialize=False)
    data = {c: [v] for c, v in rr.random_request_data(random.Random(1)).items()}
    data["amount"] = [10.0]
    res = fs.get_online_features([{"account_id": 1}], features=["risk_row:share", "only_request:amount_cents"],
                                 request_data=data)
    assert res.to_dict()["share"] == [None] and res.statuses()["share"] == ["REFUSED"]
    assert res.to_dict()["amount_cents"] == [1000.0] and res.statuses()["amount_cents"] == ["PRESENT"]
    assert any("no online state" in r for r in res.refusals)


def test_http_request_data_equals_the_sdk(request_store):
    fs = request_store(27)
    client = TestClient(create_app(fs))
    q = int((rr.BASE + pd.Timedelta("50min")).value // 1_000_000)
    data = {"amount": [99.5, None], "channel": ["app", "日本語"], "limit": [50, 2 ** 62],
            "paid_at": ["2026-03-01T00:40:00.123456Z", None], "vip": [False, None], "score": [0.25, -1.5],
            "small": [1, -(2 ** 31)]}
    body = {"feature_service": rr.SERVICE, "entities": {"account_id": [1, 3]}, "request_time": q, "request_data": data}
    got = client.post("/get-online-features", json=body)
    assert got.status_code == 200, got.text
    sdk = fs.get_online_features([{"account_id": 1}, {"account_id": 3}], feature_service=rr.SERVICE, request_time=q,
                                 request_data=data)
    want = sdk.to_dict()
    results = got.json()["results"]
    assert results["later"] == [v.isoformat() if v is not None else None for v in want.pop("later")]
    results.pop("later")
    assert results == want
    assert got.json()["statuses"] == sdk.statuses()
    missing = client.post("/get-online-features", json={**body, "request_data": {"amount": [1.0, 2.0]}})
    assert missing.status_code == 400 and "request data has no column 'channel'" in missing.json()["detail"]
    feast_style = {"feature_service": rr.SERVICE, "request_time": q,
                   "entities": {"account_id": [1, 3], **data}}
    assert client.post("/get-online-features", json=feast_style).json()["results"]["share"] == want["share"]
    # Feast's own request and response shape (a Feast client sends request data inside the entities)
    feast = client.post("/get-online-features", json={**feast_style, "include_feature_view_version_metadata": False})
    assert feast.status_code == 200, feast.text
    body = feast.json()
    names = body["metadata"]["feature_names"]
    assert names == ["account_id", "n_10m", *FEATURES]
    share = body["results"][names.index("share")]
    assert share["values"] == want["share"]  # Feast's server says PRESENT for a null it has (never NULL_VALUE)
    assert share["statuses"] == ["PRESENT" if s == "NULL_VALUE" else s for s in sdk.statuses()["share"]]
    assert share["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 2  # computed at the request: no event
    n_10m = body["results"][names.index("n_10m")]
    assert n_10m["event_timestamps"][0] != "1970-01-01T00:00:00Z"  # a looked-up feature keeps its event time


# -- logged and verified like any feature -------------------------------------------------------------------
def test_served_equals_trained_and_verify_finds_no_skew(request_store):
    fs = request_store(28)
    rng = random.Random(28)
    served = []
    entity_df = rr.random_requests(28, fs.events, n=30)
    for i, row in enumerate(entity_df.to_dict("records")):
        data = rr.request_dict(row)
        res = fs.get_online_features([{"account_id": row["account_id"]}], feature_service=rr.SERVICE,
                                     request_time=row["event_timestamp"],
                                     request_data={c: [v] for c, v in data.items()})
        assert res.request_id is not None
        served.append({"request_id": res.request_id, **{c: v[0] for c, v in res.to_dict().items()}})
        if rng.random() < 0.2:
            fs.ship_logs()
    labels = pd.DataFrame({"request_id": [s["request_id"] for s in served], "label": range(len(served))})
    train = fs.training_set_from_logs(labels, rr.SERVICE)
    assert train["_from_log"].all()
    for s, t in zip(served, train.to_dict("records")):
        for c in FEATURES:
            a, b = s[c], t[c]
            assert (a is None and b is None) or (type(a) is type(b) and a == b), (c, a, b)  # value and type
    logs = fs.offline  # the request data is in the shipped log table
    from featurestore import serving_log

    table = serving_log.log_table(fs, rr.SERVICE).read()
    assert table.column("request_data").null_count == 0 and logs is not None
    report = fs.verify(rr.SERVICE)
    assert report.rows == len(served)
    assert report.clean, {f: (s.mismatch, s.missing, s.extra, s.examples[:1]) for f, s in report.features.items()
                          if s.skew_rate}

    # A change of a request view's code is skew verify sees (it really recomputes them).
    path = fs.repo_path / "definitions" / "features.py"
    path.write_text(path.read_text().replace('"big" if amount >= 1000', '"big" if amount >= 10'))
    fs.reload()
    report = fs.verify(rr.SERVICE)
    assert report.features["bucket"].mismatch > 0 and report.features["share"].skew_rate == 0


def test_labels_without_a_log_are_filled_with_their_request_data(request_store):
    fs = request_store(29)
    entity_df = rr.random_requests(29, fs.events, n=6)
    labels = entity_df.assign(request_id=[f"never-{i}" for i in range(len(entity_df))])
    train = fs.training_set_from_logs(labels, rr.SERVICE)
    assert not train["_from_log"].any()
    offline = fs.get_historical_features(entity_df, feature_service=rr.SERVICE).to_arrow().to_pylist()
    _assert_same(train.to_dict("records"), offline, "filled")
    with pytest.raises(RequestError, match="filling it by the point-in-time join needs request column 'amount'"):
        fs.training_set_from_logs(labels.drop(columns=["amount"]), rr.SERVICE)


# -- saved training sets ----------------------------------------------------------------------------------
def test_saved_training_sets_are_recreated(request_store):
    fs = request_store(30, materialize=False)
    entity_df = rr.random_requests(30, fs.events, n=50)
    saved = fs.get_historical_features(entity_df, feature_service=rr.SERVICE, save_as="with_requests")
    again = fs.recreate_training_set("with_requests")
    assert again.to_arrow().equals(saved.to_arrow())
    with pytest.raises(RequestError, match="already exists"):
        fs.get_historical_features(entity_df, feature_service=rr.SERVICE, save_as="with_requests")
    # a SQL view is pinned by the manifest: editing it does not change the saved set
    path = fs.repo_path / "definitions" / "features.py"
    text = path.read_text()
    path.write_text(text.replace('"amount / nullif(amount_sum_1h, 0)"', '"amount * 2"'))
    fs.reload()
    assert fs.recreate_training_set("with_requests").to_arrow().equals(saved.to_arrow())
    # a Python function cannot be replayed from the manifest: a changed one is refused, naming the view
    path.write_text(text.replace('"big" if amount >= 1000', '"big" if amount >= 10'))
    fs.reload()
    with pytest.raises(FeatureStoreError, match="request feature view 'risk_row' is changed since"):
        fs.recreate_training_set("with_requests")


def test_a_log_table_shipped_before_request_data_existed_still_reads(request_store):
    """Compatible log format: rows shipped without the request_data column read as null beside new ones."""
    import pyarrow as pa

    from featurestore import serving_log

    fs = request_store(31)
    table = serving_log.log_table(fs, rr.SERVICE)
    old_schema = pa.schema([f for f in serving_log.LOG_TABLE_SCHEMA if f.name != "request_data"])
    old = pa.table({"request_id": ["old-1"], "row": pa.array([0], pa.int32()),
                    "request_time": pa.array([int(rr.BASE.value // 1_000_000)], pa.int64()).cast(
                        pa.timestamp("ms", tz="UTC")),
                    "feature_service": [rr.SERVICE], "service_version": pa.array([1], pa.int32()),
                    "fingerprints": ["{}"], "entity": ['{"account_id": 1}'], "features": ["{}"],
                    "stream_id": ["1-0"]}, schema=old_schema)
    table.append(old)
    q = rr.BASE + pd.Timedelta("20min")
    res = fs.get_online_features([{"account_id": 1}], feature_service=rr.SERVICE, request_time=q,
                                 request_data={c: [None] for c in rr.REQUEST_COLUMNS})
    fs.ship_logs()
    logs = serving_log.read_logs(fs, rr.SERVICE)
    assert logs["request_id"].tolist() == ["old-1", res.request_id]
    assert logs["request_data"].isna().tolist() == [True, False]
