"""Named, reproducible training sets (SPEC §5).

A saved training set records what it read: the compiled definition of every view (so a later edit of
the definitions does not change it), the offline table version of every view (versions are immutable),
and the entity frame itself with its hash. Re-creating it replays the same queries on the same
versions and gives identical bytes, after new events, backfills or definition changes.

Layout: ``<offline root>/<project>/_training_sets/<name>/{manifest.json, entity_df.parquet, result.parquet}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.compiler.ir import AggSpec, CompiledView, LatestSpec
from featurestore.errors import FeatureStoreError, RequestError
from featurestore.stores.object_store import is_remote

MANIFEST_VERSION = 2  # 2: each view's features in request order (1: in the view's definition order)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def compiled_to_json(cv: CompiledView) -> dict:
    return dataclasses.asdict(cv)


def compiled_from_json(data: dict) -> CompiledView:
    def tuples(x):
        return tuple(tuple(i) if isinstance(i, list) else i for i in x)

    return CompiledView(
        name=data["name"],
        join_keys=tuple(data["join_keys"]),
        ts_column=data["ts_column"],
        source_columns=tuples(data["source_columns"]),
        filter=data["filter"],
        projections=tuples(data["projections"]),
        order_columns=tuple(data["order_columns"]),
        ttl_ms=data["ttl_ms"],
        latest=tuple(LatestSpec(**s) for s in data["latest"]),
        aggregations=tuple(AggSpec(**a) for a in data["aggregations"]),
        data_fingerprint=data["data_fingerprint"],
    )


def file_sha256(path: Path) -> str:
    """(``path``: a local Path, or an S3Location on an object-storage root)"""
    h = hashlib.sha256()
    if is_remote(path):
        h.update(path.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_parquet(path: Path) -> pa.Table:
    return pq.read_table(pa.BufferReader(path.read_bytes()) if is_remote(path) else path)


def write_parquet_deterministic(table: pa.Table, path: Path) -> None:
    """Same table -> same bytes (no timestamps or random ids in the file), written atomically (an
    object on object storage is whole or absent)."""
    if is_remote(path):
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="zstd", write_statistics=True, store_schema=True)
        path.write_bytes(buf.getvalue().to_pybytes())
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True, store_schema=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def training_set_dir(root: Path, name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RequestError(f"training set name {name!r}: use letters, digits, '_', '-', '.'")
    return root / "_training_sets" / name


CLAIM = ".claim"  # created exclusively by the one writer of a set's folder (see claim())


def claim(root: Path, name: str) -> Path:
    """The folder of a new training set ``name``, taken for this writer alone: its ``.claim`` is created
    exclusively (``O_EXCL`` locally, a conditional put on object storage), so of two processes saving one
    name at once exactly one writes it and the other gets the one-line "already exists" (before, both wrote
    the same files and the set could end up with one's frame and the other's manifest). The manifest is
    written last and atomically: a reader sees a complete set or none. A failed save releases the claim
    (:func:`release`)."""
    folder = training_set_dir(root, name)
    taken = RequestError(f"training set '{name}' already exists at {folder}; pick another name")
    if (folder / "manifest.json").exists():
        raise taken
    folder.mkdir(parents=True, exist_ok=True)
    if is_remote(folder):
        if not (folder / CLAIM).create_exclusive(b"{}"):
            raise taken
    else:
        try:
            os.close(os.open(folder / CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise taken from None
    return folder


def release(folder: Path) -> None:
    """Undo :func:`claim` after a failed save (its files go too: no manifest names them)."""
    for part in ("entity_df.parquet", "result.parquet", CLAIM):
        p = folder / part
        if is_remote(p):
            p.delete()
        elif p.exists():
            p.unlink()


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``manifest.json`` whole or not at all (a temp file renamed; one PUT on object storage)."""
    text = json.dumps(manifest, indent=1, sort_keys=True)
    path = folder / "manifest.json"
    if is_remote(path):
        path.write_text(text)
        return
    tmp = folder / f".manifest.{uuid.uuid4().hex}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def save(root: Path, name: str, entity_df: pd.DataFrame, frame, views: List[Tuple[CompiledView, int]],
         columns: Dict[tuple, str], ts_col: str) -> dict:
    """Write the manifest, the entity frame and the result; refuse to overwrite a different set."""
    folder = claim(root, name)
    try:
        return _save(folder, name, entity_df, frame, views, columns, ts_col)
    except BaseException:
        release(folder)
        raise


def _save(folder: Path, name: str, entity_df: pd.DataFrame, frame, views: List[Tuple[CompiledView, int]],
          columns: Dict[tuple, str], ts_col: str) -> dict:
    entity_path = folder / "entity_df.parquet"
    write_parquet_deterministic(pa.Table.from_pandas(entity_df.reset_index(drop=True), preserve_index=False),
                                entity_path)
    result_path = folder / "result.parquet"
    write_parquet_deterministic(frame.to_arrow(), result_path)
    manifest = {
        "format": MANIFEST_VERSION,
        "name": name,
        "timestamp_column": ts_col,
        "entity_df_sha256": file_sha256(entity_path),
        "result_sha256": file_sha256(result_path),
        "rows": len(entity_df),
        "columns": [[v, f, c] for (v, f), c in columns.items()],
        "views": [  # in output order
            {"view": cv.name, "table_version": version, "data_fingerprint": cv.data_fingerprint,
             "compiled": compiled_to_json(cv)}
            for cv, version in views
        ],
    }
    write_manifest(folder, manifest)
    return manifest


def load(root: Path, name: str) -> Tuple[dict, pd.DataFrame]:
    folder = training_set_dir(root, name)
    path = folder / "manifest.json"
    if not path.exists():
        raise RequestError(f"no training set named '{name}' (looked in {folder})")
    manifest = json.loads(path.read_text())
    entity_path = folder / "entity_df.parquet"
    if file_sha256(entity_path) != manifest["entity_df_sha256"]:
        raise FeatureStoreError(f"training set '{name}': entity_df.parquet does not match its manifest hash")
    return manifest, read_parquet(entity_path).to_pandas()
