"""Column types of Feast objects (Feast types, ValueTypes, a stream format's schema_json, the Parquet
file of a FileSource) and Feast durations, in this model's terms."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any, Dict, List, Optional

from featurestore import dtypes as t
from featurestore.model.durations import parse_duration, parse_span
from featurestore.semantics import AGG_ALIASES

FEAST_TYPES = {  # feast.types.PrimitiveFeastType names
    "STRING": t.STRING,
    "INT32": t.INT32,
    "INT64": t.INT64,
    "FLOAT32": t.FLOAT32,
    "FLOAT64": t.FLOAT64,
    "BOOL": t.BOOL,
    "UNIX_TIMESTAMP": t.TIMESTAMP,
    "MAP": t.JSON,
    "JSON": t.JSON,
}
VALUE_TYPES = {  # feast.ValueType names
    "STRING": t.STRING,
    "INT32": t.INT32,
    "INT64": t.INT64,
    "FLOAT": t.FLOAT32,
    "DOUBLE": t.FLOAT64,
    "BOOL": t.BOOL,
    "UNIX_TIMESTAMP": t.TIMESTAMP,
    **{name: t.JSON for name in ("MAP", "MAP_LIST", "SCALAR_MAP", "JSON", "JSON_LIST", "STRUCT", "STRUCT_LIST",
                                 "VALUE_LIST", "STRING_LIST", "INT32_LIST", "INT64_LIST", "FLOAT_LIST",
                                 "DOUBLE_LIST", "BOOL_LIST", "UNIX_TIMESTAMP_LIST")},
}
# Arrays of these element types are JSON values (a list of them); bytes, UUIDs, decimals and sets are not.
_ARRAY_ELEMENTS = {"STRING", "INT32", "INT64", "FLOAT32", "FLOAT64", "BOOL", "UNIX_TIMESTAMP", "MAP", "JSON"}
SUPPORTED_TYPES = ("String, Int32, Int64, Float32, Float64, Bool, UnixTimestamp; Map, Json, Struct and Array "
                   "as JSON values (latest features only)")
_SPARK_DDL_TYPES = {
    "string": t.STRING, "varchar": t.STRING, "char": t.STRING,
    "int": t.INT32, "integer": t.INT32, "smallint": t.INT32, "tinyint": t.INT32, "short": t.INT32,
    "byte": t.INT32, "bigint": t.INT64, "long": t.INT64,
    "float": t.FLOAT32, "real": t.FLOAT32, "double": t.FLOAT64,
    "boolean": t.BOOL, "bool": t.BOOL, "timestamp": t.TIMESTAMP, "timestamp_ltz": t.TIMESTAMP,
}
_AVRO_TYPES = {"string": t.STRING, "int": t.INT32, "long": t.INT64, "float": t.FLOAT32,
               "double": t.FLOAT64, "boolean": t.BOOL}
_AVRO_TIMESTAMPS = {"timestamp-millis", "timestamp-micros", "timestamp-nanos"}

# Feast spellings beyond ours: Feast's own engines alias count_distinct as pandas' "nunique".
FEAST_AGG_ALIASES = {**AGG_ALIASES, "nunique": "count_distinct"}


def dtype_of(dtype: Any) -> Optional[str]:
    """Our dtype for a feast.types type or ValueType, or None when unsupported."""
    kind = type(dtype).__name__
    name = str(getattr(dtype, "name", ""))
    if kind == "PrimitiveFeastType":
        return FEAST_TYPES.get(name)
    if kind == "ValueType":
        return VALUE_TYPES.get(name)
    if kind == "Struct":
        return t.JSON if all(dtype_of(f) is not None for f in getattr(dtype, "fields", {}).values()) else None
    if kind == "Array":
        base = getattr(dtype, "base_type", None)
        if type(base).__name__ == "Struct":
            return dtype_of(base)
        return t.JSON if str(getattr(base, "name", "")) in _ARRAY_ELEMENTS else None
    return None


def type_label(dtype: Any) -> str:
    try:
        return str(dtype)
    except Exception:  # pragma: no cover - defensive: str() of a foreign object
        return type(dtype).__name__


def _split_top_level(text: str) -> List[str]:
    parts: List[str] = []
    current: List[str] = []
    depth = 0
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def schema_json_types(fmt: Any) -> Dict[str, str]:
    """Column types from a stream format's ``schema_json`` (Spark DDL or Avro); {} when unreadable."""
    text = (getattr(fmt, "schema_json", "") or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return {}
        out = {}
        for f in record.get("fields", []) if isinstance(record, dict) else []:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                continue
            typ = f.get("type")
            if isinstance(typ, list):
                rest = [x for x in typ if x != "null"]
                typ = rest[0] if len(rest) == 1 else None
            if isinstance(typ, dict):
                typ = t.TIMESTAMP if typ.get("logicalType") in _AVRO_TIMESTAMPS else typ.get("type")
            dtype = typ if typ == t.TIMESTAMP else _AVRO_TYPES.get(typ) if isinstance(typ, str) else None
            if dtype:
                out[f["name"]] = dtype
        return out
    out = {}
    for part in _split_top_level(text):
        tokens = part.replace(":", " ", 1).split() if ":" in part.split()[0] else part.split()
        if len(tokens) < 2:
            return {}  # not a DDL string
        name = tokens[0].strip("`")
        dtype = _SPARK_DDL_TYPES.get(re.sub(r"\(.*", "", tokens[1].lower()))
        if dtype:
            out[name] = dtype
    return out


def ms(value: Any, what: str, span: bool = True) -> Optional[int]:
    """Milliseconds of a timedelta; None for None or zero (Feast: 0 means unbounded). ``what`` names the Feast
    argument in a problem; a ``span`` (a window or TTL) is also no longer than ``semantics.MAX_SPAN_MS``."""
    if value is None or value == timedelta(0):
        return None
    return (parse_span if span else parse_duration)(value, what)


def feast_path(path: str, feast_root: Optional[str], repo_root: Optional[str]) -> str:
    """A FileSource path as Feast resolves it (``FileSource.get_uri_for_file_path``: a relative path is relative to
    the ``repo_path`` of the Feast repo, the folder of its ``feature_store.yaml``), written relative to the project
    root (``repo_root``), which every reader of a ``ParquetFiles`` path resolves it against."""
    import os

    if not feast_root or not repo_root or os.path.isabs(path) or "://" in path:
        return path
    if os.path.realpath(feast_root) == os.path.realpath(repo_root):
        return path
    return os.path.relpath(os.path.join(feast_root, path), repo_root)


def batch_path(path: str, repo_root: Optional[str]) -> str:
    """The ``ParquetFiles`` pattern of a FileSource's path: a directory (Feast reads every Parquet file under it,
    as a partitioned dataset) becomes ``<dir>/**/*.parquet``; a file or a glob stays as written."""
    import os

    resolved = os.path.join(repo_root, path) if repo_root and not os.path.isabs(path) else path
    if not any(ch in path for ch in "*?[") and os.path.isdir(resolved):
        return os.path.join(path.rstrip("/\\") or path, "**", "*.parquet")
    return path


def parquet_types(path: str, repo_root: Optional[str]) -> Dict[str, str]:
    """Column types of a FileSource's Parquet file(s), as Feast itself infers them (None: a column of a type
    no store holds); {} when unreadable."""
    import glob
    import os

    if repo_root and not os.path.isabs(path):
        path = os.path.join(repo_root, path)
    files = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    if files and os.path.isdir(files[0]):
        files = sorted(glob.glob(os.path.join(files[0], "**", "*.parquet"), recursive=True))
    if not files or not os.path.exists(files[0]):
        return {}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(files[0])
    except Exception:  # noqa: BLE001 - an unreadable file just gives no hints
        return {}
    out = {}
    for field in schema:
        ty = field.type
        if pa.types.is_string(ty) or pa.types.is_large_string(ty):
            out[field.name] = t.STRING
        elif pa.types.is_int64(ty) or pa.types.is_uint32(ty):
            out[field.name] = t.INT64
        elif pa.types.is_int32(ty) or pa.types.is_int16(ty) or pa.types.is_int8(ty):
            out[field.name] = t.INT32
        elif pa.types.is_float64(ty):
            out[field.name] = t.FLOAT64
        elif pa.types.is_float32(ty):
            out[field.name] = t.FLOAT32
        elif pa.types.is_boolean(ty):
            out[field.name] = t.BOOL
        elif pa.types.is_timestamp(ty):
            out[field.name] = t.TIMESTAMP
        elif pa.types.is_nested(ty):  # struct, map, list: a JSON value
            out[field.name] = t.JSON
        else:
            out[field.name] = None  # a column of a type no store holds: present, but no hint
    return out
