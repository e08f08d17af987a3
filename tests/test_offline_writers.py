"""Temp files of dead writers are cleaned up automatically, and a live writer's never.

Real processes: one writer is killed with SIGKILL in the middle of a backfill-sized write (its temp files
are on disk), another is paused in the middle of its write and alive. The next write to the table (here
from this process) deletes the dead writer's temp files at once, without ``expire`` and without a grace
period, leaves the live writer's alone, and the live writer then commits intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from featurestore.stores import offline, writers
from featurestore.stores.offline import DAY_MS, OfflineTable
from tests.test_offline_store import T0, events, rows_of

WRITER = r"""
import sys, time
from pathlib import Path
import pyarrow as pa
from featurestore.stores import offline, offline_files
offline_files.ROW_GROUP_ROWS = 10  # small row groups: temp files reach the disk while the write streams
root, name, who, ready, go = sys.argv[1:6]
TS = pa.timestamp("ms", tz="UTC")
T0, DAY = int(sys.argv[6]), 86_400_000

def batches():
    for day in range(4):  # 4 dates -> 4 temp files open at once
        yield pa.record_batch({"user_id": pa.array([who] * 20), "ts": pa.array([T0 + day * DAY + i for i in range(20)], TS),
                               "value": pa.array([float(day)] * 20)})
    Path(ready).write_text("ready")
    while not Path(go).exists():  # paused mid-write: killed here, or released
        time.sleep(0.05)

offline.OfflineTable(root, name).write_range(batches(), T0, T0 + 4 * DAY)
print("committed")
"""


def _writer(tmp_path: Path, root: Path, who: str):
    ready, go = tmp_path / f"{who}.ready", tmp_path / f"{who}.go"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), "events", who, str(ready), str(go), str(T0)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"writer {who} never got going"
        time.sleep(0.05)
    return proc, go


def _temp_files(table: OfflineTable):
    return sorted(p for p in table.path.rglob(f"{offline.TMP_PREFIX}*"))


def test_a_killed_writers_temp_files_are_cleaned_by_the_next_write_and_a_live_writers_never(tmp_path):
    root = tmp_path / "offline"
    table = OfflineTable(root, "events")
    table.write_range(events([("seed", T0 + 5, 0.5)]), T0, T0 + DAY_MS)
    dead, _ = _writer(tmp_path, root, "dead")
    live, go = _writer(tmp_path, root, "live")
    try:
        dead_files = [p for p in _temp_files(table) if f"-{dead.pid}-" in p.name.split(".")[1]]
        live_files = [p for p in _temp_files(table) if f"-{live.pid}-" in p.name.split(".")[1]]
        assert len(dead_files) == 4 and len(live_files) == 4, _temp_files(table)
        os.kill(dead.pid, signal.SIGKILL)  # a backfill killed mid-write
        dead.wait(timeout=30)
        assert all(p.exists() for p in dead_files)  # what the crash left behind

        # the next write to the table, by anyone (here: this process), cleans up after the dead writer
        writers._swept.clear()
        table.append(events([("next", T0 + 10 * DAY_MS, 2.5)]))  # outside the live write's range
        assert not any(p.exists() for p in dead_files), "a dead writer's temp files survived the next write"
        assert all(p.exists() for p in live_files), "a live writer's temp files were deleted"
        assert not (table.path / writers.WRITERS_DIR / f"{dead_files[0].name.split('.')[1][4:]}.lock").exists()

        go.write_text("go")  # the live writer finishes its write: intact, committed
        out, err = live.communicate(timeout=60)
        assert live.returncode == 0 and "committed" in out, err[-2000:]
    finally:
        for proc in (dead, live):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _temp_files(table) == []
    got = rows_of(table.read())
    assert [r for r in got if r[0] == "live"] == [("live", T0 + d * DAY_MS + i, float(d)) for d in range(4)
                                                    for i in range(20)]
    assert not [r for r in got if r[0] == "dead"]
    assert ("next", T0 + 10 * DAY_MS, 2.5) in got  # and the write that swept is there too
    # the live writer exited normally: its lock file went with it; only this process's is left
    assert [p.name for p in (table.path / writers.WRITERS_DIR).glob("*.lock")] == [f"{writers.token()}.lock"]


def test_expire_deletes_a_dead_writers_temp_files_at_once_and_never_a_live_ones(tmp_path):
    root = tmp_path / "offline"
    table = OfflineTable(root, "events")
    table.write_range(events([("seed", T0 + 5, 0.5)]), T0, T0 + DAY_MS)
    dead, _ = _writer(tmp_path, root, "dead")
    live, go = _writer(tmp_path, root, "live")
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=30)
        old = time.time() - 10 * offline.ORPHAN_GRACE_SECONDS
        for p in _temp_files(table):
            os.utime(p, (old, old))  # even when older than the grace period
        table.expire(keep_last=1)
        left = _temp_files(table)
        assert len(left) == 4 and all(f"-{live.pid}-" in p.name for p in left), left
        go.write_text("go")
        assert live.wait(timeout=60) == 0
    finally:
        for proc in (dead, live):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _temp_files(table) == [] and len(rows_of(table.read())) == 80  # the live write replaced its range
