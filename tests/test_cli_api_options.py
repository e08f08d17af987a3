"""Every CLI command that has a Python API twin exposes the twin's options (or the test says why not), and
forwards them: `featurestore stream` had no --parallelism / --no-restore although FeatureStore.stream and
jobs/stream.py take them, and FeatureStore.stream(flink_address=..., parallelism=2) failed with a TypeError."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from featurestore import datagen
from featurestore.cli import app
from featurestore.engines.flink import remote
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from featurestore.templates import write_starter

runner = CliRunner()

# API parameters a command leaves out on purpose (callbacks and tuning knobs a terminal user has no use for)
API_ONLY = {
    "progress",  # the CLI draws its own progress bars
    "on_status", "status_every_s",  # --status-every draws the live view
    "flush_rows", "commit_interval_s", "extra_config", "job_options", "run_id", "rest_port", "commit",
    "flush_ms",  # the online mini-batch window: jobs/stream.py --flush-ms (a benchmark knob)
}
# CLI option name -> API parameter where the two are spelled differently
RENAMED = {"view": "views", "no_restore": "restore", "flink_address": "flink_address"}
TWINS = {  # CLI command -> the API functions whose keywords it forwards
    "backfill": [FeatureStore.backfill],
    "materialize": [FeatureStore.materialize],
    "verify": [FeatureStore.verify],
    "plan": [FeatureStore.plan],
    "apply": [FeatureStore.apply],
    "stream": [FeatureStore.stream, streaming.start],
}


def _cli_params(name: str) -> set:
    cmd = typer.main.get_command(app).commands[name]
    return {RENAMED.get(p.name, p.name) for p in cmd.params}


def _api_params(fn) -> set:
    skip = {"self", "store", "kwargs", "options"}
    return {n for n, p in inspect.signature(fn).parameters.items() if n not in skip
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


@pytest.mark.parametrize("command", sorted(TWINS))
def test_every_api_option_is_a_cli_option(command):
    cli = _cli_params(command)
    missing = set()
    for fn in TWINS[command]:
        missing |= _api_params(fn) - cli - API_ONLY
    # verify's positional argument is the service; the twin calls it feature_service
    missing -= {"feature_service"} if "service" in cli else set()
    assert not missing, f"featurestore {command} lacks options of its API twin: {sorted(missing)}"


def test_remote_submission_takes_the_local_jobs_options():
    """fs.stream(flink_address=...) hands its options to remote.submit_remote: each job option of a local
    start must be accepted there too (it raised TypeError for parallelism)."""
    local = _api_params(streaming.start) - API_ONLY - {"views"}
    assert local - _api_params(remote.submit_remote) == set()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    write_starter(root)
    datagen.write_parquet(root / "data" / "transactions", events=200, users=5, merchants=3, days=1, seed=5)
    return root


@pytest.mark.parametrize("remote_cluster", [False, True])
def test_stream_forwards_parallelism_and_no_restore(repo, monkeypatch, remote_cluster):
    calls = []

    def spy(self, views=None, **kwargs):
        calls.append(kwargs)
        raise SystemExit(0)  # stop before any job starts: this test checks what the CLI passes

    monkeypatch.setattr(FeatureStore, "stream", spy)
    extra = ["--flink-address", "localhost:1"] if remote_cluster else []
    res = runner.invoke(app, ["stream", "--repo", str(repo), "--bounded", "--parallelism", "2", "--no-restore",
                              "--checkpoint-interval-ms", "750", "--slack-ms", "60000", "--json", *extra])
    assert res.exit_code == 0, res.output
    (kw,) = calls
    assert (kw["parallelism"], kw["restore"], kw["checkpoint_interval_ms"], kw["slack_ms"]) == (2, False, 750, 60000)
    assert kw["bounded"] is True and kw.get("flink_address") == ("localhost:1" if remote_cluster else None)
    # without them the API's own defaults apply (nothing passed)
    calls.clear()
    res = runner.invoke(app, ["stream", "--repo", str(repo), "--bounded", "--json", *extra])
    assert res.exit_code == 0, res.output
    assert not {"parallelism", "restore", "checkpoint_interval_ms", "slack_ms"} & set(calls[0])


def test_stream_rejects_a_parallelism_below_one(repo):
    res = runner.invoke(app, ["stream", "--repo", str(repo), "--parallelism", "0"])
    assert res.exit_code == 2 and "--parallelism" in res.output


def test_every_option_the_docs_name_exists():
    """README's command table and docs/*.md name CLI options (``featurestore stream --no-restore``): each is a real
    option of that command (the docs named --parallelism / --no-restore that only jobs/stream.py had)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    commands = typer.main.get_command(app).commands
    named = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for line in path.read_text().splitlines():
            for m in re.finditer(r"featurestore ([a-z][a-z-]*)((?: \[?[^`|]*)?)", line):
                named += [(path.name, m.group(1), o) for o in re.findall(r"(?<![\w-])--[a-z][a-z-]*", m.group(2))]
    missing = []
    for where, name, option in named:
        cmd = commands.get(name)
        if cmd is None or hasattr(cmd, "commands"):
            continue  # a group (infra, auth) or prose ("featurestore and ...")
        if option not in {o for p in cmd.params for o in p.opts} | {"--help", "--version"}:
            missing.append(f"{where}: featurestore {name} {option}")
    assert len(named) > 20 and not missing, missing
