"""`featurestore serve` as a user runs it: a real process (uvicorn), HTTPS with a private CA, two worker
processes, loopback only by default, body limits enforced on a real socket, metrics summed over workers."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.randomrepo import random_events, random_requests, write_events, write_repo
from tests.services import free_port, make_ca

pytestmark = [pytest.mark.redis, pytest.mark.slow]
MAX_BODY = 100_000


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("serve"))
    project = f"srvp_{uuid.uuid4().hex[:8]}"
    certs = make_ca(root / "certs")
    (root / "featurestore.yaml").write_text(
        f"project: {project}\ndefinitions: definitions\n"
        f"server:\n  workers: 2\n  max_body_bytes: {MAX_BODY}\n  tls_cert: certs/{certs.cert.name}\n"
        f"  tls_key: certs/{certs.key.name}\n")
    store = FeatureStore(root)
    events = random_events(9)
    write_events(root, events)
    store.backfill()
    store.materialize()
    yield store, events, certs
    redis = store.online_store().client
    keys = list(redis.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*"))
    if keys:
        redis.delete(*keys)


@pytest.fixture(scope="module")
def server(served_repo, tmp_path_factory):
    """`featurestore serve` with no host, port or worker flags: everything from featurestore.yaml."""
    store, _, certs = served_repo
    port = free_port()
    with open(store.repo_path / "featurestore.yaml", "a") as f:  # and training sets over Arrow Flight, same TLS
        f.write(f"  port: {port}\n  offline_port: {free_port()}\n")
    log = open(tmp_path_factory.mktemp("serve-log") / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(store.repo_path)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"https://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(certs.ca)), timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"serve exited {proc.returncode}: {log.read()[-3000:]}")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health within 60 s"
            time.sleep(0.2)
        yield proc, client, port
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        log.close()


def _children(pid: int):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_serve_runs_two_workers_over_https_with_a_private_ca(served_repo, server):
    store, events, certs = served_repo
    proc, client, port = server
    workers = [c for c in _children(proc.pid)
               if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers) >= 2, f"worker processes: {workers}"
    requests = random_requests(9, events, n=12)
    trust = ssl.create_default_context(cafile=str(certs.ca))
    for row in requests.itertuples():
        when = int(row.event_timestamp.value // 1_000_000)
        res = httpx.post(f"https://127.0.0.1:{port}/get-online-features", verify=trust, timeout=30, json={
            "feature_service": "everything", "entities": {"user_id": [row.user_id], "shop": [row.shop]},
            "request_time": when})  # a new connection each time: the kernel spreads them over the workers
        assert res.status_code == 200, res.text
        want = store.get_online_features([{"user_id": row.user_id, "shop": row.shop}], feature_service="everything",
                                         request_time=when).to_dict()
        assert res.json()["results"]["events_all"] == want["events_all"]
    metrics = client.get("/metrics").text  # summed over both workers
    assert f'featurestore_http_requests_total{{path="/get-online-features",status="200"}} {len(requests)}.0' \
        in metrics, metrics
    with pytest.raises(httpx.ConnectError):  # the server's certificate is from a CA the system does not trust
        httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)
    with pytest.raises(httpx.HTTPError):  # no plain HTTP
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)


def test_serve_binds_loopback_by_default(served_repo, server):
    _, _, port = server
    offline_port = FeatureStore(served_repo[0].repo_path).config.server.offline_port
    for p in (port, offline_port):  # the HTTP server and the offline server
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == p:
                    listening.append(local.rsplit(":", 1)[0])
        # 127.0.0.1 only (gRPC listens on an IPv6 socket at ::ffff:127.0.0.1, the same address)
        assert listening and set(listening) <= {"0100007F", "0000000000000000FFFF00000100007F"}, (p, listening)


def test_training_sets_over_arrow_flight_beside_two_workers(served_repo, server):
    """server.offline_port beside `--workers 2`, TLS with the same certificate: Feast's remote offline store
    protocol answers our SDK's training set bit for bit, and the oracle's values, on random windowed aggregations
    (requests at event times and window edges, unknown users, a duplicate row)."""
    import json

    import pyarrow as pa
    import pyarrow.flight as fl

    from featurestore.sdk.refs import resolve_features
    from tests import oracle
    from tests.compare import assert_features_equal

    store, events, certs = served_repo
    offline_port = FeatureStore(store.repo_path).config.server.offline_port
    selection = resolve_features(store.repo, None, "everything")
    refs = [f"{v}:{f}" for v, names in selection.items() for f in names]
    requests = random_requests(19, events, n=80)
    client = fl.FlightClient(f"grpc+tls://127.0.0.1:{offline_port}", tls_root_certs=certs.ca.read_bytes())
    command = {"api": "get_historical_features", "feature_view_names": list(selection), "feature_refs": refs,
               "project": store.config.project, "full_feature_names": False, "name_aliases": [None] * len(selection)}
    writer, reader = client.do_exchange(fl.FlightDescriptor.for_command(json.dumps(command)))
    table = pa.Table.from_pandas(requests)
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    got = reader.read_all()
    want = store.get_historical_features(requests, features=refs)
    assert got.num_rows == len(requests)
    frame = got.to_pandas()
    for view, names in selection.items():
        for name in names:
            assert got.column(name).equals(want.to_arrow().column(name)), name
        assert_features_equal(frame, oracle.point_in_time(events, store.repo.views[view], requests), names, view)


def test_a_chunked_body_over_the_limit_is_refused_by_the_real_server(served_repo, server):
    _, _, certs = served_repo
    _, _, port = server
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 10_000
        sent = 0
        reply = b""
        sock.settimeout(0.05)
        while sent < 20 * MAX_BODY and b"\r\n\r\n" not in reply:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            try:
                reply += sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                pass
        sock.settimeout(30)
        while b"}" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert f"over the {MAX_BODY} byte limit".encode() in reply
    assert sent < 3 * MAX_BODY  # refused as soon as the limit was passed, not after reading everything
