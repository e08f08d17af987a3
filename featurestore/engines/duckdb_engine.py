"""The embedded batch engine: runs compiled DuckDB SQL for backfills and point-in-time retrieval."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa

from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_sql as dsql
from featurestore.errors import FeatureStoreError

BATCH_ROWS = 1_000_000


def connect(temp_dir: Optional[Path] = None, threads: Optional[int] = None):
    """A DuckDB connection set up for this engine: UTC session, spill directory, the wall clock of now for
    the future-time bound (:func:`set_now` moves it)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # our CLI draws its own progress
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {dsql.literal(str(temp_dir))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    set_now(con, int(time.time() * 1000))
    return con


def arrow_schema(cv: CompiledView) -> pa.Schema:
    from featurestore.dtypes import arrow_type

    fields = []
    for name, dtype in cv.stored_columns:
        t = pa.timestamp("ms", tz="UTC") if name == cv.ts_column else arrow_type(dtype)
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def set_now(con, now_ms: int) -> None:
    """The wall clock (epoch ms) compiled SQL checks future event times against (``duckdb_sql.NOW_MS``)."""
    con.execute(f"SET VARIABLE featurestore_now_ms = {int(now_ms)}")


def backfill(store, names, start_ms: Optional[int], end_ms: Optional[int],
             progress: Optional[Callable[[str], Optional[Callable[[int], None]]]] = None):
    """Recompute the offline events of ``names`` for ``[start_ms, end_ms)`` from their batch faces (one pass
    per view: events, dead letters and null join keys routed by ``__kind``), replace that range in each
    view's table and each source's dead-letter table. Returns a ``BackfillResults``."""
    from featurestore.engines.backfill import BackfillRun

    run = BackfillRun(store, names, start_ms, end_ms)
    con = store._connect()
    set_now(con, run.now_ms)
    relations: dict = {}
    results = []
    for n in names:
        t0 = time.perf_counter()
        cv = store.compiled(n)
        source = store.repo.views[n].source
        if source.name not in relations:
            relations[source.name] = store._checked_relation(con, n)
        sql = dsql.backfill_sql(cv, relations[source.name], run.key_group_views(n), start_ms, end_ms)
        with without_optimizer(con, dsql.NO_CSE):
            try:
                unique_on = None
                if cv.latest:  # record that no two events share (keys, ms time): lookups of latest skip ties
                    ties = con.sql(dsql.ties_sql(cv, sql)).fetchall()[0][0]
                    unique_on = None if ties else list(cv.join_keys)
                reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
            except Exception as exc:  # duckdb's own errors: name the view and keep the first line
                raise FeatureStoreError(f"backfill of view '{cv.name}' failed: {str(exc).splitlines()[0]}") from None
            try:
                results.append(run.write_view(n, reader, progress(n) if progress else None, started=t0,
                                              unique_on=unique_on))
            finally:
                reader.close()  # a write that failed part-way leaves the query's result open on ``con``
    return run.finish(results)


@contextlib.contextmanager
def without_optimizer(con, name: str):
    """``con`` with DuckDB's optimizer ``name`` disabled (``disabled_optimizers``), as it was after. When the
    body fails, its error is the one raised: a result the failed work left open may refuse the restore."""
    before = con.sql("SELECT current_setting('disabled_optimizers')").fetchall()[0][0] or ""
    names = [n for n in before.split(",") if n.strip()]
    restore = f"SET disabled_optimizers = {dsql.literal(before)}"
    con.execute(f"SET disabled_optimizers = {dsql.literal(','.join(names + [name]))}")
    try:
        yield con
    except BaseException:
        import duckdb

        with contextlib.suppress(duckdb.Error):
            con.execute(restore)
        raise
    con.execute(restore)




def parquet_relation(con, files, filesystem=None, union_by_name: bool = False,
                     schema: Optional[pa.Schema] = None) -> str:
    """SQL reading the Parquet ``files`` of an offline table version, in order: ``read_parquet`` for local
    paths; for ``s3://`` URIs (an object-storage root, ``filesystem`` = its ``pyarrow.fs.S3FileSystem``:
    ``TableLog.filesystem``) an Arrow dataset registered on ``con`` (DuckDB's own S3 reader needs its
    httpfs extension, which it downloads at run time). ``schema`` (the version's, from its manifest) spares
    the dataset a look at every file; files without a column read it as nulls, as ``union_by_name``."""
    files = [str(f) for f in files]
    if filesystem is None:
        listing = ", ".join(dsql.literal(f) for f in files)
        return f"read_parquet([{listing}]{', union_by_name = true' if union_by_name else ''})"
    import uuid

    import pyarrow.dataset as ds

    from featurestore.stores.object_store import S3Location

    paths = [S3Location.parse(f).path for f in files]
    if schema is not None:
        dataset = ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.ParquetFileFormat(),
                                                  filesystem=filesystem)
    else:
        if union_by_name:  # every file's columns, nulls where a file lacks one
            schema = pa.unify_schemas([ds.dataset(p, filesystem=filesystem, format="parquet").schema
                                       for p in paths])
        dataset = ds.dataset(paths, filesystem=filesystem, format="parquet", schema=schema)
    name = f"__offline_{uuid.uuid4().hex}"
    con.register(name, dataset)
    return name
