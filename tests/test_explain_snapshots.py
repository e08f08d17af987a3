"""Compiled SQL is reviewed like code: every job of the example repo is snapshotted.

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/test_explain_snapshots.py``
and review the diff.
"""

import os
import re
from pathlib import Path

import pytest

from featurestore.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).parent / "snapshots"
JOBS = FeatureStore(ROOT).explain()


@pytest.mark.parametrize("view,job", [(v, j) for v, jobs in JOBS.items() for j in jobs])
def test_compiled_sql_matches_snapshot(view, job):
    sql = JOBS[view][job]
    path = SNAPSHOTS / f"{view}.{re.sub(r'[^a-z]+', '_', job.lower()).strip('_')}.sql"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(sql + "\n")
    assert path.read_text() == sql + "\n", f"compiled SQL of {view} ({job}) changed; review and update {path}"
