"""A CAST out of its type's range in a view's projection or filter (``CAST(x AS FLOAT)`` of a double beyond
float32, ``CAST(x AS INTEGER)`` of 1e20): the DuckDB backfill fails with one line naming the view; the Flink
backfill of the same plan (SPEC §4) used to store +-inf (FLOAT) or NULL (integers) and succeed. Now it fails
with one line naming the view and the projection, before writing anything; on data without such a value both
store the same rows. (TRY_CAST is NULL in both. The stream, which never fails on a value, reads NULL.)"""

from __future__ import annotations

import random
import shutil
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureStore

pytestmark = [pytest.mark.flink, pytest.mark.slow]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "amount": "float64", "ts": "timestamp"}}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
narrow = FeatureView(entities=[user], source=events, filter="{filter}",
                     projections={{"small": "{projection}", "safe": "TRY_CAST(amount * 1e10 AS FLOAT)"}},
                     features=[Aggregation("small", "sum", None, name="small_sum"), Aggregation("safe", "max", None, name="safe_max")])
'''
CASES = [("CAST(amount AS FLOAT)", "amount IS NOT NULL", 3.5e38), ("CAST(amount * 2 AS INTEGER)", "true", 2e9),
         ("amount", "CAST(amount AS FLOAT) IS NOT NULL", -1e300)]


def _repo(root, projection: str, flt: str, amounts) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(projection=projection, filter=flt))
    (root / "featurestore.yaml").write_text(f"project: fbc_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    n = len(amounts)
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(n)], "amount": pa.array(amounts, pa.float64()),
                             "ts": pa.array([1_767_225_600_000 + 1000 * i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root)


def test_a_cast_out_of_range_fails_both_backfills_in_one_line_and_in_range_they_agree(tmp_path):
    rng = random.Random(8)
    for k, (projection, flt, big) in enumerate(CASES):
        amounts = [rng.choice([None, rng.uniform(-1e6, 1e6), 0.5, -0.0]) for _ in range(rng.randint(20, 60))]
        clean = _repo(tmp_path / f"clean{k}", projection, flt, amounts)
        shutil.copytree(clean.repo_path, tmp_path / f"clean{k}f")
        (want,), (got,) = clean.backfill(), FeatureStore(tmp_path / f"clean{k}f").backfill(engine="flink")
        assert (got.rows, got.dead_letters) == (want.rows, want.dead_letters) and want.rows > 0
        a = clean.offline.table("narrow", "ts").read().to_pylist()
        b = FeatureStore(tmp_path / f"clean{k}f").offline.table("narrow", "ts").read().to_pylist()
        assert sorted(map(repr, a)) == sorted(map(repr, b)), projection
        bad = list(amounts)
        for i in rng.sample(range(len(bad)), rng.randint(1, 3)):
            bad[i] = big * rng.choice([1, -1])
        duck = _repo(tmp_path / f"bad{k}", projection, flt, bad)
        shutil.copytree(duck.repo_path, tmp_path / f"bad{k}f")
        flink = FeatureStore(tmp_path / f"bad{k}f")
        for store, engine in ((duck, "duckdb"), (flink, "flink")):
            with pytest.raises(FeatureStoreError) as err:
                store.backfill(engine=engine)
            message = str(err.value)
            assert message.startswith("backfill of view 'narrow' failed: ") and "\n" not in message, (engine, message)
            assert store.offline.table("narrow", "ts").version is None, engine  # nothing written
        assert "projection 'small'" in str(err.value) or "filter (" in str(err.value), str(err.value)
