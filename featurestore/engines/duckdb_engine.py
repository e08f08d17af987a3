"""The embedded batch engine: runs compiled DuckDB SQL for backfills and point-in-time retrieval."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa

from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_sql as dsql
from featurestore.errors import FeatureStoreError

# Effectively unbounded range for "all of history" (epoch ms).
ALL_TIME = (-(2**62), 2**62)
BATCH_ROWS = 1_000_000


def connect(temp_dir: Optional[Path] = None, threads: Optional[int] = None):
    """A DuckDB connection set up for this engine: UTC session, spill directory."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # our CLI draws its own progress
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {dsql.literal(str(temp_dir))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def arrow_schema(cv: CompiledView) -> pa.Schema:
    types = {
        "string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
        "float64": pa.float64(), "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC"),
    }
    fields = []
    for name, dtype in cv.stored_columns:
        t = pa.timestamp("ms", tz="UTC") if name == cv.ts_column else types[dtype]
        fields.append(pa.field(name, t))
    return pa.schema(fields)


@dataclass
class BackfillResult:
    view: str
    rows: int
    rejected_null_time: int
    rejected_null_key: int
    version: Optional[int]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def backfill_view(
    con,
    cv: CompiledView,
    source_relation: str,
    table,
    start_ms: Optional[int] = None,
    end_ms: Optional[int] = None,
    on_rows: Optional[Callable[[int], None]] = None,
) -> BackfillResult:
    """Compute the view's stored events for ``[start_ms, end_ms)`` and replace that range in ``table``.
    No ``start_ms``: from the beginning of time; no ``end_ms``: up to the last event read (inclusive), so
    the events after it stay the stream's (``OfflineTable.write_range``)."""
    t0 = time.perf_counter()
    start, end = ALL_TIME[0] if start_ms is None else start_ms, end_ms
    try:
        null_time, null_key = con.sql(dsql.rejected_sql(cv, source_relation, start_ms, end_ms)).fetchall()[0]
        unique_on = None
        if cv.latest:  # record that no two events share (keys, ms time): lookups of latest skip ties
            ties = con.sql(dsql.ties_sql(cv, source_relation, start_ms, end_ms)).fetchall()[0][0]
            unique_on = None if ties else list(cv.join_keys)
        reader = con.sql(dsql.events_sql(cv, source_relation, start_ms, end_ms)).to_arrow_reader(BATCH_ROWS)
    except Exception as exc:  # duckdb's own errors: name the view and keep the first line
        raise FeatureStoreError(f"backfill of view '{cv.name}' failed: {str(exc).splitlines()[0]}") from None
    schema = arrow_schema(cv)
    count = 0

    def batches():
        nonlocal count
        for batch in reader:
            batch = pa.Table.from_batches([batch]).cast(schema).to_batches()
            for b in batch:
                count += b.num_rows
                if on_rows:
                    on_rows(b.num_rows)
                yield b

    version = table.write_range(pa.RecordBatchReader.from_batches(schema, batches()), start, end, unique_on)
    return BackfillResult(cv.name, count, int(null_time), int(null_key), version, time.perf_counter() - t0)
