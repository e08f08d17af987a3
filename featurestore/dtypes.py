"""Column types a definition can declare, with the aliases people actually write."""

from __future__ import annotations

from featurestore.errors import DefinitionError

STRING, INT32, INT64, FLOAT32, FLOAT64, BOOL, TIMESTAMP, JSON = (
    "string",
    "int32",
    "int64",
    "float32",
    "float64",
    "bool",
    "timestamp",
    "json",
)
# ``json``: any JSON value (a map, struct, array or JSON document), held as its JSON text in every store and
# job (a string everywhere), so both paths carry it unchanged. A batch column of a nested Parquet type (struct,
# map, list) is read as ``to_json`` of it; a text column as the text. Only ``Latest`` reads it.
DTYPES = (STRING, INT32, INT64, FLOAT32, FLOAT64, BOOL, TIMESTAMP, JSON)
NUMERIC = frozenset({INT32, INT64, FLOAT32, FLOAT64})
INTEGER = frozenset({INT32, INT64})
FLOAT_EXACT_INT = 2**53  # every integer of at most this magnitude is exactly a float64 (and beyond, not every one)
JOIN_KEY_TYPES = frozenset({STRING, INT64, INT32})

# each type's DuckDB type (the backfill, the point-in-time joins and the expression checks cast to these)
DUCKDB_TYPES = {
    STRING: "VARCHAR",
    INT32: "INTEGER",
    INT64: "BIGINT",
    FLOAT32: "FLOAT",
    FLOAT64: "DOUBLE",
    BOOL: "BOOLEAN",
    TIMESTAMP: "TIMESTAMPTZ",
    JSON: "VARCHAR",  # JSON text
}

_ALIASES = {
    "str": STRING,
    "varchar": STRING,
    "text": STRING,
    "int": INT64,
    "bigint": INT64,
    "long": INT64,
    "integer": INT32,
    "int": INT64,
    "float": FLOAT64,
    "double": FLOAT64,
    "real": FLOAT32,
    "boolean": BOOL,
    "datetime": TIMESTAMP,
    "timestamptz": TIMESTAMP,
    "timestamp_ms": TIMESTAMP,
    "map": JSON,
    "struct": JSON,
    "array": JSON,
    "list": JSON,
}


def normalize_dtype(name: str, what: str = "type") -> str:
    """Canonical type name for ``name`` (``"double"`` -> ``"float64"``), or a DefinitionError."""
    if not isinstance(name, str):
        raise DefinitionError(f"{what}: expected a type name string, got {name!r}")
    key = name.strip().lower()
    if key in DTYPES:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise DefinitionError(f"{what}: unknown type {name!r}; use one of {', '.join(DTYPES)}")


_ARROW: dict = {}


def arrow_type(dtype: str):
    """The Arrow type holding values of a declared type exactly (timestamps: microseconds, UTC)."""
    if not _ARROW:  # built once: online lookups ask for these per value column
        import pyarrow as pa

        _ARROW.update({STRING: pa.string(), INT32: pa.int32(), INT64: pa.int64(), FLOAT32: pa.float32(),
                       FLOAT64: pa.float64(), BOOL: pa.bool_(), TIMESTAMP: pa.timestamp("us", tz="UTC"),
                       JSON: pa.string()})
    return _ARROW[dtype]
