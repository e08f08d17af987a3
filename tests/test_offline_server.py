"""Training sets through the server (SPEC §6, §8): Feast's OWN client — a ``feast.FeatureStore`` with
``offline_store: {type: remote}`` — against a real ``featurestore serve-offline`` / ``serve --offline-port``
process, speaking Feast's remote offline store protocol (Arrow Flight).

* the values Feast's client gets are our SDK's ``get_historical_features`` and the oracle's (tests/oracle.py), on
  random events with hot keys, ties broken by the created column, nulls, requests exactly at event times and at
  the TTL edge, and keys that have no events; with and without ``full_feature_names``; through the newer
  ``do_exchange`` flow and the older ``do_put``/``do_get`` one;
* with access control on, the same bearer tokens as the HTTP server: no token is *unauthenticated*, a principal
  without ``read_offline`` on a view is *unauthorized* naming principal, action and view, a granted one gets the
  values; OIDC JWTs as the HTTP server accepts them; a request feature view needs its inputs too; Feast's other
  offline APIs, bad entity frames and over-limit uploads are refused with a one-line error.
"""

from __future__ import annotations

import importlib.util
import os
import random
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

pytestmark = [pytest.mark.feast, pytest.mark.slow]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")
fl = pytest.importorskip("pyarrow.flight")

from featurestore import FeatureStore  # noqa: E402
from tests import oracle  # noqa: E402
from tests.compare import assert_features_equal  # noqa: E402

BASE = pd.Timestamp("2026-10-01", tz="UTC")
DEFS = '''
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
stats_source = FileSource(name="stats_source", path={stats!r}, timestamp_field="event_timestamp",
                          created_timestamp_column="created")
risk_source = FileSource(name="risk_source", path={risk!r}, timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(hours=6), source=stats_source,
                           schema=[Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
                           tags={{"team": "ops"}})
driver_risk = FeatureView(name="driver_risk", entities=[driver], ttl=timedelta(days=2), source=risk_source,
                          schema=[Field(name="score", dtype=Float64), Field(name="band", dtype=String)],
                          tags={{"team": "risk"}})
everything = FeatureService(name="everything", features=[driver_stats, driver_risk])
aliased = FeatureService(name="aliased", features=[driver_stats.with_name("stats_alias")])
trip = RequestSource(name="trip", schema=[Field(name="distance", dtype=Float64)])


@on_demand_feature_view(sources=[driver_stats, trip], schema=[Field(name="adjusted", dtype=Float64)],
                        tags={{"team": "ops"}})
def adjusted_rate(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"adjusted": inputs["conv_rate"] * inputs["distance"]}})


@on_demand_feature_view(sources=[driver_risk, trip], schema=[Field(name="risk_per_km", dtype=Float64)],
                        tags={{"team": "ops"}})
def risk_per_km(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"risk_per_km": inputs["score"] / inputs["distance"]}})
'''
POLICY = """
roles:
  ops-analyst: [{actions: [read_metadata, read_offline], tags: {team: ops}}]
  online-only: [{actions: [read_metadata, read_online]}]
  trainer: [{actions: [read_offline], views: ["driver_*"]}]
  service-trainer: [{actions: [read_offline], services: [everything]}]
principals:
  ops: [ops-analyst]
  scorer: [online-only]
  trainer: [trainer]
  svc: [service-trainer]
groups:
  trainers: [trainer]
"""
FEATURES = ["driver_stats:conv_rate", "driver_stats:trips", "driver_risk:score", "driver_risk:band"]


def _events(rng: random.Random):
    drivers = [1, 2, 3, 4, 5, 6]
    hot = [1, 1, 1, 1, 2]  # hot keys: most events on driver 1
    stats, risk = [], []
    for i in range(400):
        d = rng.choice(hot + drivers[:5])  # driver 6 never has an event
        ts = BASE + pd.Timedelta(minutes=rng.randrange(0, 3 * 24 * 60, 7))  # a coarse grid: many equal times
        stats.append({"driver_id": d, "conv_rate": None if rng.random() < 0.15 else round(rng.uniform(-1, 1), 6),
                      "trips": None if rng.random() < 0.1 else rng.choice([rng.randrange(-5, 10**12),
                                                                           2**62 + rng.randrange(99)]),
                      "event_timestamp": ts, "created": ts + pd.Timedelta(seconds=rng.randrange(0, 3))})
        if i % 3 == 0:
            risk.append({"driver_id": d, "score": None if rng.random() < 0.2 else rng.choice([0.0, -0.0, 1e300,
                                                                                              rng.random()]),
                         "band": rng.choice(["low", "high", None, "é"]), "event_timestamp": ts})
    trips = pd.array([r.pop("trips") for r in stats], dtype=pd.Int64Dtype())  # int64 with nulls, beyond 2**53
    stats = pd.DataFrame(stats)
    stats.insert(2, "trips", trips)
    return stats, pd.DataFrame(risk)


def _entity_df(rng: random.Random, stats: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _ in range(150):
        d = rng.choice([1, 1, 2, 3, 4, 5, 6, 7])
        pick = rng.random()
        if pick < 0.3:  # exactly at an event time: that event is not visible yet
            q = rng.choice(stats["event_timestamp"].tolist())
        elif pick < 0.4:  # exactly at the TTL edge of an event
            q = rng.choice(stats["event_timestamp"].tolist()) + pd.Timedelta(hours=6)
        else:
            q = BASE + pd.Timedelta(seconds=rng.randrange(-3600, 4 * 24 * 3600))
        rows.append({"driver_id": d, "event_timestamp": q, "label": rng.random() < 0.5,
                     "distance": rng.choice([0.5, 2.0, 13.25, 1e-3])})
    return pd.DataFrame(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, env=None):
    """A real server process; up when its Flight port answers (any answer, unauthenticated included)."""
    port = args[args.index("--offline-port" if "--offline-port" in args else "--port") + 1]
    proc = subprocess.Popen([sys.executable, "-m", "featurestore.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    client = fl.FlightClient(f"grpc+tcp://127.0.0.1:{port}")
    deadline = time.time() + 90
    while True:
        try:
            list(client.list_actions())
            break
        except fl.FlightUnauthenticatedError:
            break
        except fl.FlightUnavailableError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out = proc.stdout.read().decode()
            pytest.fail(f"featurestore {args[0]} did not come up: {out[-2000:]}")
        time.sleep(0.3)
    client.close()
    return proc, int(port)


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _client(folder: Path, world, port: int, token=None, ca=None) -> "feast.FeatureStore":
    folder.mkdir(parents=True, exist_ok=True)
    auth = f"auth:\n  type: oidc\n  token: {token}\n" if token else ""
    tls = f"  scheme: https\n  cert: {ca}\n" if ca else ""
    (folder / "feature_store.yaml").write_text(
        f"project: {world['project']}\nregistry: {world['feast_repo']}/data/registry.db\nprovider: local\n"
        f"offline_store:\n  type: remote\n  host: 127.0.0.1\n  port: {port}\n  connection_retries: 0\n{tls}"
        f"online_store:\n  type: sqlite\n  path: {folder}/online.db\nentity_key_serialization_version: 3\n{auth}")
    return feast.FeatureStore(repo_path=str(folder))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("offline_server")
    feast_repo, our_repo = base / "feast_repo", base / "our_repo"
    (feast_repo / "data").mkdir(parents=True)
    our_repo.mkdir()
    rng = random.Random(20261201)
    stats, risk = _events(rng)
    paths = {"stats": feast_repo / "data" / "stats.parquet", "risk": feast_repo / "data" / "risk.parquet"}
    for name, df in (("stats", stats), ("risk", risk)):
        times = {c: df[c].astype("datetime64[us, UTC]") for c in ("event_timestamp", "created") if c in df}
        pq.write_table(pa.Table.from_pandas(df.assign(**times), preserve_index=False), paths[name])
    defs = feast_repo / "driver_repo.py"
    defs.write_text(DEFS.format(stats=str(paths["stats"]), risk=str(paths["risk"])))
    project = f"t_offsrv_{uuid.uuid4().hex[:8]}"
    (our_repo / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: {feast_repo}\n")
    ours = FeatureStore(our_repo)
    ours.backfill()

    # Feast's registry of the same definitions, applied by Feast itself (its file offline store: no server yet)
    (feast_repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: {feast_repo}/data/registry.db\nprovider: local\noffline_store:\n"
        f"  type: file\nonline_store:\n  type: sqlite\n  path: {feast_repo}/data/online.db\n"
        "entity_key_serialization_version: 3\n")
    spec = importlib.util.spec_from_file_location("offline_server_driver_repo", defs)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects = [v for v in vars(module).values()
               if isinstance(v, (feast.Entity, feast.FileSource, feast.FeatureView, feast.FeatureService,
                                 feast.RequestSource, feast.OnDemandFeatureView))]
    feast.FeatureStore(repo_path=str(feast_repo)).apply(objects)

    port = _free_port()
    proc, port = _start(["serve-offline", "--repo", str(our_repo), "--port", str(port)])
    world = {"ours": ours, "feast_repo": feast_repo, "our_repo": our_repo, "project": project, "stats": stats,
             "risk": risk, "entity_df": _entity_df(rng, stats), "base": base}
    world["client"] = _client(base / "client_open", world, port)
    world["port"] = port
    yield world
    _stop(proc)


def _oracle(world, entity_df: pd.DataFrame) -> pd.DataFrame:
    repo = world["ours"].repo
    out = entity_df.copy()
    for view, events in (("driver_stats", world["stats"]), ("driver_risk", world["risk"])):
        got = oracle.point_in_time(events, repo.views[view], entity_df)
        for c in got.columns:
            if c not in entity_df.columns:
                out[c] = got[c].values
    return out


def test_feast_client_training_set_equals_our_sdk_and_the_oracle(world):
    entity_df = world["entity_df"]
    client, ours = world["client"], world["ours"]
    got = client.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
    want = ours.get_historical_features(entity_df, features=FEATURES)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(entity_df)
    names = [f.split(":")[1] for f in FEATURES]
    assert_features_equal(got, want, names, "Feast's client vs our SDK")
    assert got["label"].tolist() == entity_df["label"].tolist()
    assert_features_equal(got, _oracle(world, entity_df), names, "Feast's client vs the oracle")
    # bit for bit: Feast's .to_arrow() is our training set's Arrow table (to_df() is pyarrow's to_pandas, which
    # makes an integer column with a null float64: the 2**62 values below are exact only in the Arrow table)
    arrow, want_arrow = client.get_historical_features(entity_df=entity_df, features=FEATURES).to_arrow(), \
        want.to_arrow()
    for name in names:
        assert arrow.column(name).equals(want_arrow.column(name)), name
    assert arrow.column("trips").type == pa.int64() and max(arrow.column("trips").to_pylist(),
                                                            key=lambda v: v or 0) > 2**62
    # the data really exercises the edges: found values, nulls and misses in both views

    assert got["conv_rate"].notna().sum() > 20 and got["conv_rate"].isna().sum() > 5
    assert got["band"].notna().sum() > 10

    # full feature names, and a feature service by name: the same values under view__feature columns
    full = client.get_historical_features(entity_df=entity_df, features=client.get_feature_service("everything"),
                                          full_feature_names=True).to_df()
    want_full = ours.get_historical_features(entity_df, features=FEATURES, full_feature_names=True)
    cols = [f.replace(":", "__") for f in FEATURES]
    assert [c for c in full.columns if "__" in c] == cols
    assert_features_equal(full, want_full, cols, "full feature names")


def test_request_feature_views_and_renamed_views_through_feast_client(world):
    """A Feast OnDemandFeatureView (computed on the server, from the entity frame's request column) and a view
    renamed in a feature service (``with_name``: our derived view) come back as our SDK computes them."""
    entity_df, client, ours = world["entity_df"], world["client"], world["ours"]
    refs = ["driver_stats:conv_rate", "adjusted_rate:adjusted"]
    got = client.get_historical_features(entity_df=entity_df, features=refs).to_df()
    want = ours.get_historical_features(entity_df, features=refs)
    assert_features_equal(got, want, ["conv_rate", "adjusted"], "request feature view")
    expected = _oracle(world, entity_df)
    expected["adjusted"] = [None if c is None else c * d for c, d in zip(expected["conv_rate"], entity_df["distance"])]
    assert_features_equal(got, expected, ["adjusted"], "request feature view vs the oracle")
    assert got["adjusted"].notna().sum() > 20

    renamed = client.get_historical_features(entity_df=entity_df, features=client.get_feature_service("aliased"),
                                             full_feature_names=True).to_df()
    assert [c for c in renamed.columns if "__" in c] == ["stats_alias__conv_rate", "stats_alias__trips"]
    want = ours.get_historical_features(entity_df, feature_service="aliased", full_feature_names=True)
    assert_features_equal(renamed, want, ["stats_alias__conv_rate", "stats_alias__trips"], "renamed view")
    plain = ours.get_historical_features(entity_df, features=FEATURES[:2])
    assert_features_equal(renamed.rename(columns={"stats_alias__trips": "trips"}), plain, ["trips"], "alias = view")


def test_feast_client_gets_feasts_column_order_our_sdk_its_own(world):
    """Feast's frame groups the features by view (views in the order of their first reference, on-demand views
    last, request order within a view): Feast's client gets that order from our server, as from Feast's own
    offline store (Feast's client also asks for every feature of an on-demand view's inputs). Our SDK keeps its
    own order (our API). Before: Feast's client got our SDK's order."""
    entity_df, client, ours = world["entity_df"], world["client"], world["ours"]
    feast_own = feast.FeatureStore(repo_path=str(world["feast_repo"]))  # its own (file) offline store
    for refs in (["driver_risk:band", "adjusted_rate:adjusted", "driver_stats:conv_rate", "driver_risk:score"],
                 ["driver_stats:trips", "driver_risk:score", "driver_stats:conv_rate"]):
        for full in (True, False):
            want = list(feast_own.get_historical_features(entity_df=entity_df, features=refs,
                                                          full_feature_names=full).to_df().columns)
            got = list(client.get_historical_features(entity_df=entity_df, features=refs,
                                                      full_feature_names=full).to_df().columns)
            assert got == want, (refs, full)
            sdk = list(ours.get_historical_features(entity_df, features=refs, full_feature_names=full).columns)
            names = [r.replace(":", "__") if full else r.split(":")[1] for r in refs]
            assert sdk[:len(entity_df.columns)] == list(entity_df.columns) and sorted(sdk) == sorted(
                list(entity_df.columns) + names), (refs, full)


def test_older_clients_do_put_then_do_get(world):
    """Earlier Feast clients uploaded the entity DataFrame with do_put and fetched the result with do_get."""
    import json

    from feast.infra.offline_stores.remote import _call_get, _call_put

    client = fl.FlightClient(f"grpc+tcp://127.0.0.1:{world['port']}")
    entity_df = world["entity_df"].head(40)
    command = {"feature_view_names": ["driver_stats"], "feature_refs": FEATURES[:2], "project": world["project"],
               "full_feature_names": False, "name_aliases": [None]}
    descriptor = _call_put("get_historical_features", command, client, entity_df, None)
    got = _call_get(client, descriptor).to_pandas()
    want = world["ours"].get_historical_features(entity_df, features=FEATURES[:2])
    assert_features_equal(got, want, ["conv_rate", "trips"], "do_put/do_get")
    with pytest.raises(fl.FlightServerError, match="already answered"):  # a ticket is answered once
        list(client.do_get(fl.Ticket(descriptor.command)).read_all().to_pylist())
    assert json.loads(descriptor.command)["api"] == "get_historical_features"


def _exchange(world, command: dict, entity_df: pd.DataFrame) -> pa.Table:
    """Feast's do_exchange by hand (a command Feast's client would not send)."""
    import json

    raw = fl.FlightClient(f"grpc+tcp://127.0.0.1:{world['port']}")
    writer, reader = raw.do_exchange(fl.FlightDescriptor.for_command(json.dumps(command)))
    table = pa.Table.from_pandas(entity_df)
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    return reader.read_all()


def test_bad_requests_and_other_apis_are_one_line_refusals(world):
    client = world["client"]
    entity_df = world["entity_df"].head(5)
    job = client.get_historical_features(entity_df=entity_df, features=FEATURES[:1])
    with pytest.raises(fl.FlightServerError) as info:
        from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

        job.persist(SavedDatasetFileStorage(path=str(world["base"] / "saved.parquet")))
    assert "'persist' is not supported by featurestore's offline server" in str(info.value)
    assert "save_as" in str(info.value)
    with pytest.raises(fl.FlightServerError) as info:  # Feast's materialize pulls from its offline store: ours
        client.materialize(BASE.to_pydatetime(), (BASE + pd.Timedelta(days=1)).to_pydatetime(), ["driver_stats"])
    assert "'pull_all_from_table_or_query' is not supported" in str(info.value)  # Feast 0.67's materialize
    assert "featurestore materialize" in str(info.value)
    raw = fl.FlightClient(f"grpc+tcp://127.0.0.1:{world['port']}")
    with pytest.raises(fl.FlightServerError, match="not a command of Feast's remote offline store"):
        raw.do_exchange(fl.FlightDescriptor.for_command(b"not json"))[1].read_all()
    command = {"api": "get_historical_features", "feature_view_names": ["driver_stats"], "feature_refs": FEATURES[:1],
               "project": world["project"], "full_feature_names": False, "name_aliases": [None]}
    assert _exchange(world, command, entity_df).num_rows == 5
    with pytest.raises(fl.FlightServerError, match=f"serves project '{world['project']}', not 'someone_else'"):
        _exchange(world, {**command, "project": "someone_else"}, entity_df)
    with pytest.raises(fl.FlightServerError) as info:  # a typo: our resolver's one line, with the closest name
        _exchange(world, {**command, "feature_refs": ["driver_stats:conv_rte"]}, entity_df)
    assert "conv_rte" in str(info.value) and "conv_rate" in str(info.value) and "Traceback" not in str(info.value)
    for bad, says in ((entity_df.drop(columns=["driver_id"]), "driver_id"),
                      (entity_df.drop(columns=["event_timestamp"]), "timestamp"),
                      (entity_df.assign(event_timestamp="yesterday"), "event_timestamp")):
        with pytest.raises(fl.FlightError) as info:  # the SDK's one-line error, never a traceback
            _exchange(world, command, bad)
        assert says in str(info.value) and "Traceback" not in str(info.value), str(info.value)
    with pytest.raises(fl.FlightServerError, match="start_date/end_date"):
        _exchange(world, {**command, "start_date": "2026-10-01T00:00:00+00:00"}, entity_df)
    with pytest.raises(fl.FlightServerError, match="'pull_all_from_table_or_query' is not supported"):
        _exchange(world, {"api": "pull_all_from_table_or_query"}, entity_df)
    # featurestore's own client: the same refusals as our one-line errors
    from featurestore.errors import InfraError, RequestError
    from featurestore.offline_client import OfflineClient

    native = OfflineClient("127.0.0.1", world["port"])
    with pytest.raises(RequestError, match=r"conv_rte.*conv_rate") as info:
        native.get_historical_features(entity_df, features=["driver_stats:conv_rte"])
    assert "\n" not in str(info.value) and "gRPC" not in str(info.value)
    with pytest.raises(RequestError, match="give exactly one of"):
        native.get_historical_features(entity_df, features=FEATURES, feature_service="everything")
    with pytest.raises(InfraError, match=r"offline server 127.0.0.1:\d+"):
        OfflineClient("127.0.0.1", _free_port()).get_historical_features(entity_df, features=FEATURES)


def test_access_control_read_offline_with_feast_tokens(world, tmp_path):
    from typer.testing import CliRunner

    from featurestore.cli import app as cli

    repo = world["our_repo"]
    (repo / "access.yaml").write_text(POLICY)
    runner = CliRunner()
    tokens = {}
    for p in ("ops", "scorer", "trainer", "svc"):
        res = runner.invoke(cli, ["auth", "create", p, "--repo", str(repo)])
        assert res.exit_code == 0, res.output
        tokens[p] = res.stdout.strip().splitlines()[-1]
    env = dict(os.environ, FEATURESTORE_ACCESS_CONTROL="true")
    http_port, port = _free_port(), _free_port()
    proc, port = _start(["serve", "--repo", str(repo), "--port", str(http_port), "--offline-port", str(port)], env)
    try:
        entity_df = world["entity_df"]
        want = world["ours"].get_historical_features(entity_df, features=FEATURES)
        # a granted principal: the values; through the very same server the HTTP API is guarded too
        trainer = _client(tmp_path / "trainer", world, port, tokens["trainer"])
        got = trainer.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        assert_features_equal(got, want, [f.split(":")[1] for f in FEATURES], "granted principal")
        import requests

        assert requests.get(f"http://127.0.0.1:{http_port}/health", timeout=10).status_code == 401
        # tags: ops may read driver_stats (team=ops) offline, not driver_risk, which it may not know exists
        # (no read_metadata on it either): answered as an unknown name, as Feast's client reports a server error
        ops = _client(tmp_path / "ops", world, port, tokens["ops"])
        part = ops.get_historical_features(entity_df=entity_df, features=FEATURES[:2]).to_df()
        assert_features_equal(part, want, ["conv_rate", "trips"], "ops on its own view")
        with pytest.raises(fl.FlightServerError) as info:
            ops.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        assert "unknown feature view 'driver_risk' in 'driver_risk:score'" in str(info.value)
        # a request feature view: granted on itself (tags) and on the views it reads, or refused naming the input
        # (Feast's client sends the refs of the views an on-demand view reads: it named driver_risk itself)
        part = ops.get_historical_features(entity_df=entity_df, features=["adjusted_rate:adjusted"]).to_df()
        assert part["adjusted"].notna().sum() > 20
        with pytest.raises(fl.FlightServerError) as info:
            ops.get_historical_features(entity_df=entity_df, features=["risk_per_km:risk_per_km"]).to_df()
        assert "unknown feature view 'driver_risk' in 'driver_risk:" in str(info.value)
        with pytest.raises(fl.FlightServerError) as info:  # trainer's grant names driver_* views only
            trainer.get_historical_features(entity_df=entity_df, features=["adjusted_rate:adjusted"]).to_df()
        assert "unknown feature view 'adjusted_rate' in 'adjusted_rate:adjusted'" in str(info.value)
        # read_online is not read_offline
        scorer = _client(tmp_path / "scorer", world, port, tokens["scorer"])
        with pytest.raises(fl.FlightUnauthorizedError) as info:
            scorer.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        assert "principal 'scorer' may not read_offline feature view(s) 'driver_risk', 'driver_stats'" in \
            str(info.value)
        # featurestore's own client (no Feast registry needed): the same values, a service by name, our errors
        from featurestore.errors import AccessError, RequestError
        from featurestore.offline_client import OfflineClient

        with OfflineClient("127.0.0.1", port, token=tokens["trainer"], project=world["project"]) as native:
            by_service = native.get_historical_features(entity_df, feature_service="everything",
                                                        full_feature_names=True)
        sdk = world["ours"].get_historical_features(entity_df, feature_service="everything", full_feature_names=True)
        cols = [f.replace(":", "__") for f in FEATURES]
        assert list(by_service.columns) == list(sdk.columns)
        assert [str(by_service[c].dtype) for c in cols] == [str(sdk[c].dtype) for c in cols]  # Int64 past 2**53
        assert_features_equal(by_service, sdk, cols, "featurestore's client")
        assert by_service["driver_stats__trips"].max() > 2**62
        with pytest.raises(RequestError, match=r"^unknown feature view 'driver_risk' in 'driver_risk:score'"):
            OfflineClient("127.0.0.1", port, token=tokens["ops"]).get_historical_features(entity_df,
                                                                                         features=FEATURES)
        # our client sends only the request view's ref: its input driver_risk, which ops may not see, is not named
        with pytest.raises(AccessError) as info:
            OfflineClient("127.0.0.1", port, token=tokens["ops"]).get_historical_features(
                entity_df.assign(distance=2.0), features=["risk_per_km:risk_per_km"])
        assert str(info.value) == ("principal 'ops' may not read_offline feature view(s) 'risk_per_km' (it reads "
                                   "feature views the principal may not see)")
        # a grant on a service covers what it reads when the service is named (our client; Feast's sends refs)
        with OfflineClient("127.0.0.1", port, token=tokens["svc"]) as svc:
            assert_features_equal(svc.get_historical_features(entity_df, feature_service="everything"),
                                  world["ours"].get_historical_features(entity_df, feature_service="everything"),
                                  [f.split(":")[1] for f in FEATURES], "a grant on the service")
            with pytest.raises(RequestError, match="^unknown feature view 'driver_stats'"):  # views hidden to it
                svc.get_historical_features(entity_df, features=FEATURES)
        with pytest.raises(AccessError, match="^a valid bearer token is required"):
            OfflineClient("127.0.0.1", port).get_historical_features(entity_df, features=FEATURES)
        # no token, a wrong token, a revoked token
        anonymous = _client(tmp_path / "anonymous", world, port)
        with pytest.raises(fl.FlightUnauthenticatedError, match="a valid bearer token is required"):
            anonymous.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        forged = _client(tmp_path / "forged", world, port, tokens["trainer"][:-4] + "abcd")
        with pytest.raises(fl.FlightUnauthenticatedError, match="the bearer token is not valid"):
            forged.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        res = runner.invoke(cli, ["auth", "revoke", "--principal", "trainer", "--repo", str(repo)])
        assert res.exit_code == 0, res.output
        with pytest.raises(fl.FlightUnauthenticatedError, match="the bearer token is not valid"):
            trainer.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
    finally:
        _stop(proc)


def test_tls_with_the_servers_certificate(world, tmp_path):
    """TLS with the server's certificate: Feast's client with scheme https and the CA gets the training set. In
    process (the CLI's TLS options and server.tls_cert reach it in tests/test_serve_process.py)."""
    from featurestore import server_offline
    from tests.services import make_ca

    certs = make_ca(tmp_path / "certs")
    server = server_offline.start(world["ours"], "127.0.0.1", _free_port(), str(certs.cert), str(certs.key))
    try:
        entity_df = world["entity_df"].head(30)
        client = _client(tmp_path / "tls_client", world, server.port, ca=certs.ca)
        got = client.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        want = world["ours"].get_historical_features(entity_df, features=FEATURES)
        assert_features_equal(got, want, [f.split(":")[1] for f in FEATURES], "over TLS")
        plain = fl.FlightClient(f"grpc+tcp://127.0.0.1:{server.port}")  # no plaintext beside TLS
        with pytest.raises(fl.FlightError):
            list(plain.list_actions(options=fl.FlightCallOptions(timeout=10)))
    finally:
        server.shutdown()


def test_an_entity_frame_over_the_row_limit_is_refused(world):
    """server.max_training_rows bounds what one call may upload (the HTTP server bounds its bodies likewise); an
    in-process server with a limit of 25 rows: 25 are answered, 26 refused with the key to raise."""
    import dataclasses

    from featurestore import server_offline
    from featurestore.config import ServerConfig

    ours = world["ours"]
    limited = FeatureStore(ours.repo_path, config=dataclasses.replace(
        ours.config, server=ServerConfig(max_training_rows=25)))
    server = server_offline.start(limited, "127.0.0.1", _free_port())
    try:
        command = {"api": "get_historical_features", "feature_view_names": ["driver_stats"],
                   "feature_refs": FEATURES[:1], "project": world["project"], "full_feature_names": False,
                   "name_aliases": [None]}
        at_limit = _exchange({"port": server.port}, command, world["entity_df"].head(25))
        assert at_limit.num_rows == 25
        with pytest.raises(fl.FlightServerError, match=r"over 25 rows \(server.max_training_rows\)"):
            _exchange({"port": server.port}, command, world["entity_df"].head(26))
        # the older do_put/do_get flow: uploads waiting for their do_get hold at most that many rows together
        from feast.infra.offline_stores.remote import _call_get, _call_put

        client = fl.FlightClient(f"grpc+tcp://127.0.0.1:{server.port}")
        first = _call_put("get_historical_features", command, client, world["entity_df"].head(20), None)
        second = _call_put("get_historical_features", command, client, world["entity_df"].head(20), None)
        with pytest.raises(fl.FlightServerError, match="no entity DataFrame was uploaded for this command"):
            _call_get(client, first)  # dropped: the oldest
        assert _call_get(client, second).num_rows == 20
    finally:
        server.shutdown()


def test_a_defect_of_ours_is_one_line_to_the_caller_and_a_traceback_in_the_log(world, monkeypatch, caplog):
    from featurestore import server_offline

    store = FeatureStore(world["ours"].repo_path, config=world["ours"].config)
    monkeypatch.setattr(store, "get_historical_features", lambda *a, **k: {}["a defect"])  # a KeyError inside
    server = server_offline.start(store, "127.0.0.1", _free_port())
    try:
        command = {"api": "get_historical_features", "feature_view_names": ["driver_stats"],
                   "feature_refs": FEATURES[:1], "project": world["project"], "full_feature_names": False,
                   "name_aliases": [None]}
        with caplog.at_level("ERROR", logger="featurestore.server_offline"):
            with pytest.raises(fl.FlightInternalError) as info:
                _exchange({"port": server.port}, command, world["entity_df"].head(3))
        assert "internal error (KeyError: 'a defect'); the server log has the details" in str(info.value)
        assert "Traceback" not in str(info.value)
        assert any(r.exc_info for r in caplog.records)
    finally:
        server.shutdown()


def test_oidc_jwts_as_the_http_server_accepts_them(world, tmp_path):
    """The offline server's Gate is the HTTP server's: a JWT of the configured provider authenticates (its roles
    claim mapped by groups:), one signed by another key does not. In-process server, Feast's client."""
    import dataclasses

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from featurestore import server_offline
    from featurestore.config import AccessConfig

    idp, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    pem = tmp_path / "idp.pem"
    pem.write_bytes(idp.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    ours = world["ours"]
    (ours.repo_path / "access.yaml").write_text(POLICY)
    store = FeatureStore(ours.repo_path, config=dataclasses.replace(ours.config, access=AccessConfig(
        enabled=True, jwt_public_key=str(pem), jwt_issuer="https://idp.example", jwt_audience="featurestore")))
    server = server_offline.start(store, "127.0.0.1", _free_port())

    def token(key, **claims):
        return jwt.encode({"iss": "https://idp.example", "aud": "featurestore", "exp": int(time.time()) + 300,
                           **claims}, key, algorithm="RS256")

    try:
        entity_df = world["entity_df"].head(20)
        carol = _client(tmp_path / "carol", world, server.port, token(idp, sub="carol", roles=["trainers"]))
        got = carol.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        want = ours.get_historical_features(entity_df, features=FEATURES)
        assert_features_equal(got, want, [f.split(":")[1] for f in FEATURES], "a JWT's group")
        dave = _client(tmp_path / "dave", world, server.port, token(idp, sub="dave"))
        # authenticated, no role: the views it may not know exist are unknown names to it
        with pytest.raises(fl.FlightServerError, match="unknown feature view 'driver_stats'"):
            dave.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        forged = _client(tmp_path / "forged_jwt", world, server.port, token(other, sub="carol", roles=["trainers"]))
        with pytest.raises(fl.FlightUnauthenticatedError, match="the bearer token is not valid"):
            forged.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
    finally:
        server.shutdown()


def test_a_port_in_use_is_one_line_naming_it(world):
    from typer.testing import CliRunner

    from featurestore.cli import app as cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = CliRunner().invoke(cli, ["serve-offline", "--repo", str(world["our_repo"]), "--port", str(port)])
    assert res.exit_code == 1
    assert f"offline server: cannot listen on 127.0.0.1:{port} (Address already in use)" in res.output


def test_concurrent_training_sets_are_each_their_own(world):
    """Flight answers calls on a thread pool over one FeatureStore: parallel calls on different entity frames each
    get their own values."""
    from concurrent.futures import ThreadPoolExecutor

    from featurestore.offline_client import OfflineClient

    frames = [world["entity_df"].iloc[i::4].reset_index(drop=True) for i in range(4)]

    def build(df):
        with OfflineClient("127.0.0.1", world["port"]) as client:
            return client.get_historical_features(df, features=FEATURES)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, frames * 2))
    names = [f.split(":")[1] for f in FEATURES]
    for df, got in zip(frames * 2, results):
        assert_features_equal(got, world["ours"].get_historical_features(df, features=FEATURES), names, "parallel")
