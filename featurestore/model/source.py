"""Sources: one logical event stream with a batch face (history) and a stream face (live events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional, Tuple, Union

from featurestore import dtypes
from featurestore.model.base import Definition, check_column_name
from featurestore.model.checks import Checks
from featurestore.model.durations import DurationLike, format_duration, parse_duration


@dataclass(frozen=True)
class ParquetFiles:
    """Batch face: Parquet files, a path or glob relative to the repo root (``data/tx/*.parquet``)."""

    path: str

    def __post_init__(self) -> None:
        checks = Checks()
        if not isinstance(self.path, str) or not self.path.strip():
            checks.add(f"ParquetFiles path: expected a non-empty path string, got {self.path!r}")
        checks.settle(self)

    def canonical(self) -> dict:
        return {"kind": "parquet", "path": self.path}


@dataclass(frozen=True)
class DuckDBTable:
    """Batch face: any DuckDB-readable relation, e.g. ``read_csv('tx.csv')`` or a table in ``database``."""

    relation: str
    database: Optional[str] = None

    def __post_init__(self) -> None:
        checks = Checks()
        if not isinstance(self.relation, str) or not self.relation.strip():
            checks.add(f"DuckDBTable relation: expected a non-empty string, got {self.relation!r}")
        checks.settle(self)

    def canonical(self) -> dict:
        return {"kind": "duckdb", "relation": self.relation, "database": self.database}


STREAM_FORMATS = ("json", "avro", "avro-confluent")
AVRO_FORMATS = ("avro", "avro-confluent")


@dataclass(frozen=True)
class KafkaTopic:
    """Stream face: a Kafka topic, one event per record: JSON (``format="json"``, the default) or Avro.

    ``format="avro"``: each record's value is one Avro datum, binary encoded (no container-file header),
    written with ``avro_schema`` (the writer schema: JSON text or a dict of an Avro record) or, when none is
    given, with the schema derived from the source's columns (:func:`featurestore.model.avro.derived_schema`:
    a record of nullable fields, the event time a ``long`` ``timestamp-millis``).
    ``format="avro-confluent"``: the same datum behind Confluent's wire-format header (magic byte 0, then the
    4-byte schema id); the schema is still the one given here (no registry is asked), and ``avro_schema_id``,
    when set, is the only id accepted (a record with another is a dead letter). docs/streaming.md has the
    type mapping and the dead-letter reasons.

    >>> KafkaTopic("tx", format="avro", avro_schema={"type": "record", "name": "Tx", "fields": [
    ...     {"name": "user_id", "type": "string"}, {"name": "amount", "type": ["null", "double"]},
    ...     {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})  # doctest: +ELLIPSIS
    KafkaTopic(topic='tx', format='avro', ...)

    ``bootstrap_servers`` defaults to the project config's Kafka address.
    """

    topic: str
    format: str = "json"
    bootstrap_servers: Optional[str] = None
    avro_schema: Optional[Union[str, Mapping]] = None
    avro_schema_id: Optional[int] = None

    def __post_init__(self) -> None:
        checks = Checks()
        if not isinstance(self.topic, str) or not self.topic.strip():
            checks.add(f"KafkaTopic topic: expected a non-empty topic name, got {self.topic!r}")
        if self.format not in STREAM_FORMATS:
            checks.add(f"KafkaTopic format: {self.format!r} is not one of {', '.join(STREAM_FORMATS)}")
        if self.avro_schema is not None:
            from featurestore.model.avro import AvroSchemaError, canonical_text

            if not self.is_avro:
                checks.add(f"KafkaTopic avro_schema: only for format 'avro' or 'avro-confluent', not {self.format!r}")
            try:
                object.__setattr__(self, "avro_schema", canonical_text(self.avro_schema))
            except AvroSchemaError as exc:
                checks.add(f"KafkaTopic avro_schema: {exc}")
                object.__setattr__(self, "avro_schema", None)
        if self.avro_schema_id is not None and (
                self.format != "avro-confluent" or isinstance(self.avro_schema_id, bool)
                or not isinstance(self.avro_schema_id, int) or not 0 <= self.avro_schema_id < 2 ** 31):
            checks.add(f"KafkaTopic avro_schema_id: a schema id (0 to 2^31-1) of format 'avro-confluent', "
                       f"got {self.avro_schema_id!r} with format {self.format!r}")
            object.__setattr__(self, "avro_schema_id", None)
        checks.settle(self)

    @property
    def is_avro(self) -> bool:
        """Records are Avro datums (``avro`` or ``avro-confluent``), not JSON."""
        return self.format in AVRO_FORMATS

    def canonical(self) -> dict:
        # The bootstrap address is where, not what: it does not change values. The Avro keys appear only when
        # set, so the fingerprints of JSON sources stay what they were.
        out = {"kind": "kafka", "topic": self.topic, "format": self.format}
        if self.avro_schema is not None:
            out["avro_schema"] = self.avro_schema
        if self.avro_schema_id is not None:
            out["avro_schema_id"] = self.avro_schema_id
        return out


BatchFace = Union[ParquetFiles, DuckDBTable]
StreamFace = KafkaTopic


def parse_schema(schema, checks: Checks, what: str) -> Tuple[Tuple[Tuple[str, str], ...], list]:
    """(the valid ``(column, canonical type)`` pairs, every column name written) of a schema given as a
    mapping or pairs; each problem is recorded in ``checks``, prefixed with ``what``."""
    if isinstance(schema, Mapping):
        schema = tuple(schema.items())
    try:
        items = [(str(c), d) for c, d in schema]
    except (TypeError, ValueError):
        checks.add(f"{what} schema: expected a mapping of column name to type")
        items = []
    else:
        if not items:
            checks.add(f"{what} schema: at least one column is required")
    pairs = []
    for c, d in items:
        dtype = checks.attempt(dtypes.normalize_dtype, d, f"{what} column {c!r}")
        if checks.attempt(check_column_name, c, f"{what} column") is not None and dtype is not None:
            pairs.append((c, dtype))
    names = [c for c, _ in items]
    if len(set(names)) != len(names):
        checks.add(f"{what} schema: duplicate column in {names}")
    return tuple(pairs), names


@dataclass(frozen=True, kw_only=True)
class Source(Definition):
    """An event stream: schema, event-time column, batch and stream faces, watermark delay.

    >>> Source(schema={"user_id": "string", "amount": "double", "ts": "timestamp"}, timestamp="ts",
    ...        batch=ParquetFiles("data/tx/*.parquet"), stream=KafkaTopic("tx"), watermark_delay="5s")
    ... # doctest: +ELLIPSIS
    Source(...)
    """

    schema: Tuple[Tuple[str, str], ...]
    timestamp: str
    batch: Optional[BatchFace] = None
    stream: Optional[StreamFace] = None
    watermark_delay: Union[int, DurationLike] = 0
    tiebreak: Tuple[str, ...] = ()

    KIND: ClassVar[str] = "source"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("schema", "timestamp", "batch", "stream", "tiebreak")
    META_FIELDS: ClassVar[Tuple[str, ...]] = ("description", "owner", "tags", "watermark_delay")

    def _check(self, checks: Checks) -> None:
        pairs, names = parse_schema(self.schema, checks, "source")
        if names and self.timestamp not in names:
            checks.add(f"source timestamp: column {self.timestamp!r} is not in the schema")
        elif dict(pairs).get(self.timestamp, dtypes.TIMESTAMP) != dtypes.TIMESTAMP:
            checks.add(f"source timestamp: column {self.timestamp!r} must have type timestamp")
        usable = len(pairs) == len(names) == len(set(names)) and dict(pairs).get(self.timestamp) == dtypes.TIMESTAMP
        if self.batch is not None and not isinstance(self.batch, (ParquetFiles, DuckDBTable)):
            checks.add(f"source batch: expected ParquetFiles or DuckDBTable, got {type(self.batch).__name__}")
        if self.stream is not None and not isinstance(self.stream, KafkaTopic):
            checks.add(f"source stream: expected KafkaTopic, got {type(self.stream).__name__}")
        if self.batch is None and self.stream is None:
            checks.add("source: give a batch face, a stream face, or both")
        delay = self.watermark_delay
        delay_ms = 0
        if delay not in (0, None, "0", "0s"):
            delay_ms = checks.attempt(parse_duration, delay, "source watermark_delay", fallback=0)
        tiebreak = (self.tiebreak,) if isinstance(self.tiebreak, str) else tuple(self.tiebreak or ())
        for c in tiebreak:
            if c not in names:
                checks.add(f"source tiebreak: column {c!r} is not in the schema")
        # An unusable schema is empty: the views reading this source are checked once it is fixed.
        self._set(schema=tuple(pairs) if usable else (), watermark_delay=delay_ms, tiebreak=tiebreak)

    @property
    def columns(self) -> dict:
        """Column name -> canonical type, in schema order."""
        return dict(self.schema)

    @property
    def order_columns(self) -> Tuple[str, ...]:
        """Event order (SPEC §2 ties): timestamp, tiebreak columns, then every other column."""
        rest = tuple(c for c, _ in self.schema if c != self.timestamp and c not in self.tiebreak)
        return (self.timestamp, *self.tiebreak, *rest)

    def describe_delay(self) -> str:
        return format_duration(self.watermark_delay) if self.watermark_delay else "0s"
