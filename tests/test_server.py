"""The HTTP feature server: lookups equal the Python SDK, errors are 4xx with a clear cause, the
OpenAPI schema holds under generated traffic (schemathesis), malformed and oversized bodies are refused."""

import math
import uuid

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from fastapi.testclient import TestClient

from featurestore.server import create_app
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.conftest import drop_project
from tests.randomrepo import BASE, random_events, random_requests, write_events, write_repo

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("srv"))
    project = f"srv_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    store = FeatureStore(root)
    events = random_events(5)
    write_events(root, events)
    store.backfill()
    store.materialize()
    client = TestClient(create_app(store, max_body_bytes=20_000, max_entities=50))
    yield store, client, events
    redis = store.online_store().client
    keys = list(redis.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*"))
    if keys:
        redis.delete(*keys)


def test_lookup_equals_sdk(served):
    store, client, events = served
    requests = random_requests(5, events, n=10)
    for row in requests.itertuples():
        when = int(row.event_timestamp.value // 1_000_000)
        body = {"feature_service": "everything", "entities": {"user_id": [row.user_id], "shop": [row.shop]},
                "request_time": when}
        res = client.post("/get-online-features", json=body)
        assert res.status_code == 200, res.text
        got = res.json()
        sdk = store.get_online_features([{"user_id": row.user_id, "shop": row.shop}], feature_service="everything",
                                        request_time=when).to_dict()
        assert got["results"].keys() == sdk.keys()
        for name, values in sdk.items():
            want = [("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity"))
                    if isinstance(v, float) and not math.isfinite(v) else v for v in values]
            assert got["results"][name] == pytest.approx(want, rel=1e-12, nan_ok=True) if isinstance(
                want[0], float) else got["results"][name] == want, name
        assert "last_amount" in got["feature_names"] and "user_id" not in got["feature_names"]


def test_iso_time_and_entity_rows(served):
    _, client, _ = served
    res = client.post("/get-online-features", json={
        "features": ["profile:last_tag", "amount_stats:events_all"],
        "entity_rows": [{"user_id": "u0"}, {"user_id": "nobody"}],
        "request_time": "2026-03-01T00:03:00Z"})
    assert res.status_code == 200, res.text
    assert res.json()["results"]["events_all"][1] == 0


@pytest.mark.parametrize("body,status,detail", [
    ({"features": ["nope:x"], "entities": {"user_id": ["u0"]}}, 400, "unknown feature view 'nope' in 'nope:x'"),
    ({"features": ["profile:last_tag"], "entities": {"shop": [1]}}, 400, "user_id"),
    ({"features": ["profile:last_tag"], "entities": {"user_id": ["u0"]}, "request_time": "2026-03-01T00:00:00"},
     400, "timezone"),
    ({"features": ["profile:last_tag"], "entities": {"user_id": ["u0", "u1"], "x": [1]}}, 400,
     "entities: columns have different lengths"),
    ({"features": ["profile:last_tag"], "entities": {"user_id": ["u"] * 51}}, 400, "the limit is 50"),
    ({"features": ["profile:last_tag"]}, 422, "give exactly one of 'entities' or 'entity_rows'"),
    ({"entities": {"user_id": ["u0"]}}, 422, "give exactly one of 'features' or 'feature_service'"),
    ({"features": "profile:last_tag", "entities": {"user_id": ["u0"]}, "bogus": 1}, 422, "bogus"),
])
def test_bad_requests_get_4xx_with_a_cause(served, body, status, detail):
    _, client, _ = served
    res = client.post("/get-online-features", json=body)
    assert res.status_code == status, res.text
    assert detail in res.text


def test_a_misspelt_format_or_a_misread_zone_is_refused_not_ignored(served):
    """?format=feast_v2 was ignored (the shape then chosen by the body), and a request_time of '... UTC+2' was read
    the POSIX way (two hours behind UTC) and answered; both are a 4xx naming the mistake."""
    _, client, _ = served
    body = {"features": ["profile:last_tag"], "entities": {"user_id": ["u0"]}}
    res = client.post("/get-online-features?format=feast_v2", json=body)
    assert res.status_code == 422 and "format" in res.text and "feast_v2" in res.text, res.text
    for when in ("2026-03-01T00:00:00 UTC+2", "2026-03-01T00:00:00 PST"):
        res = client.post("/get-online-features", json={**body, "request_time": when})
        assert res.status_code == 400 and when in res.json()["detail"], res.text
    for shape in ("feast", "featurestore"):
        assert client.post(f"/get-online-features?format={shape}", json=body).status_code == 200


def test_malformed_and_oversized_bodies(served):
    _, client, _ = served
    res = client.post("/get-online-features", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422
    big = b'{"features": ["profile:last_tag"], "entities": {"user_id": ["' + b"x" * 30_000 + b'"]}}'
    res = client.post("/get-online-features", content=big, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "over the 20000 byte limit" in res.text
    assert client.get("/health").json()["status"] == "ok"  # still serving


def test_health_metrics_openapi(served):
    _, client, _ = served
    assert client.get("/health").status_code == 200
    client.post("/get-online-features", json={"features": ["profile:last_tag"], "entities": {"user_id": ["u0"]}})
    metrics = client.get("/metrics").text
    assert 'featurestore_http_requests_total{path="/get-online-features",status="200"}' in metrics
    assert "featurestore_lookup_seconds_bucket" in metrics
    schema = client.get("/openapi.json").json()
    assert "/get-online-features" in schema["paths"]


def test_health_reports_redis_down(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATURESTORE_REDIS_URL", raising=False)  # the environment would win over the file
    root = write_repo(tmp_path)
    (root / "featurestore.yaml").write_text("project: down\ndefinitions: definitions\n"
                                            "online_store:\n  redis_url: redis://127.0.0.1:1/0\n")
    client = TestClient(create_app(FeatureStore(root)))
    res = client.get("/health")
    assert res.status_code == 503 and res.json()["status"] == "unhealthy"
    res = client.post("/get-online-features", json={"features": ["profile:last_tag"], "entities": {"user_id": ["u"]}})
    assert res.status_code == 503 and "cannot reach Redis" in res.text


def test_schemathesis_contract(served):
    """Generated requests against the OpenAPI schema: never a 5xx, responses conform to the schema.
    (schemathesis' pytest plugin does not run under pytest 9, so its strategies drive hypothesis here.)"""
    from hypothesis import given

    _, client, _ = served
    api = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/get-online-features", "/health", "/metrics"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call()
            assert response.status_code < 500, f"{op.path}: {response.status_code} {response.text}"
            # A schema-valid body can still name a feature that does not exist (400): that is the
            # domain, not the schema, so "positive data acceptance" is not asked of this API.
            case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])

        check()


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_parsed(served):
    """No Content-Length (Transfer-Encoding: chunked): the body is counted as it arrives."""
    _, client, _ = served
    sent = []

    def chunks():
        for _ in range(300):  # 300 KB against a 20 KB limit
            sent.append(1)
            yield b"x" * 1000

    res = client.post("/get-online-features", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413 and "over the 20000 byte limit" in res.text, res.text
    assert "content-length" not in {k.lower() for k in res.request.headers}
    ok = client.post("/get-online-features", content=iter([b'{"features": ["profile:last_tag"], ',
                                                           b'"entities": {"user_id": ["u0"]}}']),
                     headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text  # a chunked body under the limit is served


def test_metrics_label_requests_by_route_so_junk_urls_cannot_grow_them(served, tmp_path, monkeypatch):
    _, client, _ = served
    # another library of the process set Prometheus' multiprocess folder (feast.metrics does on import):
    # /metrics still reports this server's own counts, not that folder's
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    client.get("/health")
    before = client.get("/metrics").text
    for i in range(1500):
        client.get(f"/junk/{uuid.uuid4().hex}?n={i}")
        client.post(f"/get-online-features/{i}", json={})
    after = client.get("/metrics").text
    assert "/junk/" not in after and "/get-online-features/" not in after
    assert 'featurestore_http_requests_total{path="<unmatched>",status="404"} 3000.0' in after
    assert 'featurestore_http_requests_total{path="/health",status="200"}' in after
    assert len(after) < len(before) + 1000, (len(before), len(after))


def test_what_one_request_may_log_is_bounded_and_configurable(served):
    import dataclasses

    from featurestore import serving_log
    from featurestore.config import ServerConfig

    store, _, _ = served
    limited = FeatureStore(store.repo_path, config=dataclasses.replace(
        store.config, server=ServerConfig(max_logged_entities=3)))
    client = TestClient(create_app(limited))
    redis = store.online_store().client
    key = serving_log.stream_key(store.config.project, serving_log.ADHOC)
    logged_before = redis.xlen(key)
    four = {"features": ["profile:last_tag"], "entities": {"user_id": ["u0", "u1", "u2", "u3"]}}
    res = client.post("/get-online-features", json={**four, "log": True})
    assert res.status_code == 413, res.text
    assert res.json()["detail"] == ("a logged lookup of 4 entity rows is over the limit of 3 "
                                    "(server.max_logged_entities): split the request")
    res = client.post("/get-online-features", json={"feature_service": "logged_model",
                                                    "entities": {"user_id": ["u0", "u1", "u2", "u3"]}})
    assert res.status_code == 413, res.text  # a feature service that logs every lookup counts too
    assert redis.xlen(key) == logged_before  # nothing was logged
    assert client.post("/get-online-features", json=four).status_code == 200  # not logged: only max_entities
    res = client.post("/get-online-features", json={**four, "entities": {"user_id": ["u0", "u1", "u2"]},
                                                    "log": True})
    assert res.status_code == 200 and res.json()["request_id"], res.text
    assert redis.xlen(key) == logged_before + 1


@pytest.mark.parametrize("path,body,detail", [
    ("/materialize", {"start_ts": "x", "end_ts": "2026-03-02T00:00:00"}, "start_ts: 'x' is not a timestamp"),
    ("/materialize", {"start_ts": "2026-03-01T00:00:00Z", "end_ts": "soon"}, "end_ts: 'soon' is not a timestamp"),
    ("/materialize-incremental", {"end_ts": "yesterday-ish"}, "end_ts: 'yesterday-ish' is not a timestamp"),
])
def test_feast_materialize_refuses_times_it_cannot_read(served, path, body, detail):
    _, client, _ = served
    res = client.post(path, json=body)
    assert res.status_code == 400 and res.json() == {"detail": detail}, res.text


def _from_json(v):
    """A value of the HTTP response back to Python: "NaN"/"Infinity"/"-Infinity" are the non-finite floats."""
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v) if isinstance(v, str) else v


def _identical(a, b) -> bool:
    """Same value and type: NaN only NaN, -0.0 only -0.0, an int never a float."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


def test_non_finite_values_are_served_over_http_as_in_python_and_trained_as_served(tmp_path):
    """inf, -inf, NaN (computed: 0 / 0, inf * 0) and -0.0 reach an HTTP client as values ("Infinity",
    "-Infinity", "NaN" strings, as Feast's shape sends them; -0.0 as a JSON number), never as null: the
    serving log holds them, so a null here would be a served value that training_set_from_logs contradicts."""
    from tests.test_pit_nonfinite import make_repo

    root = make_repo(tmp_path / "repo")
    project = f"srv_nf_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    text = (root / "definitions" / "features.py").read_text()
    (root / "definitions" / "features.py").write_text(text.replace(
        "everything = FeatureService(features=[wild])",
        "everything = FeatureService(features=[wild], logging=LoggingConfig(enabled=True, sample_rate=1.0))").replace(
        "import Aggregation,", "import Aggregation, LoggingConfig,"))
    cases = {"inf": [(math.inf, 1), (1.0, 1)], "-inf": [(1.0, 1), (-math.inf, 1)], "nan": [(0.0, 0), (2.0, 1)],
             "both": [(math.inf, 1), (-math.inf, 1)], "zero": [(0.0, 1), (-0.0, 1)]}
    rows = [{"user_id": u, "amount": x, "qty": q, "ts": BASE + pd.Timedelta(seconds=i)}
            for u, xs in cases.items() for i, (x, q) in enumerate(xs)]
    write_events(root, pd.DataFrame(rows).astype({"qty": "Int64"}), files=1)
    store = FeatureStore(root)
    store.backfill()
    store.materialize()
    client = TestClient(create_app(store))
    when = int((BASE + pd.Timedelta(seconds=5)).value // 1_000_000)
    try:
        res = client.post("/get-online-features", json={"feature_service": "everything", "request_time": when,
                                                         "entities": {"user_id": list(cases)}})
        assert res.status_code == 200, res.text
        body = res.json()
        sdk = store.get_online_features([{"user_id": u} for u in cases], feature_service="everything",
                                        request_time=when).to_dict()
        served = {f: [_from_json(v) for v in vs] for f, vs in body["results"].items()}
        assert served["amount_sum_1m"][:2] == [math.inf, -math.inf] and math.isnan(served["ratio_max_1m"][2])
        assert math.copysign(1, served["amount_last_1m"][4]) == -1.0
        wrong = [(f, i, served[f][i], v) for f, vs in sdk.items() for i, v in enumerate(vs)
                 if not _identical(served[f][i], v)]
        assert not wrong, wrong[:10]
        trained = store.training_set_from_logs(pd.DataFrame({"request_id": [body["request_id"]] * len(cases),
                                                             "user_id": list(cases)}), "everything")
        assert trained["_from_log"].all()
        wrong = [(f, i, trained[f].iloc[i], v) for f in body["feature_names"] for i, v in enumerate(served[f])
                 if not _identical(trained[f].iloc[i], v)]
        assert not wrong, wrong[:10]
    finally:
        drop_project(store.online_store().client, project)
