"""Hive-partitioned batch files (``data/events/day=2026-01-01/shop=3/part.parquet``): a declared column that is a
partition key reads its folder's value, as DuckDB's and pyarrow's hive partitioning (and Feast's file sources)
read it: URL-decoded text cast to the declared type like any text column (a value that does not convert is
a dead letter), ``__HIVE_DEFAULT_PARTITION__`` as null, over a column of the same name inside the file. The
same in the DuckDB backfill (it used to guess: DuckDB's auto-detection typed ``day=...`` as a DATE, and
dropped the keys altogether once one file lacked them), the point-in-time read from the batch face, and the
Flink backfill (which read no partition value at all). Undeclared keys are ignored; files partitioned by
different declared keys are one error."""

from __future__ import annotations

import random
import shutil
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureStore

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "amount": "float64", "shop": "int64", "day": "timestamp",
                        "region": "string", "ts": "timestamp"},
                timestamp="ts", batch=ParquetFiles("data/events/**/*.parquet"))
parts = FeatureView(entities=[user], source=events, features=[
    Latest("shop", name="last_shop"), Latest("day", name="last_day"), Latest("region", name="last_region"),
    Aggregation("shop", "sum", None, name="shop_sum"), Aggregation("region", "count_distinct", None, name="regions")])
'''
BASE_MS = 1_767_225_600_000  # 2026-01-01
REGIONS = ["eu", "us west", "ü/ß", None]  # a space and a slash (URL-encoded folders), the default partition


def _folder(value) -> str:
    from urllib.parse import quote

    return "__HIVE_DEFAULT_PARTITION__" if value is None else quote(str(value), safe="")


def write_partitions(root, seed: int, bad_shop: bool = True) -> list:
    """Random files under day=/shop=/region= folders (plus an undeclared key); returns the expected stored
    rows (user, amount, shop, day epoch us, region, ts ms) and the number of dead letters."""
    rng = random.Random(seed)
    rows, dead = [], 0
    for i in range(rng.randint(3, 7)):
        day = pd.Timestamp(BASE_MS, unit="ms", tz="UTC") + pd.Timedelta(days=rng.randrange(3))
        shop = rng.choice([1, 2, -7, 2**40, "abc" if bad_shop else 3])
        region = rng.choice(REGIONS)
        folder = root / "data" / "events" / f"day={day.date()}" / f"shop={_folder(shop)}" / f"region={_folder(region)}" \
            / f"batch={i}"
        folder.mkdir(parents=True, exist_ok=True)
        n = rng.randint(1, 20)
        users = [f"u{rng.randrange(4)}" for _ in range(n)]
        amounts = [rng.choice([None, rng.uniform(-100, 100)]) for _ in range(n)]
        ts = [BASE_MS + rng.randrange(0, 3 * 86_400_000) for _ in range(n)]
        table = {"user_id": users, "amount": pa.array(amounts, pa.float64()),
                 "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}
        if rng.random() < 0.5:  # a column of the partition key's name inside the file: the folder wins
            table["shop"] = pa.array([99] * n, pa.int64())
        pq.write_table(pa.table(table), folder / f"part-{i}.parquet")
        if shop == "abc":
            dead += n
            continue
        day_us = int(day.timestamp()) * 1_000_000
        rows += [repr((u, a, shop, day_us, region, t)) for u, a, t in zip(users, amounts, ts)]
    return sorted(rows), dead


def _repo(root) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: hp_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    return FeatureStore(root)


def _offline(store) -> list:
    table = store.offline.table("parts", "ts").read()
    out = []
    for r in table.select(["user_id", "amount", "shop", "day", "region", "ts"]).to_pylist():
        day = None if r["day"] is None else round(r["day"].timestamp() * 1_000_000)
        out.append(repr((r["user_id"], r["amount"], r["shop"], day, r["region"], round(r["ts"].timestamp() * 1000))))
    return sorted(out)


def _pit(store) -> pd.DataFrame:
    rng = random.Random(2)
    entity_df = pd.DataFrame({"user_id": [f"u{rng.randrange(5)}" for _ in range(25)],
                              "event_timestamp": pd.to_datetime([BASE_MS + rng.randrange(0, 4 * 86_400_000) for _ in range(25)],
                                                                unit="ms", utc=True)})
    return store.get_historical_features(entity_df, [f"parts:{n}" for n in ("last_shop", "last_day", "last_region",
                                                                              "shop_sum", "regions")]).to_arrow()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_folders_are_the_columns_they_name(tmp_path, seed):
    store = _repo(tmp_path / "repo")
    expected, dead = write_partitions(store.repo_path, seed)
    store.plan()  # partition keys count as columns: no "in none of the files"
    from_face = _pit(store)  # no offline table yet: read from the batch face
    (result,) = store.backfill()
    assert (result.dead_letters, _offline(store)) == (dead, expected)
    if dead:
        assert len(result.reasons) == 1 and next(iter(result.reasons)).startswith("column 'shop'"), result.reasons
    assert _pit(store).equals(from_face)


def test_files_partitioned_by_different_keys_are_one_error(tmp_path):
    store = _repo(tmp_path / "repo")
    write_partitions(store.repo_path, 4)
    pq.write_table(pa.table({"user_id": ["u1"], "amount": [1.0], "shop": [1], "day": ["2026-01-01"], "region": ["eu"],
                             "ts": pa.array([BASE_MS], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   store.repo_path / "data" / "events" / "flat.parquet")
    with pytest.raises(FeatureStoreError, match="source 'events': the batch face's files are partitioned by different keys"):
        store.backfill()


@pytest.mark.flink
@pytest.mark.slow
def test_flink_backfill_reads_partition_folders_like_duckdb(tmp_path):
    duck = _repo(tmp_path / "duck")
    expected, dead = write_partitions(duck.repo_path, 5)
    shutil.copytree(duck.repo_path, tmp_path / "flink")
    flink = FeatureStore(tmp_path / "flink")
    (want,), (got,) = duck.backfill(), flink.backfill(engine="flink")
    assert (got.rows, got.dead_letters, got.reasons) == (want.rows, want.dead_letters, want.reasons)
    assert _offline(flink) == _offline(duck) == expected
