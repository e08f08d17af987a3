"""An event that reaches the stream inside a range a backfill already claimed (SPEC §5, §3.2): the stream
commit adds it unless the table holds it, matched by row identity (``featurestore.stores.offline_claimed``),
so the table holds max(what the backfill held, what the stream read) of each identical row. No services but
the local S3 server (``offline_root`` runs both roots): ``write_range`` and ``commit_stream`` on small files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.stores import offline_claimed, offline_files
from featurestore.stores.offline import MIXED_ROWS, OfflineTable

T0 = 1772323200000  # 2026-03-01
DAY = 86_400_000
P, O = "__kafka_partition", "__kafka_offset"
NAN = float("nan")


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    monkeypatch.setattr(offline_files, "DURABLE", False)


def face_table(rows):
    """The batch face's rows (id, ts ms, v) as a backfill stores them."""
    return pa.table({"id": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], pa.timestamp("ms", tz="UTC")),
                     "v": pa.array([r[2] for r in rows], pa.float64())})


class Stream:
    """One Kafka partition read in order: ``read(rows)`` appends records; ``commit`` registers files of
    the records from ``start`` (a run afresh re-reads from 0) with the next seq of ``app``."""

    def __init__(self, folder: Path):
        self.folder, self.records, self.files, self.seqs = folder, [], 0, {}

    def produce(self, *rows):
        self.records.extend(rows)

    def file(self, first: int, last: int) -> Path:
        self.files += 1
        path = self.folder / f"part-{self.files}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        recs = self.records[first:last]
        pq.write_table(pa.table({"id": [r[0] for r in recs], "ts": pa.array([r[1] for r in recs], pa.timestamp("ms")),
                                 "v": pa.array([r[2] for r in recs], pa.float64()),
                                 P: pa.array([0] * len(recs), pa.int32()),
                                 O: pa.array(range(first, last), pa.int64())}), path)
        return path

    def commit(self, table: OfflineTable, first: int, last: int, app: str = "run0", rows_key="k", split=None, **kw):
        self.seqs[app] = self.seqs.get(app, 0) + 1
        cuts = [first, *(split or []), last]
        files = [self.file(a, b) for a, b in zip(cuts, cuts[1:])]
        return table.commit_stream(files, app_id=app, seq=self.seqs[app], topic="t",
                                   fingerprint=kw.pop("fingerprint", "fp"), partition_column=P, offset_column=O,
                                   rows_key=rows_key, count_column="id", **kw)


def held(table: OfflineTable):
    t = table.read()
    cols = t.column("id").to_pylist(), t.column("ts").cast(pa.int64()).to_pylist(), t.column("v").to_pylist()
    return sorted((i, ts, "nan" if v is not None and v != v else v) for i, ts, v in zip(*cols))


def want(*rows):
    return sorted((i, ts, "nan" if v is not None and v != v else v) for i, ts, v in rows)


A, B, C = ("a", T0 + 10, 1.0), ("b", T0 + 20, 2.0), ("c", T0 + 30, 3.0)


def test_a_row_arriving_after_the_claiming_backfill_is_added_once(offline_root, tmp_path):
    table = OfflineTable(offline_root, "v")
    table.write_range(face_table([A, B]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    s.produce(A, B, C)  # c reached Kafka (and the batch face) after the backfill claimed its range
    result = s.commit(table, 0, 3, split=[1])
    assert held(table) == want(A, B, C)
    assert result.rows == 1 and result.counts == {"c": 1}
    s.produce(("d", T0 + 2 * DAY, 4.0))  # outside the claimed range: the stream's as before
    s.commit(table, 3, 4)
    assert held(table) == want(A, B, C, ("d", T0 + 2 * DAY, 4.0))
    # restarts: the same run re-committing and a run afresh re-reading the topic add nothing twice
    s.commit(table, 0, 4)
    s.commit(table, 0, 4, app="run1")
    assert held(table) == want(A, B, C, ("d", T0 + 2 * DAY, 4.0))
    # no reader of the data glob sees the side files
    if isinstance(offline_root, Path):
        assert all(p.parent.name.startswith("date=") for p in (offline_root / "v").glob("**/*.parquet"))
        assert table.manifest()["claimed_seen"]["files"] and \
            all((offline_root / "v" / "_log" / n).exists() for n in table.manifest()["claimed_seen"]["files"])


def test_identical_duplicate_events_are_held_as_many_times_as_they_exist(offline_root, tmp_path):
    table = OfflineTable(offline_root, "v")
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    s.produce(A, C, C)  # two identical events in one commit
    assert s.commit(table, 0, 3).rows == 2
    assert held(table) == want(A, C, C)
    s.produce(C)  # a third one, in a later commit
    assert s.commit(table, 3, 4).rows == 1
    assert held(table) == want(A, C, C, C)
    s.produce(A)  # a second event identical to the one the backfill holds
    assert s.commit(table, 4, 5).rows == 1
    assert held(table) == want(A, A, C, C, C)


def test_the_backfill_holding_identical_events_keeps_them_once_each(tmp_path):
    table = OfflineTable(tmp_path / "offline", "v")
    s = Stream(tmp_path / "s")
    table.write_range(face_table([C]), T0, T0 + DAY, rows_key="k")
    s.produce(C)
    assert s.commit(table, 0, 1).rows == 0  # the backfill holds it
    table.write_range(face_table([C, C]), T0, T0 + DAY, rows_key="k")  # a second, identical event reached the face
    s.produce(C)
    assert s.commit(table, 1, 2).rows == 0
    assert held(table) == want(C, C)
    s.produce(C)  # a third reaches the stream first
    assert s.commit(table, 2, 3).rows == 1
    assert held(table) == want(C, C, C)


def test_special_values_match_by_identity(tmp_path):
    """NaN equals NaN, -0.0 differs from 0.0, null equals null, timestamps by their epoch value (the
    stream's files mark no time zone; the table's columns are UTC)."""
    rows = [("n", T0 + 1, NAN), ("z", T0 + 2, -0.0), ("u", T0 + 3, None)]
    table = OfflineTable(tmp_path / "offline", "v")
    table.write_range(face_table(rows), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    s.produce(*rows, ("z", T0 + 2, 0.0))
    result = s.commit(table, 0, 4)
    assert result.rows == 1 and result.counts == {"z": 1}
    assert held(table) == want(*rows, ("z", T0 + 2, 0.0))


def test_identities_ignore_widths_units_and_zone_markings_but_not_values():
    ids = offline_claimed.identities
    a = pa.table({"x": pa.array([1.5, NAN, -0.0, None], pa.float64()),
                  "t": pa.array([T0, T0, T0, None], pa.timestamp("ms", tz="UTC")), "s": ["p", "q", None, "r"]})
    b = pa.table({"s": ["p", "q", None, "r"], "x": pa.array([1.5, float("-nan"), -0.0, None], pa.float32()),
                  "t": pa.array([T0 * 1000, T0 * 1000, T0 * 1000, None], pa.timestamp("us"))})
    assert (ids(a) == ids(b)).all()
    c = pa.table({"x": pa.array([1.5, NAN, 0.0, None]), "t": pa.array([T0 + 1, T0, T0, None], pa.timestamp("ms")),
                  "s": ["p", "Q", None, "r "]})
    assert not (ids(a) == ids(c)).any()
    assert len(np.unique(ids(pa.table({"s": ["a", "ab", "a", None], "u": ["bc", "c", "bc", "abc"]})))) == 3
    # a column that is absent or null is the same
    assert (ids(a.append_column("extra", pa.nulls(4, pa.int64()))) == ids(a)).all()


@pytest.mark.parametrize("stream_key,face_key", [("k2", "k"), (None, "k"), (None, None), (MIXED_ROWS, MIXED_ROWS)])
def test_a_rows_key_mismatch_adds_nothing(tmp_path, stream_key, face_key):
    """Only rows computed under the definition the range's rows were computed under are candidates."""
    s = Stream(tmp_path / "s")
    s.produce(A, C)
    for name, key in [("mismatch", stream_key), ("match", "k")]:
        table = OfflineTable(tmp_path / "offline", name)
        table.write_range(face_table([A]), T0, T0 + DAY, rows_key=face_key if name == "mismatch" else "k")
        assert s.commit(table, 0, 2, app=name, rows_key=key).rows == (name == "match")
        assert held(table) == (want(A) if name == "mismatch" else want(A, C))


def test_a_re_backfill_of_the_range_replaces_it(tmp_path):
    table = OfflineTable(tmp_path / "offline", "v")
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    s.produce(A, C)
    s.commit(table, 0, 2)
    assert held(table) == want(A, C)
    table.write_range(face_table([A, C]), T0, T0 + DAY, rows_key="k")
    assert held(table) == want(A, C)
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")  # the batch is the authority where it ran
    assert held(table) == want(A)
    s.commit(table, 0, 2)  # the run re-committing its files: nothing (offsets)
    assert held(table) == want(A)


def test_a_definition_change_drops_what_the_stream_read_under_the_old_one(tmp_path):
    table = OfflineTable(tmp_path / "offline", "v")
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    s.produce(A, C)
    s.commit(table, 0, 2)
    table.write_range(face_table([A, C]), T0, T0 + DAY, rows_key="k2")  # the new definition's backfill
    s.commit(table, 0, 2, app="run1", rows_key="k2", fingerprint="fp2", rebuild=True)  # its stream re-reads
    assert held(table) == want(A, C)
    s.produce(C)  # an identical event after it: held twice, not three times
    s.commit(table, 2, 3, app="run1", rows_key="k2", fingerprint="fp2")
    assert held(table) == want(A, C, C)


@pytest.mark.parametrize("racer", ["backfill", "stream"])
def test_a_commit_that_loses_a_race_replans_on_the_winner(tmp_path, monkeypatch, racer):
    """Another commit lands between the plan and the manifest: the stream commit re-plans on the winner's
    version (what it holds, what was seen), each event once, and the losing attempt's side file goes."""
    table = OfflineTable(tmp_path / "offline", "v")
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    d = ("d", T0 + 40, 4.0)
    s.produce(A, C, d)
    real = OfflineTable._write_manifest
    raced = []

    def other_first(self, version, manifest):
        if manifest["operation"] == "stream" and not raced:
            raced.append(version)
            if racer == "backfill":
                table.write_range(face_table([A, C]), T0, T0 + DAY, rows_key="k")  # c reached the face, not d
            else:  # the leftover files of the same run, committed by another committer
                s.commit(table, 0, 3, app="other")
        return real(self, version, manifest)

    monkeypatch.setattr(OfflineTable, "_write_manifest", other_first)
    s.commit(table, 0, 3)
    assert raced and held(table) == want(A, C, d)
    names = {n for m in table.history() for n in (m.get("claimed_seen") or {}).get("files", [])}
    on_disk = {n for n in os.listdir(tmp_path / "offline" / "v" / "_log") if n.startswith("seen-")}
    assert on_disk == names


def test_side_files_merge_and_expire_keeps_what_a_kept_version_needs(offline_root, tmp_path):
    table = OfflineTable(offline_root, "v")
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")
    s = Stream(tmp_path / "s")
    for i in range(offline_claimed.MERGE_AFTER + 2):
        s.produce(C)
        s.commit(table, i, i + 1)
        assert len(table.manifest()["claimed_seen"]["files"]) <= offline_claimed.MERGE_AFTER
    n = offline_claimed.MERGE_AFTER + 2
    assert held(table) == want(A, *[C] * n)

    def side_files():
        log = table._log
        names = log.list_names() if table.remote else os.listdir(log)
        return {x for x in names if x.startswith("seen-")}

    every = {x for m in table.history() for x in (m.get("claimed_seen") or {}).get("files", [])}
    assert side_files() == every
    table.expire(keep_last=1, grace_seconds=0)
    assert side_files() == set(table.manifest()["claimed_seen"]["files"])
    table.write_range(face_table([A, *[C] * n]), T0, T0 + DAY, rows_key="k")  # the face has the n C events
    s.produce(C)  # one more: what the stream read before (the kept version's side files) counts
    assert s.commit(table, n, n + 1).rows == 1
    assert held(table) == want(A, *[C] * (n + 1))
    table.write_range(face_table([A]), T0, T0 + DAY, rows_key="k")  # a face without them is the authority
    s.produce(C)
    assert s.commit(table, n + 1, n + 2).rows == 1  # only what this commit read is added, never copies
    assert held(table) == want(A, C)


def test_only_files_whose_time_span_meets_a_candidate_are_read(tmp_path, monkeypatch):
    """A hand-off re-reads the topic from its start, so every row can be a candidate: what the table holds is
    read only from the files whose [min_ts, max_ts] meets a candidate's time, and many rows stay cheap."""
    n = 20_000
    face = [(f"e{i}", T0 + (i % 5) * DAY + i, float(i)) for i in range(n)]
    table = OfflineTable(tmp_path / "offline", "v")
    table.write_range(face_table(face), T0, T0 + 5 * DAY, rows_key="k")
    opened = []
    real = OfflineTable._open_sized

    def spy(self, rel, version, size):
        opened.append(rel)
        return real(self, rel, version, size)

    monkeypatch.setattr(OfflineTable, "_open_sized", spy)
    s = Stream(tmp_path / "s")
    s.produce(*face, ("late", T0 + 2 * DAY + 7, -1.0))  # the re-read of the whole topic: every row a candidate
    assert s.commit(table, 0, n + 1).rows == 1
    assert table.manifest()["rows"] == n + 1
    opened.clear()
    s.produce(("later", T0 + 2 * DAY + 9, -2.0))
    assert s.commit(table, n + 1, n + 2).rows == 1
    assert opened and all(rel.startswith("date=2026-03-03/") for rel in opened)
