"""Each event once in an offline table (SPEC §5), without services: random interleavings of backfills
(``write_range``) and stream commits (``commit_stream``) from runs that continue, restart afresh or
re-read the topic, against a model: the rows of the batch face inside the backfilled ranges, the
streamed events outside them, each once. Also backfills and stream commits from two threads at once."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import OfflineStoreError
from featurestore.stores import offline_files
from featurestore.stores.offline import OfflineTable

T0 = 1772323200000  # 2026-03-01
DAY = 86_400_000
P, O = "__kafka_partition", "__kafka_offset"


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    monkeypatch.setattr(offline_files, "DURABLE", False)


def make_events(rng: random.Random, n: int, partitions: int = 3):
    """(id, ts ms, partition, offset) in arrival order: offsets consecutive per partition, times out of order."""
    out, next_offset = [], [0] * partitions
    for i in range(n):
        p = rng.randrange(partitions)
        ts = T0 + rng.randrange(0, 3 * DAY) if rng.random() < 0.9 else T0 + rng.choice([0, DAY, 2 * DAY])  # ties
        out.append((f"e{i}", ts, p, next_offset[p]))
        next_offset[p] += 1
    return out


def batch_table(events):
    return pa.table({"id": [e[0] for e in events],
                     "ts": pa.array([e[1] for e in events], pa.timestamp("ms", tz="UTC"))})


class Stream:
    """A streaming job's files: each run reads the topic in arrival order from the start (afresh) or from
    where it stopped (restored), and cuts its rows into files at random points, as checkpoints do."""

    def __init__(self, root: Path, rng: random.Random):
        self.root, self.rng, self.files, self.seq = root, rng, 0, 0

    def file(self, events) -> Path:
        self.files += 1
        path = self.root / f"part-{self.files}"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [e[0] for e in events],
                                 "ts": pa.array([e[1] for e in events], pa.timestamp("ms")),
                                 P: pa.array([e[2] for e in events], pa.int32()),
                                 O: pa.array([e[3] for e in events], pa.int64())}), path)
        return path

    def commit(self, table: OfflineTable, events, app: str, **kw):
        self.seq += 1
        files = []
        i = 0
        while i < len(events):  # files of consecutive records (a checkpoint's rows), sometimes empty
            if self.rng.random() < 0.1:
                files.append(self.file([]))
            j = i + self.rng.randint(1, 15)
            files.append(self.file(events[i:j]))
            i = j
        return table.commit_stream(files, app_id=app, seq=self.seq, topic="t", partition_column=P, offset_column=O,
                                   fingerprint=kw.pop("fingerprint", "fp"), **kw)


def rows(table: OfflineTable):
    t = table.read()
    return sorted(zip(t.column("id").to_pylist(), t.column("ts").cast(pa.int64()).to_pylist()))


def expected(events, batch_face, owned, streamed_ids):
    def in_owned(ts):
        return any(s <= ts < e for s, e in owned)

    out = [(e[0], e[1]) for e in batch_face if in_owned(e[1])]
    out += [(e[0], e[1]) for e in events if e[0] in streamed_ids and not in_owned(e[1])]
    return sorted(out)


# every seed on a local root; a few on an s3:// root too (the local S3 server of infra/s3.sh)
@pytest.mark.parametrize("where,seed", [("local", s) for s in range(25)] + [("s3", s) for s in range(3)])
def test_random_orders_of_backfills_streams_and_restarts_hold_each_event_once(tmp_path, request, where, seed):
    rng = random.Random(seed)
    events = make_events(rng, 120)
    cut = T0 + rng.randrange(0, 3 * DAY)
    batch_face = [e for e in events if e[1] < cut]  # the history; Kafka has every event
    root = tmp_path / "offline" if where == "local" else request.getfixturevalue("s3_root")
    table = OfflineTable(root, "v")
    stream = Stream(tmp_path / "staging", rng)
    owned: list = []
    streamed: set = set()
    read = 0  # records the current run has read (arrival order)
    run = 0
    for _ in range(rng.randint(3, 9)):
        op = rng.random()
        if op < 0.35:  # a backfill: a random range, or the whole batch face (no end: up to its last event)
            if rng.random() < 0.5:
                start = T0 + rng.randrange(-DAY, 3 * DAY)
                end = start + rng.randrange(1, 2 * DAY)
            else:
                start, end = -(2**62), None
            face = [e for e in batch_face if e[1] >= start and (end is None or e[1] < end)]
            table.write_range(batch_table(face), start, end)
            if end is None:
                end = max(e[1] for e in face) + 1 if face else start
            if start < end:
                owned.append((start, end))
        elif op < 0.55:  # the job starts afresh (restore=False, a new job): it re-reads from the first record
            run += 1
            read = 0
        else:  # the job reads on and the committer commits what it read
            more = rng.randint(0, 50)
            chunk = events[read:read + more]
            stream.commit(table, chunk, f"run{run}")
            read += len(chunk)
            streamed |= {e[0] for e in chunk}
    assert rows(table) == expected(events, batch_face, owned, streamed)


def test_a_changed_definition_rebuilds_the_streamed_rows_in_one_commit(tmp_path):
    rng = random.Random(7)
    events = make_events(rng, 90)
    cut = T0 + DAY
    table = OfflineTable(tmp_path / "offline", "v")
    stream = Stream(tmp_path / "staging", rng)
    table.write_range(batch_table([e for e in events if e[1] < cut]), -(2**62), cut)
    stream.commit(table, events, "run0")
    with pytest.raises(OfflineStoreError, match="streamed from topic 't' under definition fp, not 't' under fp2"):
        stream.commit(table, events, "run1", fingerprint="fp2")
    # the new definition keeps the even events: the rebuild replaces every row outside the backfilled range
    kept = [e for e in events if int(e[0][1:]) % 2 == 0]
    result = stream.commit(table, kept, "run1", fingerprint="fp2", rebuild=True)
    want = sorted([(e[0], e[1]) for e in events if e[1] < cut] + [(e[0], e[1]) for e in kept if e[1] >= cut])
    assert rows(table) == want and result.rows == sum(1 for e in kept if e[1] >= cut)
    assert table.manifest()["stream"]["fingerprint"] == "fp2"
    stream.commit(table, kept, "run2", fingerprint="fp2")  # another run afresh under it: nothing twice
    assert rows(table) == want


def test_backfills_and_stream_commits_from_two_threads(tmp_path):
    """The committer and a backfill commit at once (optimistic commits): a stream commit that loses
    re-filters its rows against the version that won, so each event is held once."""
    rng = random.Random(3)
    events = make_events(rng, 400)
    cut = T0 + 2 * DAY
    batch_face = [e for e in events if e[1] < cut]
    table = OfflineTable(tmp_path / "offline", "v")
    stream = Stream(tmp_path / "staging", rng)
    errors = []

    def backfills():
        try:
            for _ in range(8):
                table.write_range(batch_table(batch_face), -(2**62), None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=backfills)
    thread.start()
    for i in range(0, len(events), 20):
        stream.commit(table, events[i:i + 20], "run0")
    thread.join()
    assert not errors
    end = max(e[1] for e in batch_face) + 1
    assert rows(table) == expected(events, batch_face, [(-(2**62), end)], {e[0] for e in events})
    ops = [m["operation"] for m in table.history()]
    assert ops.count("write_range") == 8 and ops.count("stream") == 20


def test_a_stream_commit_that_loses_to_a_backfill_refilters_its_rows(tmp_path, monkeypatch):
    """A backfill commits between the moment a stream commit filtered its rows and the moment it writes
    its manifest: the stream commit re-bases on the backfill's version and drops the rows now owned."""
    rng = random.Random(11)
    events = make_events(rng, 100)
    batch_face = [e for e in events if e[1] < T0 + DAY]
    table = OfflineTable(tmp_path / "offline", "v")
    stream = Stream(tmp_path / "staging", rng)
    real = OfflineTable._write_manifest
    raced = []

    def backfill_first(self, version, manifest):
        if manifest["operation"] == "stream" and not raced:
            raced.append(version)
            table.write_range(batch_table(batch_face), -(2**62), None)  # takes this version number
        return real(self, version, manifest)

    monkeypatch.setattr(OfflineTable, "_write_manifest", backfill_first)
    stream.commit(table, events, "run0")
    assert raced == [1] and [m["operation"] for m in table.history()] == ["write_range", "stream"]
    end = max(e[1] for e in batch_face) + 1
    assert rows(table) == expected(events, batch_face, [(-(2**62), end)], {e[0] for e in events})


def test_files_of_two_runs_in_one_commit_add_each_record_once(tmp_path):
    """A committer that sees the leftover files of a run and those of the run that re-read the topic after
    it in one pass (e.g. an external committer, ``streaming.commit``): each record once."""
    rng = random.Random(5)
    events = make_events(rng, 80)
    table = OfflineTable(tmp_path / "offline", "v")
    stream = Stream(tmp_path / "staging", rng)
    files = [stream.file(events[:50]), stream.file(events[10:30]), stream.file(events)]
    table.commit_stream(files, app_id="c", seq=1, topic="t", fingerprint="fp", partition_column=P, offset_column=O)
    assert rows(table) == sorted((e[0], e[1]) for e in events)


@pytest.mark.parametrize("seed", range(6))
def test_an_open_ended_re_backfill_leaves_no_row_of_the_batch_face_it_replaced(tmp_path, seed):
    """The batch face's rows of a view shrink (its filter changed, or files went away): a backfill without
    end replaces every row the batch face owned from its start on, also after the new last row (before, the
    old rows there stayed, read as the new definition's), and the stream's rows between batch ranges stay.
    Random ranges (explicit ones beyond the face's end among them) and stream commits, against the model."""
    rng = random.Random(seed)
    events = make_events(rng, 150)
    cut = T0 + 2 * DAY + rng.randrange(0, DAY)
    face = [e for e in events if e[1] < cut]
    table = OfflineTable(tmp_path / "offline", "v")
    stream = Stream(tmp_path / "staging", rng)
    stream.commit(table, events[:60], "run0")
    owned = []
    for _ in range(rng.randint(1, 3)):  # explicit ranges, some past the face's last event
        start = T0 + rng.randrange(0, 3 * DAY)
        end = start + rng.randrange(1, DAY)
        table.write_range(batch_table([e for e in face if start <= e[1] < end]), start, end, rows_key="k1")
        owned.append((start, end))
    table.write_range(batch_table(face), -(2**62), None, rows_key="k1")
    owned.append((-(2**62), max(e[1] for e in face) + 1))
    stream.commit(table, events[60:], "run0")
    assert rows(table) == expected(events, face, owned, {e[0] for e in events})
    # the face keeps a random third of its rows, none after a new, earlier last one
    last = sorted(e[1] for e in face)[len(face) // 2]
    face = [e for e in face if e[1] <= last and rng.random() < 0.35]
    table.write_range(batch_table(face), -(2**62), None, rows_key="k2")
    assert rows(table) == expected(events, face, owned, {e[0] for e in events})
    assert table.manifest()["batch_rows_key"] == "k2"  # every batch row is the new key's
