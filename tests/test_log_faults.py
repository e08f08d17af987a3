"""SPEC §3.3 and §7 under faults, as random sequences against a model: logged lookups (fresh request ids and
retries of earlier ones), in-process ships, shippers SIGKILLed at every step, and Redis itself SIGKILLed and
restarted from its append-only file, in random order. The model is what each lookup served. At the end each
logged lookup is in the offline log table exactly once (one row per served row), ``read_logs`` and
``training_set_from_logs`` give each request id's last served vector value for value, labels of requests
never logged are filled by the point-in-time join and flagged, and ``verify`` finds zero skew.

Logged to Redis Streams and to Kafka. Redis is a private ``redis-server`` (AOF, ``appendfsync everysec``, as
``infra/`` runs it) on its own port, so killing it disturbs no other test."""

import random
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import redis

from featurestore import serving_log
from featurestore.store import FeatureStore
from tests.compare import _py, same_value
from tests.randomrepo import BASE
from tests.test_log_shipping import worker

pytestmark = [pytest.mark.redis]

SERVICE = "logged_model"
USERS = ["u0", "u1", "u2", "u3", "nobody"]
CRASH_POINTS = ["after_read", "before_commit", "after_commit", "after_trim"]  # tests/ship_worker.py
KAFKA_CRASH_POINTS = ["before_commit", "after_commit"]  # a Kafka ship reads no stream and trims nothing


class PrivateRedis:
    """A redis-server of this test alone, with an append-only file in ``folder``; ``crash()`` SIGKILLs it and
    starts it again on the same files and port."""

    def __init__(self, folder: Path):
        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis on {self.port} did not start")

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture
def private_redis(tmp_path, monkeypatch):
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", server.url)  # every store and ship worker of the test uses it
    yield server
    server.stop()


@pytest.fixture(params=["redis", "kafka"])
def store(request, private_redis, materialized_store):
    """The random repo; its logged service logs to Redis Streams, or (param ``kafka``) to its Kafka topic."""
    fs = materialized_store(41, events=150)
    if request.param == "redis":
        return fs
    request.applymarker(pytest.mark.kafka)
    defs = fs.repo_path / "definitions" / "features.py"
    text = defs.read_text()
    assert text.count("LoggingConfig(enabled=True, sample_rate=1.0)") == 1
    defs.write_text(text.replace("LoggingConfig(enabled=True, sample_rate=1.0)",
                                 'LoggingConfig(enabled=True, sample_rate=1.0, destination="kafka")'))
    return FeatureStore(fs.repo_path)


def lookup(fs, rng, served, log, http):
    """One logged lookup of 1-3 users (the same user twice sometimes), from Python or over HTTP (``http``: a
    client of the feature server, the request id in ``X-Request-Id``); a third are retries of an earlier
    request id (another request time: other values). The model keeps each request id's last served rows, as
    the caller received them."""
    users = [rng.choice(USERS) for _ in range(rng.randint(1, 3))]
    when = BASE + pd.Timedelta(milliseconds=rng.randint(0, 400_000))
    rid = rng.choice(sorted(served)) if served and rng.random() < 1 / 3 else f"r{len(log)}"
    via = "http" if http is not None and rng.random() < 0.5 else "python"
    if via == "http":
        body = {"feature_service": SERVICE, "entities": {"user_id": users}, "request_time": when.isoformat()}
        got = http.post("/get-online-features", json=body, headers={"X-Request-Id": rid})
        assert got.status_code == 200, got.text
        assert got.json()["request_id"] == rid == got.headers["x-request-id"]
        data = {c: [_special(v) for v in vs] for c, vs in got.json()["results"].items()}
    else:
        res = fs.get_online_features([{"user_id": u} for u in users], feature_service=SERVICE,
                                     request_time=when, request_id=rid)
        assert res.request_id == rid
        data = res.to_dict()
    served[rid] = [{"user_id": u, "when": when, **{c: v[j] for c, v in data.items() if c != "user_id"}}
                   for j, u in enumerate(users)]
    log.append((rid, len(users), via))


def _special(v):
    """The feature server sends NaN and infinities as these strings (featurestore/server.py)."""
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(v, v) \
        if isinstance(v, str) else v


def exact(a, b) -> bool:
    return same_value(_py(a), _py(b), rel=0.0, abs_tol=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_faults_lose_and_duplicate_nothing(store, private_redis, seed):
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    rng = random.Random(seed)
    served, log, kills = {}, [], Counter()
    http = TestClient(create_app(store))
    kafka = store.repo.services[SERVICE].logging.destination == "kafka"
    points = KAFKA_CRASH_POINTS if kafka else CRASH_POINTS
    for _ in range(60):
        op = rng.choices(["lookup", "ship", "crash_shipper", "crash_redis"], [10, 2, 2, 1])[0]
        if op == "lookup" or not log:
            lookup(store, rng, served, log, http)
        elif op == "ship":
            store.ship_logs()
        elif op == "crash_shipper":
            point = rng.choice(points)
            proc = worker(store, "crash", point, rng.choice([1, 2, 5, 10_000]))
            _, err = proc.communicate(timeout=120)
            # exit 3: nothing was left to ship (the point was never reached); anything else is a failure
            assert proc.returncode in (-signal.SIGKILL, 3), (point, proc.returncode, err[-2000:])
            kills[point] += proc.returncode == -signal.SIGKILL
        else:
            private_redis.crash()
            kills["redis"] += 1
            for _ in range(50):  # the store's pooled connections died with it: the next command reconnects
                try:
                    store.online_store().client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
    store.ship_logs()

    # The table: every logged lookup exactly once (one row per served row), the stream drained.
    raw = serving_log.log_table(store, SERVICE).read()
    entries = Counter(zip(raw.column("stream_id").to_pylist(), raw.column("request_id").to_pylist()))
    assert Counter(rid for _, rid in entries) == Counter(rid for rid, _, _ in log), "a lookup shipped twice or lost"
    rows = Counter(zip(raw.column("stream_id").to_pylist(), raw.column("row").to_pylist()))
    assert max(rows.values()) == 1 and raw.num_rows == sum(n for _, n, _ in log)
    assert store.online_store().client.xlen(serving_log.stream_key(store.config.project, SERVICE)) == 0

    # read_logs: each request id once, as its last lookup.
    logs = serving_log.read_logs(store, SERVICE)
    assert Counter(logs["request_id"]) == Counter({rid: len(rows) for rid, rows in served.items()})

    # Labels by request id and entity: the last served values, exactly; plus labels of requests never
    # logged (filled by the point-in-time join at their timestamp, flagged).
    labels = [{"request_id": rid, "user_id": r["user_id"], "event_timestamp": r["when"]}
              for rid, rs in served.items() for r in rs]
    never = [{"request_id": f"never{i}", "user_id": rng.choice(USERS),
              "event_timestamp": BASE + pd.Timedelta(milliseconds=rng.randint(0, 400_000))} for i in range(5)]
    frame = pd.DataFrame(labels + never)
    got = store.training_set_from_logs(frame, SERVICE)
    assert got["_from_log"].tolist() == [True] * len(labels) + [False] * len(never)
    columns = [c for c in served[next(iter(served))][0] if c not in ("user_id", "when")]
    want = [r for rs in served.values() for r in rs]
    for c in columns:
        bad = [(i, got[c].iloc[i], w[c]) for i, w in enumerate(want) if not exact(got[c].iloc[i], w[c])]
        assert not bad, (seed, c, bad[:5])
    filled = store.get_historical_features(pd.DataFrame(never)[["user_id", "event_timestamp"]],
                                           feature_service=SERVICE).to_df()
    for c in columns:
        tail = got[c].iloc[len(labels):].tolist()
        assert all(exact(a, b) for a, b in zip(tail, filled[c].tolist())), (c, tail, filled[c].tolist())

    report = store.verify(SERVICE)
    assert report.rows == sum(len(rs) for rs in served.values())
    assert report.clean, {f: (s.mismatch, s.missing, s.extra, s.examples[:2]) for f, s in report.features.items()
                          if s.skew_rate}
    # the faults and the paths did happen: shippers and Redis killed, retried request ids, HTTP and Python
    assert kills["redis"] >= 1 and sum(kills.values()) - kills["redis"] >= 2, kills
    assert len(log) > len(served) and {via for _, _, via in log} == {"http", "python"}
