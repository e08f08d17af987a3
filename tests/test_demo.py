"""The README demo runs end to end on the example repo and every consistency claim holds."""

import shutil
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from featurestore.demo import run_demo
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.mark.parametrize("stream", [
    pytest.param(False, id="batch+online+logs"),
    pytest.param(True, id="with-stream", marks=[pytest.mark.flink, pytest.mark.kafka]),
])
def test_demo(tmp_path, monkeypatch, stream):
    shutil.copytree(ROOT / "definitions", tmp_path / "definitions")
    shutil.copy(ROOT / "featurestore.yaml", tmp_path / "featurestore.yaml")
    monkeypatch.setenv("FEATURESTORE_PROJECT", f"demo_{uuid.uuid4().hex[:8]}")
    store = FeatureStore(tmp_path)
    try:
        summary = run_demo(store, events=20_000, console=Console(width=120, record=True), print_plan=lambda p: None,
                           stream=stream)
        assert summary and all(summary.values()), summary
        assert ("stream online == offline" in summary) == stream
    finally:
        client = store.online_store().client
        keys = list(client.scan_iter(match=f"{orr.KEY_PREFIX}:{store.config.project}:*"))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
