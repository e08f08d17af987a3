"""The example payments repo in a temporary folder, and `featurestore serve` on it as a real process: shared
by the access-control, web catalog and monitoring tests (one server per test module)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import httpx

from featurestore import datagen
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]

# A second team's service next to the example's: "grant one service and nothing else" needs something else.
GROWTH = '''
from featurestore import FeatureService

from definitions.payments import merchant_activity

growth_model = FeatureService(features=[merchant_activity], description="Merchant features for growth scoring.",
                              owner="growth@example.com", tags={"team": "growth"})
'''


def example_repo(root: Path, yaml_extra: str = "", events: int = 3000, extra_definitions: str = GROWTH,
                 stream: bool = True) -> Path:
    """The example repo (definitions/ plus a growth service) under ``root`` with a fresh project name and
    ``events`` generated transactions (seeded); ``stream=False`` drops the source's Kafka face (pushes then
    write the stores directly, no broker needed)."""
    shutil.copytree(ROOT / "definitions", root / "definitions", ignore=shutil.ignore_patterns("__pycache__"))
    if not stream:
        sources = root / "definitions" / "sources.py"
        text = sources.read_text()
        line = '    stream=KafkaTopic("transactions", format="json"),\n'
        assert line in text, "the example source changed: update tests/served.py"
        sources.write_text(text.replace(line, ""))
    if extra_definitions:
        (root / "definitions" / "growth.py").write_text(extra_definitions)
    project = f"ui_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n{yaml_extra}")
    datagen.write_parquet(root / "data" / "transactions", events=events, users=200, merchants=40, days=3, seed=3)
    return root


def drop_online(store: FeatureStore) -> None:
    client = store.online_store().client
    keys = list(client.scan_iter(match=f"{orr.KEY_PREFIX}:{store.config.project}:*"))
    keys += list(client.scan_iter(match=f"fs:{store.config.project}:*"))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


@contextmanager
def serve(repo: Path, log_path: Path, env: Optional[dict] = None, base: Optional[str] = None,
          **client_options) -> Iterator[tuple]:
    """``featurestore serve`` on ``repo`` (a free port), until /health answers; yields (process, client,
    base url). Any answer to /health (200, 401 with access control on, 503) means it is up."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo), "--port",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})
    url = base or f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=60, **client_options)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"serve exited {proc.returncode}: {log.read()[-3000:]}")
            try:
                client.get("/health")
                break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health within 90 s"
            time.sleep(0.2)
        yield proc, client, url
    finally:
        client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
