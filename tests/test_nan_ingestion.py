"""Float NaN in source data is null at ingestion (semantics.py; docs/semantics.md), also when a batch file
holds real NaNs: files written by pyarrow (``from_pandas=False``) or DuckDB, whose Parquet min/max
statistics leave the NaNs out. (pandas turns NaN into null when it writes, so the other tests never had a
NaN in a file.) DuckDB folded the NaN test to false from those statistics: every NaN stayed a value, so
``count`` counted it, ``mean``/``sum``/``max`` were NaN and *latest* was NaN instead of null, unlike the
stream (JSON cannot carry NaN; Avro NaN is null) and the Flink backfill. Random events, every function,
from the batch face, the backfilled offline store and the online store, against the oracle."""

import dataclasses
import math
import random
import uuid

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import load_config
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.conftest import drop_project
from tests.randomrepo import random_events, random_requests, write_repo


def nan_events(seed: int, nulls: bool = False):
    """The random repo's events with about a third of the amounts NaN, as an Arrow table that keeps NaN a
    NaN; ``nulls``: some nulls too (else none: DuckDB's folding needed a file column without nulls)."""
    events = random_events(seed)
    rng = random.Random(seed)
    amounts = [math.nan if rng.random() < 0.3 else (None if v != v else v) for v in events["amount"]]
    if not nulls:
        amounts = [math.nan if a is None else a for a in amounts]
    events["amount"] = [math.nan if a is None or a != a else a for a in amounts]  # the oracle's view
    table = pa.Table.from_pandas(events.drop(columns=["amount"]), preserve_index=False)
    table = table.append_column("amount", pa.array(amounts, pa.float64(), from_pandas=False))
    # microsecond times (DuckDB reads nanosecond files through Arrow, without the files' statistics)
    table = table.set_column(table.schema.get_field_index("ts"), "ts", table.column("ts").cast(pa.timestamp("us", tz="UTC")))
    assert table.column("amount").null_count < sum(1 for a in amounts if a is None or a != a)  # real NaNs
    assert nulls or table.column("amount").null_count == 0
    return events, table


def write_files(root, table, writer: str, files: int = 1):
    """One file (DuckDB reads a single file with its statistics) or two."""
    out = root / "data" / "events"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    half = table.num_rows // 2
    parts = [table] if files == 1 else [table.slice(0, half), table.slice(half)]
    for i, part in enumerate(parts):
        path = out / f"part-{i}.parquet"
        if writer == "pyarrow":
            pq.write_table(part, path)
        else:
            con = duckdb.connect()
            con.register("part", part)
            con.execute(f"COPY part TO '{path}' (FORMAT parquet)")
            con.close()


@pytest.mark.parametrize("writer,files,nulls", [("pyarrow", 1, False), ("duckdb", 1, False), ("pyarrow", 2, False),
                                                ("pyarrow", 1, True)])
@pytest.mark.parametrize("seed", [0])
def test_nan_in_batch_files_is_null_offline(tmp_path, seed, writer, files, nulls):
    store = FeatureStore(write_repo(tmp_path))
    events, table = nan_events(seed, nulls)
    write_files(store.repo_path, table, writer, files)
    requests = random_requests(seed, events)
    for where in ("batch face", "offline store"):
        if where == "offline store":
            store.backfill()
        got = store.get_historical_features(requests, feature_service="everything")
        for view in store.repo.views.values():
            expected = oracle.point_in_time(events, view, requests)
            assert_features_equal(got, expected, view.feature_names, f"{writer}, {where}, seed {seed}, {view.name}")


@pytest.mark.redis
def test_nan_in_batch_files_is_null_online(tmp_path, redis_client):
    root = write_repo(tmp_path)
    project = f"t_nan_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    try:
        events, table = nan_events(5)
        write_files(root, table, "pyarrow")
        store.materialize()
        requests = random_requests(5, events, n=40)
        rows, latest = [], []
        for r in requests.to_dict("records"):
            got = store.get_online_features([{"user_id": r["user_id"], "shop": r["shop"]}], feature_service="everything",
                                            request_time=r["event_timestamp"]).to_dict()
            rows.append({k: v[0] for k, v in got.items()})
            latest.append(got["last_amount"][0])
        import pandas as pd

        online = pd.DataFrame(rows)
        for view in store.repo.views.values():
            expected = oracle.point_in_time(events, view, requests)
            assert_features_equal(online, expected, view.feature_names, f"online {view.name}")
        assert not any(isinstance(v, float) and v != v for v in latest)  # null (None), never NaN
    finally:
        drop_project(redis_client, project)
