"""Serving logs in Kafka: a feature service with ``LoggingConfig(destination="kafka")`` (SPEC §7).

The same records as the Redis Streams path (:mod:`featurestore.serving_log`), in another durable place:

1. **Log.** A logged lookup produces its record to the topic ``fs_<project>__log_<stream>`` (keyed by request
   id, so every lookup of one request id lands on one partition, in order) with an idempotent producer, and
   returns once Kafka has acknowledged it (``acks=all``): a lookup never returns unlogged.
2. **Ship.** :func:`ship` copies each partition's records into the same offline log table the Redis path
   writes, exactly once whatever runs concurrently or dies: the table records, per partition, the offset of
   the last record it holds (its ``seq`` for the app ``ship:kafka:<topic>:<partition>``); a round reads the
   records after it and appends them on the condition that the position has not moved (compare-and-set,
   ``OfflineTable.append(after_seq=...)``). Kafka keeps the records (its retention); nothing is trimmed.
   A record's ``stream_id`` in the table is ``<partition>-<offset>``. Every stream's topic is shipped, whatever
   its service logs to today (a service switched to Redis Streams leaves records in its topic), and a position
   belongs to one incarnation of the topic (its Kafka topic id is in the app id: a topic deleted and created
   again starts at offset 0 and is shipped from there).
"""

from __future__ import annotations

import re
from typing import List, Optional

from featurestore.errors import InfraError

DESTINATION = "kafka"


def topic(project: str, stream: str) -> str:
    """The log topic of ``stream`` (a service's name); characters Kafka does not allow become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"fs_{project}__log_{stream}")


def uses_kafka(store, feature_service) -> bool:
    name = getattr(feature_service, "name", feature_service)
    service = store.repo.services.get(name) if name else None
    return service is not None and service.logging.destination == DESTINATION


def write(store, record) -> str:
    """Produce ``record`` (a :class:`featurestore.serving_log.LogRecord`); its ``<partition>-<offset>`` once
    Kafka acknowledged it. Kafka unreachable or refusing: an InfraError naming the address."""
    from featurestore.extras import require

    require("confluent_kafka", "log lookups to Kafka")
    from confluent_kafka import KafkaException, Producer

    from featurestore.logs import kafka_logger

    bootstrap = store.config.kafka_bootstrap
    producers = store.__dict__.setdefault("_log_producers", {})
    done, errors = [], []

    def delivered(err, msg):
        (errors.append(str(err)) if err is not None else done.append(f"{msg.partition()}-{msg.offset()}"))

    try:
        producer = producers.get(bootstrap)
        if producer is None:
            producer = producers[bootstrap] = Producer({
                "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 0,
                "logger": kafka_logger(), "socket.connection.setup.timeout.ms": 5000, "message.timeout.ms": 30000})
        _ensure_topic(store, bootstrap, topic(store.config.project, record.stream), record.stream)
        producer.produce(topic(store.config.project, record.stream), key=record.request_id.encode(),
                         value=record.fields["r"].encode(), on_delivery=delivered)
        producer.flush(60)
    except KafkaException as exc:
        raise InfraError(f"serving log: cannot reach Kafka at {bootstrap}: {exc} (run bash infra/up.sh)") from None
    if errors or not done:
        raise InfraError(f"serving log: Kafka at {bootstrap} did not take the record of request "
                         f"'{record.request_id}' ({(errors or ['timed out'])[0]})")
    return done[0]


def _ensure_topic(store, bootstrap: str, name: str, stream: str) -> None:
    """Once per process: note ``stream`` among those the shipper reads, and create its log topic (one
    partition, the broker's replication) when it is missing: a broker without automatic topic creation takes
    the first record too."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    known = store.__dict__.setdefault("_log_topics", set())
    if (bootstrap, name) in known:
        return
    store.online_store().client.sadd(streams_key(store.config.project), stream)  # shipped from now on
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000})
    meta = admin.list_topics(name, timeout=15).topics.get(name)
    if meta is None or meta.error is not None:
        future = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=-1)])[name]
        try:
            future.result(30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    known.add((bootstrap, name))


def streams_key(project: str) -> str:
    """The Redis set of the streams that ever logged to Kafka (written before their first record)."""
    return f"fs:{project}:_log_kafka_streams"


def ship(store, batch: int = 10_000) -> list:
    """Ship the log topic of every stream that logs to Kafka or ever did (a service switched to Redis Streams,
    or removed, leaves records in its topic) into its offline log table (see the module docstring)."""
    streams = {n for n, s in store.repo.services.items() if s.logging.destination == DESTINATION}
    streams |= {s.decode() for s in store.online_store().client.smembers(streams_key(store.config.project))}
    if not streams:
        return []
    existing = _topic_ids(store, [topic(store.config.project, s) for s in sorted(streams)])
    return [ship_topic(store, s, batch, topic_id=existing[topic(store.config.project, s)])
            for s in sorted(streams) if topic(store.config.project, s) in existing]


def _topic_ids(store, names: List[str]) -> dict:
    """``{topic: its Kafka topic id}`` of those of ``names`` that exist."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    bootstrap = store.config.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000})
    try:
        listed = admin.list_topics(timeout=15).topics
        present = [n for n in names if n in listed and listed[n].error is None]
        if not present:
            return {}
        return {n: str(f.result(15).topic_id) for n, f in admin.describe_topics(TopicCollection(present)).items()}
    except KafkaException as exc:
        raise InfraError(f"serving log: cannot reach Kafka at {bootstrap}: {exc} (run bash infra/up.sh)") from None


def ship_topic(store, stream: str, batch: int = 10_000, topic_id: Optional[str] = None):
    """Ship one stream's topic; ``topic_id``: its Kafka topic id (looked up when not given)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from featurestore.logs import kafka_logger
    from featurestore.serving_log import ShipResult, _rows, log_table
    from featurestore.stores.offline import CommitConflict

    name = topic(store.config.project, stream)
    table = log_table(store, stream)
    bootstrap = store.config.kafka_bootstrap
    if topic_id is None:
        topic_id = _topic_ids(store, [name]).get(name)
        if topic_id is None:  # nothing logged there yet
            return ShipResult(stream, 0, 0, table.version)
    entries = rows = conflicts = 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{name}__shipper", "enable.auto.commit": False,
                         "logger": kafka_logger(), "socket.connection.setup.timeout.ms": 5000})
    try:
        meta = consumer.list_topics(name, timeout=15).topics.get(name)
        if meta is None or meta.error is not None:  # deleted since
            return ShipResult(stream, 0, 0, table.version)
        for p in sorted(meta.partitions):
            app = f"ship:kafka:{name}:{topic_id}:{p}"
            while True:
                shipped = table.app_seq(app)
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=15)
                start = max(low, _start(table, name, p, shipped, high))
                if start >= high:
                    break
                got = _read(consumer, TopicPartition(name, p, start), min(batch, high - start))
                arrow = _rows([(f"{p}-{m.offset()}".encode(), {b"r": m.value()}) for m in got])
                try:
                    table.append(arrow, app_id=app, seq=got[-1].offset(), after_seq=shipped)
                except CommitConflict:
                    conflicts += 1
                    continue
                entries += len(got)
                rows += arrow.num_rows
    except KafkaException as exc:
        raise InfraError(f"serving log: cannot reach Kafka at {bootstrap}: {exc} (run bash infra/up.sh)") from None
    finally:
        consumer.close()
    return ShipResult(stream, entries, rows, table.version, conflicts)


def _start(table, name: str, partition: int, shipped: Optional[int], high: int) -> int:
    """The first offset of a partition not in the table. Tables shipped before positions named the topic id
    hold ``ship:kafka:<topic>:<partition>``: that position is taken over once, when it lies inside the topic
    (a position beyond the end belongs to a deleted incarnation: this one is shipped from its start)."""
    if shipped is not None:
        return shipped + 1
    legacy = table.app_seq(f"ship:kafka:{name}:{partition}")
    return legacy + 1 if legacy is not None and legacy < high else 0


def _read(consumer, position, n: int) -> List:
    """``n`` records of one partition from ``position`` (they exist: below the high watermark)."""
    from confluent_kafka import KafkaError, KafkaException

    consumer.assign([position])
    out = []
    misses = 0
    while len(out) < n:
        msgs = consumer.consume(n - len(out), timeout=5)
        if not msgs:
            misses += 1
            if misses > 12:  # a minute without the records below the watermark
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
            continue
        for m in msgs:
            if m.error() is not None:
                raise KafkaException(m.error())
            out.append(m)
    return out[:n]


__all__ = ["topic", "uses_kafka", "write", "ship", "ship_topic", "streams_key", "DESTINATION"]
