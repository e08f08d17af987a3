"""Shared fixtures. Service-backed ones need the project's Redis (``bash infra/up.sh``)."""

import uuid

import pytest

from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.randomrepo import random_events, write_events, write_repo


@pytest.fixture
def materialized_store(tmp_path):
    """A factory: the random repo with one seed's events, backfilled and materialized under a fresh
    project name; its Redis keys are deleted afterwards."""
    made = []

    def make(seed: int, events: int = 300) -> FeatureStore:
        root = write_repo(tmp_path / f"repo{len(made)}")
        project = f"t_{uuid.uuid4().hex[:8]}"
        (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
        fs = FeatureStore(root)
        write_events(root, random_events(seed, n=events))
        fs.backfill()
        fs.materialize()
        made.append(fs)
        return fs

    yield make
    for fs in made:
        client = fs.online_store().client
        keys = list(client.scan_iter(match=f"{orr.KEY_PREFIX}:{fs.config.project}:*"))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
