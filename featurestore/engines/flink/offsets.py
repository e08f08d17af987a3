"""The streaming job's progress in Kafka: the topics' end offsets, the consumer group's committed offsets
(Flink commits a snapshot's offsets when it completes), where a run starts, and the reset of the group
for a run that starts afresh. Used by the runs (:mod:`.stream`, :mod:`.handle`, :mod:`.remote`), the
committer's lag figures and ``featurestore monitor``."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Dict, Sequence

from featurestore.errors import InfraError
from featurestore.logs import kafka_logger

log = logging.getLogger("featurestore.streaming")


def end_offsets(bootstrap: str, topics: Sequence[str], timeout: float = 10) -> Dict[tuple, tuple]:
    """(topic, partition) -> (low, high) watermark offsets right now."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"featurestore-probe-{uuid.uuid4().hex[:8]}",
                         "logger": kafka_logger(),
                         "enable.auto.commit": False})
    try:
        out = {}
        meta = consumer.list_topics(timeout=timeout)
        for topic in topics:
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                continue  # not created yet: nothing to read
            for p in tmeta.partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        return out
    except KafkaException as exc:
        raise InfraError(f"cannot reach Kafka at {bootstrap}: {exc} (run bash infra/up.sh)") from None
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, partitions: Sequence[tuple], timeout: float = 10) -> Dict[tuple, int]:
    """(topic, partition) -> the group's committed offset (negative: none committed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "logger": kafka_logger()})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}
    finally:
        consumer.close()


def caught_up(bootstrap: str, group: str, ends: Dict[tuple, tuple]) -> bool:
    todo = [tp for tp, (low, high) in ends.items() if high > low]
    if not todo:
        return True
    got = committed(bootstrap, group, todo)
    return all(got.get(tp, -1) >= ends[tp][1] for tp in todo)


def start_positions(bootstrap: str, group: str, ends: Dict[tuple, tuple], restored) -> Dict[tuple, int]:
    """Where a run starts reading each partition: the earliest offset (``scan.startup.mode``), or, when it
    restores a snapshot, the group's committed offsets (Flink commits a snapshot's offsets when it
    completes; a commit lost in a crash makes this one checkpoint early)."""
    start = {tp: low for tp, (low, _high) in ends.items()}
    if restored and start:
        try:
            for tp, offset in committed(bootstrap, group, list(start)).items():
                start[tp] = max(start[tp], offset)
        except Exception as exc:  # only the status view's "consumed" count depends on it
            log.warning("could not read the committed offsets of %s: %s", group, exc)
    return start



def _coordinator_moving() -> tuple:
    from confluent_kafka import KafkaError

    return (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)


def forget_group(bootstrap: str, group: str, timeout: float = 10) -> None:
    """Delete the consumer group's committed offsets (none: nothing to do)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": kafka_logger()})
    deadline = time.monotonic() + 6 * timeout  # a broker just started has no group coordinator yet
    while True:
        try:
            admin.delete_consumer_groups([group], request_timeout=timeout)[group].result(timeout=timeout)
            return
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return
            error = exc.args[0] if exc.args else None
            transient = error is not None and (error.retriable() or error.code() in _coordinator_moving())
            if not transient or time.monotonic() > deadline:
                raise InfraError(f"cannot reset the consumer group {group} at {bootstrap}: {exc}") from None
            time.sleep(0.5)


__all__ = ["end_offsets", "committed", "caught_up", "start_positions", "forget_group"]
