"""Feast's own feature server as the oracle of ours (SPEC §6 "speaks Feast's feature-server protocol"): one Feast
repo, loaded by Feast (sqlite online store, ``feast materialize``, ``feast.feature_server.get_app``) and by us
(backfill, materialize, ``featurestore.server.create_app``); the same random ``/get-online-features`` requests,
written as Feast's own request model serialises them (``GetOnlineFeaturesRequest(...).model_dump()``), get the
same JSON from both: values (int64 beyond 2^53, nulls, floats), statuses (missing entities, null values),
event timestamps, metadata. Random drivers and values; every event inside the views' TTL, where both are
defined to agree.

Before: Feast's request model JSON (``feature_service: null`` beside features, ``features: []`` beside a
feature service) was a 422; a null value that was found said ``NULL_VALUE`` where Feast's server says
``PRESENT``; ``feature_view_metadata`` carried ``version: 0`` and the body a ``status`` field Feast's does not.
"""

from __future__ import annotations

import importlib.util
import os
import random
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.feast, pytest.mark.redis, pytest.mark.slow]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")

from fastapi.testclient import TestClient  # noqa: E402

from featurestore import FeatureStore  # noqa: E402
from featurestore.server import create_app  # noqa: E402
from tests.test_feast_server import DEFS  # noqa: E402

NOW = pd.Timestamp.now(tz="UTC").floor("s")
VIEWS = ("driver_hourly_stats", "driver_stats_fresh")
FEATURES = ("conv_rate", "acc_rate", "avg_daily_trips")


def _events(seed: int):
    """Random drivers (int64 ids, some beyond 2^53) with 1-4 events each inside the last 20 hours (distinct
    times per driver), nulls in every value column, int64 values beyond 2^53. Sub-second event times are
    checked against Feast's own formatter (test_event_timestamps_are_written_as_feasts_server_writes_them)."""
    rng = random.Random(seed)
    drivers = rng.sample([1001, 1002, 1003, 2 ** 53 + 1, 2 ** 62 + 7, 5, 77, 123456789012], 6)
    rows = []
    for d in drivers:
        for minutes in rng.sample(range(1, 1200), rng.randint(1, 4)):
            ts = NOW - pd.Timedelta(minutes=minutes)  # whole seconds: Feast's sqlite store drops fractions
            rows.append({"driver_id": d,
                         "conv_rate": None if rng.random() < 0.3 else rng.choice([0.1, 1 / 3, -2.5e-7, 1e300]),
                         "acc_rate": None if rng.random() < 0.2 else round(rng.uniform(-1, 1), rng.randint(0, 6)),
                         "avg_daily_trips": None if rng.random() < 0.25 else rng.choice([0, -3, 2 ** 53 + 1, 2 ** 62]),
                         "event_timestamp": ts, "created": ts + pd.Timedelta(seconds=rng.randint(0, 5))})
    df = pd.DataFrame(rows)
    df["avg_daily_trips"] = pd.array([r["avg_daily_trips"] for r in rows], dtype="Int64")
    return df, drivers


@pytest.fixture(scope="module")
def servers(tmp_path_factory, redis_client):
    from tests.conftest import drop_project

    base = tmp_path_factory.mktemp("feast_oracle")
    feast_repo, our_repo = base / "feast_repo", base / "our_repo"
    (feast_repo / "data").mkdir(parents=True)
    our_repo.mkdir()
    events, drivers = _events(11)
    data = feast_repo / "data" / "driver_stats.parquet"
    pq.write_table(pa.Table.from_pandas(events.assign(
        event_timestamp=events["event_timestamp"].astype("datetime64[us, UTC]"),
        created=events["created"].astype("datetime64[us, UTC]")), preserve_index=False), data)
    defs = feast_repo / "driver_repo.py"
    defs.write_text(DEFS.format(path=str(data)))
    project = f"t_feastor_{uuid.uuid4().hex[:8]}"
    (our_repo / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: {feast_repo}\n")
    ours = FeatureStore(our_repo)
    ours.backfill()
    ours.materialize()

    (feast_repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: {feast_repo}/data/registry.db\nprovider: local\n"
        f"online_store:\n  type: sqlite\n  path: {feast_repo}/data/online.db\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n")
    spec = importlib.util.spec_from_file_location("feast_oracle_driver_repo", defs)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects = [v for v in vars(module).values()
               if isinstance(v, (feast.Entity, feast.FileSource, feast.PushSource, feast.FeatureView,
                                 feast.FeatureService))]
    theirs = feast.FeatureStore(repo_path=str(feast_repo))
    theirs.apply(objects)
    theirs.materialize(NOW - pd.Timedelta(days=1), NOW + pd.Timedelta(minutes=1))
    from feast.feature_server import get_app

    yield TestClient(get_app(theirs)), TestClient(create_app(ours)), drivers
    drop_project(redis_client, project)


def _view_of(column: str) -> str:
    """The view of a column of these answers (full feature names: ``view__feature``; else the one view)."""
    return column.split("__")[0] if "__" in column else ("driver_id" if column == "driver_id" else VIEWS[0])


def _by_name(doc: dict) -> dict:
    names = doc["metadata"]["feature_names"]
    assert len(names) == len(doc["results"])
    return dict(zip(names, doc["results"]))


@pytest.mark.parametrize("seed", range(3))
def test_our_feast_shaped_answers_equal_feasts_own_server(servers, seed):
    from feast.feature_server import GetOnlineFeaturesRequest

    feast_client, our_client, drivers = servers
    rng = random.Random(seed)
    for _ in range(12):
        entities = {"driver_id": [rng.choice(drivers + [4242, 2 ** 53]) for _ in range(rng.randint(1, 5))]}
        full = rng.random() < 0.5
        if rng.random() < 0.3:
            request = GetOnlineFeaturesRequest(entities=entities, feature_service="driver_activity",
                                               full_feature_names=True,
                                               include_feature_view_version_metadata=rng.random() < 0.5)
        else:
            views = [VIEWS[0]] if not full else list(VIEWS)
            refs = rng.sample([f"{v}:{f}" for v in views for f in FEATURES], rng.randint(1, 3 * len(views)))
            request = GetOnlineFeaturesRequest(entities=entities, features=refs, full_feature_names=full,
                                               include_feature_view_version_metadata=rng.random() < 0.5)
        body = request.model_dump()  # Feast's request as its own model writes it (nulls and [] included)
        want = feast_client.post("/get-online-features", json=body)
        got = our_client.post("/get-online-features", json=body)
        assert want.status_code == 200, want.text
        assert got.status_code == 200, (body, got.text)
        want, got = want.json(), got.json()
        assert set(got) == set(want), (body, got, want)
        # Feast's order: the join key, then the views in the order of their first reference; within a view a
        # Python set's order (it changes from one process to the next): ours keeps the request order there
        got_names, want_names = got["metadata"]["feature_names"], want["metadata"]["feature_names"]
        assert got_names[0] == want_names[0] == "driver_id"
        assert [_view_of(n) for n in got_names] == [_view_of(n) for n in want_names], (body, got_names, want_names)
        if full:
            refs = body["features"] or [f"{v}:{f}" for v in VIEWS for f in FEATURES]
            first = [r.split(":")[0] for r in refs]
            assert got_names[1:] == [r.replace(":", "__") for r in sorted(refs, key=lambda r: first.index(
                r.split(":")[0]))], body
        assert _by_name(got) == _by_name(want), body
        assert {k: v for k, v in got["metadata"].items() if k != "feature_names"} == \
            {k: v for k, v in want["metadata"].items() if k != "feature_names"}, body

def test_event_timestamps_are_written_as_feasts_server_writes_them():
    """Our event times (epoch ms, years 1970-9999) in the text Feast's server writes for its Timestamp protos."""
    from feast.feature_server_utils import _timestamp_to_str
    from google.protobuf.timestamp_pb2 import Timestamp

    from featurestore.server_feast import _time

    rng = random.Random(5)
    samples = [0, 1, 999, 1000, 253402300799999] + [rng.randint(0, 253402300799999) for _ in range(400)]
    samples += [rng.randint(0, 2 * 10 ** 12) // 1000 * 1000 for _ in range(100)]  # whole seconds
    for ms in samples:
        ts = Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)
        assert _time(ms) == _timestamp_to_str(ts), ms


def test_feast_shaped_answers_conform_to_our_openapi_schema(servers):
    """The OpenAPI schema describes both answers of /get-online-features (ours and Feast's shape)."""
    import schemathesis

    _, our_client, drivers = servers
    api = schemathesis.openapi.from_asgi("/openapi.json", our_client.app)
    operation = api["/get-online-features"]["POST"]
    bodies = [{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": drivers[:3] + [4242]},
               "include_feature_view_version_metadata": True},
              {"feature_service": "driver_activity", "entities": {"driver_id": drivers}, "full_feature_names": True,
               "include_feature_view_version_metadata": False, "log": True},
              {"features": ["driver_stats_fresh:avg_daily_trips"], "entities": {"driver_id": drivers[:2]}}]
    for body in bodies:
        case = operation.Case(body=body)
        response = case.call()
        assert response.status_code == 200, response.text
        case.validate_response(response)
