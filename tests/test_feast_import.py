"""Feast objects as definitions (SPEC §1): translation of tests/fixtures/feast_repo and exact errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from featurestore.errors import TranslationError
from featurestore.feast_import import FeastProblem, is_feast_object, translate
from featurestore.model import (
    Aggregation,
    Entity,
    FeatureSelection,
    FeatureService,
    FeatureView,
    KafkaTopic,
    Latest,
    LoggingConfig,
    ParquetFiles,
    RequestFeatureView,
    RequestSource as OurRequestSource,
    Source,
)

pytestmark = pytest.mark.feast

os.environ.setdefault("IS_TEST", "True")  # silences Feast's "stream feature views are experimental" warning
feast = pytest.importorskip("feast")

from feast import Entity as FeastEntity  # noqa: E402
from feast import FeatureService as FeastFeatureService  # noqa: E402
from feast import FeatureView as FeastFeatureView  # noqa: E402
from feast import Field, FileSource, KafkaSource, RequestSource, ValueType  # noqa: E402
from feast.aggregation import Aggregation as FeastAggregation  # noqa: E402
from feast.data_format import AvroFormat, JsonFormat  # noqa: E402
from feast.on_demand_feature_view import on_demand_feature_view  # noqa: E402
from feast.stream_feature_view import StreamFeatureView, stream_feature_view  # noqa: E402
from feast.types import Array, Bytes, Float32, Float64, Int64, Json, Map, Set, String, Struct, UnixTimestamp  # noqa: E402

from featurestore.feast_import.columns import SUPPORTED_TYPES  # noqa: E402

REPO = Path(__file__).parent / "fixtures" / "feast_repo"
MODULES = ("entities", "sources", "views", "services")


def load_feast_repo(folder: Path) -> dict:
    """Import the repo's files like `feast apply` does (repo root on sys.path) and collect every
    module-level Feast object once, by its first variable (imports into later files are the same
    objects, so they are skipped)."""
    saved = {name: sys.modules.pop(name) for name in MODULES if name in sys.modules}
    sys.path.insert(0, str(folder))
    objects, seen = {}, set()
    try:
        for name in MODULES:
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            for var, obj in vars(module).items():
                if is_feast_object(obj) and id(obj) not in seen:
                    seen.add(id(obj))
                    objects[var] = obj
    finally:
        sys.path.remove(str(folder))
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return objects


@pytest.fixture(scope="module")
def feast_objects():
    return load_feast_repo(REPO)


@pytest.fixture(scope="module")
def out(feast_objects):
    return translate(feast_objects)


# -- the fixture repo -----------------------------------------------------------------------------


def test_result_keys_are_variables_and_non_definitions_are_dropped(out, feast_objects):
    # Field types (String, Int64...), Project and FileLoggingDestination are Feast objects too.
    assert {"project", "String", "Float64", "FileLoggingDestination"} <= set(feast_objects)
    assert list(out) == [
        "user", "merchant",
        "transactions", "profiles", "clicks",
        "user_profile", "user_tx_stats", "merchant_last_tx", "user_clicks",
        "fraud_model", "merchant_model",
    ]  # transactions_batch is only the batch face of `transactions`: no Source of its own
    kinds = {k: type(v) for k, v in out.items()}
    assert kinds["user"] is Entity and kinds["clicks"] is Source
    assert kinds["user_tx_stats"] is FeatureView and kinds["fraud_model"] is FeatureService
    assert all(v.name == k for k, v in out.items())  # here the variables match the Feast names


def test_entities(out):
    assert out["user"] == Entity(name="user", join_keys=("user_id",), description="A customer",
                                 owner="risk@example.com")
    assert out["merchant"].join_keys == ("merchant",)  # no join_keys: Feast's rule, the name


def test_kafka_source_with_batch_face(out):
    src = out["transactions"]
    assert src.schema == (
        ("event_ts", "timestamp"),
        ("created_ts", "timestamp"),
        ("merchant", "int64"),  # merchant_last_tx (views in name order)
        ("amount", "float64"),
        ("user_id", "string"),  # user_tx_stats
        ("currency", "string"),  # aggregation input typed by the JsonFormat schema_json
    )
    assert src.timestamp == "event_ts"
    assert src.tiebreak == ("created_ts",)
    assert src.batch == ParquetFiles("data/transactions.parquet")
    assert src.stream == KafkaTopic("transactions", "json", "localhost:9092")
    assert src.watermark_delay == 5000
    assert (src.description, src.tag_dict) == ("card transactions", {"team": "risk"})


def test_file_source_with_field_mapping(out):
    src = out["profiles"]
    assert src.schema == (("updated_at", "timestamp"), ("user_id", "string"), ("ctry", "string"), ("age", "int32"))
    assert (src.timestamp, src.tiebreak, src.stream) == ("updated_at", (), None)
    assert src.batch == ParquetFiles("data/profiles.parquet")
    view = out["user_profile"]
    assert view.features == (Latest("ctry", name="country"), Latest("age"))


def test_push_source_is_batch_only(out):
    src = out["clicks"]
    assert src.schema == (("ts", "timestamp"), ("user_id", "string"), ("page", "string"))
    assert src.batch == ParquetFiles("data/clicks.parquet")
    assert src.stream is None and src.watermark_delay == 0


def test_feature_views(out):
    profile = out["user_profile"]
    assert (profile.join_keys, profile.ttl, profile.online, profile.owner) == (
        ("user_id",), 30 * 86_400_000, True, "growth@example.com")

    stats = out["user_tx_stats"]
    assert [(f.name, f.function, f.column, f.window_ms) for f in stats.features] == [
        ("sum_amount_3600s", "sum", "amount", 3_600_000),
        ("avg_amount_7d", "mean", "amount", 7 * 86_400_000),
        ("count_distinct_currency_600s", "count_distinct", "currency", 600_000),  # slide_interval ignored
        ("max_amount", "max", "amount", None),  # no time_window: unbounded, Feast's name has no suffix
    ]
    assert all(isinstance(f, Aggregation) for f in stats.features)
    assert stats.ttl is None  # Feast ttl of an aggregation-only view is dropped (windows decay)

    last = out["merchant_last_tx"]
    assert (last.join_keys, last.features, last.ttl) == (("merchant",), (Latest("amount"),), None)  # ttl=0

    clicks = out["user_clicks"]
    assert (clicks.features, clicks.online) == ((Latest("page"),), False)


def test_identity_is_shared(out):
    src = out["transactions"]
    assert out["user_tx_stats"].source is src and out["merchant_last_tx"].source is src
    assert out["user_profile"].source is out["profiles"] and out["user_clicks"].source is out["clicks"]
    assert out["user_profile"].entities[0] is out["user"] is out["user_tx_stats"].entities[0]
    assert out["merchant_last_tx"].entities == (out["merchant"],)
    fraud = out["fraud_model"]
    assert fraud.features[0].view is out["user_tx_stats"] and fraud.features[1] is out["user_profile"]


def test_feature_services(out):
    fraud = out["fraud_model"]
    assert fraud.features == (
        FeatureSelection(out["user_tx_stats"], ("sum_amount_3600s",)),
        out["user_profile"],
        FeatureSelection(out["merchant_last_tx"], ("amount",)),
    )
    assert fraud.logging == LoggingConfig(enabled=True, sample_rate=0.25)
    assert fraud.description == "fraud scoring v3"
    merchant = out["merchant_model"]
    assert merchant.features == (out["merchant_last_tx"], out["user_tx_stats"])
    assert merchant.logging.enabled is False


def test_translation_is_deterministic(feast_objects, out):
    again = translate(feast_objects)
    assert {k: v.fingerprint for k, v in again.items()} == {k: v.fingerprint for k, v in out.items()}


def test_lead_loader_accepts_the_fixture_repo():
    loader = pytest.importorskip("featurestore.loader")
    repo = loader.load_repo(REPO)
    assert sorted(repo.views) == ["merchant_last_tx", "user_clicks", "user_profile", "user_tx_stats"]
    assert repo.where(repo.views["user_tx_stats"]) == ("views.py", 25)


def test_is_feast_object_never_imports_feast():
    code = textwrap.dedent(
        """
        import sys
        from featurestore.feast_import import is_feast_object, translate
        from featurestore import Entity
        assert not is_feast_object(Entity(join_keys=["k"])) and not is_feast_object(3)
        assert translate({"e": Entity(join_keys=["k"]), "n": 1}) == {}
        assert "feast" not in sys.modules, "feast was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_is_feast_object(feast_objects):
    assert is_feast_object(feast_objects["user"]) and is_feast_object(feast_objects["String"])
    assert not is_feast_object(FeastEntity) and not is_feast_object("user")


# -- errors (each names the Feast object kind and name) -------------------------------------------


def _base():
    user = FeastEntity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    batch = FileSource(name="tx_file", path="data/tx.parquet", timestamp_field="ts")
    stream = KafkaSource(name="tx", kafka_bootstrap_servers="localhost:9092", topic="tx", timestamp_field="ts",
                         message_format=JsonFormat(schema_json=""), batch_source=batch)
    schema = [Field(name="user_id", dtype=String), Field(name="amount", dtype=Float64)]
    return user, batch, stream, schema


def _error(objects) -> TranslationError:
    with pytest.raises(TranslationError) as info:
        translate(objects)
    return info.value


def test_opaque_udf_is_an_error():
    user, _, stream, schema = _base()

    @stream_feature_view(entities=[user], source=stream, schema=schema, timestamp_field="ts", mode="python",
                         ttl=timedelta(0),
                         aggregations=[FeastAggregation(column="amount", function="sum",
                                                        time_window=timedelta(hours=1))])
    def user_tx_norm(df):
        df["amount"] = df["amount"] / 100
        return df

    err = _error({"user": user, "tx": stream, "user_tx_norm": user_tx_norm})
    assert str(err) == ("StreamFeatureView 'user_tx_norm': udf 'user_tx_norm' (mode 'python'): an opaque Python "
                        "udf cannot be compiled to SQL; express it as projections")
    assert err.problems == (FeastProblem("user_tx_norm", "StreamFeatureView", "user_tx_norm", str(err).split(": ", 1)[1]),)


def test_identity_udf_is_accepted():
    user, _, stream, schema = _base()

    # mode="spark" would make Feast import pyspark at construction time; "pandas" does not.
    @stream_feature_view(entities=[user], source=stream, schema=schema, timestamp_field="ts", mode="pandas",
                         ttl=timedelta(0),
                         aggregations=[FeastAggregation(column="amount", function="count",
                                                        time_window=timedelta(minutes=10))])
    def user_tx_count(df):
        return df

    out = translate({"user": user, "tx": stream, "user_tx_count": user_tx_count})
    assert out["user_tx_count"].features == (Aggregation("amount", "count", "10m", name="count_amount_600s"),)


def test_unsupported_aggregation_function():
    user, _, stream, schema = _base()
    view = StreamFeatureView(name="user_tx_stats", entities=[user], source=stream, schema=schema,
                             timestamp_field="ts",
                             aggregations=[FeastAggregation(column="amount", function="approx_percentile",
                                                            time_window=timedelta(hours=1))])
    err = _error({"user": user, "tx": stream, "stats": view})
    assert str(err) == (
        "StreamFeatureView 'user_tx_stats': aggregation function 'approx_percentile' is not supported "
        "(supported: count, count_distinct, sum, mean, min, max, last, first, stddev, variance; "
        "aliases: average, avg, distinct_count, nunique, std, stddev_samp, var, var_samp)"
    )


def test_a_duration_mistake_names_the_feast_argument_and_the_aggregation():
    """A time_window, ttl or watermark_delay_threshold that is negative, not whole milliseconds or longer than any
    span was 'duration: ...' (naming no argument), and a too-long time_window was reported by our Aggregation as
    'Aggregation max window: 31536000000000 is longer ...' (milliseconds, no aggregation name)."""
    user, batch, _, schema = _base()
    stream = KafkaSource(name="tx", kafka_bootstrap_servers="localhost:9092", topic="tx", timestamp_field="ts",
                         message_format=JsonFormat(schema_json=""), batch_source=batch,
                         watermark_delay_threshold=timedelta(seconds=-5))
    aggs = [FeastAggregation(column="amount", function="max", time_window=timedelta(days=365000)),
            FeastAggregation(column="amount", function="sum", time_window=timedelta(microseconds=1500)),
            FeastAggregation(column="amount", function="min", time_window=timedelta(hours=-1))]
    view = StreamFeatureView(name="stats", entities=[user], source=stream, schema=schema, timestamp_field="ts",
                             aggregations=aggs)
    latest = FeastFeatureView(name="latest", entities=[user], source=batch, schema=schema, ttl=timedelta(microseconds=1))
    err = _error({"user": user, "tx": stream, "stats": view, "latest": latest})
    messages = [p.message for p in err.problems]
    assert any(m.startswith("watermark_delay_threshold: must be positive") for m in messages), messages
    assert "aggregation 'max_amount_31536000000s': time_window: datetime.timedelta(days=365000) is longer than " \
           "any time between an event and a request" in "\n".join(messages), messages
    assert "aggregation 'sum_amount_0s': time_window: 0:00:00.001500 is not a whole number of milliseconds" in messages
    assert any(m.startswith("aggregation 'min_amount': time_window: must be positive") for m in messages), messages
    assert "ttl: 0:00:00.000001 is not a whole number of milliseconds" in messages
    assert not any("duration" in m or "Aggregation max window" in m for m in messages), messages


def test_on_demand_feature_views_translate_unchanged():
    """Feast ODFVs and RequestSources become request feature views running the very same function."""
    request = RequestSource(name="request", schema=[Field(name="x", dtype=Int64)])

    @on_demand_feature_view(sources=[request], schema=[Field(name="y", dtype=Int64)])
    def plus_one(df):
        df["y"] = df["x"] + 1
        return df

    @on_demand_feature_view(sources=[request], schema=[Field(name="z", dtype=Int64)], mode="python", singleton=True)
    def plus_two(row):
        return {"z": row["x"] + 2}

    got = translate({"request": request, "plus_one": plus_one, "plus_two": plus_two})
    assert got["request"] == OurRequestSource(name="request", schema={"x": "int64"})
    one, two = got["plus_one"], got["plus_two"]
    assert isinstance(one, RequestFeatureView) and one.mode == "pandas" and one.function is plus_one.udf
    assert one.sources == (got["request"],) and one.schema == (("y", "int64"),)
    assert two.mode == "row" and two.function(dict(x=1)) == {"z": 3}


def test_on_demand_feature_view_problems_all_at_once():
    request = RequestSource(name="request", schema=[Field(name="x", dtype=Int64)])

    @on_demand_feature_view(sources=[request], schema=[Field(name="y", dtype=Array(Bytes))],
                            write_to_online_store=True)
    def stored(df):
        return df

    err = _error({"request": request, "stored": stored})
    assert str(err) == (
        "OnDemandFeatureView 'stored': write_to_online_store=True computes the values when rows are written, which "
        "is not supported; without it they are computed at request time from the same inputs\n"
        "OnDemandFeatureView 'stored': schema field 'y' has type Array(Bytes), which is not supported (supported: "
        f"{SUPPORTED_TYPES})")


def test_unsupported_field_types_all_reported():
    user, batch, _, _ = _base()
    view = FeastFeatureView(name="user_history", entities=[user], source=batch,
                            schema=[Field(name="user_id", dtype=String), Field(name="last_ids", dtype=Array(Bytes)),
                                    Field(name="tags", dtype=Set(String)), Field(name="raw", dtype=Bytes)])
    err = _error({"user": user, "tx_file": batch, "user_history": view})
    assert str(err) == "\n".join(
        f"FeatureView 'user_history': field {name!r} has type {label}, which is not supported (supported: "
        f"{SUPPORTED_TYPES})" for name, label in (("last_ids", "Array(Bytes)"), ("tags", "Set(String)"),
                                                  ("raw", "Bytes")))


def test_nested_feast_types_are_json_values():
    """Map, Json, Struct and Array fields are JSON values (``json``), readable by latest features only."""
    user, batch, _, _ = _base()
    view = FeastFeatureView(name="user_profile", entities=[user], source=batch,
                            schema=[Field(name="user_id", dtype=String), Field(name="meta", dtype=Map),
                                    Field(name="config", dtype=Json),
                                    Field(name="profile", dtype=Struct({"name": String, "age": Int64})),
                                    Field(name="embedding", dtype=Array(Float32))])
    out = translate({"user": user, "tx_file": batch, "user_profile": view})
    got = out["user_profile"]
    assert got.feature_names == ("meta", "config", "profile", "embedding")
    assert all(got.source.columns[c] == "json" for c in got.feature_names)


def test_every_problem_is_reported_once():
    user, batch, stream, schema = _base()
    bad_stream = KafkaSource(name="bad", topic="bad", timestamp_field="event_time", batch_source=batch,
                             message_format=JsonFormat(schema_json=""))
    on_bad = FeastFeatureView(name="on_bad", entities=[user], source=bad_stream, schema=schema)
    unknown_entity = FeastEntity(name="shop", join_keys=["shop_id"], value_type=ValueType.STRING)
    orphan = FeastFeatureView(name="orphan", entities=[unknown_entity], source=batch,
                              schema=[Field(name="shop_id", dtype=String), Field(name="amount", dtype=Float64)])
    service = FeastFeatureService(name="svc", features=[on_bad])  # depends on a failed view: no second error
    err = _error({"user": user, "bad_stream": bad_stream, "on_bad": on_bad, "orphan": orphan, "svc": service})
    assert err.problems == (
        FeastProblem("bad_stream", "KafkaSource", "bad",
                     "timestamp_field 'event_time' of the stream differs from 'ts' of batch_source 'tx_file'; "
                     "both faces must use one column"),
        FeastProblem("orphan", "FeatureView", "orphan",
                     "entity 'shop' is not defined in this repo (Feast views keep only entity names, so the "
                     "Entity must be a module-level object)"),
    )
    assert str(err) == "\n".join(str(p) for p in err.problems)


def test_service_cannot_select_an_aggregation_input():
    user, _, stream, schema = _base()
    view = StreamFeatureView(name="stats", entities=[user], source=stream, timestamp_field="ts",
                             schema=[*schema, Field(name="sum_amount_3600s", dtype=Float64)],
                             aggregations=[FeastAggregation(column="amount", function="sum",
                                                            time_window=timedelta(hours=1))])
    # Feast's features of this view are its non-key schema Fields: amount and sum_amount_3600s.
    ok = FeastFeatureService(name="ok", features=[view[["sum_amount_3600s"]]])
    out = translate({"user": user, "tx": stream, "stats": view, "ok": ok})
    assert out["ok"].features == (out["stats"].select("sum_amount_3600s"),)
    service = FeastFeatureService(name="svc", features=[view[["amount"]]])
    err = _error({"user": user, "tx": stream, "stats": view, "svc": service})
    assert str(err) == ("FeatureService 'svc': 'amount' of StreamFeatureView 'stats' is an input column of its "
                        "aggregations, not a feature; select among sum_amount_3600s")


def test_version_pins_and_bad_names():
    user, batch, _, schema = _base()
    view = FeastFeatureView(name="user_amount", entities=[user], source=batch, schema=schema)
    service = FeastFeatureService(name="svc", features=["user_amount@v2:amount"])
    err = _error({"user": user, "view": view, "svc": service})
    assert str(err) == ("FeatureService 'svc': feature reference 'user_amount@v2:amount' pins a Feast registry "
                        "version; there is no Feast registry here (definitions are versioned by git)")
    spaced = FeastFeatureView(name="user amount", entities=[user], source=batch, schema=schema)
    err = _error({"user": user, "spaced": spaced})
    assert str(err) == ("FeatureView 'user amount': name 'user amount' is not a valid identifier "
                        "(letters, digits, _; not starting with a digit)")


def test_unknown_types_and_unsupported_formats():
    with pytest.warns(DeprecationWarning, match="value_type will be mandatory"):
        user = FeastEntity(name="user", join_keys=["user_id"])  # no value_type, and no Field for user_id below
    batch = FileSource(path="data/tx.parquet", timestamp_field="ts")
    view = FeastFeatureView(name="user_amount", entities=[user], source=batch,
                            schema=[Field(name="amount", dtype=Float64)])
    err = _error({"user": user, "view": view})  # the FileSource is inline: keyed after its view
    assert err.problems == (
        FeastProblem("view.source", "FileSource", "data/tx.parquet",
                     "type of column 'user_id' (join key of entity 'user' in FeatureView 'user_amount') is unknown: "
                     "declare it as a Field in the view's schema or give the Entity a value_type"),
    )
    proto = KafkaSource(name="tx", topic="tx", timestamp_field="ts", batch_source=batch,
                        message_format=feast.data_format.ProtoFormat(class_path="com.example.Tx"))
    err = _error({"proto": proto})
    assert str(err) == "KafkaSource 'tx': message_format ProtoFormat is not supported; use JsonFormat or AvroFormat"


def test_inline_unnamed_file_source_avro_and_timestamps():
    user = FeastEntity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    avro = AvroFormat(schema_json='{"type": "record", "name": "tx", "fields": ['
                                  '{"name": "user_id", "type": "long"}, {"name": "amount", "type": ["null", "double"]},'
                                  '{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}')
    stream = KafkaSource(name="tx_avro", topic="tx", timestamp_field="ts", message_format=avro,
                         watermark_delay_threshold=timedelta(milliseconds=1500),
                         batch_source=FileSource(path="data/tx/*.parquet", timestamp_field="ts",
                                                 created_timestamp_column="ingested"))
    view = StreamFeatureView(name="amounts", entities=[user], source=stream, timestamp_field="ts",
                             schema=[Field(name="seen_at", dtype=UnixTimestamp)],
                             aggregations=[FeastAggregation(column="amount", function="stddev",
                                                            time_window=timedelta(days=1), name="amount_std_1d"),
                                           FeastAggregation(column="seen_at", function="last",
                                                            time_window=timedelta(days=1))])
    latest = FeastFeatureView(name="latest_seen", entities=[user],
                              source=FileSource(path="data/seen.parquet", timestamp_field="ts"),
                              schema=[Field(name="seen_at", dtype=UnixTimestamp)])
    out = translate({"user": user, "view": view, "latest": latest})
    assert list(out) == ["user", "view.source", "latest.source", "view", "latest"]
    src = out["view.source"]
    assert src.name == "tx_avro"
    assert src.schema == (("ts", "timestamp"), ("ingested", "timestamp"), ("user_id", "int64"),
                          ("seen_at", "timestamp"), ("amount", "float64"))
    assert (src.stream, src.watermark_delay, src.batch) == (KafkaTopic("tx", "avro", avro_schema=avro.schema_json), 1500,
                                                           ParquetFiles("data/tx/*.parquet"))
    assert out["view"].features == (Aggregation("amount", "stddev", "1d", name="amount_std_1d"),
                                    Aggregation("seen_at", "last", "1d", name="last_seen_at_86400s"))
    assert out["latest.source"].name == "latest_seen_source"  # unnamed inline FileSource: after its view


def test_event_time_and_created_fields_of_a_schema_are_features():
    """Feast serves a schema field naming its source's event-time or created column as a feature (``v:created``);
    the translation kept them only as source columns, so the feature vanished without a word. Schema order kept;
    values compared with Feast's in tests/test_feast_random.py."""
    user = FeastEntity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    src = FileSource(name="seen", path="data/seen.parquet", timestamp_field="ts", created_timestamp_column="ingested")
    view = FeastFeatureView(name="seen_view", entities=[user], source=src,
                            schema=[Field(name="ingested", dtype=UnixTimestamp), Field(name="x", dtype=Float64),
                                    Field(name="ts", dtype=UnixTimestamp)])
    out = translate({"user": user, "src": src, "view": view})
    assert out["view"].features == (Latest("ingested"), Latest("x"), Latest("ts"))
    assert dict(out["src"].schema)["ingested"] == "timestamp" and out["src"].tiebreak == ("ingested",)


def test_ignores_non_definitions():
    user, _, _, _ = _base()
    assert translate({"String": String, "vt": ValueType.INT64, "n": 3}) == {}
    assert list(translate({"user": user, "field": Field(name="x", dtype=String)})) == ["user"]


def _ray_source_class():
    """Feast's own RaySource, loaded without its package (whose __init__ imports ray, not installed here)."""
    import importlib.util as iu

    name = "feast.infra.offline_stores.contrib.ray_offline_store.ray_source"
    if name not in sys.modules:
        path = Path(feast.__file__).parent / "infra" / "offline_stores" / "contrib" / "ray_offline_store" / "ray_source.py"
        spec = iu.spec_from_file_location(name, path)
        module = iu.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].RaySource


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_spark_and_ray_sources_with_a_path_are_parquet_batch_faces():
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    user, _, _, schema = _base()
    spark = SparkSource(name="tx_spark", path="/data/tx.parquet", file_format="parquet", timestamp_field="ts",
                        created_timestamp_column="created")
    ray = _ray_source_class()(name="tx_ray", reader_type="parquet", path="/data/tx2.parquet", timestamp_field="ts")
    views = {f"v_{s.name}": FeastFeatureView(name=f"v_{s.name}", entities=[user], source=s, schema=schema)
             for s in (spark, ray)}
    out = translate({"user": user, "spark": spark, "ray": ray, **views})
    assert out["spark"].batch.path == "/data/tx.parquet" and out["spark"].tiebreak == ("created",)
    assert out["ray"].batch.path == "/data/tx2.parquet"
    assert out["v_tx_spark"].source is out["spark"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_unreadable_spark_sources_and_label_policies_are_one_line_each():
    from feast import LabelView
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.labeling.conflict_policy import ConflictPolicy

    user, batch, _, schema = _base()
    table = SparkSource(name="tx_table", table="db.tx", timestamp_field="ts")
    csv = SparkSource(name="tx_csv", path="/data/tx.csv", file_format="csv", timestamp_field="ts")
    views = {f"v_{s.name}": FeastFeatureView(name=f"v_{s.name}", entities=[user], source=s, schema=schema)
             for s in (table, csv)}
    votes = LabelView(name="votes", entities=[user], source=batch, schema=schema,
                      conflict_policy=ConflictPolicy.MAJORITY_VOTE)
    err = _error({"user": user, "table": table, "csv": csv, "tx_file": batch, "votes": votes, **views})
    assert [str(p) for p in err.problems] == [
        "SparkSource 'tx_table': table='db.tx': only SparkSource(path=...) pointing at Parquet files can be read "
        "here (a query or a table needs Spark); export it to Parquet and give path=",
        "SparkSource 'tx_csv': batch_source 'tx_csv': file format 'csv' is not supported; use Parquet",
        "LabelView 'votes': conflict_policy 'majority_vote' is not supported: a label is the latest one written "
        "before the request time (ConflictPolicy.LAST_WRITE_WINS)",
    ]
    labels = LabelView(name="labels", entities=[user], source=batch, schema=schema)
    out = translate({"user": user, "tx_file": batch, "labels": labels})
    assert out["labels"].feature_names == ("amount",) and out["labels"].source is out["tx_file"]
