"""The definition model: construction errors, names, durations, fingerprints."""

import dataclasses
import subprocess
import sys
from datetime import timedelta

import pytest

from featurestore.errors import DefinitionError
from featurestore.model import (
    Aggregation, Definition, DuckDBTable, Entity, FeatureService, FeatureView, KafkaTopic, Latest, LoggingConfig,
    ParquetFiles, Source, format_duration, parse_duration,
)

SCHEMA = {"user_id": "string", "amount": "double", "country": "str", "ts": "timestamp"}


def source(**kw):
    args = dict(schema=SCHEMA, timestamp="ts", batch=ParquetFiles("tx.parquet"), stream=KafkaTopic("tx"))
    args.update(kw)
    return Source(**args)


def view(**kw):
    args = dict(entities=[Entity(join_keys=["user_id"])], source=source(), features=[Aggregation("amount", "sum", "1h")])
    args.update(kw)
    return FeatureView(**args)


def test_durations():
    assert parse_duration("10m") == 600_000
    assert parse_duration("1h30m") == 5_400_000
    assert parse_duration("7d") == 604_800_000
    assert parse_duration("500ms") == 500
    assert parse_duration(timedelta(days=1)) == 86_400_000
    assert format_duration(604_800_000) == "7d"
    assert format_duration(90_000) == "90s"
    assert format_duration(None) == "lifetime"
    for bad, msg in [("10 minutes", "cannot parse '10 minutes'"), ("0s", "must be positive"), ("", "cannot parse")]:
        with pytest.raises(DefinitionError, match=msg):
            parse_duration(bad)


def test_feature_names_and_errors():
    assert Aggregation("amount", "avg", "1h").name == "amount_mean_1h"
    assert Aggregation("*", "count", None).name == "count_lifetime"
    assert Aggregation("amount", "sum", "1h").window_ms == 3_600_000
    with pytest.raises(DefinitionError, match="Aggregation function 'median' is not supported; use one of count, "):
        Aggregation("amount", "median", "1h")
    with pytest.raises(DefinitionError, match=r"Aggregation sum\('amount \* 2'\): an expression needs name="):
        Aggregation("amount * 2", "sum", "1h")
    with pytest.raises(DefinitionError, match="Aggregation sum: needs a column or expression"):
        Aggregation("*", "sum", "1h")
    with pytest.raises(DefinitionError, match=r"Latest\('a \|\| b'\): an expression needs name="):
        Latest("a || b")


def test_source_checks():
    assert source().columns == {"user_id": "string", "amount": "float64", "country": "string", "ts": "timestamp"}
    assert source(tiebreak="country").order_columns == ("ts", "country", "user_id", "amount")
    assert source(watermark_delay="5s").watermark_delay == 5000
    with pytest.raises(DefinitionError, match="source timestamp: column 'time' is not in the schema"):
        source(timestamp="time")
    with pytest.raises(DefinitionError, match="source timestamp: column 'amount' must have type timestamp"):
        source(timestamp="amount")
    with pytest.raises(DefinitionError, match="unknown type 'decimal'"):
        source(schema={"a": "decimal", "ts": "timestamp"})
    with pytest.raises(DefinitionError, match="give a batch face, a stream face, or both"):
        source(batch=None, stream=None)
    with pytest.raises(DefinitionError, match="KafkaTopic format: 'xml' is not one of json, avro, avro-confluent"):
        KafkaTopic("t", format="xml")


def test_view_checks():
    v = view(ttl="1d", features=[Latest("country"), Aggregation("*", "count", "1h")])
    assert v.ttl == 86_400_000 and v.join_keys == ("user_id",)
    assert v.feature_names == ("country", "count_1h")
    with pytest.raises(DefinitionError, match="duplicate feature name"):
        view(features=[Latest("country"), Latest("amount", name="country")])
    with pytest.raises(DefinitionError, match="at least one entity"):
        view(entities=[])
    assert FeatureView(entities=[Entity(join_keys=["a", "b"]), Entity(join_keys=["b", "c"])], source=source(),
                       features=[Latest("amount")]).join_keys == ("a", "b", "c")


def test_objects_are_immutable():
    v = view()
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.filter = "x"


@pytest.mark.parametrize("cls", [Entity, Source, FeatureView, FeatureService])
def test_every_field_is_data_or_metadata(cls):
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    assert set(cls.DATA_FIELDS) | set(cls.META_FIELDS) == fields
    assert not set(cls.DATA_FIELDS) & set(cls.META_FIELDS)


def test_value_changes_and_metadata_changes_are_distinguished():
    base = view()
    meta = dataclasses.replace(base, description="new words", owner="me")
    data = dataclasses.replace(base, filter="amount > 0")
    assert meta.data_fingerprint == base.data_fingerprint and meta.meta_fingerprint != base.meta_fingerprint
    assert data.data_fingerprint != base.data_fingerprint
    # a change in the source propagates to the view's data fingerprint
    other_source = dataclasses.replace(base, source=source(batch=ParquetFiles("other.parquet")))
    assert other_source.data_fingerprint != base.data_fingerprint
    # the Kafka address is where, not what
    moved = dataclasses.replace(base, source=source(stream=KafkaTopic("tx", bootstrap_servers="elsewhere:9092")))
    assert moved.data_fingerprint == base.data_fingerprint


def test_services_and_logging():
    svc = FeatureService(features=[view().select("amount_sum_1h")], logging=True)
    assert svc.logging == LoggingConfig(enabled=True)
    with pytest.raises(DefinitionError, match=r"sample_rate: expected a number in \[0, 1\]"):
        LoggingConfig(sample_rate=2)
    for durable in (False, 0, None, "no"):  # was accepted and ignored (every logged lookup waited anyway)
        with pytest.raises(DefinitionError, match=f"logging durable={durable!r} is not supported"):
            LoggingConfig(durable=durable)
    assert LoggingConfig(durable=True).durable is True
    with pytest.raises(DefinitionError, match="at least one feature reference"):
        FeatureService(features=[])
    assert DuckDBTable("read_csv('x.csv')").canonical()["kind"] == "duckdb"
    assert issubclass(FeatureService, Definition)


def test_model_imports_without_engines():
    code = ("import sys, featurestore, featurestore.model, featurestore.semantics\n"
            "bad = [m for m in ('duckdb', 'pyflink', 'redis', 'pandas', 'pyarrow', 'feast') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_constructor_outside_the_loader_raises_every_problem_of_its_arguments():
    with pytest.raises(DefinitionError) as info:
        Aggregation("amount", "median", "1 hour")
    assert info.value.messages == (
        "Aggregation function 'median' is not supported; use one of count, count_distinct, sum, mean, min, max, last, "
        "first, stddev, variance",
        "Aggregation median window: cannot parse '1 hour'; write e.g. '500ms', '30s', '10m', '1h', '7d', '2w'",
    )
    assert str(info.value) == "2 problems: " + " | ".join(info.value.messages)
    with pytest.raises(DefinitionError) as info:
        view(entities=[], features=[], ttl="1 week")
    assert info.value.messages == (
        "feature view entities: at least one entity is required",
        "feature view features: at least one feature is required",
        "feature view ttl: cannot parse '1 week'; write e.g. '500ms', '30s', '10m', '1h', '7d', '2w'",
    )


def test_expressions_with_semicolons_inside_strings_are_not_refused_by_the_model():
    # whether an expression is exactly one expression is DuckDB's parser's call (validation), not a ';' search
    assert Latest("country = 'a;b'", name="odd").expr == "country = 'a;b'"


def test_expected_freshness_is_metadata():
    """A monitoring bound: changing it must never call for a backfill, and a view without it keeps the
    fingerprints it had before the field existed."""
    base = view()
    fresh = dataclasses.replace(base, expected_freshness="2h")
    assert fresh.expected_freshness == 7_200_000
    assert fresh.data_fingerprint == base.data_fingerprint and fresh.meta_fingerprint != base.meta_fingerprint
    assert "expected_freshness" not in base.meta_dict() and fresh.meta_dict()["expected_freshness"] == 7_200_000
    with pytest.raises(DefinitionError, match="feature view expected_freshness: must be positive"):
        dataclasses.replace(base, expected_freshness="0s")


def test_names_starting_with_two_underscores_are_reserved_for_the_store():
    """The store's SQL and tables use columns named ``__...`` (row ids, event ranks, a push's sequence and row):
    a source column, join key, projection, feature or request feature of that name broke the backfill with a
    DuckDB traceback ('Field "__row" exists 2 times'), doubled a pushed log's column or failed materialize.
    Each is a definition problem naming the name; Feast's entityless key ``__dummy_id`` (which the store makes
    itself) stays a valid join key and projection."""
    from featurestore.model import RequestFeatureView, RequestSource

    why = r"starts with '__', which is reserved for the store's internal columns; rename it"
    for name in ("__row", "__push_seq", "__fs_ts", "__x", "__dummy_id"):
        with pytest.raises(DefinitionError, match=rf"source column: '{name}' {why}"):
            source(schema={**SCHEMA, name: "int64"})
        with pytest.raises(DefinitionError, match=rf"feature name: '{name}' {why}"):
            Aggregation("amount", "sum", "1h", name=name)
        with pytest.raises(DefinitionError, match=rf"feature name: '{name}' {why}"):
            Latest("amount", name=name)
        with pytest.raises(DefinitionError, match=rf"request source column: '{name}' {why}"):
            RequestSource(schema={name: "int64"})
        with pytest.raises(DefinitionError, match=rf"request feature name: '{name}' {why}"):
            RequestFeatureView(sources=[RequestSource(schema={"x": "int64"})], features={name: "x + 1"})
        if name != "__dummy_id":
            with pytest.raises(DefinitionError, match=rf"entity join key: '{name}' {why}"):
                Entity(join_keys=[name])
            with pytest.raises(DefinitionError, match=rf"projection name: '{name}' {why}"):
                view(projections={name: "amount * 2"})
    assert Entity(join_keys=["__dummy_id"]).join_keys == ("__dummy_id",)
    assert view(projections={"__dummy_id": "''"}).projections == (("__dummy_id", "''"),)
    assert source(schema={**SCHEMA, "_one": "int64", "a__b": "int64"}).columns["_one"] == "int64"  # one _ is fine
