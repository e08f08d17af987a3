"""Loader and validation: names, origins, and every problem reported at once with its exact text."""

import shutil
from pathlib import Path

import pytest

from featurestore.errors import LoadError, ValidationError
from featurestore.loader import load_repo

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def test_example_repo_loads_with_names_and_origins():
    repo = load_repo(ROOT / "definitions", ROOT)
    assert sorted(repo.entities) == ["merchant", "user"]
    assert sorted(repo.sources) == ["transactions"]
    assert sorted(repo.views) == ["merchant_activity", "user_profile", "user_spend"]
    assert sorted(repo.services) == ["fraud_model_v1"]
    spend = repo.views["user_spend"]
    # views share the one named source and entity objects
    assert spend.source is repo.sources["transactions"]
    assert spend.entities[0] is repo.entities["user"]
    origin = repo.origin(spend)
    assert (origin.file, origin.line, origin.qualname) == ("definitions/payments.py", 8, "definitions.payments.user_spend")
    assert repo.origin(repo.entities["merchant"]).line == 6


def test_every_problem_is_reported_in_one_pass_with_exact_text():
    with pytest.raises(ValidationError) as info:
        load_repo(FIXTURES / "broken_repo" / "definitions", FIXTURES / "broken_repo")
    assert [str(p) for p in info.value.problems] == [
        "definitions/more.py:8 model: feature reference 'user_spend' is not of the form 'view:feature'",
        "definitions/more.py:8 model: feature view 'user_spend' has no feature 'amount_sum_1hh' (did you mean 'amount'?)",
        "definitions/more.py:8 model: unknown feature view 'nope'",
        "definitions/payments.py:11 user_spend: duplicate feature view name (first defined at definitions/more.py:6)",
        "definitions/payments.py:11 user_spend: filter 'amount + 1' is float64, not a boolean",
        "definitions/payments.py:11 user_spend.count_1d: count of an empty window is already 0; remove default=",
        "definitions/payments.py:16 user_spend.amout_sum_1h: column 'amout' not in source 'transactions' (did you mean 'amount'?)",
        "definitions/payments.py:17 user_spend.country_mean_1d: mean needs a numeric input; 'country' is string",
        "definitions/payments.py:19 user_spend.amount_max_1d: default 'high' does not fit the feature's type float64",
        "definitions/payments.py:23 account_view: join key 'account_id' not in source 'transactions'",
    ]
    assert str(info.value).startswith("10 problems in definitions:\n")


def test_a_file_that_fails_to_import_aborts_with_its_path_and_line():
    with pytest.raises(LoadError) as info:
        load_repo(FIXTURES / "import_error" / "definitions", FIXTURES / "import_error")
    assert str(info.value) == "definitions/zbroken.py:5: cannot import definitions file: RuntimeError: boom"


def test_flat_feast_style_folder_and_reload_see_edits(tmp_path):
    (tmp_path / "entities.py").write_text("from featurestore import Entity\nuser = Entity(join_keys=['user_id'])\n")
    (tmp_path / "views.py").write_text(
        "from featurestore import FeatureView, Latest, ParquetFiles, Source\n"
        "from entities import user\n"
        "src = Source(schema={'user_id': 'int64', 'x': 'float64', 'ts': 'timestamp'}, timestamp='ts',\n"
        "             batch=ParquetFiles('x.parquet'))\n"
        "v = FeatureView(entities=[user], source=src, features=[Latest('x')])\n"
    )
    repo = load_repo(tmp_path)
    assert repo.views["v"].entities[0] is repo.entities["user"]
    assert repo.origin(repo.views["v"]).file == "views.py"
    (tmp_path / "views.py").write_text((tmp_path / "views.py").read_text().replace("Latest('x')", "Latest('x', name='y')"))
    assert load_repo(tmp_path).views["v"].feature_names == ("y",)


def test_same_object_under_two_names_is_a_problem(tmp_path):
    (tmp_path / "a.py").write_text("from featurestore import Entity\nuser = Entity(join_keys=['user_id'])\nalias = user\n")
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        "a.py:3 alias: same object as user (a.py:2); define it once and import it"
    ]


def test_inline_source_gets_a_derived_name(tmp_path):
    (tmp_path / "defs.py").write_text(
        "from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source\n"
        "v = FeatureView(entities=[Entity(join_keys=['k'])], features=[Latest('x')],\n"
        "    source=Source(schema={'k': 'string', 'x': 'int64', 'ts': 'timestamp'}, timestamp='ts',\n"
        "                  batch=ParquetFiles('x.parquet')))\n"
    )
    repo = load_repo(tmp_path)
    assert sorted(repo.sources) == ["v__source"]
    assert sorted(repo.entities) == ["v__entity0"]


@pytest.mark.feast
def test_feast_decorated_stream_feature_view_is_collected(monkeypatch):
    monkeypatch.setenv("IS_TEST", "True")  # silences Feast's "experimental" warning
    folder = FIXTURES / "feast_decorated"
    repo = load_repo(folder)
    view = repo.views["user_amounts"]
    assert view.feature_names == ("sum_amount_3600s",)
    assert repo.origin(view).line == 16  # the decorator line
    assert view.source is repo.sources["tx"] and view.source.stream.topic == "tx"


@pytest.mark.feast
def test_feast_flat_repo_infers_undeclared_types_from_parquet(tmp_path, monkeypatch):
    """Feast's quickstart shape: a flat repo, an Entity without value_type, the key not in the schema.
    Feast infers the key's type from the Parquet file; so does the translation."""
    import numpy as np
    import pandas as pd

    from featurestore.store import FeatureStore

    monkeypatch.setenv("IS_TEST", "True")
    monkeypatch.delenv("FEATURESTORE_PROJECT", raising=False)
    shutil.copytree(FIXTURES / "feast_flat", tmp_path / "repo")
    (tmp_path / "repo" / "data").mkdir()
    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2026-11-01", tz="UTC")
    pd.DataFrame({"driver_id": rng.integers(1001, 1004, 50), "conv_rate": rng.random(50).astype("float32"),
                  "acc_rate": rng.random(50).astype("float32"), "avg_daily_trips": rng.integers(0, 9, 50),
                  "event_timestamp": t0 + pd.to_timedelta(np.arange(50) * 60_000, unit="ms"), "created": t0,
                  }).to_parquet(tmp_path / "repo" / "data" / "driver_stats.parquet")
    fs = FeatureStore(tmp_path / "repo")
    assert fs.config.project == "drivers"
    assert fs.repo.sources["driver_hourly_stats_source"].columns["driver_id"] == "int64"
    out = fs.get_historical_features(
        pd.DataFrame({"driver_id": [1001], "event_timestamp": [t0 + pd.Timedelta("1h")]}),
        features=["driver_agg:count_conv_rate_7200s", "driver_hourly_stats:avg_daily_trips"]).to_df()
    assert out["count_conv_rate_7200s"].iloc[0] > 0


@pytest.mark.parametrize("package,import_prefix", [(False, "definitions."), (True, "")])
def test_a_file_imported_by_its_other_name_is_one_module(tmp_path, package, import_prefix):
    """A flat folder importing `definitions.x` (or a package importing bare `x`) used to import the file
    twice: the copies became phantom `view_<id>` definitions, renamed on every load, so plan never settled."""
    from featurestore.store import FeatureStore

    defs = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", defs)
    if not package:
        (defs / "__init__.py").unlink()
    for path in defs.glob("*.py"):
        path.write_text(path.read_text().replace("from definitions.", f"from {import_prefix}"))
    (tmp_path / "featurestore.yaml").write_text("project: flat\ndefinitions: definitions\n")
    fs = FeatureStore(tmp_path)
    repo = fs.repo
    assert sorted(repo.views) == ["merchant_activity", "user_profile", "user_spend"]
    assert sorted(repo.sources) == ["transactions"] and sorted(repo.entities) == ["merchant", "user"]
    assert repo.services["fraud_model_v1"].features[0] is repo.views["user_spend"]
    fs.apply()
    assert not fs.plan().has_changes


def test_a_view_written_inline_in_a_service_has_a_stable_name(tmp_path):
    (tmp_path / "defs.py").write_text(
        "from featurestore import Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source\n"
        "src = Source(schema={'k': 'string', 'x': 'int64', 'ts': 'timestamp'}, timestamp='ts',\n"
        "             batch=ParquetFiles('x.parquet'))\n"
        "svc = FeatureService(features=[FeatureView(entities=[Entity(join_keys=['k'])], source=src,\n"
        "                                           features=[Latest('x')])])\n"
    )
    assert sorted(load_repo(tmp_path).views) == ["svc__view0"]
    assert sorted(load_repo(tmp_path).views) == ["svc__view0"]
