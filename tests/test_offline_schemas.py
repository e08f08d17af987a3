"""SPEC §5: the offline store has "a documented schema readable by DuckDB, pandas, pyarrow ... without this
library". The documented schema is read from docs/offline-store.md ("Schemas") and checked both ways:

* against the code's schema sources (``dtypes.arrow_type`` for view tables, the backfill's dead-letter schema,
  the serving log's table schema), so neither can drift from the page;
* against tables written by a real backfill (every declared type, dead letters included), real log shipping
  and a saved training set, read with DuckDB, pandas and pyarrow only (globs and folders as the page says).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "offline-store.md"
ROW = re.compile(r"^\| (?P<name>[^|]+?) \| `(?P<arrow>[^`]+)` \| `(?P<duckdb>[^`]+)` \|$")


def documented() -> dict:
    """{table kind: [(column or declared type, Arrow type, DuckDB type)]} from the page's "Schemas"."""
    text = DOC.read_text()
    section = text[text.index("\n## Schemas\n"):]
    section = section[:section.index("\n## ", 5)]
    out, kind = {}, None
    for line in section.splitlines():
        if line.startswith("**"):
            kind = line[2:line.index("**", 2)]
        m = ROW.match(line)
        if m and kind:
            out.setdefault(kind, []).append((m["name"].strip("`"), m["arrow"], m["duckdb"]))
    return out


def test_the_page_names_what_the_code_writes():
    from featurestore import dtypes
    from featurestore.engines.backfill import DEAD_LETTER_SCHEMA
    from featurestore.serving_log import LOG_TABLE_SCHEMA
    from featurestore.stores.offline_files import TS_TYPE

    doc = documented()
    assert set(doc) == {"Feature view tables", "Backfill dead letters", "Serving logs"}, set(doc)
    views = {name: arrow for name, arrow, _ in doc["Feature view tables"]}
    assert views.pop("the event-time column") == str(TS_TYPE)
    assert views == {d: str(dtypes.arrow_type(d)) for d in dtypes.DTYPES}, "docs vs dtypes.arrow_type"
    for kind, schema in (("Backfill dead letters", DEAD_LETTER_SCHEMA), ("Serving logs", LOG_TABLE_SCHEMA)):
        assert [(n, a) for n, a, _ in doc[kind]] == [(f.name, str(f.type)) for f in schema], kind


# -- tables written by the product, read by other libraries ------------------------------------------------
DEFS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
events = Source(schema={{{schema}}}, timestamp="ts", batch=ParquetFiles("data/*.parquet"))
v = FeatureView(entities=[user], source=events, features=[{features}])
'''
COLUMNS = {"c_string": "string", "c_int32": "int32", "c_int64": "int64", "c_float32": "float32",
           "c_float64": "float64", "c_bool": "bool", "c_timestamp": "timestamp", "c_json": "json"}


def _duckdb_types(glob: str) -> dict:
    rows = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()
    return {r[0]: r[1] for r in rows}


def _check_read(folder: Path, expected: list) -> int:
    """Read ``folder`` (a table) with pyarrow, pandas and DuckDB; types as documented; returns the rows."""
    names = [n for n, _, _ in expected]
    t = pads.dataset(str(folder), format="parquet", partitioning="hive").to_table()
    assert t.column_names == names + ["date"]
    assert [str(t.schema.field(n).type) for n in names] == [a for _, a, _ in expected], folder
    frame = pd.read_parquet(folder)
    assert list(frame.columns) == names + ["date"] and len(frame) == t.num_rows
    ddb = _duckdb_types(f"{folder}/date=*/part-*.parquet")
    assert ddb == {**{n: d for n, _, d in expected}, "date": "DATE"}, folder
    return t.num_rows


def test_backfilled_tables_and_training_sets_read_as_documented(tmp_path):
    from featurestore.store import FeatureStore

    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "featurestore.yaml").write_text("project: docs\ndefinitions: definitions\n")
    schema = ", ".join(f'"{c}": "{d}"' for c, d in {"user_id": "string", **COLUMNS, "ts": "timestamp"}.items())
    features = ", ".join(f'Latest("{c}", name="l_{c}")' for c in COLUMNS)
    (root / "definitions" / "f.py").write_text(DEFS.format(schema=schema, features=features))
    base = pd.Timestamp("2026-02-01T00:00:00Z")
    n = 6
    pq.write_table(pa.table({
        "user_id": pa.array(["a", "b", None, "a", "b", "a"]),  # a null key: a dead letter
        "c_string": pa.array(["x", None, "z", "é", "", "q"]),
        "c_int32": pa.array([1, -2, None, 2**31 - 1, 0, 5], pa.int32()),
        "c_int64": pa.array([2**62, None, -1, 0, 7, 8], pa.int64()),
        "c_float32": pa.array([1.5, None, -0.0, 3.0, 2.0, 1.0], pa.float32()),
        "c_float64": pa.array([1e300, float("nan"), None, -1.0, 2.0, 3.0]),
        "c_bool": pa.array([True, False, None, True, False, True]),
        "c_timestamp": pa.array([base.value // 1000 + i for i in range(n)], pa.timestamp("us", tz="UTC")),
        "c_json": pa.array(['{"a": 1}', "[1, 2]", None, '"s"', "null", "{}"]),
        "ts": pa.array([(base + pd.Timedelta(hours=h)).value // 10**6 for h in (0, 5, 9, 30, 49, 50)],
                       pa.timestamp("ms", tz="UTC")),
    }), root / "data" / "a.parquet")
    fs = FeatureStore(root)
    fs.backfill()
    doc = documented()
    by_type = {name: (a, d) for name, a, d in doc["Feature view tables"]}
    table = fs.offline.table("v")
    stored = fs.compiled("v").stored_columns
    expected = [(c, *(by_type["the event-time column"] if c == "ts" else by_type[d])) for c, d in stored]
    assert sorted(c for c, _ in stored) == sorted(["user_id", *COLUMNS, "ts"])
    assert _check_read(table.path, expected) == n - 1  # the null key is a dead letter
    dead = fs.config.offline_path / "docs" / "_backfill_dead_letters" / "events"
    assert _check_read(dead, doc["Backfill dead letters"]) == 1

    req = pd.DataFrame({"user_id": ["a", "b", "zz"], "event_timestamp": [base + pd.Timedelta(days=3)] * 3})
    frame = fs.get_historical_features(req, features=[f"v:l_{c}" for c in COLUMNS], save_as="s")
    folder = fs.config.offline_path / "docs" / "_training_sets" / "s"
    assert pq.read_table(folder / "result.parquet").equals(frame.to_arrow())
    assert pads.dataset(str(folder / "result.parquet")).to_table().equals(frame.to_arrow())
    via_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/result.parquet')").to_arrow_table()
    assert via_duckdb.cast(frame.to_arrow().schema).equals(frame.to_arrow())  # (DuckDB names UTC "Etc/UTC")
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "entity_df.parquet"), req)


@pytest.mark.redis
def test_shipped_serving_logs_read_as_documented(tmp_path, redis_client):
    from tests import logrepo
    from tests.conftest import drop_project

    from featurestore.store import FeatureStore

    root = logrepo.write_repo(tmp_path / "repo")
    events = logrepo.random_payments(3, n=60)
    logrepo.write_payments(root, events)
    fs = FeatureStore(root)
    try:
        fs.backfill()
        fs.materialize()
        service = next(iter(fs.repo.services))
        rows = [logrepo.random_entity(__import__("random").Random(i)) for i in range(3)]
        fs.get_online_features(rows, feature_service=service, log=True)
        fs.ship_logs()
        folder = fs.config.offline_path / fs.config.project / "_serving_logs" / service
        assert _check_read(folder, documented()["Serving logs"]) >= 1
    finally:
        drop_project(redis_client, fs.config.project)
