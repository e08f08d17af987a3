"""Feast's own client against ``featurestore serve`` (issue 13 item 3, SPEC §6): a real ``feast.FeatureStore``
with ``online_store: {type: remote}`` pointed at a real uvicorn process of ours, on Feast definitions that
both load unchanged. Feast's client gets the values and statuses our SDK gets; Feast's push path (its
remote online store posts ``/write-to-online-store``) and Feast's ``/push`` request land as events, online
equal to offline afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.feast, pytest.mark.redis, pytest.mark.slow]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")

from featurestore import FeatureStore  # noqa: E402
from featurestore.stores import online_redis as orr  # noqa: E402

NOW = pd.Timestamp.now(tz="UTC").floor("s")
DRIVERS = [1001, 1002, 1003, 1004]

DEFS = '''
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_stats_source = FileSource(name="driver_stats_source", path={path!r}, timestamp_field="event_timestamp",
                                 created_timestamp_column="created")
driver_stats_push_source = PushSource(name="driver_stats_push_source", batch_source=driver_stats_source)
SCHEMA = [Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
          Field(name="avg_daily_trips", dtype=Int64)]
driver_hourly_stats = FeatureView(name="driver_hourly_stats", entities=[driver], ttl=timedelta(days=1), schema=SCHEMA,
                                  source=driver_stats_source)
driver_stats_fresh = FeatureView(name="driver_stats_fresh", entities=[driver], ttl=timedelta(days=1), schema=SCHEMA,
                                 source=driver_stats_push_source)
driver_activity = FeatureService(name="driver_activity", features=[driver_hourly_stats, driver_stats_fresh])
'''


def _events() -> pd.DataFrame:
    rows = []
    for i, d in enumerate(DRIVERS[:-1]):  # the last driver has no event: NOT_FOUND
        for k in range(3):
            ts = NOW - pd.Timedelta(hours=3 + 2 * k + i)
            rows.append({"driver_id": d, "conv_rate": None if (d, k) == (1002, 0) else 0.1 * (i + 1) + k,
                         "acc_rate": 0.5 + k, "avg_daily_trips": 10 * i + k, "event_timestamp": ts,
                         "created": ts + pd.Timedelta(seconds=1)})
    rows.append({"driver_id": 1003, "conv_rate": 9.0, "acc_rate": 9.0, "avg_daily_trips": 9,  # beyond the TTL
                 "event_timestamp": NOW - pd.Timedelta(days=3), "created": NOW - pd.Timedelta(days=3)})
    return pd.DataFrame(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, redis_client):
    base = tmp_path_factory.mktemp("feast_server")
    feast_repo, our_repo = base / "feast_repo", base / "our_repo"
    (feast_repo / "data").mkdir(parents=True)
    our_repo.mkdir()
    data = feast_repo / "data" / "driver_stats.parquet"
    ev = _events()
    pq.write_table(pa.Table.from_pandas(ev.assign(
        event_timestamp=ev["event_timestamp"].astype("datetime64[us, UTC]"),
        created=ev["created"].astype("datetime64[us, UTC]")), preserve_index=False), data)
    defs = feast_repo / "driver_repo.py"
    defs.write_text(DEFS.format(path=str(data)))
    project = f"t_feastsrv_{uuid.uuid4().hex[:8]}"
    (our_repo / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: {feast_repo}\n")
    ours = FeatureStore(our_repo)
    ours.backfill()
    ours.materialize()

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(our_repo),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.time() + 180  # a loaded machine starts uvicorn and feast slowly
    while True:
        try:
            if requests.get(url + "/health", timeout=10).status_code == 200:
                break
        except requests.RequestException:  # not up yet, or slow to answer on a loaded machine
            pass
        if server.poll() is not None or time.time() > deadline:
            out = server.stdout.read().decode() if server.poll() is not None else ""
            server.kill()
            pytest.fail(f"featurestore serve did not come up: {out[-2000:]}")
        time.sleep(0.2)

    (feast_repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: {feast_repo}/data/registry.db\nprovider: local\n"
        f"online_store:\n  type: remote\n  path: {url}\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n")
    spec = importlib.util.spec_from_file_location("feast_server_driver_repo", defs)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects = [v for v in vars(module).values()
               if isinstance(v, (feast.Entity, feast.FileSource, feast.PushSource, feast.FeatureView,
                                 feast.FeatureService))]
    client = feast.FeatureStore(repo_path=str(feast_repo))
    client.apply(objects)
    yield {"feast": client, "ours": ours, "url": url, "events": ev, "our_repo": our_repo, "feast_repo": feast_repo,
           "project": project}
    server.terminate()
    server.wait(10)
    keys = list(redis_client.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*"))
    for i in range(0, len(keys), 500):
        redis_client.delete(*keys[i:i + 500])


FEATURES = [f"{v}:{f}" for v in ("driver_hourly_stats", "driver_stats_fresh")
            for f in ("conv_rate", "acc_rate", "avg_daily_trips")]


def _feast_lookup(client, rows, **kwargs):
    resp = client.get_online_features(features=FEATURES, entity_rows=rows, full_feature_names=True, **kwargs)
    values = resp.to_dict()
    names = list(resp.proto.metadata.feature_names.val)
    statuses = {n: [feast.protos.feast.serving.ServingService_pb2.FieldStatus.Name(s) for s in r.statuses]
                for n, r in zip(names, resp.proto.results)}
    return values, statuses


def _ours(store, rows):
    res = store.get_online_features(rows, features=FEATURES, full_feature_names=True)
    return res.to_dict(), res.statuses()


def test_feast_client_gets_our_values_and_statuses(world):
    rows = [{"driver_id": d} for d in DRIVERS]
    got, got_st = _feast_lookup(world["feast"], rows)
    want, want_st = _ours(world["ours"], rows)
    assert got["driver_id"] == DRIVERS
    for col in want_st:
        assert got[col] == want[col], col
        # Feast's server says PRESENT for a null it found (it never sends NULL_VALUE): so do we in its shape
        assert got_st[col] == ["PRESENT" if s == "NULL_VALUE" else s for s in want_st[col]], col
    assert want_st["driver_hourly_stats__conv_rate"][3] == "NOT_FOUND"
    assert "NULL_VALUE" in want_st["driver_hourly_stats__conv_rate"] or \
        "PRESENT" in want_st["driver_hourly_stats__conv_rate"]
    # a feature service by name, through Feast's client
    resp = world["feast"].get_online_features(features=world["feast"].get_feature_service("driver_activity"),
                                              entity_rows=rows, full_feature_names=True).to_dict()
    assert resp["driver_stats_fresh__avg_daily_trips"] == want["driver_stats_fresh__avg_daily_trips"]


def test_feast_shape_over_http_with_event_timestamps_and_our_request_id(world):
    import requests

    body = {"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001, 1004]},
            "full_feature_names": False, "include_feature_view_version_metadata": True}
    res = requests.post(world["url"] + "/get-online-features", json=body, timeout=10)
    assert res.status_code == 200, res.text
    doc = res.json()
    assert doc["metadata"]["feature_names"] == ["driver_id", "conv_rate"]
    assert doc["metadata"]["feature_view_metadata"] == [{"name": "driver_hourly_stats"}]  # Feast omits version 0
    keys, conv = doc["results"]
    assert keys == {"values": [1001, 1004], "statuses": ["PRESENT", "PRESENT"],
                    "event_timestamps": ["1970-01-01T00:00:00Z"] * 2}
    assert conv["statuses"] == ["PRESENT", "NOT_FOUND"]
    latest = world["events"].query("driver_id == 1001")["event_timestamp"].max()
    assert conv["event_timestamps"] == [latest.strftime("%Y-%m-%dT%H:%M:%SZ"), "1970-01-01T00:00:00Z"]
    # Feast's documented curl body (Feast's vocabulary only) gets Feast's shape too; any of our own fields asks
    # for ours, and ?format= decides explicitly either way
    plain = {k: body[k] for k in ("features", "entities")}
    feast_shape = requests.post(world["url"] + "/get-online-features", json=plain, timeout=10).json()
    assert feast_shape["metadata"]["feature_names"] == ["driver_id", "conv_rate"]
    assert feast_shape["results"] == doc["results"]
    ours = requests.post(world["url"] + "/get-online-features?format=featurestore", json=plain, timeout=10).json()
    assert ours["results"]["conv_rate"][1] is None and ours["statuses"]["conv_rate"] == ["PRESENT", "NOT_FOUND"]
    for own in ({"log": False}, {"request_time": int(NOW.value // 1_000_000)}):
        mine = requests.post(world["url"] + "/get-online-features", json={**plain, **own}, timeout=10).json()
        assert mine["statuses"]["conv_rate"] == ["PRESENT", "NOT_FOUND"], own
        forced = requests.post(world["url"] + "/get-online-features?format=feast", json={**plain, **own},
                               timeout=10).json()
        assert forced["results"][1]["statuses"] == ["PRESENT", "NOT_FOUND"], own
    # a logged lookup keeps our request id: header in, header and field out
    logged = requests.post(world["url"] + "/get-online-features", json={**body, "log": True},
                           headers={"X-Request-Id": "req-feast-1"}, timeout=10)
    assert logged.headers["X-Request-Id"] == "req-feast-1" and logged.json()["request_id"] == "req-feast-1"


def test_feast_remote_store_online_read_gets_feast_shape(world):
    """Feast's remote online store's ``online_read`` (its provider path) posts Feast's documented body, with no
    marker of Feast's client, and reads ``metadata.feature_names``: it must get Feast's shape."""
    from feast.infra.online_stores.remote import RemoteOnlineStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    client = world["feast"]
    view = client.get_feature_view("driver_hourly_stats")
    keys = [EntityKey(join_keys=["driver_id"], entity_values=[Value(int64_val=d)]) for d in DRIVERS]
    rows = RemoteOnlineStore().online_read(client.config, view, keys, ["conv_rate", "avg_daily_trips"])
    want = world["ours"].get_online_features([{"driver_id": d} for d in DRIVERS],
                                             features=["driver_hourly_stats:conv_rate",
                                                       "driver_hourly_stats:avg_daily_trips"])
    values, statuses = want.to_dict(), want.statuses()
    assert len(rows) == len(DRIVERS)
    for i, (_, got) in enumerate(rows):
        for name, kind in (("conv_rate", "double_val"), ("avg_daily_trips", "int64_val")):
            if statuses[name][i] == "PRESENT":
                assert getattr(got[name], kind) == values[name][i], (i, name)
            else:  # Feast's client gets an empty value for anything not PRESENT
                assert got[name].WhichOneof("val") is None, (i, name)
    assert statuses["conv_rate"][-1] == "NOT_FOUND"


def test_feast_push_client_path_and_push_request_land_as_events(world):
    import requests

    from featurestore.push import dead_letter_table

    client, ours = world["feast"], world["ours"]
    t1 = NOW - pd.Timedelta(minutes=30)
    df = pd.DataFrame({"driver_id": [1001, 1004], "conv_rate": [0.77, 0.44], "acc_rate": [0.7, 0.4],
                       "avg_daily_trips": [77, 44], "event_timestamp": [t1, t1], "created": [t1, t1]})
    # Feast's client with a remote online store: push -> /write-to-online-store, one feature view at a time
    client.push("driver_stats_push_source", df, to=feast.data_source.PushMode.ONLINE)
    got, got_st = _feast_lookup(client, [{"driver_id": 1001}, {"driver_id": 1004}])
    assert got["driver_stats_fresh__conv_rate"] == [0.77, 0.44]
    assert got_st["driver_stats_fresh__conv_rate"] == ["PRESENT", "PRESENT"]
    assert got["driver_hourly_stats__conv_rate"][1] is None  # online only, only the push source's view
    # the same rows again (Feast writes rows as upserts): nothing changes
    client.push("driver_stats_push_source", df, to=feast.data_source.PushMode.ONLINE)
    assert _feast_lookup(client, [{"driver_id": 1001}, {"driver_id": 1004}])[0] == got

    # Feast's /push request, online and offline: every view of the face, online == offline after it
    t2 = NOW - pd.Timedelta(minutes=10)
    body = {"push_source_name": "driver_stats_push_source", "to": "online_and_offline",
            "df": {"driver_id": [1002, 1003, 1003], "conv_rate": [0.22, 0.33, 0.5], "acc_rate": [0.2, 0.3, 0.5],
                   "avg_daily_trips": [22, 33, "many"], "event_timestamp": [str(t2.tz_localize(None))] * 3,
                   "created": [str(t2.tz_localize(None))] * 3}}
    res = requests.post(world["url"] + "/push", json=body, timeout=30)
    assert res.status_code == 200, res.text
    doc = res.json()
    assert doc["events"] == 2 and doc["dead_letters"] == {"column 'avg_daily_trips': not a int64": 1}
    assert dead_letter_table(ours, "driver_stats_push_source").read().num_rows == 1
    q = pd.Timestamp.now(tz="UTC")
    rows = [{"driver_id": d} for d in (1002, 1003)]
    online = ours.get_online_features(rows, features=FEATURES, full_feature_names=True, request_time=q).to_dict()
    assert online["driver_hourly_stats__conv_rate"] == [0.22, 0.33]
    assert online["driver_stats_fresh__avg_daily_trips"] == [22, 33]
    offline = ours.get_historical_features(pd.DataFrame({"driver_id": [1002, 1003], "event_timestamp": [q, q]}),
                                           features=FEATURES, full_feature_names=True)
    for col in online:
        if col != "driver_id":
            assert offline[col].tolist() == online[col], col
    bad = requests.post(world["url"] + "/push", json={**body, "to": "everywhere"}, timeout=10)
    assert bad.status_code == 400 and "to='everywhere' is not one of" in bad.json()["detail"]
    unknown = requests.post(world["url"] + "/push", json={**body, "push_source_name": "driver_stat_push_source"},
                            timeout=10)
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == ("push: no source called 'driver_stat_push_source' "
                                        "(did you mean 'driver_stats_push_source', 'driver_stats_source'?)")


def test_feast_materialize_endpoints(world):
    import requests

    for path, body in (("/materialize", {"start_ts": "2020-01-01T00:00:00", "end_ts": "2030-01-01T00:00:00",
                                         "feature_views": ["driver_hourly_stats"]}),
                       ("/materialize-incremental", {"end_ts": "2030-01-01T00:00:00"})):
        res = requests.post(world["url"] + path, json=body, timeout=60)
        assert res.status_code == 200, res.text
        assert "driver_hourly_stats" in [v["view"] for v in res.json()["views"]]


ACCESS_POLICY = """
roles:
  scorer: [{actions: [read_metadata, read_online], services: [driver_activity]}]
  browser: [{actions: [read_metadata]}]
principals:
  scoring-svc: [scorer]
  reader: [browser]
  nobody: []
"""


def test_feast_client_sends_our_bearer_token(world, tmp_path):
    """Issue 14 item 3, "in the SDK where it goes through the server": Feast's remote online store configured
    with ``auth: {type: oidc, token: ...}`` sends our token as a bearer token; with access control on, a
    principal granted the service reads it (values equal to our SDK's), one without the right gets our 403
    (our 400 "unknown" when it may not know the names exist), a client without a token our 401."""
    import requests
    from typer.testing import CliRunner

    from featurestore.cli import app as cli

    runner = CliRunner()
    repo = world["our_repo"]
    (repo / "access.yaml").write_text(ACCESS_POLICY)
    tokens = {}
    for p in ("scoring-svc", "reader", "nobody"):
        res = runner.invoke(cli, ["auth", "create", p, "--repo", str(repo)])
        assert res.exit_code == 0, res.output
        tokens[p] = res.stdout.strip().splitlines()[-1]
    port = _free_port()
    env = dict(os.environ, FEATURESTORE_ACCESS_CONTROL="true")
    server = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180  # a loaded machine starts uvicorn and feast slowly
        while True:
            try:
                if requests.get(url + "/health", timeout=10).status_code == 401:  # up, and guarded
                    break
            except requests.RequestException:  # not up yet, or slow to answer on a loaded machine
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail("featurestore serve with access control did not come up")
            time.sleep(0.2)

        def client(token):
            folder = tmp_path / (token[:12] if token else "anonymous")
            folder.mkdir(exist_ok=True)
            auth = f"auth:\n  type: oidc\n  token: {token}\n" if token else ""
            (folder / "feature_store.yaml").write_text(
                f"project: {world['project']}\nregistry: {world['feast_repo']}/data/registry.db\nprovider: local\n"
                f"online_store:\n  type: remote\n  path: {url}\noffline_store:\n  type: file\n"
                f"entity_key_serialization_version: 3\n{auth}")
            return feast.FeatureStore(repo_path=str(folder))

        rows = [{"driver_id": d} for d in DRIVERS]
        want, _ = _ours(world["ours"], rows)
        granted = client(tokens["scoring-svc"])
        got = granted.get_online_features(features=granted.get_feature_service("driver_activity"), entity_rows=rows,
                                          full_feature_names=True).to_dict()
        assert {c: got[c] for c in want} == want
        denied = (
            # the views by name, which it may not know exist: as unknown names
            (tokens["scoring-svc"], "400", "unknown feature view 'driver_hourly_stats'"),
            (tokens["reader"], "403", "principal 'reader' may not read_online feature service 'driver_activity'"),
            (tokens["nobody"], "400", "unknown feature service 'driver_activity'"),
            (None, "401", "a valid bearer token is required"))
        for who, status, detail in denied:
            c = client(who)
            with pytest.raises(RuntimeError) as info:  # Feast raises on the HTTP error, carrying our answer
                if who == tokens["scoring-svc"]:
                    c.get_online_features(features=FEATURES, entity_rows=rows)
                else:
                    c.get_online_features(features=c.get_feature_service("driver_activity"), entity_rows=rows)
            assert f"Failed to get online features: {status} " in str(info.value) and detail in str(info.value)
    finally:
        server.terminate()
        server.wait(10)
