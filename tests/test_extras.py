"""The light install: the core path (definitions, plan/apply, DuckDB backfill, training sets, the CLI, the
server) never imports Flink, Kafka's client or Feast, and a command that needs a missing extra says which
one to install, in one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from featurestore.templates import write_starter

OPTIONAL = ("pyflink", "apache_beam", "confluent_kafka", "feast", "tqdm", "ibis", "dask")
runner = CliRunner()


def test_the_batch_path_imports_no_optional_module(tmp_path):
    """In a fresh interpreter: every core module, the CLI's help, plan/apply/backfill and a point-in-time
    training set, then the list of optional modules that got imported (must be empty)."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import pandas as pd
        import featurestore.cli, featurestore.server, featurestore.store, featurestore.catalog, featurestore.verify
        from featurestore import FeatureStore, datagen
        from featurestore.templates import write_starter
        root = Path({str(tmp_path / 'r')!r})
        write_starter(root)
        datagen.write_parquet(root / "data" / "transactions", events=2000, users=40, merchants=8, days=1, seed=3)
        fs = FeatureStore(root)
        fs.plan(); fs.apply(); fs.backfill()
        tx = pd.read_parquet(root / "data" / "transactions", columns=["user_id", "ts"]).head(50)
        out = fs.get_historical_features(tx.rename(columns={{"ts": "event_timestamp"}}), feature_service="my_model")
        assert len(out) == 50 and out["tx_1h"].notna().all()
        from typer.testing import CliRunner
        assert CliRunner().invoke(featurestore.cli.app, ["plan", "--repo", str(root)]).exit_code == 0
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({OPTIONAL!r})))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _one_line(res, text: str) -> None:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1, res.output
    assert lines == [f"error: {text}"], res.output


@pytest.fixture
def starter(tmp_path):
    write_starter(tmp_path / "r")
    return tmp_path / "r"


@pytest.mark.parametrize("args,missing,text", [
    (["stream", "--bounded"], "pyflink",
     "the streaming job needs the 'stream' extra: pip install 'featurestore[stream]'"),
    (["backfill", "--engine", "flink"], "pyflink",
     "backfill --engine flink needs the 'stream' extra: pip install 'featurestore[stream]'"),
    (["generate", "-n", "200", "--kafka"], "confluent_kafka",
     "generate --kafka needs the 'stream' extra: pip install 'featurestore[stream]'"),
])
def test_a_command_needing_a_missing_extra_says_which_in_one_line(starter, monkeypatch, args, missing, text):
    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` raises ModuleNotFoundError
    _one_line(runner.invoke(app, [*args, "--repo", str(starter)]), text)


def test_push_to_a_streamed_source_without_kafka_names_the_extra(starter, monkeypatch):
    from featurestore import FeatureStore
    from featurestore.extras import MissingExtra

    store = FeatureStore(starter)
    store.apply()
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    row = {"event_id": "e1", "user_id": "u1", "merchant_id": "m1", "amount": 1.0, "currency": "USD", "country": "US",
           "channel": "web", "card_present": False, "ts": "2026-11-01T00:00:00Z"}
    with pytest.raises(MissingExtra, match=r"^push to the streamed source 'transactions' needs the 'stream' extra: "
                                           r"pip install 'featurestore\[stream\]'$"):
        store.push("transactions", [row])


def test_feast_definitions_without_feast_name_the_extra(tmp_path, monkeypatch):
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "f.py").write_text("from feast import Entity\n\nuser = Entity(name='user')\n")
    monkeypatch.setitem(sys.modules, "feast", None)
    res = runner.invoke(app, ["plan", "--repo", str(tmp_path)])
    assert res.exit_code == 1
    assert ("definitions/f.py:1: cannot import definitions file: definitions written with Feast's objects need the "
            "'feast' extra: pip install 'featurestore[feast]'") in res.output


def test_a_missing_module_that_is_no_extra_stays_an_unexpected_failure(starter, monkeypatch):
    """Only optional modules are translated: a missing core module is a bug, reported with its trace file."""
    monkeypatch.setitem(sys.modules, "duckdb", None)
    res = runner.invoke(app, ["backfill", "--repo", str(starter)])
    assert res.exit_code == 1 and "extra" not in res.output
    assert "No module named 'duckdb'" in res.output or "import of duckdb halted" in res.output
    assert "full trace:" in res.output
