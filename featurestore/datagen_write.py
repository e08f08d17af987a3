"""Where generated transactions go (:mod:`featurestore.datagen`): Parquet files of the batch face and a
Kafka topic of the stream face."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.datagen_events import (ARROW_TYPES, COLUMNS, DEFAULT_DAYS, DEFAULT_EVENTS, DEFAULT_MAX_DELAY_MS,
                                         DEFAULT_MERCHANTS, DEFAULT_SEED, DEFAULT_USERS, PROGRESS_THRESHOLD,
                                         TIMESTAMP_COLUMN, _seed, generate_transactions, out_of_order)
from featurestore.datagen_records import iter_json_records, malformed_count, malformed_records
from featurestore.errors import FeatureStoreError

# -- batch face --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_parquet` wrote: the directory, valid rows, Parquet files, and how many
    malformed records go with the same data on the stream (not in the files: Parquet is typed)."""

    path: Path
    rows: int
    files: int
    malformed: int


def _arrow_table(df: pd.DataFrame, columns: Mapping[str, str]) -> pa.Table:
    arrays, fields = [], []
    for name, dtype in columns.items():
        s = df[name]
        if dtype == "timestamp":
            s = pd.Series(pd.to_datetime(s, utc=True)).dt.floor("us")
        typ = ARROW_TYPES[dtype]
        arr = pa.array(s, from_pandas=True)
        arrays.append(arr.cast(typ) if arr.type != typ else arr)
        fields.append(pa.field(name, typ, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_parquet(
    path: Union[str, os.PathLike],
    events: int = DEFAULT_EVENTS,
    users: int = DEFAULT_USERS,
    merchants: int = DEFAULT_MERCHANTS,
    days: float = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    *,
    end: Any = None,
    files: int = 4,
    df: Optional[pd.DataFrame] = None,
) -> WriteResult:
    """Write :func:`generate_transactions` (or ``df``) as ``part-00000.parquet``... into the directory
    ``path`` (created), ``files`` files of consecutive rows (by time), ``ts`` as ``timestamp[us, UTC]``.

    Each file is written under a temporary name and moved into place with ``os.replace``; afterwards
    ``part-*.parquet`` files of an earlier run that are not part of this one are removed, so a rerun
    leaves exactly this data. ``malformed`` in the result is :func:`malformed_count` of the rows: the
    malformed records the stream carries with the same data, held back from the (typed) files."""
    if int(files) != files or files < 1:
        raise FeatureStoreError(f"files: expected a whole number >= 1, got {files!r}")
    if df is None:
        df = generate_transactions(events, users, merchants, days, seed, end=end)
    else:
        df = df.sort_values([TIMESTAMP_COLUMN, "event_id"], kind="stable").reset_index(drop=True)
    out_dir = Path(path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FeatureStoreError(f"cannot write Parquet files into {out_dir}: it is not a directory") from None
    table = _arrow_table(df, COLUMNS)
    rows = table.num_rows
    n_files = max(1, min(int(files), rows))
    bounds = np.linspace(0, rows, n_files + 1).astype(int)
    written = []
    for i in range(n_files):
        final = out_dir / f"part-{i:05d}.parquet"
        tmp = out_dir / f".part-{i:05d}.parquet.tmp-{os.getpid()}"
        try:
            pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), tmp, compression="zstd")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final.name)
    for old in out_dir.glob("part-*.parquet"):
        if old.name not in written:
            old.unlink(missing_ok=True)
    for stale in out_dir.glob(".part-*.parquet.tmp-*"):
        stale.unlink(missing_ok=True)
    return WriteResult(path=out_dir, rows=rows, files=n_files, malformed=malformed_count(rows))


# -- stream face -------------------------------------------------------------------------------------


def _resolve_stream(target: Any, source: Any, topic: Optional[str]) -> Tuple[str, str, str, Sequence[str], int]:
    """(bootstrap, topic, timestamp column, schema columns, watermark delay ms) from a store-like object
    or an address (no source: the transactions schema, no watermark delay known = 0)."""
    if isinstance(source, str):
        repo = getattr(target, "repo", None)
        if repo is None or source not in repo.sources:
            raise FeatureStoreError(f"source {source!r} not found")
        source = repo.sources[source]
    if source is None and hasattr(target, "repo"):
        sources = target.repo.sources
        if "transactions" not in sources:
            raise FeatureStoreError("no source named 'transactions' in the definitions: pass source=")
        source = sources["transactions"]
    ts_column, schema, watermark_ms = TIMESTAMP_COLUMN, tuple(COLUMNS), 0
    stream_bootstrap = None
    if source is not None:
        stream = getattr(source, "stream", None)
        if stream is None:
            raise FeatureStoreError(f"source {getattr(source, 'name', '?')!r} has no stream face (KafkaTopic)")
        topic = topic or stream.topic
        stream_bootstrap = getattr(stream, "bootstrap_servers", None)
        ts_column = source.timestamp
        schema = tuple(source.columns)
        watermark_ms = int(getattr(source, "watermark_delay", 0) or 0)
    if isinstance(target, str):
        bootstrap = target
    else:
        bootstrap = stream_bootstrap or getattr(getattr(target, "config", None), "kafka_bootstrap", None)
    if not bootstrap:
        raise FeatureStoreError("no Kafka address: pass a bootstrap string or a store with config.kafka_bootstrap")
    if not topic:
        raise FeatureStoreError("no Kafka topic: pass a source with a stream face or topic=")
    return bootstrap, topic, ts_column, schema, watermark_ms


def produce_kafka(
    target: Any,
    source: Any = None,
    df: Optional[pd.DataFrame] = None,
    *,
    events: int = DEFAULT_EVENTS,
    users: int = DEFAULT_USERS,
    merchants: int = DEFAULT_MERCHANTS,
    days: float = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: Any = None,
    include_malformed: bool = True,
    late_fraction: float = 0.05,
    max_delay_ms: Optional[int] = None,
    topic: Optional[str] = None,
    progress: Optional[bool] = None,
    producer_config: Optional[Mapping[str, Any]] = None,
    flush_timeout: float = 120.0,
) -> int:
    """Produce the events to Kafka as JSON (:func:`to_json_record`; an Avro stream face: the datum of its writer
    schema, :func:`featurestore.push.avro.keyed_records`), key = ``user_id``, in the
    :func:`out_of_order` arrival order, with :func:`malformed_count` malformed payloads interleaved at
    seeded positions (unkeyed). Returns the number of records delivered (events + malformed).

    ``target``: a FeatureStore-like object (``.config.kafka_bootstrap``, ``.repo.sources``) or a
    bootstrap address. ``source``: a Source (or its name in ``target.repo``); its stream face gives the
    topic (and its ``bootstrap_servers``, when set, wins over the config); default: the repo's
    ``transactions`` source. ``df``: events to send instead of generating them from the other arguments.
    ``max_delay_ms``: how late a late event may be; default the source's ``watermark_delay`` (5 s when
    unknown), so a correct streaming job drops none; pass more to test late-data handling.
    ``progress``: a tqdm bar on stderr; default: when more than 100k records."""
    from featurestore.extras import require

    require("confluent_kafka", "producing to Kafka")
    from featurestore.logs import kafka_logger
    from confluent_kafka import KafkaException, Producer

    bootstrap, topic, ts_column, schema, watermark_ms = _resolve_stream(target, source, topic)
    if max_delay_ms is None:
        max_delay_ms = watermark_ms or DEFAULT_MAX_DELAY_MS
    if df is None:
        df = generate_transactions(events, users, merchants, days, seed, end=end)
    arrival = out_of_order(df, seed, fraction=late_fraction, max_delay_ms=max_delay_ms, ts_column=ts_column)
    bad = malformed_records(malformed_count(len(df)), seed) if include_malformed else []
    total = len(arrival) + len(bad)
    rng = np.random.default_rng(np.random.SeedSequence([_seed(seed), 0x1E7]))
    bad_at = set(rng.choice(total, size=len(bad), replace=False).tolist()) if bad else set()

    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # retries never reorder or duplicate within a partition
        "linger.ms": 20,
        "compression.type": "lz4",
        "message.timeout.ms": 60_000,
        "client.id": "featurestore-datagen",
        "logger": kafka_logger(),
    }
    config.update(producer_config or {})
    errors: List[str] = []
    delivered = 0

    def on_delivery(err, _msg):
        nonlocal delivered
        if err is not None:
            errors.append(str(err))
        else:
            delivered += 1

    try:
        producer = Producer(config)
        producer.list_topics(timeout=10)  # fail fast when the broker is unreachable
    except KafkaException as exc:
        raise FeatureStoreError(f"cannot reach Kafka at {bootstrap}: {exc}") from None

    def send(key: Optional[str], value: bytes) -> None:
        k = key.encode("utf-8") if key is not None else None
        while True:
            try:
                producer.produce(topic, value=value, key=k, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)

    from tqdm import tqdm

    show = total > PROGRESS_THRESHOLD if progress is None else progress
    bar = tqdm(total=total, unit="rec", desc=f"producing to {topic}", file=sys.stderr, disable=not show)
    repo_sources = getattr(getattr(target, "repo", None), "sources", {})
    face = source if source is None or not isinstance(source, str) else repo_sources.get(source)
    face = repo_sources.get("transactions") if source is None else face
    if getattr(getattr(face, "stream", None), "is_avro", False):  # the datum of its writer schema
        from featurestore.push.avro import keyed_records

        records = keyed_records(arrival, face)
    else:
        records = iter_json_records(arrival, ts_column=ts_column, schema=schema)
    bad_iter = iter(bad)
    try:
        for i in range(total):
            if i in bad_at:
                send(None, next(bad_iter))
            else:
                send(*next(records))
            if i % 1000 == 999:
                producer.poll(0)
                bar.update(1000)
        bar.update(total - bar.n)
        left = producer.flush(flush_timeout)
    finally:
        bar.close()
    if left or errors:
        first = f": {errors[0]}" if errors else ""
        raise FeatureStoreError(f"Kafka at {bootstrap}: {left + len(errors)} of {total} records to topic "
                                f"{topic!r} were not delivered{first}")
    return delivered
