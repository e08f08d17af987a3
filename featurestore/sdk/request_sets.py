"""Saved training sets with request features (``save_as=``), re-created like any saved set (SPEC §5).

A set ``name`` whose features include request views is saved in two parts:

* ``name.base``: an ordinary saved set of the base features (looked up and read by the request views)
  over the entity frame's join keys and timestamp: table versions and compiled views pinned;
* ``name``: the whole entity frame (with its request data), the result, and each request view as it
  was compiled (inputs, outputs, SQL expressions, data fingerprint).

:func:`recreate` re-creates ``name.base`` bit for bit, then evaluates the saved request views again over
it. SQL views come from the manifest, so a later edit of the definition does not change the set. A
Python function cannot be stored faithfully (its code may call anything): the set is re-created with
the current function only when the view's data fingerprint (which covers the function's code) is the one
saved, and otherwise refused, naming the view; the values as saved stay in ``result.parquet``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import pyarrow as pa

from featurestore import dtypes as t
from featurestore.compiler.request import CompiledRequestView, InputColumn
from featurestore.errors import FeatureStoreError, RequestError
from featurestore.sdk import training_sets as ts

KIND = "request"


def check_new(store, name: str) -> None:
    """Refuse, before any work, a name already taken (by the set or its base part)."""
    root = store._offline_root
    for part in (name, f"{name}.base"):
        folder = ts.training_set_dir(root, part)
        if (folder / "manifest.json").exists():
            raise RequestError(f"training set '{part}' already exists at {folder}; pick another name")


def _crv_json(crv: CompiledRequestView, names) -> dict:
    return {"name": crv.name, "mode": crv.mode, "function_name": crv.function_name,
            "inputs": [[c.name, c.dtype, c.kind, list(c.ref)] for c in crv.inputs],
            "outputs": [list(o) for o in crv.outputs], "expressions": [list(e) for e in crv.expressions],
            "deps": [[v, list(f)] for v, f in crv.deps], "data_fingerprint": crv.data_fingerprint,
            "sql_inputs": list(crv.sql_inputs), "requested": list(names)}


def _crv_from_json(data: dict, function=None) -> CompiledRequestView:
    return CompiledRequestView(
        name=data["name"], mode=data["mode"],
        inputs=tuple(InputColumn(n, d, k, tuple(r)) for n, d, k, r in data["inputs"]),
        outputs=tuple(tuple(o) for o in data["outputs"]), expressions=tuple(tuple(e) for e in data["expressions"]),
        function=function, function_name=data["function_name"],
        deps=tuple((v, tuple(f)) for v, f in data["deps"]), data_fingerprint=data["data_fingerprint"],
        sql_inputs=tuple(data["sql_inputs"]))


def save(store, name: str, base_set: Optional[str], entity_df, frame, rplan, columns, ts_col) -> dict:
    folder = ts.claim(store._offline_root, name)
    try:
        return _save(folder, name, base_set, entity_df, frame, rplan, columns, ts_col)
    except BaseException:
        ts.release(folder)
        raise


def _save(folder, name: str, base_set: Optional[str], entity_df, frame, rplan, columns, ts_col) -> dict:
    entity_path = folder / "entity_df.parquet"
    ts.write_parquet_deterministic(pa.Table.from_pandas(entity_df.reset_index(drop=True), preserve_index=False),
                                   entity_path)
    result_path = folder / "result.parquet"
    ts.write_parquet_deterministic(frame.to_arrow(), result_path)
    manifest = {
        "format": ts.MANIFEST_VERSION,
        "kind": KIND,
        "name": name,
        "base": base_set,
        "timestamp_column": ts_col,
        "entity_df_sha256": ts.file_sha256(entity_path),
        "result_sha256": ts.file_sha256(result_path),
        "rows": len(entity_df),
        "columns": [[v, f, c] for (v, f), c in columns.items()],
        "base_features": [[v, list(names)] for v, names in rplan.base.items()],
        "key_types": rplan.key_types,
        "request_columns": [[c.name, c.dtype, list(c.ref)] for c in rplan.request_columns],
        "request_views": [_crv_json(crv, names) for crv, names in rplan.request],
    }
    ts.write_manifest(folder, manifest)
    return manifest


def recreate(store, name: str, manifest: dict, entity_df):
    """The saved set ``name`` again (module docstring)."""
    from featurestore.sdk import request_data as rd
    from featurestore.sdk.inputs import key_column
    from featurestore.sdk.request_features import assemble, compiled_request, evaluate_frame
    from featurestore.sdk.training_sets import compiled_from_json

    df = entity_df.reset_index(drop=True)
    features: Dict[Tuple[str, str], pa.Array] = {}
    keys: Dict[str, pa.Array] = {}
    json_refs = set()
    if manifest["base"]:
        base_frame = store.recreate_training_set(manifest["base"])
        base = base_frame.to_arrow()
        for meta in base_frame.manifest["views"]:
            cv = compiled_from_json(meta["compiled"])
            json_refs |= {(cv.name, f) for f, dtype in cv.feature_dtypes.items() if dtype == t.JSON}
        for view, names in manifest["base_features"]:
            for f in names:
                features[(view, f)] = base.column(f"{view}__{f}").combine_chunks()
        keys = {k: key_column(df[k], dtype, "entity_df", k) for k, dtype in manifest["key_types"].items()}
    request = {c: rd.request_column(df[c], dtype, "entity_df", c) for c, dtype, _ in manifest["request_columns"]}
    values = dict(features)
    for data in manifest["request_views"]:
        function = None
        if data["mode"] != "sql":
            current = store.repo.request_views.get(data["name"])
            if current is None or current.data_fingerprint != data["data_fingerprint"]:
                why = "no longer defined" if current is None else "changed since (its function or inputs)"
                raise FeatureStoreError(
                    f"training set '{name}': request feature view '{data['name']}' is {why}; a Python function "
                    f"cannot be replayed from the manifest. The values as saved are in "
                    f"{ts.training_set_dir(store._offline_root, name) / 'result.parquet'}")
            function = compiled_request(store, data["name"]).function
        crv = _crv_from_json(data, function)
        got = evaluate_frame(crv, features, keys, request)
        for n in data["requested"]:
            values[(crv.name, n)] = got[n]
        json_refs |= {(crv.name, n) for n, dtype in crv.outputs if dtype == t.JSON}
    columns = {(v, f): c for v, f, c in manifest["columns"]}
    frame = assemble(df, columns, values, json_refs)
    frame.manifest = manifest
    return frame


__all__ = ["check_new", "recreate", "save"]
