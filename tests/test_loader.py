"""Loader and validation: names, origins, and every problem reported at once with its exact text."""

import shutil
from pathlib import Path

import pytest

from featurestore.engines.flink.sqltypes import SUPPORTED_TEXT
from featurestore.errors import ValidationError
from featurestore.loader import load_repo

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def spend_view(repo):
    return repo.views["user_spend"]


def test_example_repo_loads_with_names_and_origins():
    repo = load_repo(ROOT / "definitions", ROOT)
    assert sorted(repo.entities) == ["merchant", "user"]
    assert sorted(repo.sources) == ["transactions"]
    assert sorted(repo.views) == ["merchant_activity", "user_profile", "user_spend"]
    assert sorted(repo.services) == ["fraud_model_v1", "fraud_model_v2"]
    assert sorted(repo.request_sources) == ["transaction_request"] and sorted(repo.request_views) == ["transaction_risk"]
    assert repo.request_views["transaction_risk"].view_inputs[0][0] is spend_view(repo)
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
        "definitions/payments.py:16 user_spend.amout_sum_1h: column 'amout' not in source 'transactions' (did you mean 'amount'?)",
        "definitions/payments.py:17 user_spend.country_mean_1d: mean needs a numeric input; 'country' is string",
        "definitions/payments.py:18 user_spend.count_1d: count of an empty window is already 0; remove default=",
        "definitions/payments.py:19 user_spend.amount_max_1d: default 'high' does not fit the feature's type float64",
        "definitions/payments.py:23 account_view: join key 'account_id' not in source 'transactions'",
    ]
    assert str(info.value).startswith("10 problems in definitions:\n")


def test_a_file_that_fails_to_import_is_one_problem_and_the_rest_still_load():
    with pytest.raises(ValidationError) as info:
        load_repo(FIXTURES / "import_error" / "definitions", FIXTURES / "import_error")
    assert [str(p) for p in info.value.problems] == [
        "definitions/zbroken.py:5: cannot import definitions file: RuntimeError: boom"
    ]


MANY_MISTAKES = [
    "definitions/broken_import.py:3: entity join_keys: at least one join key is required",
    "definitions/broken_import.py:4: cannot import definitions file: NameError: name 'undefined_name' is not defined",
    "definitions/entities.py:6 spaced: entity join key: 'user id' is not a valid name (letters, digits, _; not "
    "starting with a digit)",
    "definitions/entities.py:7 keyless: entity join_keys: at least one join key is required",
    "definitions/entities.py:8 twice: entity join_keys: duplicate key in ['a', 'a']",
    "definitions/entities.py:9 dashed: entity name: 'my-entity' is not a valid name (letters, digits, _; not starting "
    "with a digit)",
    "definitions/services.py:5 model: feature 'streamed:last_amount' is listed twice",
    "definitions/services.py:5 model: feature reference 'streamed' is not of the form 'view:feature'",
    "definitions/services.py:5 model: feature view 'streamed' has no feature 'nope'",
    "definitions/services.py:5 model: unknown feature view 'nope'",
    "definitions/services.py:15 logged: logging destination: 's3' is not one of redis, kafka",
    "definitions/services.py:15 logged: logging sample_rate: expected a number in [0, 1], got 2",
    "definitions/services.py:16 hollow: feature service features: at least one feature reference is required",
    "definitions/services.py:16 hollow: feature service version: expected a positive int, got 0",
    "definitions/sources.py:11 decimal: source column 'a': unknown type 'decimal'; use one of string, int32, int64, "
    "float32, float64, bool, timestamp, json",
    "definitions/sources.py:12 untimed: source timestamp: column 'time' is not in the schema",
    "definitions/sources.py:15 untimed: ParquetFiles path: expected a non-empty path string, got ''",
    "definitions/sources.py:17 faceless: source: give a batch face, a stream face, or both",
    "definitions/sources.py:18 slow: source tiebreak: column 'nope' is not in the schema",
    "definitions/sources.py:18 slow: source watermark_delay: cannot parse '5 sec'; write e.g. '500ms', '30s', '10m', "
    "'1h', '7d', '2w'",
    "definitions/sources.py:21 slow: KafkaTopic format: 'xml' is not one of json, avro, avro-confluent",
    "definitions/sources.py:25 textual_time: source timestamp: column 'ts' must have type timestamp",
    "definitions/typo.py:3: cannot import definitions file: TypeError: FeatureView.__init__() got an unexpected "
    "keyword argument 'entites'",
    "definitions/uses_broken.py:3: imports definitions/broken_import.py, which cannot be imported",
    "definitions/views.py:8 spend: feature view features: duplicate feature name(s) amount",
    "definitions/views.py:12 spend: Aggregation sum window: cannot parse '1 hour'; write e.g. '500ms', '30s', '10m', "
    "'1h', '7d', '2w'",
    "definitions/views.py:13 spend: Aggregation function 'median' is not supported; use one of count, count_distinct, "
    "sum, mean, min, max, last, first, stddev, variance",
    "definitions/views.py:14 spend.amout_sum_1h: column 'amout' not in source 'tx' (did you mean 'amount'?)",
    "definitions/views.py:15 spend.country_mean_1d: mean needs a numeric input; 'country' is string",
    "definitions/views.py:16 spend: Aggregation sum('amount * 2'): an expression needs name=",
    "definitions/views.py:17 spend.total: Aggregation sum: needs a column or expression",
    "definitions/views.py:18 spend.count_1d: count of an empty window is already 0; remove default=",
    "definitions/views.py:19 spend.amount_max_1d: default 'high' does not fit the feature's type float64",
    "definitions/views.py:20 spend.amount_min_1d: feature amount_min_1d default: default must be a bool, int, float "
    "or str, got list",
    "definitions/views.py:21 spend: Latest('amount || country'): an expression needs name=",
    "definitions/views.py:24 spend.user_id: feature 'user_id' has the name of a join key",
    "definitions/views.py:25 spend.summed: 'sum(amount)': aggregate functions are not allowed in a row expression; "
    "use Aggregation(...)",
    "definitions/views.py:26 spend.unbalanced: 'amount) OR (amount > 1' must be exactly one SQL expression: syntax "
    "error at or near \")\"",
    "definitions/views.py:27 spend.injected: 'amount; DROP TABLE tx' must be exactly one SQL expression, not several "
    "statements",
    "definitions/views.py:28 spend.commented: 'amount -- the rest is a comment' must be exactly one SQL expression: a "
    "'--' comment would hide the rest of the statement it is compiled into",
    "definitions/views.py:29 spend.subquery: '(SELECT 1)': subqueries are not supported in a definition's SQL",
    "definitions/views.py:30 spend.windowed: 'sum(amount) OVER ()': window functions (OVER) are not supported; use "
    "Aggregation(...) with a window",
    "definitions/views.py:31 spend: Latest expr: expected a column name or SQL expression string, got 5",
    "definitions/views.py:34 filtered: filter: \"amount > 0) OR (country = 'US'\" must be exactly one SQL "
    "expression: syntax error at or near \")\"",
    "definitions/views.py:34 filtered: projection 'amount' shadows a column of source 'tx'",
    "definitions/views.py:34 filtered: projection 'pair': 'amount, country' must be exactly one SQL expression: it "
    "parses as a list or a query clause (FROM, WHERE, GROUP BY, ORDER BY, LIMIT ...)",
    "definitions/views.py:34 filtered: projection name: 'bad name' is not a valid name (letters, digits, _; not "
    "starting with a digit)",
    "definitions/views.py:41 empty: feature view features: at least one feature is required",
    "definitions/views.py:42 nobody: feature view entities: at least one entity is required",
    "definitions/views.py:43 stringly: feature view source: expected a Source, got str",
    "definitions/views.py:44 forever: feature view ttl: cannot parse '1 week'; write e.g. '500ms', '30s', '10m', "
    "'1h', '7d', '2w'",
    "definitions/views.py:48 streamed.later: streaming: feature 'later': expression 'dayname(ts)' cannot run in the "
    "streaming job: function dayname() is not supported in the streaming job (" + SUPPORTED_TEXT + ")",
    "definitions/views.py:51 accounts: join key 'account_id' not in source 'tx'",
    "definitions/views.py:52 streamed: duplicate feature view name (first defined at definitions/views.py:45)",
]


def test_dozens_of_mistakes_are_all_reported_in_one_pass_each_at_its_line():
    """Constructor mistakes (a bad window, an unknown function, a duplicate feature, an empty view...) used to
    abort the load at the first one, unnamed; streaming checks came in a second pass."""
    with pytest.raises(ValidationError) as info:
        load_repo(FIXTURES / "many_mistakes" / "definitions", FIXTURES / "many_mistakes", streaming=True)
    assert [str(p) for p in info.value.problems] == MANY_MISTAKES
    assert str(info.value).startswith(f"{len(MANY_MISTAKES)} problems in definitions:\n")
    # Without the streaming checks, only the streaming line is missing; a second load says the same.
    with pytest.raises(ValidationError) as again:
        load_repo(FIXTURES / "many_mistakes" / "definitions", FIXTURES / "many_mistakes")
    assert [str(p) for p in again.value.problems] == [m for m in MANY_MISTAKES if "streaming:" not in m]


def test_cli_plan_prints_every_problem_with_exit_1(tmp_path):
    from typer.testing import CliRunner

    from featurestore.cli import app

    shutil.copytree(FIXTURES / "many_mistakes", tmp_path / "r")
    (tmp_path / "r" / "featurestore.yaml").write_text("project: mistakes\ndefinitions: definitions\n")
    res = CliRunner().invoke(app, ["plan", "--repo", str(tmp_path / "r")])
    assert res.exit_code == 1
    lines = [line.strip() for line in res.output.splitlines()]
    assert lines[0] == f"error: {len(MANY_MISTAKES)} problem(s) in definitions"
    assert lines[1:] == MANY_MISTAKES


@pytest.mark.parametrize("expr", ["amount > 0) OR (country = 'US'", "amount > 0; DROP TABLE tx", "amount > 0 -- x",
                                  "amount > 0 AND country IN (SELECT 'US')", "amount > 0, country = 'US'"])
def test_a_filter_that_is_not_exactly_one_expression_never_reaches_the_backfill(tmp_path, expr):
    """`a) OR (b` used to pass plan: pasted into the backfill's WHERE (...) AND ..., it changed the precedence."""
    (tmp_path / "defs.py").write_text(
        "from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source\n"
        "src = Source(schema={'k': 'string', 'amount': 'float64', 'country': 'string', 'ts': 'timestamp'},\n"
        "             timestamp='ts', batch=ParquetFiles('x.parquet'))\n"
        f"v = FeatureView(entities=[Entity(join_keys=['k'])], source=src, filter={expr!r}, features=[Latest('amount')])\n"
    )
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.obj) == ("defs.py", 4, "v")
    assert problem.message.startswith(f"filter: {expr!r}")


@pytest.mark.parametrize("expr", ["amount +", "amout * 2", "amount -- x", "amount; DROP TABLE tx", "sum(amount)"])
def test_a_broken_projection_is_one_problem_not_one_more_per_reader(tmp_path, expr):
    """A projection with a problem was reported, and then every feature (and join key) reading it was told
    "column 'x' not in source 'src'", a second, wrong cause (x is a projection). Its readers are checked once
    it is fixed, as a service is not told a broken feature is missing."""
    (tmp_path / "defs.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source\n"
        "src = Source(schema={'k': 'string', 'amount': 'float64', 'ts': 'timestamp'},\n"
        "             timestamp='ts', batch=ParquetFiles('x.parquet'))\n"
        f"v = FeatureView(entities=[Entity(join_keys=['k'])], source=src, projections={{'x': {expr!r}, 'K2': 'k'}},\n"
        "                features=[Latest('x'), Aggregation('X + 1', 'sum', '1h', name='s'), Latest('amount')])\n"
        f"w = FeatureView(entities=[Entity(join_keys=['y'])], source=src, projections={{'y': {expr!r}}},\n"
        "                features=[Latest('amount')])\n"
        "svc = FeatureService(features=['v:x', 'v:s', 'v:amount'])\n"
    )
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path)
    problems = info.value.problems
    assert [(p.line, p.obj) for p in problems] == [(4, "v"), (6, "w")], [str(p) for p in problems]
    assert problems[0].message.startswith(f"projection 'x': ") and problems[1].message.startswith("projection 'y': ")


def test_constructor_lines_point_at_the_feature_even_in_another_file(tmp_path):
    (tmp_path / "common.py").write_text(
        "from featurestore import Aggregation\n"
        "\n"
        "SPEND = [Aggregation('amount', 'sum', '1h'),\n"
        "         Aggregation('amount', 'max', '1h', default='x')]\n"
    )
    (tmp_path / "views.py").write_text(
        "from featurestore import Entity, FeatureView, ParquetFiles, Source\n"
        "from common import SPEND\n"
        "src = Source(schema={'k': 'string', 'amount': 'float64', 'ts': 'timestamp'}, timestamp='ts',\n"
        "             batch=ParquetFiles('x.parquet'))\n"
        "v = FeatureView(entities=[Entity(join_keys=['k'])], source=src, features=SPEND)\n"
    )
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        "common.py:4 v.amount_max_1h: default 'x' does not fit the feature's type float64"
    ]


@pytest.mark.parametrize("column,dtype,default", [
    ("x32", "float32", 1e300), ("x32", "float32", -3.5e38), ("x32", "float32", 10**39), ("x64", "float64", 10**400),
    ("n32", "int32", 2**31), ("n32", "int32", -2**31 - 1), ("n64", "int64", 2**63), ("n64", "int64", -2**63 - 1),
])
def test_a_default_outside_the_features_type_is_a_problem_not_a_failing_query(tmp_path, column, dtype, default):
    """A default is cast to the feature's type (``COALESCE(agg, default)``): one the type cannot hold failed every
    training set later with 'an expression fails on an event'; it is a definition problem naming the feature."""
    (tmp_path / "views.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source\n"
        "src = Source(schema={'k': 'string', 'x32': 'float32', 'x64': 'float64', 'n32': 'int32', 'n64': 'int64',\n"
        "                     'ts': 'timestamp'}, timestamp='ts', batch=ParquetFiles('x.parquet'))\n"
        f"v = FeatureView(entities=[Entity(join_keys=['k'])], source=src, features=[\n"
        f"    Aggregation({column!r}, 'max', '1h', name='m', default={default!r}),\n"
        f"    Aggregation({column!r}, 'min', '1h', name='fits', default=-1)])\n"
    )
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"views.py:5 v.m: default {default!r} does not fit the feature's type {dtype}"]


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


@pytest.mark.feast
def test_every_problem_of_a_feast_view_is_reported_not_only_the_first(monkeypatch):
    monkeypatch.setenv("IS_TEST", "True")
    with pytest.raises(ValidationError) as info:
        load_repo(FIXTURES / "feast_mistakes")
    view = "definitions.py:16 user_stats: StreamFeatureView: "
    service = "definitions.py:45 model: FeatureService: "
    assert [str(p) for p in info.value.problems] == [
        view + "aggregation 'mean_country_86400s': mean needs a numeric column; 'country' is string",
        view + "aggregation 'sum_amount_0s': time_window: 0:00:00.001500 is not a whole number of milliseconds",
        view + "aggregation column 'amout' is not in the schema; add Field(name='amout', dtype=...) to schema=",
        view + "aggregation function 'median' is not supported (supported: count, count_distinct, sum, mean, min, "
        "max, last, first, stddev, variance; aliases: average, avg, distinct_count, nunique, std, stddev_samp, var, "
        "var_samp)",
        view + "field 'recent_ids' has type Array(Bytes), which is not supported (supported: String, Int32, Int64, "
        "Float32, Float64, Bool, UnixTimestamp; Map, Json, Struct and Array as JSON values (latest features only))",
        service + "feature reference 'user_amounts@v2:sum_amount_3600s' pins a Feast registry version; there is no "
        "Feast registry here (definitions are versioned by git)",
        service + "feature view 'user_amounts' has no feature 'nope'",
    ]
    assert str(info.value).endswith("\nFeast definitions: what maps to what and what is not supported is in "
                                    "docs/coming-from-feast.md")


def test_json_values_are_read_by_latest_features_only(tmp_path):
    """A JSON value (Feast Map/Struct/Array/Json -> dtype json) is served by a latest feature; every aggregation
    over one is an error naming the feature, in the same pass as the other problems."""
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source\n"
        "user = Entity(join_keys=['user_id'])\n"
        "src = Source(schema={'user_id': 'string', 'meta': 'json', 'x': 'float64', 'ts': 'timestamp'},\n"
        "             timestamp='ts', batch=ParquetFiles('data/p/*.parquet'))\n"
        "profile = FeatureView(entities=[user], source=src, features=[\n"
        "    Latest('meta'),\n"
        "    Aggregation('meta', 'count', '1h', name='count_meta'),\n"
        "    Aggregation('meta', 'last', '1h', name='last_meta'),\n"
        "])\n")
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path / "definitions", tmp_path)
    assert [p.message for p in info.value.problems] == [
        f"{fn} over 'meta', a JSON value (map, struct, array), is not supported; only a latest feature reads one"
        for fn in ("count", "last")]


def test_a_dash_dash_comment_is_found_by_our_own_check_whatever_the_duckdb_release():
    """DuckDB 1.x (the newest for Python 3.10) drops comments from ``duckdb.tokenize``, so the old check
    (a comment token) let `amount > 0 -- x` through to a DuckDB syntax error whose text differs by
    release. Random expressions of fragments that hold `--` in and out of strings, quoted names and block
    comments: the check agrees with DuckDB 2's comment tokens (the reference where the release has it)."""
    import random

    import duckdb

    from featurestore.validation import _line_comment

    if not any(kind.name == "comment" for _, kind in duckdb.tokenize("a -- b")):
        pytest.skip("this DuckDB reports no comment tokens (the loader fixtures check the messages)")
    fragments = ["amount", " ", "+", "-", "--", " -- note", "'--'", "'it''s -- x'", '"we--ird"', "/* -- */", "/*", "*/",
                 "E'\\'--'", "$$--$$", "1", "\n", "x->>'a'", "--\n", "''", "-1", "'", '"']
    rng = random.Random(12)
    for _ in range(3000):
        expr = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 7)))
        try:
            tokens = duckdb.tokenize(expr)
        except Exception:  # noqa: BLE001 - untokenizable: reported before the comment check
            continue
        want = any(kind.name == "comment" and expr.startswith("--", pos) for pos, kind in tokens)
        assert _line_comment(expr) == want, repr(expr)


def test_repos_loaded_from_several_threads_at_once_load_alike(tmp_path):
    """Definition files are imported as modules: loads in several threads at once (independent stores of one
    process, e.g. log shippers) used to fail at random with 'cannot import definitions file: KeyError'."""
    import threading

    from featurestore.templates import write_starter

    write_starter(tmp_path / "r")
    want = sorted(load_repo(tmp_path / "r" / "definitions", repo_root=tmp_path / "r").views)
    got, errors = [], []

    def load():
        try:
            for _ in range(5):
                got.append(sorted(load_repo(tmp_path / "r" / "definitions", repo_root=tmp_path / "r").views))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert got == [want] * 40


def test_a_join_key_of_another_type_names_every_accepted_type(tmp_path):
    """A float join key is refused naming the three accepted key types (int32 keys are served: the message
    said 'string or int64')."""
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source\n"
        "user = Entity(join_keys=['user_id'])\n"
        "shop = Entity(join_keys=['shop'])\n"
        "src = Source(schema={'user_id': 'float64', 'shop': 'int32', 'x': 'float64', 'ts': 'timestamp'},\n"
        "             timestamp='ts', batch=ParquetFiles('data/p/*.parquet'))\n"
        "by_user = FeatureView(entities=[user], source=src, features=[Aggregation('x', 'sum', '1h')])\n"
        "by_shop = FeatureView(entities=[shop], source=src, features=[Aggregation('x', 'sum', '1h')])\n")
    with pytest.raises(ValidationError) as info:
        load_repo(tmp_path / "definitions", tmp_path)
    assert [p.message for p in info.value.problems] == [
        "join key 'user_id' has type float64; use string, int64 or int32"]
