"""The CLI: readable output, exit codes, one-line causes."""

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_commands():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("init", "plan", "apply", "generate", "demo", "backfill", "materialize", "stream", "serve", "verify"):
        assert cmd in out


def test_init_plan_apply(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["plan", "--repo", str(tmp_path)])
    assert res.exit_code == 0 and "user_activity" in res.output and "+ add" in res.output
    res = runner.invoke(app, ["apply", "--repo", str(tmp_path)])
    assert res.exit_code == 0 and "applied" in res.output
    res = runner.invoke(app, ["plan", "--repo", str(tmp_path)])
    assert "No changes" in res.output
    res = runner.invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 1
    assert "featurestore.yaml already exists; init does not overwrite a repo" in res.output


def test_validation_errors_exit_1_with_every_problem(tmp_path):
    shutil.copytree(ROOT / "tests" / "fixtures" / "broken_repo", tmp_path / "r")
    res = runner.invoke(app, ["plan", "--repo", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert "error: 10 problem(s) in definitions" in res.output
    assert "definitions/payments.py:16 user_spend.amout_sum_1h: column 'amout' not in source 'transactions'" in res.output


def test_unbuilt_options_do_not_pretend(tmp_path):
    runner.invoke(app, ["init", str(tmp_path)])
    res = runner.invoke(app, ["backfill", "--repo", str(tmp_path), "--engine", "spark"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: backfill --engine spark is not implemented yet (use duckdb or flink)"


def test_plan_fails_naming_a_feature_the_stream_job_cannot_run(tmp_path):
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "f.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source\n"
        "user = Entity(join_keys=['user_id'])\n"
        "tx = Source(schema={'user_id': 'string', 'amount': 'float64', 'ts': 'timestamp'}, timestamp='ts',\n"
        "            batch=ParquetFiles('x.parquet'), stream=KafkaTopic('tx'))\n"
        "v = FeatureView(entities=[user], source=tx, features=[\n"
        "    Latest(\"regexp_replace(user_id, 'a', 'b')\", name='weird'),\n"
        "    Aggregation('amount', 'sum', '1h')])\n")
    res = runner.invoke(app, ["plan", "--repo", str(tmp_path)])
    assert res.exit_code == 1
    assert ("definitions/f.py:6 v.weird: streaming: feature 'weird': expression \"regexp_replace(user_id, 'a', 'b')\" "
            "cannot run in the streaming job: function regexp_replace() is not supported") in res.output


@pytest.mark.flink
@pytest.mark.slow
def test_backfill_engine_flink_on_a_fresh_repo_equals_duckdb(tmp_path):
    from tests.randomrepo import assert_flink_backfill_equals_duckdb, random_events, write_events, write_repo

    root = write_repo(tmp_path / "r")  # no .featurestore/ yet: the Flink path must create what it needs
    write_events(root, random_events(4))
    res = runner.invoke(app, ["backfill", "--repo", str(root), "--engine", "flink", "--view", "qty_stats"])
    assert res.exit_code == 0, res.output
    assert_flink_backfill_equals_duckdb(root)


def test_plan_explain_prints_the_streaming_job_too():
    root = Path(__file__).resolve().parents[1]  # the example repo: its source has a Kafka stream face
    res = runner.invoke(app, ["plan", "--repo", str(root), "--explain"])
    assert res.exit_code == 0, res.output
    assert "user_spend: backfill (DuckDB)" in res.output
    assert "streaming job: Flink SQL (one job, every streamed view)" in res.output
    assert "fs_kafka_transactions" in res.output and "fs_dead_letters_transactions" in res.output


@pytest.mark.parametrize("command", ["serve", "ui"])
def test_a_port_out_of_range_is_a_usage_error_before_anything_starts(tmp_path, command):
    runner.invoke(app, ["init", str(tmp_path)])
    res = runner.invoke(app, [command, "--repo", str(tmp_path), "--port", "-5"])
    assert res.exit_code == 2 and "Invalid value for '--port'" in res.output, res.output
    assert "serving project" not in res.output
