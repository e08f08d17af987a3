"""Avro stream faces: the writer schema of a source's records, and how each column is read from it.

A ``KafkaTopic(format="avro")`` record is one Avro datum in the binary encoding (no container file, no
header), written with the **writer schema**: the one given (``KafkaTopic(avro_schema=...)``, what Feast's
``AvroFormat(schema_json)`` carries) or, when none is given, the one derived from the source's schema by
:func:`derived_schema`. ``format="avro-confluent"`` is the same datum behind Confluent's wire-format header
(magic byte 0, a 4-byte big-endian schema id); the schema still comes from the definition (there is no
registry lookup), and ``avro_schema_id`` pins the id a record must carry.

The derived schema is a record named after the source with one field per column, in schema order, each
nullable (``["null", T]``, default null):

=============  =====================================================  ======================================
our dtype      derived Avro type                                      a given schema may also use
=============  =====================================================  ======================================
string         ``string``                                             ``enum`` (its symbol)
int32          ``int``                                                --
int64          ``long``                                               ``int``
float32        ``float``                                              --
float64        ``double``                                             ``int``, ``float`` (widened exactly)
bool           ``boolean``                                            --
timestamp      ``{"type": "long", "logicalType": "timestamp-millis"}``  ``long`` (epoch ms), ``timestamp-micros``,
(event time)                                                          ``timestamp-nanos`` (floored to ms)
timestamp      ``{"type": "long", "logicalType": "timestamp-micros"}``  ``long`` (epoch ms), ``timestamp-millis``,
(other)                                                               ``timestamp-nanos`` (floored to us)
json           not readable from an Avro stream face yet                --
=============  =====================================================  ======================================

A field may be ``T`` or a union of ``"null"`` and ``T`` (either order); other unions, a column the record
lacks, or a type outside the table are problems of the streaming job (``featurestore plan`` reports them
with the source and the column; a backfill from the batch face does not need the topic). Fields the source does not
declare are decoded (a record must be well-formed to its end) and ignored. Float NaN is null at ingestion
(:mod:`featurestore.semantics`); infinities are values, as in a Parquet batch face.

Pure Python, no Avro library: the streaming job decodes with ``ParseAvroRecord`` (Java); tests produce with
``fastavro``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from featurestore import dtypes as t

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
# our dtype -> the Avro type of a derived schema, and the (plain) Avro types a given schema may use
DERIVED = {t.STRING: "string", t.INT32: "int", t.INT64: "long", t.FLOAT32: "float", t.FLOAT64: "double",
           t.BOOL: "boolean"}
ACCEPTED = {t.STRING: ("string", "enum"), t.INT32: ("int",), t.INT64: ("int", "long"), t.FLOAT32: ("float",),
            t.FLOAT64: ("int", "float", "double"), t.BOOL: ("boolean",)}
# the event time's logical type -> the unit of its long (a plain long is epoch milliseconds)
TIME_UNITS = {None: "ms", "timestamp-millis": "ms", "timestamp-micros": "us", "timestamp-nanos": "ns"}


class AvroSchemaError(ValueError):
    """A writer schema that is not usable (not JSON, not a record, or not the source's columns)."""


def parse_schema_text(schema: Any) -> dict:
    """A given writer schema (JSON text or an already-parsed dict) as a dict; it must be a record."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise AvroSchemaError(f"not JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise AvroSchemaError("must be an Avro record schema ({\"type\": \"record\", \"fields\": [...]})")
    fields = schema.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str)
                                               and "type" in f for f in fields):
        raise AvroSchemaError("its 'fields' must be a list of {\"name\": ..., \"type\": ...}")
    if not isinstance(schema.get("name"), str):
        raise AvroSchemaError("a record needs a 'name'")
    return schema


def canonical_text(schema: Any) -> str:
    """The writer schema as compact JSON text with sorted keys (what the fingerprint and the job carry)."""
    return json.dumps(parse_schema_text(schema), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derived_schema(source) -> dict:
    """The writer schema of a source without a given one (see the module's table)."""
    fields = []
    for name, dtype in source.schema:
        if name == source.timestamp:
            typ: Any = {"type": "long", "logicalType": "timestamp-millis"}
        elif dtype == t.TIMESTAMP:  # a timestamp value (a created column): microseconds, as the backfill keeps
            typ = {"type": "long", "logicalType": "timestamp-micros"}
        elif dtype in DERIVED:
            typ = DERIVED[dtype]
        else:
            continue  # json columns: refused by the streaming job's checks
        fields.append({"name": name, "type": ["null", typ], "default": None})
    return {"type": "record", "name": source.name or "event", "namespace": "featurestore", "fields": fields}


def writer_schema(source) -> dict:
    """The schema a source's Avro records are written with: the given one, else the derived one."""
    given = getattr(source.stream, "avro_schema", None)
    return parse_schema_text(given) if given is not None else derived_schema(source)


def _branch(typ: Any) -> Tuple[Any, bool]:
    """(the non-null type of a field, whether it may be null); raises for other unions."""
    if isinstance(typ, list):
        rest = [x for x in typ if x != "null"]
        if len(rest) != 1 or len(typ) > 2:
            raise AvroSchemaError(f"a union other than [\"null\", T] ({json.dumps(typ)})")
        return rest[0], len(typ) == 2
    return typ, typ == "null"


def _kind(typ: Any) -> Tuple[Optional[str], Optional[str]]:
    """(the Avro type name, its logical type) of a non-union type."""
    if isinstance(typ, dict):
        return typ.get("type") if isinstance(typ.get("type"), str) else None, typ.get("logicalType")
    if isinstance(typ, str):
        return typ, None
    return None, None


def _named_types(schema: dict) -> Dict[str, Any]:
    """Every named type (record, enum, fixed) defined in a schema, by full and short name: a field may refer
    to one by name."""
    out: Dict[str, Any] = {}

    def walk(node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x, namespace)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "error", "enum", "fixed") and isinstance(node.get("name"), str):
                name = node["name"]
                namespace = name.rpartition(".")[0] or node.get("namespace") or namespace
                short = name.rpartition(".")[2]
                out[short] = node
                out[f"{namespace}.{short}" if namespace else short] = node
            for f in node.get("fields", []) if isinstance(node.get("fields"), list) else []:
                walk(f.get("type") if isinstance(f, dict) else None, namespace)
            for key in ("items", "values"):
                walk(node.get(key), namespace)
            if isinstance(node.get("type"), (dict, list)):
                walk(node["type"], namespace)

    walk(schema, schema.get("namespace") or "")
    return out


def _describe(typ: Any) -> str:
    kind, logical = _kind(typ)
    return f"{kind} ({logical})" if logical else (kind or json.dumps(typ))


def column_readers(source) -> Dict[str, str]:
    """Column -> how its value is read: a timestamp column's unit (``ms``/``us``/``ns``: the event time's and
    any other's), else the Avro type name (``string``, ``enum``, ``int``, ...). Raises AvroSchemaError naming the first column that cannot be read."""
    readers, found = _readers(source)
    if found:
        raise AvroSchemaError(found[0])
    return readers


def _readers(source) -> Tuple[Dict[str, str], List[str]]:
    """(the readers of the columns that can be read, a problem per column that cannot)."""
    schema = writer_schema(source)
    named = _named_types(schema)
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    out: Dict[str, str] = {}
    found: List[str] = []
    for name, dtype in source.schema:
        if dtype not in ACCEPTED and dtype != t.TIMESTAMP:
            continue  # json columns: refused by the streaming job's checks
        if name not in fields:
            found.append(f"column {name!r} is not a field of the Avro record {schema['name']!r} "
                         f"(fields: {', '.join(fields) or 'none'})")
            continue
        try:
            typ, _nullable = _branch(fields[name])
        except AvroSchemaError as exc:
            found.append(f"column {name!r}: {exc}")
            continue
        typ = named.get(typ, typ) if isinstance(typ, str) else typ
        kind, logical = _kind(typ)
        if name == source.timestamp:
            if kind != "long" or logical not in TIME_UNITS:
                found.append(f"event time {name!r} is Avro {_describe(typ)}; expected long (epoch milliseconds) "
                             "or long timestamp-millis/-micros/-nanos")
            else:
                out[name] = TIME_UNITS[logical]
        elif dtype == t.TIMESTAMP:
            if kind != "long" or logical not in TIME_UNITS:
                found.append(f"column {name!r} (timestamp) is Avro {_describe(typ)}; expected long (epoch "
                             "milliseconds) or long timestamp-millis/-micros/-nanos")
            else:
                out[name] = TIME_UNITS[logical]
        elif kind not in ACCEPTED[dtype] or (logical is not None and kind != "string"):  # string: uuid
            found.append(f"column {name!r} ({dtype}) is Avro {_describe(typ)}; expected {' or '.join(ACCEPTED[dtype])}")
        else:
            out[name] = kind
    return out, found


def problems(source) -> List[str]:
    """Why a source's Avro stream face cannot be read (empty when it can, or when it is not Avro)."""
    if source.stream is None or not source.stream.is_avro:
        return []
    return [f"source '{source.name}': Avro writer schema: {p}" for p in _readers(source)[1]]


__all__ = ["AvroSchemaError", "derived_schema", "writer_schema", "column_readers", "canonical_text", "problems"]
