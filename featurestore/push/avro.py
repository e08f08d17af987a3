"""Pushed rows of a source with an Avro stream face: each row as the Avro datum the streaming job reads.

The row is encoded with the source's writer schema (featurestore/model/avro.py: given or derived) in
Avro's binary encoding, behind Confluent's header (magic byte 0, the pinned ``avro_schema_id``) for
``format="avro-confluent"``. The event time goes in the writer field's unit (ms, us or ns: from the
value's microseconds, floored), and so does any other timestamp column (its derived field is
``timestamp-micros``: nothing is lost); a writer field the rows do not hold takes its schema default. Unlike a
JSON record, an Avro datum cannot carry a value of another type (a text in a number column), so such a
row is a one-line error naming the row and column, and nothing is produced.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from featurestore import dtypes as t
from featurestore import semantics
from featurestore.errors import RequestError

_UNIT_FROM_US = {"ms": lambda us: us // 1000, "us": lambda us: us, "ns": lambda us: us * 1000}


def _value(v: Any, kind: str) -> Any:
    """A pushed value as fastavro writes it into a field of Avro type ``kind``; ValueError when it is not one."""
    if isinstance(v, np.generic):
        v = v.item()
    if kind in ("int", "long") and (isinstance(v, bool) or not isinstance(v, int)):
        raise ValueError(f"{v!r} is not an integer")
    if kind in ("float", "double") and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ValueError(f"{v!r} is not a number")
    if kind == "boolean" and not isinstance(v, bool):
        raise ValueError(f"{v!r} is not a boolean")
    if kind in ("string", "enum") and not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return float(v) if kind in ("float", "double") else v


def records(source, rows: Any) -> List[bytes]:
    """The Avro record (bytes) of each pushed row."""
    from featurestore.extras import require
    from featurestore.model import avro
    from featurestore.push.rows import _null, columns_of, time_us

    what = f"push to source '{source.name}'"
    fastavro = require("fastavro", f"{what} (an Avro stream face)")
    stream = source.stream
    if stream.format == "avro-confluent" and stream.avro_schema_id is None:
        raise RequestError(f"{what}: its stream face is avro-confluent without avro_schema_id; set the id the "
                           "writer schema has in your registry to push Confluent-framed records")
    try:
        readers = avro.column_readers(source)
    except avro.AvroSchemaError as exc:
        raise RequestError(f"{what}: Avro writer schema: {exc}") from None
    schema = fastavro.parse_schema(avro.writer_schema(source))
    times = {c for c, dtype in source.schema if dtype == t.TIMESTAMP and c != source.timestamp}
    header = b"\x00" + struct.pack(">i", stream.avro_schema_id) if stream.format == "avro-confluent" else b""
    cols = columns_of(rows)
    n = len(next(iter(cols.values()), []))
    out = []
    for i in range(n):
        rec = {}
        for c, kind in readers.items():
            if c not in cols or _null(cols[c][i]):
                rec[c] = None
                continue
            try:
                if c == source.timestamp:
                    rec[c] = _UNIT_FROM_US[kind](time_us(cols[c][i]))
                elif c in times:  # a timestamp value: in its field's unit, years 1 to 9999 as in every path
                    us = time_us(cols[c][i])
                    if not semantics.time_value_supported(us):
                        raise ValueError(f"{cols[c][i]!r} is outside years 1 to 9999")
                    rec[c] = _UNIT_FROM_US[kind](us)
                else:
                    rec[c] = _value(cols[c][i], kind)
            except (ValueError, TypeError, OverflowError) as exc:
                why = f"not a time: {cols[c][i]!r}" if c == source.timestamp else f"not Avro {kind}: {exc}"
                raise RequestError(f"{what}: row {i}, column '{c}': {why}") from None
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, schema, rec)
        except (ValueError, TypeError, OverflowError) as exc:
            raise RequestError(f"{what}: row {i}: cannot be written with the Avro writer schema ({exc})") from None
        out.append(header + buf.getvalue())
    return out


def keyed_records(df, source, chunk: int = 10_000) -> Iterator[Tuple[Optional[str], bytes]]:
    """(user_id, Avro payload) for every row of ``df`` in its order, a chunk of rows at a time: what
    ``featurestore generate --kafka`` produces to an Avro face (:func:`featurestore.datagen.produce_kafka`)."""
    from featurestore.push.rows import _null

    for start in range(0, len(df), chunk):
        part = df.iloc[start:start + chunk]
        users = part["user_id"].tolist() if "user_id" in part.columns else [None] * len(part)
        for user, value in zip(users, records(source, part)):
            yield (None if _null(user) else str(user)), value


__all__ = ["records", "keyed_records"]
