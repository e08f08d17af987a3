"""Issue 10.5: shipping serving logs is exactly once. Whatever shippers run at the same time (threads,
processes), retry, or die (SIGKILL at every step: after reading the stream, with the batch written but
not committed, committed but not trimmed, trimmed), the offline log table ends with exactly one row per
served row (request id, row position) and the stream is drained."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from featurestore import serving_log
from featurestore.store import FeatureStore
from tests.randomrepo import BASE

pytestmark = [pytest.mark.redis]

SERVICE = "logged_model"
REPO_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(materialized_store):
    return materialized_store(13, events=120)


def log_traffic(fs, n, rng):
    """n logged lookups of 1-3 users; returns the (request id, row) of every served row."""
    served = set()
    for _ in range(n):
        users = [rng.choice(["u0", "u1", "u2", "nobody"]) for _ in range(rng.randint(1, 3))]
        when = BASE + pd.Timedelta(milliseconds=rng.randint(0, 300_000))
        res = fs.get_online_features([{"user_id": u} for u in users], feature_service=SERVICE, request_time=when)
        served.update((res.request_id, j) for j in range(len(users)))
    return served


def assert_exactly_once(fs, served):
    raw = serving_log.log_table(fs, SERVICE).read()
    pairs = list(zip(raw.column("request_id").to_pylist(), raw.column("row").to_pylist()))
    twice = len(pairs) - len(set(pairs))
    assert twice == 0, f"{twice} of {len(pairs)} offline log rows are duplicates ({len(served)} served)"
    lost = served - set(pairs)
    assert not lost, f"{len(lost)} served rows never reached the offline log table"
    assert set(pairs) == served
    assert fs.online_store().client.xlen(serving_log.stream_key(fs.config.project, SERVICE)) == 0


def worker(fs, *args):
    """A shipper process (tests/ship_worker.py), returned once it is loaded and about to ship."""
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.ship_worker", str(fs.repo_path), *map(str, args)],
                            cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.communicate(timeout=60)[1][-2000:])
    return proc


def test_concurrent_shipper_threads_ship_each_row_once(store):
    rng = random.Random(1)
    served = log_traffic(store, 10, rng)
    stop = threading.Event()
    shipped, errors = [], []

    def ship_loop(seed):
        fs = FeatureStore(store.repo_path)  # an independent shipper: its own client and table handles
        r = random.Random(seed)
        try:
            while not stop.is_set():
                shipped.extend(res.entries for res in serving_log.ship(fs, batch=r.choice([3, 7, 10_000])))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ship_loop, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    try:
        served |= log_traffic(store, 120, rng)  # logged while the shippers race
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    shipped.extend(res.entries for res in store.ship_logs())
    assert_exactly_once(store, served)
    assert sum(shipped) == 130  # each lookup shipped by exactly one shipper, once


@pytest.mark.slow
def test_concurrent_shipper_processes_ship_each_row_once(store, tmp_path):
    rng = random.Random(2)
    served = log_traffic(store, 10, rng)
    stop_file = tmp_path / "stop"
    procs = [worker(store, "loop", stop_file, b) for b in (4, 9, 10_000)]
    try:
        served |= log_traffic(store, 300, rng)
    finally:
        stop_file.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    by_worker = [int(o[0].strip()) for o in outs]
    final = sum(r.entries for r in store.ship_logs())
    assert_exactly_once(store, served)
    assert sum(by_worker) + final == 310, (by_worker, final)
    assert sum(1 for n in by_worker if n) >= 2, by_worker  # they did race


@pytest.mark.slow
@pytest.mark.parametrize("point,batch", [("after_read", 10_000), ("before_commit", 10_000), ("after_commit", 10_000),
                                         ("after_commit", 6), ("after_trim", 6)])
def test_a_shipper_killed_at_any_step_loses_and_duplicates_nothing(store, point, batch):
    rng = random.Random(point)
    served = log_traffic(store, 20, rng)
    proc = worker(store, "crash", point, batch)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
    served |= log_traffic(store, 15, rng)  # traffic goes on while the shipper is down
    store.ship_logs()  # the next ship (a restarted shipper) repairs whatever the dead one left
    store.ship_logs()
    assert_exactly_once(store, served)


@pytest.mark.slow
def test_shippers_killed_at_random_times_lose_and_duplicate_nothing(store):
    rng = random.Random(3)
    served, kills = set(), 0
    for _ in range(5):
        served |= log_traffic(store, 60, rng)
        proc = worker(store, "ship", "-", rng.choice([2, 5]))
        time.sleep(rng.uniform(0.0, 0.5))  # shipping 60 lookups in batches of 2-5 takes about that long
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 3  # most kills landed while the shipper ran
    served |= log_traffic(store, 10, rng)
    store.ship_logs()
    assert_exactly_once(store, served)
