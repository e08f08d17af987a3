"""Feast 0.67 as the reference for on-demand feature views: the same Feast definitions file (the quickstart's
``transformed_conv_rate`` and ODFVs in every mode) is run by Feast itself and, translated unchanged, by us.

* End to end offline: Feast's ``get_historical_features`` computes its ODFVs over its own point-in-time join;
  ours computes the translated request views over ours. Asked at ``q - 1 us`` (Feast is inclusive, we are
  exclusive; see tests/test_feast_reference.py for why one microsecond), the base values agree, so every
  ODFV value must agree too.
* ``singleton=True`` (one dict per row): Feast only runs it per request online (its offline path hands such a
  function whole columns), so each of our rows is compared with Feast's ``transform_dict`` of that row.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from tests.compare import same_value

pytestmark = [pytest.mark.feast, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning")]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")

from featurestore import FeatureStore  # noqa: E402
from tests.test_feast_reference import (  # noqa: E402
    FEAST_YAML, _write_events, feast_entity_df, make_events, make_requests, ours_entity_df)

SEED = 23
TTL = timedelta(minutes=4)

DEFS = '''
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_events = FileSource(name="driver_events", path=__PATH__, timestamp_field="event_timestamp",
                           created_timestamp_column="created")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(seconds=__TTL__),
                           schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
                                   Field(name="trips", dtype=Int64)],
                           source=driver_events)

input_request = RequestSource(name="vals_to_add", schema=[Field(name="val_to_add", dtype=Int64),
                                                          Field(name="val_to_add_2", dtype=Int64)])


@on_demand_feature_view(sources=[driver_stats, input_request],
                        schema=[Field(name="conv_rate_plus_val1", dtype=Float64),
                                Field(name="conv_rate_plus_val2", dtype=Float64)])
def transformed_conv_rate(inputs: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame()
    df["conv_rate_plus_val1"] = inputs["conv_rate"] + inputs["val_to_add"]
    df["conv_rate_plus_val2"] = inputs["conv_rate"] + inputs["val_to_add_2"]
    return df


@on_demand_feature_view(sources=[driver_stats[["conv_rate", "trips"]], input_request],
                        schema=[Field(name="trips_score", dtype=Float64), Field(name="busy", dtype=Bool),
                                Field(name="band", dtype=String)],
                        mode="python")
def trips_python(inputs):
    trips, conv = inputs["driver_stats__trips"], inputs["conv_rate"]
    return {
        "trips_score": [None if t is None or c is None else t * c + v
                        for t, c, v in zip(trips, conv, inputs["val_to_add"])],
        "busy": [t is not None and t > 250 for t in trips],
        "band": ["none" if t is None else ("high" if t > 250 else "low") for t in trips],
    }


@on_demand_feature_view(sources=[driver_stats, input_request], schema=[Field(name="rate_gap", dtype=Float64)],
                        mode="python", singleton=True)
def rate_gap(inputs):
    c, a = inputs["conv_rate"], inputs["acc_rate"]
    return {"rate_gap": None if c is None or a is None else c - a + inputs["val_to_add_2"]}


driver_activity = FeatureService(name="driver_activity", features=[driver_stats, transformed_conv_rate, trips_python])
'''

ODFV_FEATURES = {"transformed_conv_rate": ["conv_rate_plus_val1", "conv_rate_plus_val2"],
                 "trips_python": ["trips_score", "busy", "band"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("ibis")
    base = tmp_path_factory.mktemp("feast_odfv")
    feast_repo, our_repo = base / "feast_repo", base / "our_repo"
    (feast_repo / "data").mkdir(parents=True)
    our_repo.mkdir()
    events = make_events(SEED)
    path = feast_repo / "data" / "drivers.parquet"
    _write_events(path, events["driver_id"], events["ts_us"], events["created_us"], events["conv_rate"],
                  events["acc_rate"], events["trips"])
    defs_file = feast_repo / "odfv_defs.py"
    defs_file.write_text(DEFS.replace("__PATH__", repr(str(path))).replace("__TTL__", str(int(TTL.total_seconds()))))
    (feast_repo / "feature_store.yaml").write_text(FEAST_YAML.format(repo=feast_repo).replace(
        "feast_reference", "feast_odfv"))
    (our_repo / "featurestore.yaml").write_text(f"project: feast_odfv\ndefinitions: {feast_repo}\n")
    spec = importlib.util.spec_from_file_location("feast_odfv_defs", defs_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects = [v for v in vars(module).values() if isinstance(v, (feast.Entity, feast.FileSource, feast.FeatureView,
                                                                   feast.RequestSource, feast.OnDemandFeatureView,
                                                                   feast.FeatureService))]
    store = feast.FeatureStore(repo_path=str(feast_repo))
    store.apply(objects)
    req = make_requests(SEED, events, TTL)
    rng = np.random.default_rng(SEED)
    req["val_to_add"] = rng.integers(-1000, 1000, len(req)).astype("int64")
    req["val_to_add_2"] = rng.integers(-5, 5, len(req)).astype("int64")
    return {"feast": store, "ours": FeatureStore(our_repo), "module": module, "req": req}


def _with_request(df, req):
    return df.assign(val_to_add=req["val_to_add"].to_numpy(), val_to_add_2=req["val_to_add_2"].to_numpy())


def test_the_feast_file_translates_unchanged(world):
    repo = world["ours"].repo
    assert set(repo.request_views) == {"transformed_conv_rate", "trips_python", "rate_gap"}
    assert {rv.mode for rv in repo.request_views.values()} == {"pandas", "python", "row"}
    assert repo.request_sources["vals_to_add"].columns == {"val_to_add": "int64", "val_to_add_2": "int64"}
    module = world["module"]
    ours_fn = repo.request_views["transformed_conv_rate"].function  # the same function (our loader's import of it)
    theirs_fn = module.transformed_conv_rate.feature_transformation.udf
    assert ours_fn.__code__.co_code == theirs_fn.__code__.co_code and ours_fn.__name__ == theirs_fn.__name__
    assert [v.name for v, names in repo.request_views["trips_python"].view_inputs] == ["driver_stats"]
    assert repo.request_views["trips_python"].view_inputs[0][1] == ("conv_rate", "trips")
    assert "driver_activity" in repo.services


def test_odfv_values_equal_feast_end_to_end(world):
    req = world["req"]
    refs = [f"{v}:{f}" for v, names in ODFV_FEATURES.items() for f in names]
    ours = pd.DataFrame(world["ours"].get_historical_features(_with_request(ours_entity_df(req), req),
                                                              features=refs))
    theirs = world["feast"].get_historical_features(
        entity_df=_with_request(feast_entity_df(req, shift_us=1), req), features=refs).to_df()
    theirs = theirs.sort_values("row_id", kind="stable").reset_index(drop=True)
    ours = ours.sort_values("row_id", kind="stable").reset_index(drop=True)
    assert len(ours) == len(theirs) == len(req)
    bad = []
    for f in [f for names in ODFV_FEATURES.values() for f in names]:
        for i, (a, b) in enumerate(zip(ours[f].tolist(), theirs[f].tolist())):
            a = a.item() if hasattr(a, "item") else a
            b = b.item() if hasattr(b, "item") else b
            if not same_value(a, b, rel=0):
                bad.append(f"row {i} {f}: ours {a!r}, Feast {b!r}")
    assert not bad, f"{len(bad)} differences, e.g.\n" + "\n".join(bad[:10])
    # not vacuous: values and nulls both occur
    assert ours["conv_rate_plus_val1"].notna().sum() > len(ours) // 3 and ours["trips_score"].isna().any()
    # the feature service (views and ODFVs together) gives the same ODFV columns
    svc = pd.DataFrame(world["ours"].get_historical_features(_with_request(ours_entity_df(req), req),
                                                             feature_service="driver_activity"))
    assert svc.sort_values("row_id", kind="stable")["band"].tolist() == ours["band"].tolist()


def test_singleton_odfv_equals_feast_row_by_row(world):
    req = world["req"].head(60)
    ours = world["ours"].get_historical_features(
        _with_request(ours_entity_df(req), req), features=["driver_stats:conv_rate", "driver_stats:acc_rate",
                                                           "rate_gap:rate_gap"])
    odfv = world["module"].rate_gap
    for row in ours.to_arrow().to_pylist():
        inputs = {"driver_id": [row["driver_id"]], "val_to_add": [row["val_to_add"]],
                  "val_to_add_2": [row["val_to_add_2"]], "conv_rate": [row["conv_rate"]],
                  "acc_rate": [row["acc_rate"]], "trips": [None]}
        want = odfv.transform_dict(inputs)["rate_gap"]
        assert same_value(row["rate_gap"], want, rel=0), (row, want)
