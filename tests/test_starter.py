"""The starter `featurestore init` writes runs end to end with its own sample data, from the installed CLI
in a fresh folder: init -> generate -> apply -> backfill -> materialize -> the starter's example.py (a
point-in-time training set, then online lookups), and the online values equal the training set's at the
same time (train/serve consistency of the starter itself)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _exe() -> str:
    exe = shutil.which("featurestore", path=str(Path(sys.executable).parent))
    assert exe, "the featurestore command is installed next to this interpreter"
    return exe


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_starter_runs_end_to_end_from_the_cli(tmp_path):
    fs = _exe()
    repo = tmp_path / "starter_e2e"
    init = _run([fs, "init", str(repo)], cwd=tmp_path)
    assert "featurestore generate" in init.stdout  # says what to run next
    _run([fs, "generate", "-n", "4000", "--users", "60", "--merchants", "10", "--days", "2"], cwd=repo)
    _run([fs, "apply"], cwd=repo)
    backfill = _run([fs, "backfill"], cwd=repo)
    assert "user_activity" in backfill.stdout
    _run([fs, "materialize"], cwd=repo)
    example = _run([sys.executable, "example.py"], cwd=repo)
    assert "training set: 1,000 rows" in example.stdout and "online:" in example.stdout

    # The starter's online answer equals its offline one at the same time.
    from featurestore import FeatureStore

    store = FeatureStore(repo)
    tx = pd.read_parquet(repo / "data" / "transactions", columns=["user_id", "ts"])
    users = sorted(tx["user_id"].dropna().unique())[:20]
    when = tx["ts"].max() + pd.Timedelta(seconds=1)
    online = store.get_online_features([{"user_id": u} for u in users], feature_service="my_model",
                                       request_time=when).to_df()
    offline = store.get_historical_features(pd.DataFrame({"user_id": users, "event_timestamp": [when] * len(users)}),
                                            feature_service="my_model")
    features = ["tx_1h", "amount_1d", "merchants_7d", "last_amount"]
    for f in features:
        for u, a, b in zip(users, online[f], offline[f]):
            same = (pd.isna(a) and pd.isna(b)) or math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
            assert same, f"{f} of {u}: online {a!r} != offline {b!r}"
    assert offline["tx_1h"].notna().any() and offline["amount_1d"].notna().any()
