"""Pushed rows of a source with a stream face: produced to its Kafka topic as the face's records (JSON here;
Avro in :mod:`featurestore.push.avro`).

Each row becomes one record exactly as ``featurestore generate --kafka`` writes events (the event time as
an integer of epoch milliseconds, any other timestamp as an ISO-8601 string in UTC to the microsecond,
``2026-03-01T12:00:00.123456Z``, numbers and booleans as JSON, missing values as null), so the streaming
job reads it like any record: its parse decides what is a dead letter, its filters and projections make
the events, its committers write each record once into both stores. A value JSON cannot carry (a time
that is not one, an infinite float, an object) is sent as its text, and the stream dead-letters the record
with its usual reason. ``push`` returns once the broker has acknowledged every record.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict

import numpy as np

from featurestore.errors import FeatureStoreError


def _json_value(v: Any) -> Any:
    from featurestore.push.rows import _null

    if _null(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def iso_us(us: int) -> str:
    """Epoch microseconds as the ISO-8601 text a JSON record carries a timestamp value in (UTC, six decimals);
    a time outside years 1 to 9999 as its integer text, which the stream dead-letters."""
    import datetime

    try:
        t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    except OverflowError:
        return str(us)
    return f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond:06d}Z"


def records(source, rows: Any):
    """The record of each pushed row (bytes): JSON, or the Avro datum of an Avro stream face
    (:mod:`featurestore.push.avro`)."""
    from featurestore.dtypes import JSON, TIMESTAMP
    from featurestore.push.rows import _null, _plain_json, columns_of, time_ms, time_us

    if source.stream.is_avro:
        from featurestore.push.avro import records as avro_records

        return avro_records(source, rows)

    types = dict(source.schema)
    cols = columns_of(rows)
    n = len(next(iter(cols.values()), []))
    order = [c for c, _ in source.schema if c in cols] + sorted(set(cols) - {c for c, _ in source.schema})
    out = []
    for i in range(n):
        rec: Dict[str, Any] = {}
        for c in order:
            v = cols[c][i]
            if c == source.timestamp:
                try:
                    rec[c] = None if _json_value(v) is None else time_ms(v)
                except (ValueError, TypeError, OverflowError):
                    rec[c] = _json_value(v)
            elif types.get(c) == TIMESTAMP:  # microseconds, as the batch face and push keep them
                try:
                    rec[c] = None if _json_value(v) is None else iso_us(time_us(v))
                except (ValueError, TypeError, OverflowError):
                    rec[c] = _json_value(v)
            elif types.get(c) == JSON:  # a JSON value: the object / array itself, or a string of JSON text
                rec[c] = None if _null(v) else (v if isinstance(v, str) else _plain_json(v))
            else:
                rec[c] = _json_value(v)
        out.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))
    return out


def produce(store, source, rows: Any):
    """Produce the rows to ``source``'s topic; a :class:`~featurestore.push.PushResult` with the offsets."""
    from featurestore.extras import require

    require("confluent_kafka", f"push to the streamed source '{source.name}'")
    from confluent_kafka import KafkaException, Producer

    from featurestore.logs import kafka_logger
    from featurestore.push import PushResult

    payloads = records(source, rows)
    bootstrap = source.stream.bootstrap_servers or store.config.kafka_bootstrap
    result = PushResult(source.name, "online_and_offline", len(payloads), len(payloads), topic=source.stream.topic)
    if not payloads:
        return result
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            p = msg.partition()
            result.offsets[p] = max(result.offsets.get(p, -1), msg.offset())

    try:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "logger": kafka_logger(),
                             "socket.connection.setup.timeout.ms": 5000, "message.timeout.ms": 30000})
        for payload in payloads:
            while True:
                try:
                    producer.produce(source.stream.topic, value=payload, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
        left = producer.flush(60)
    except KafkaException as exc:
        raise FeatureStoreError(f"push to source '{source.name}': cannot reach Kafka at {bootstrap}: {exc}") from None
    if errors or left:
        raise FeatureStoreError(f"push to source '{source.name}': Kafka did not take {len(errors) + left} of "
                                f"{len(payloads)} records ({(errors or ['timed out'])[0]})")
    return result


__all__ = ["produce", "records", "iso_us"]
