"""`backfill --engine flink` reads every Parquet codec the files it is given are written with: pyarrow's
and DuckDB's default (SNAPPY), ours and `featurestore generate`'s (ZSTD, which needed zstd-jni), LZ4_RAW
(aircompressor), GZIP and none; one Flink launch over a source with one file per codec and writer, equal to
the DuckDB backfill of the same files. A codec Flink has no reader for (BROTLI) is a one-line error naming
the file, before any JVM starts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from featurestore.engines.flink.backfill import FLINK_CODECS
from tests.randomrepo import assert_flink_backfill_equals_duckdb, random_events, write_repo

runner = CliRunner()
PYARROW_CODECS = ["none", "snappy", "gzip", "lz4", "zstd"]


def _write(root, codecs):
    """One file per (writer, codec) of random events; the codecs found in the files' metadata."""
    import duckdb

    df = random_events(7, n=700)
    out = root / "data" / "events"
    out.mkdir(parents=True, exist_ok=True)
    parts = [("pyarrow", c) for c in codecs] + [("duckdb", None), ("duckdb", "zstd")]
    for (writer, codec), rows in zip(parts, np.array_split(np.arange(len(df)), len(parts))):
        table = pa.Table.from_pandas(df.iloc[rows], preserve_index=False)
        path = out / f"{writer}-{codec or 'default'}.parquet"
        if writer == "pyarrow":
            pq.write_table(table, path, compression=codec)
        else:
            option = f" (COMPRESSION {codec})" if codec else ""
            con = duckdb.connect()
            con.register("part", table)
            con.execute(f"COPY (SELECT * FROM part) TO '{path}'{option}")
    return {pq.ParquetFile(p).metadata.row_group(0).column(0).compression for p in out.glob("*.parquet")}


@pytest.mark.flink
@pytest.mark.slow
def test_the_flink_backfill_reads_every_codec_pyarrow_and_duckdb_write(tmp_path):
    root = write_repo(tmp_path / "r")
    found = _write(root, PYARROW_CODECS)
    assert found == set(FLINK_CODECS)  # every codec the backfill claims to read is in a file here
    res = runner.invoke(app, ["backfill", "--repo", str(root), "--engine", "flink", "--view", "qty_stats"])
    assert res.exit_code == 0, res.output
    assert_flink_backfill_equals_duckdb(root)


def test_a_codec_flink_cannot_read_is_one_line_naming_the_file(tmp_path):
    root = write_repo(tmp_path / "r")
    _write(root, ["snappy", "brotli"])
    res = runner.invoke(app, ["backfill", "--repo", str(root), "--engine", "flink", "--view", "qty_stats"])
    assert res.exit_code == 1
    error = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "pyarrow-brotli.parquet: column '" in error[0], res.output
    assert "is compressed with BROTLI, which the Flink backfill cannot read" in error[0]
