"""Request feature views: the definition kind, its problems in one pass, and offline values equal to a
brute-force evaluation on random data (the online path, logs and verify: tests/test_request_online.py)."""

import dataclasses
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from featurestore import RequestFeatureView, RequestSource
from featurestore.errors import DefinitionError, RequestError, ValidationError
from featurestore.model import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source
from featurestore.model.functions import code_digest
from featurestore.store import FeatureStore
from tests import oracle
from tests import requestrepo as rr
from tests.compare import same_value

# -- the definition kind ------------------------------------------------------------------------------


def _view():
    src = Source(name="tx", schema={"user_id": "string", "amount": "float64", "ts": "timestamp"}, timestamp="ts",
                 batch=ParquetFiles("tx.parquet"))
    return FeatureView(name="spend", entities=[Entity(name="user", join_keys=["user_id"])], source=src,
                       features=[Aggregation("amount", "mean", "1h", name="mean_1h"), Latest("amount")])


REQ = RequestSource(name="req", schema={"amount": "double", "country": "str"})


def test_request_source_and_view_construction():
    assert REQ.columns == {"amount": "float64", "country": "string"}
    sql = RequestFeatureView(sources=[REQ, _view()], features={"ratio": "amount / mean_1h"})
    assert sql.mode == "sql" and sql.feature_names == ("ratio",)
    assert [v.name for v, _ in sql.view_inputs] == ["spend"] and sql.request_sources == (REQ,)

    def fn(row):
        return {"x": 1}

    py = RequestFeatureView(sources=REQ, function=fn, schema={"x": "int"})
    assert py.mode == "row" and py.schema == (("x", "int64"),) and py.feature_names == ("x",)
    assert py.select("x").names == ("x",) and py[["x"]].view is py


def test_every_constructor_problem_at_once():
    with pytest.raises(DefinitionError) as info:
        RequestFeatureView(sources=[], features={"1bad": "x", "ok": ""}, mode="pandas")
    assert info.value.messages == (
        "request feature view sources: at least one RequestSource or FeatureView is required",
        "request feature name: '1bad' is not a valid name (letters, digits, _; not starting with a digit)",
        "request feature 'ok': expected a SQL expression string, got ''",
        "request feature view mode: 'pandas' applies to function=; SQL features need none",
    )
    with pytest.raises(DefinitionError) as info:
        RequestFeatureView(sources=[REQ, "x"], function=len, mode="rows")
    assert info.value.messages == (
        "request feature view sources: expected RequestSource, FeatureView or view.select(...), got str",
        "request feature view function: expected a Python function (def or lambda), got builtin_function_or_method",
        "request feature view mode: 'rows' is not one of row, python, pandas, arrow",
        "request feature view schema: a function needs schema={'output': 'type', ...}",
    )
    with pytest.raises(DefinitionError, match="give SQL features={...} or function=..., not both"):
        RequestFeatureView(sources=[REQ], features={"a": "amount"}, function=lambda r: r, schema={"a": "int64"})
    rv = RequestFeatureView(name="inner", sources=[REQ], features={"a": "amount"})
    with pytest.raises(DefinitionError, match="cannot read another one"):
        RequestFeatureView(sources=[rv], features={"b": "a"})
    with pytest.raises(DefinitionError, match="request source column 'x': unknown type 'decimal'"):
        RequestSource(schema={"x": "decimal"})


@pytest.mark.parametrize("cls", [RequestSource, RequestFeatureView])
def test_every_field_is_data_or_metadata(cls):
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    assert set(cls.DATA_FIELDS) | set(cls.META_FIELDS) == fields
    assert not set(cls.DATA_FIELDS) & set(cls.META_FIELDS)


THRESHOLD = 10


def _f1(row):
    """Docstring: metadata."""
    return {"big": row["amount"] > THRESHOLD}


def _f1_commented(row):
    # a comment and another docstring do not change what it computes
    return {"big": row["amount"] > THRESHOLD}


def _f1_changed(row):
    return {"big": row["amount"] >= THRESHOLD}


def test_function_fingerprints_follow_the_code_not_its_place():
    assert code_digest(_f1) == code_digest(_f1_commented)
    assert code_digest(_f1) != code_digest(_f1_changed)
    make = lambda fn: RequestFeatureView(name="v", sources=[REQ], function=fn, schema={"big": "bool"})  # noqa: E731
    base = make(_f1)
    assert make(_f1_commented).data_fingerprint == base.data_fingerprint
    assert make(_f1_changed).data_fingerprint != base.data_fingerprint
    assert dataclasses.replace(base, mode="python").data_fingerprint != base.data_fingerprint
    meta = dataclasses.replace(base, description="new words")
    assert meta.data_fingerprint == base.data_fingerprint and meta.meta_fingerprint != base.meta_fingerprint
    # a global the function reads is part of what it computes
    global THRESHOLD
    before = code_digest(_f1)
    THRESHOLD = 11
    try:
        assert code_digest(_f1) != before
    finally:
        THRESHOLD = 10
    # a change to a view it reads changes its values too
    view = _view()
    a = RequestFeatureView(name="v", sources=[REQ, view.select("mean_1h")], features={"r": "amount / mean_1h"})
    changed = dataclasses.replace(view, filter="amount > 0")
    b = RequestFeatureView(name="v", sources=[REQ, changed.select("mean_1h")], features={"r": "amount / mean_1h"})
    assert a.data_fingerprint != b.data_fingerprint


# -- loading: names, file:line, every problem in one pass ------------------------------------------------
BROKEN = '''
from featurestore import (Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles,
                          RequestFeatureView, RequestSource, Source, request_feature_view)

user = Entity(join_keys=["user_id"])
tx = Source(schema={"user_id": "string", "amount": "float64", "ts": "timestamp"}, timestamp="ts",
            batch=ParquetFiles("tx/*.parquet"))
spend = FeatureView(entities=[user], source=tx, features=[Aggregation("amount", "mean", "1h", name="mean_1h")])
req = RequestSource(schema={"amount": "float64", "user_id": "string"})

typo = RequestFeatureView(sources=[req, spend], features={
    "ratio": "amout / mean_1h",
    "fine": "amount * 2",
})
clash = RequestFeatureView(sources=[req, spend.select("mean_2h")], features={"x": "1"})
spend2 = RequestFeatureView(name="spend", sources=[req], features={"y": "amount"})


@request_feature_view(sources=[req], schema={"z": "float64"})
def two_args(row, other):
    return {"z": 1.0}


good = RequestFeatureView(sources=[spend], features={"m": "mean_1h"})
svc = FeatureService(features=["typo:fine", "typo:nope", two_args, "good:nope"])
empty = RequestFeatureView(sources=[], features={"a": "1"}, mode="row")
'''


def test_loader_names_them_and_reports_every_problem_with_file_and_line(tmp_path):
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.py").write_text(BROKEN)
    (tmp_path / "featurestore.yaml").write_text("project: broken\ndefinitions: definitions\n")
    with pytest.raises(ValidationError) as info:
        FeatureStore(tmp_path).repo
    got = [str(p) for p in info.value.problems]
    assert got == [
        "definitions/defs.py:11 typo: request column 'user_id' of 'req' has the name of a join key of view 'spend'; "
        "rename it",
        "definitions/defs.py:15 clash: feature view 'spend' has no feature 'mean_2h' (did you mean 'mean_1h'?)",
        "definitions/defs.py:16 spend: a feature view is also named 'spend' (definitions/defs.py:8); references "
        "'spend:feature' would be ambiguous",
        "definitions/defs.py:19 two_args: function 'two_args' must take one argument, a dict (one row)",
        "definitions/defs.py:25 svc: feature view 'good' has no feature 'nope'",
        "definitions/defs.py:26 empty: request feature view mode: 'row' applies to function=; SQL features need none",
        "definitions/defs.py:26 empty: request feature view sources: at least one RequestSource or FeatureView is "
        "required",
    ], got


def test_sql_problems_name_the_feature_and_its_line(tmp_path):
    text = BROKEN.replace('"user_id": "string"}', '"country": "string"}')
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.py").write_text(text)
    (tmp_path / "featurestore.yaml").write_text("project: broken\ndefinitions: definitions\n")
    with pytest.raises(ValidationError) as info:
        FeatureStore(tmp_path).repo
    got = [str(p) for p in info.value.problems]
    assert ("definitions/defs.py:12 typo.ratio: column 'amout' not among the inputs of request feature view 'typo' "
            "(did you mean 'amount'?)") in got
    assert not any("typo.fine" in p for p in got)


def test_loader_and_plan(tmp_path):
    root = rr.write_repo(tmp_path)
    fs = FeatureStore(root)
    repo = fs.repo
    assert list(repo.request_sources) == ["txn"]
    assert list(repo.request_views) == ["risk_sql", "risk_row", "risk_cols", "risk_pd", "risk_arrow", "only_request"]
    assert repo.origin(repo.request_views["risk_row"]).line == rr.DEFINITIONS.splitlines().index(
        '@request_feature_view(sources=[txn, acct.select("amount_sum_1h", "last_tag")],') + 1
    assert repo.request_views["risk_row"].description == "Row mode: one dict in, one dict out."
    plan = fs.plan()
    kinds = {(c.kind, c.name) for c in plan.changes}
    assert ("request feature view", "risk_sql") in kinds and ("request source", "txn") in kinds
    fs.apply()
    assert not fs.plan().has_changes  # fingerprints are stable across loads (no addresses)


# -- offline: equal to a brute-force evaluation ------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_repo(tmp_path_factory):
    root = rr.write_repo(tmp_path_factory.mktemp("rq"))
    events = rr.random_events(3)
    rr.write_events(root, events)
    return FeatureStore(root), events


def _expected(fs, events, entity_df):
    base = oracle.point_in_time(events, fs.repo.views["acct"], entity_df)
    return [rr.brute_force(rr.request_dict(row), {c: rr.clean(row[c]) for c in base.columns})
            for row in base.to_dict("records")]


def assert_rows_equal(got_rows, expected_rows, columns, context):
    bad = []
    for i, (g, e) in enumerate(zip(got_rows, expected_rows)):
        for c in columns:
            if not same_value(rr.clean(g[c]), e[c]):
                bad.append(f"row {i} {c}: got {g[c]!r}, expected {e[c]!r}")
    assert not bad, f"{context}: {len(bad)} mismatches, e.g.\n" + "\n".join(bad[:12])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offline_equals_brute_force(offline_repo, seed):
    fs, events = offline_repo
    entity_df = rr.random_requests(seed, events, n=120)
    entity_df["label"] = range(len(entity_df))
    out = fs.get_historical_features(entity_df, feature_service=rr.SERVICE)
    assert list(out.columns) == [*entity_df.columns, "n_10m", *[f for v in rr.FEATURES.values() for f in v]]
    pd.testing.assert_frame_equal(out[list(entity_df.columns)], entity_df)  # entity columns untouched
    columns = [f for v in rr.FEATURES.values() for f in v]
    assert_rows_equal(out.to_arrow().to_pylist(), _expected(fs, events, entity_df), columns, f"seed {seed}")
    types = out.to_arrow().schema
    assert types.field("over_limit").type == pa.bool_() and types.field("later").type == pa.timestamp("us", "UTC")
    assert types.field("score_x2").type == pa.float32() and types.field("channel_len").type == pa.int64()


def test_dependencies_are_fetched_but_not_returned(offline_repo):
    fs, events = offline_repo
    entity_df = rr.random_requests(9, events, n=30)
    out = fs.get_historical_features(entity_df, features=["risk_row:share", "only_request:amount_cents"])
    assert list(out.columns) == [*entity_df.columns, "share", "amount_cents"]
    full = fs.get_historical_features(entity_df, features=["risk_row:share"], full_feature_names=True)
    assert list(full.columns)[-1] == "risk_row__share"
    expected = _expected(fs, events, entity_df)
    assert_rows_equal(out.to_arrow().to_pylist(), expected, ["share", "amount_cents"], "subset")


def test_request_only_views_need_no_keys_or_timestamp(offline_repo):
    """A view that reads request sources only needs their columns (all of them, as in Feast), nothing else."""
    fs, events = offline_repo
    df = rr.random_requests(6, events, n=20).drop(columns=["account_id", "event_timestamp"])
    out = fs.get_historical_features(df, features=["only_request:amount_cents"])
    want = [None if rr.clean(r["amount"]) is None else rr._round_half_away(r["amount"] * 100)
            for r in df.to_dict("records")]
    assert all(same_value(rr.clean(g), w) for g, w in zip(out["amount_cents"], want))
    assert out["amount_cents"].notna().any()


def test_missing_or_wrong_request_data_is_one_line(offline_repo):
    fs, events = offline_repo
    entity_df = rr.random_requests(4, events, n=5)
    with pytest.raises(RequestError) as info:
        fs.get_historical_features(entity_df.drop(columns=["channel"]), feature_service=rr.SERVICE)
    assert str(info.value) == ("entity_df has no column 'channel' (request data of request source 'txn', read by "
                               "request feature views 'risk_sql', 'risk_row', 'risk_cols', 'risk_pd', 'risk_arrow', "
                               "'only_request')")
    bad = entity_df.assign(limit=["7"] * len(entity_df))
    with pytest.raises(RequestError, match=r"entity_df row 0: request column 'limit' expects an integer \(int64\), "
                                           r"got '7' \(str\)"):
        fs.get_historical_features(bad, feature_service=rr.SERVICE)
    naive = entity_df.assign(paid_at=pd.Timestamp("2026-03-01 00:00"))
    with pytest.raises(RequestError, match="request column 'paid_at' expects a timezone-aware timestamp"):
        fs.get_historical_features(naive, features=["risk_sql:later"])
    with pytest.raises(RequestError, match=r"entity_df already has column\(s\) \['share'\]"):
        fs.get_historical_features(entity_df.assign(share=1), features=["risk_row:share"])


# -- the same code, whatever the batch size ---------------------------------------------------------------
def test_sql_gives_the_same_values_over_parameters_and_over_arrow(offline_repo, monkeypatch):
    """A request's few rows go through a prepared statement, a training set's many through an Arrow scan:
    the same SELECT over the same typed columns, so the same values (checked on random rows)."""
    from featurestore.sdk import request_eval

    fs, events = offline_repo
    entity_df = rr.random_requests(11, events, n=300)
    refs = [f"risk_sql:{f}" for f in rr.FEATURES["risk_sql"]]
    monkeypatch.setattr(request_eval, "SMALL", 10**9)  # every row through the prepared statement
    params = fs.get_historical_features(entity_df, features=refs).to_arrow()
    monkeypatch.setattr(request_eval, "SMALL", -1)  # every row through the Arrow scan
    arrow = fs.get_historical_features(entity_df, features=refs).to_arrow()
    assert params.equals(arrow)
    assert params.column("later").null_count < len(entity_df)  # not vacuous


# -- outputs held to their types ----------------------------------------------------------------------------
def _crv(mode, fn, schema):
    from featurestore.compiler.request import CompiledRequestView, InputColumn

    return CompiledRequestView(name="v", mode=mode, inputs=(InputColumn("a", "float64", "request", ("r", "a")),),
                               outputs=tuple(schema.items()), expressions=(), function=fn, function_name="f",
                               deps=(), data_fingerprint="x")


@pytest.mark.parametrize("mode,fn,schema,message", [
    ("row", lambda r: {"x": "1"}, {"x": "int64"}, "'x' is int64 but row 0 is '1' (str)"),
    ("row", lambda r: {"x": True}, {"x": "float64"}, "'x' is float64 but row 0 is True (bool)"),
    ("row", lambda r: {"x": 1.5}, {"x": "int64"}, "'x' is int64 but row 0 is 1.5 (float)"),
    ("row", lambda r: {"y": 1}, {"x": "int64"}, "function 'f' returned no 'x' for row 0 (it returned ['y'])"),
    ("row", lambda r: 1 / 0, {"x": "int64"}, "function 'f' raised ZeroDivisionError: division by zero (row 0)"),
    ("row", lambda r: {"x": pd.Timestamp("2026-01-01")}, {"x": "timestamp"}, "(a timezone-naive Timestamp"),
    ("python", lambda c: {"x": [1]}, {"x": "int64"}, "'x' has 1 values for 2 rows"),
    ("pandas", lambda df: df, {"x": "int64"}, "returned no column 'x' (it returned ['a'])"),
    ("arrow", lambda t: t.rename_columns(["x"]), {"x": "string"}, "'x' is string but row 0 is 1.0 (float)"),
    ("arrow", lambda t: t.to_pandas(), {"x": "int64"}, "returned DataFrame; mode 'arrow' returns a pyarrow Table"),
])
def test_outputs_never_cast_silently(mode, fn, schema, message):
    from featurestore.sdk.request_eval import evaluate

    with pytest.raises(RequestError) as info:
        evaluate(_crv(mode, fn, schema), pa.table({"a": [1.0, 2.0]}))
    assert message in str(info.value)


def test_integral_floats_fit_integers_and_nan_is_null():
    from featurestore.sdk.request_eval import evaluate

    got = evaluate(_crv("pandas", lambda df: pd.DataFrame({"x": [1.0, np.nan], "y": [np.nan, 2.5]}),
                        {"x": "int64", "y": "float64"}), pa.table({"a": [1.0, 2.0]}))
    assert got["x"].to_pylist() == [1, None] and got["y"].to_pylist() == [None, 2.5]
    got = evaluate(_crv("row", lambda r: {"x": float("nan")}, {"x": "float64"}), pa.table({"a": [1.0]}))
    assert got["x"].to_pylist() == [None]


def test_request_data_shapes():
    from featurestore.sdk.request_data import rows_to_columns, value

    assert rows_to_columns({"a": [1, 2]}, 2) == {"a": [1, 2]}
    assert rows_to_columns([{"a": 1}, {"a": 2}], 2) == {"a": [1, 2]}
    assert rows_to_columns(pd.DataFrame({"a": [1, 2]}), 2) == {"a": [1, 2]}
    with pytest.raises(RequestError, match="column 'a' has 1 values for 2 entity rows"):
        rows_to_columns({"a": [1]}, 2)
    with pytest.raises(RequestError, match="request_data row 1 has no column 'b'"):
        rows_to_columns([{"a": 1, "b": 2}, {"a": 1}], 2)
    assert value(3, "float64", "w", "a") == 3.0 and value(2.0, "int64", "w", "a") == 2
    assert value("2026-01-01T00:00:00.000001Z", "timestamp", "w", "a").isoformat() == "2026-01-01T00:00:00.000001+00:00"
    for bad, dtype in [(True, "int64"), ("1", "float64"), (1, "string"), (1, "bool"), (2 ** 31, "int32")]:
        with pytest.raises(RequestError, match="request column 'a' expects"):
            value(bad, dtype, "w", "a")


def test_random_request_data_roundtrips_offline_and_online_conversions():
    """The two intakes (a frame column, a list of values) give the same Arrow arrays on random data."""
    from featurestore import dtypes
    from featurestore.sdk.request_data import request_column, value

    rng = random.Random(5)
    rows = [rr.random_request_data(rng) for _ in range(200)]
    df = rr.frame([{"account_id": 1, "event_timestamp": rr.BASE, **r} for r in rows])
    types = fsrepo_types()
    for col, dtype in types.items():
        offline = request_column(df[col], dtype, "entity_df", col)
        online = pa.array([value(r[col], dtype, "w", col) for r in rows], type=dtypes.arrow_type(dtype))
        assert offline.equals(online), col


def fsrepo_types():
    return {"amount": "float64", "channel": "string", "limit": "int64", "paid_at": "timestamp", "vip": "bool",
            "score": "float32", "small": "int32"}


def test_sql_reads_only_the_inputs_it_refers_to_whatever_their_case(monkeypatch):
    from featurestore.compiler.request import compile_request_view
    from featurestore.sdk import request_eval

    rv = RequestFeatureView(name="v", sources=[REQ], features={"x": "AMOUNT * 2", "y": "1", "z": "upper(Country)"})
    crv = compile_request_view(rv, {})
    assert crv.sql_inputs == ("amount", "country") and crv.output_dtypes == {"x": "float64", "y": "int32",
                                                                             "z": "string"}
    table = pa.table({"amount": pa.array([1.5, None]), "country": pa.array(["fr", None])})
    for small in (10**9, -1):  # the prepared statement and the Arrow scan
        monkeypatch.setattr(request_eval, "SMALL", small)
        got = request_eval.evaluate(crv, table)
        assert got["x"].to_pylist() == [3.0, None] and got["y"].to_pylist() == [1, 1]
        assert got["z"].to_pylist() == ["FR", None]


# -- computed timestamps outside years 1 to 9999 -------------------------------------------------------------
def _time_crv(mode, fn=None, expr=None):
    from featurestore.compiler.request import CompiledRequestView, InputColumn

    return CompiledRequestView(name="v", mode=mode, inputs=(InputColumn("a", "timestamp", "request", ("r", "a")),),
                               outputs=(("x", "timestamp"),), expressions=(("x", expr),) if expr else (), function=fn,
                               function_name="f", deps=(), data_fingerprint=f"t:{mode}:{expr}",
                               sql_inputs=("a",) if expr else ())


FAR = 2**62  # epoch microseconds: the year 148,000


@pytest.mark.parametrize("small", [10**9, -1])  # the prepared statement and the Arrow scan
@pytest.mark.parametrize("crv", [
    _time_crv("sql", expr="a + INTERVAL 9000 YEAR"), _time_crv("sql", expr="a - INTERVAL 2030 YEAR"),
    _time_crv("sql", expr="CASE WHEN a IS NULL THEN a ELSE CAST('infinity' AS TIMESTAMPTZ) END"),
    _time_crv("sql", expr="CASE WHEN a IS NULL THEN a ELSE CAST('-infinity' AS TIMESTAMPTZ) END"),
    _time_crv("arrow", lambda tb: pa.table({"x": pa.array([FAR, None], pa.timestamp("us", "UTC"))})),
    _time_crv("arrow", lambda tb: pa.table({"x": pa.array([None, -FAR], pa.timestamp("us", "UTC"))})),
], ids=["sql+9000y", "sql-2030y", "sql-inf", "sql--inf", "arrow-far", "arrow-before-year-1"])
def test_a_computed_timestamp_outside_years_1_to_9999_is_one_line_naming_the_feature(crv, small, monkeypatch):
    """Offline and online evaluate with this one function, so both fail alike; never a value nobody can read
    back (Python's datetime, pandas) nor a conversion error."""
    from featurestore.sdk import request_eval

    monkeypatch.setattr(request_eval, "SMALL", small)
    inputs = pa.table({"a": pa.array([1_767_225_600_000_000, None], pa.timestamp("us", "UTC"))})
    with pytest.raises(RequestError) as info:
        request_eval.evaluate(crv, inputs)
    message = str(info.value)
    assert message.startswith("request feature view 'v': feature 'x' is a timestamp outside years 1 to 9999 UTC"), message
    assert "\n" not in message


def test_computed_timestamps_at_the_ends_of_years_1_to_9999_are_values(monkeypatch):
    from featurestore.sdk import request_eval

    inputs = pa.table({"a": pa.array([1_767_225_600_000_000, None], pa.timestamp("us", "UTC"))})
    for small in (10**9, -1):
        monkeypatch.setattr(request_eval, "SMALL", small)
        got = request_eval.evaluate(_time_crv("sql", expr="CASE WHEN a IS NULL THEN TIMESTAMPTZ '0001-01-01 00:00:00+00' "
                                                          "ELSE TIMESTAMPTZ '9999-12-31 23:59:59.999999+00' END"), inputs)
        assert got["x"].cast(pa.int64()).to_pylist() == [253_402_300_799_999_999, -62_135_596_800_000_000]
