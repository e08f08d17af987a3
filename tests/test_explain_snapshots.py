"""Compiled SQL is reviewed like code: every job of the example repo is snapshotted.

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/test_explain_snapshots.py``
and review the diff.
"""

import os
import re
from pathlib import Path

import pytest

from featurestore.store import STREAM_JOB, FeatureStore

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).parent / "snapshots"
STORE = FeatureStore(ROOT)
JOBS = STORE.explain()


def _portable(sql: str) -> str:
    """The checkout's path and the Kafka address vary by machine; the snapshot names them generically."""
    return (sql.replace(ROOT.as_uri(), "<repo>").replace(str(ROOT), "<repo>")
            .replace(STORE.config.kafka_bootstrap, "<kafka bootstrap>"))


@pytest.mark.parametrize("view,job", [(v, j) for v, jobs in JOBS.items() for j in jobs])
def test_compiled_sql_matches_snapshot(view, job):
    sql = _portable(JOBS[view][job])
    path = SNAPSHOTS / f"{re.sub(r'[^a-z_]+', '_', view)}.{re.sub(r'[^a-z]+', '_', job.lower()).strip('_')}.sql"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(sql + "\n")
    assert path.read_text() == sql + "\n", f"compiled SQL of {view} ({job}) changed; review and update {path}"


def test_the_streaming_job_is_explained_with_every_statement():
    text = JOBS[STREAM_JOB]["Flink SQL (one job, every streamed view)"]
    assert "CREATE TEMPORARY TABLE `fs_kafka_transactions`" in text
    assert "INSERT INTO fs_staged_transactions" in text  # each event once; the committer splits it by view
    for view in STORE.repo.views:
        assert f"--   view {view}: rows where `__v" in text
    assert "INSERT INTO fs_dead_letters_transactions" in text
