"""The batch path on a core-only install (no Java, Kafka, Redis, Flink or Feast): a starter repo, sample
data, plan, apply, DuckDB backfill, a point-in-time training set checked against a brute-force count,
and the CLI. Run by infra/check-core-install.sh in a fresh venv; exits non-zero on any failure.
``FEATURESTORE_CORE_RESULT=FILE``: the training set is also written there (Parquet), for
tests/test_core_install.py to compare with the same run in the project's own venv."""

import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from featurestore import FeatureStore, datagen
from featurestore.cli import app
from featurestore.templates import write_starter

OPTIONAL = ("pyflink", "apache_beam", "confluent_kafka", "feast", "ibis", "dask", "tqdm")

with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp) / "starter"
    write_starter(root)
    datagen.write_parquet(root / "data" / "transactions", events=3000, users=40, merchants=8, days=1, seed=3)
    fs = FeatureStore(root)
    fs.plan()
    fs.apply()
    (result,) = fs.backfill()
    tx = pd.read_parquet(root / "data" / "transactions", columns=["user_id", "ts"]).dropna()
    tx["ts"] = tx["ts"].dt.floor("ms")
    entities = tx.sample(n=200, random_state=1).rename(columns={"ts": "event_timestamp"}).reset_index(drop=True)
    out = fs.get_historical_features(entities, feature_service="my_model")
    # tx_1h by brute force: events of the user with q - 1h <= ts < q (docs/semantics.md)
    for row, got in zip(entities.itertuples(), out["tx_1h"]):
        q = row.event_timestamp
        want = ((tx["user_id"] == row.user_id) & (tx["ts"] >= q - pd.Timedelta(hours=1)) & (tx["ts"] < q)).sum()
        assert (0 if pd.isna(got) else int(got)) == want, (row, got, want)
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["plan", "--repo", str(root), "--json"])
    assert res.exit_code == 0, res.output
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(OPTIONAL))
    assert not loaded, f"the batch path imported optional modules: {loaded}"
    if os.environ.get("FEATURESTORE_CORE_RESULT"):
        out.to_arrow().to_pandas().to_parquet(os.environ["FEATURESTORE_CORE_RESULT"], index=False)
    print(f"core batch path OK on Python {sys.version.split()[0]}: {result.rows:,} events backfilled, "
          f"{len(out)} training rows checked; pandas {pd.__version__}")
