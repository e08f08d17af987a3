"""A join key made by a projection (Feast's entityless views, field_mapping'd keys, with_join_key_map): the DuckDB
paths compute it (tests/test_feast_reference.py); the Flink jobs key events by source columns only, so a
streamed view keyed that way is refused at plan time with one line naming the view and the key."""

from __future__ import annotations

from featurestore.engines.flink.exprs import check_view
from featurestore.model import Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source


def test_a_streamed_view_keyed_by_a_projection_is_refused_by_name():
    entity = Entity(name="everything", join_keys=("__dummy_id",))
    source = Source(name="s", schema={"x": "int64", "ts": "timestamp"}, timestamp="ts",
                    batch=ParquetFiles("a.parquet"), stream=KafkaTopic("t"))
    view = FeatureView(name="v", entities=(entity,), source=source, features=(Latest("x"),),
                       projections=(("__dummy_id", "''"),))
    assert check_view(view) == [(None, "join key '__dummy_id': is made by a projection; the Flink jobs key events "
                                       "by source columns only (use the default backfill)")]
    batch_only = FeatureView(name="w", entities=(entity,), source=Source(
        name="b", schema={"x": "int64", "ts": "timestamp"}, timestamp="ts", batch=ParquetFiles("a.parquet")),
        features=(Latest("x"),), projections=(("__dummy_id", "''"),))
    assert check_view(batch_only) == []
