"""CLI conventions: --version, -h, -q/-v/--log-level on the group and every command, the repo found upward
from the current folder (and a clear error when there is none), naive times on the command line read as
UTC, --json for every table, tables not cut when piped, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore import __version__, datagen
from featurestore.cli import app
from featurestore.templates import write_starter

runner = CliRunner()
CLI = [sys.executable, "-m", "featurestore.cli"]


def _cli(args, cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    write_starter(root)
    datagen.write_parquet(root / "data" / "transactions", events=1500, users=30, merchants=6, days=1, seed=5)
    return root


def test_version_and_short_help(tmp_path):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"featurestore {__version__}"
    for args in (["-h"], ["plan", "-h"], ["backfill", "-h"], ["infra", "-h"], ["infra", "status", "-h"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage:" in res.output, (args, res.output)


def test_help_says_naive_times_are_utc():
    out = runner.invoke(app, ["backfill", "-h"], terminal_width=200).output
    assert "without a zone it is read as UTC" in out
    assert "without a zone" in runner.invoke(app, ["materialize", "-h"], terminal_width=200).output


def test_plan_in_a_folder_without_a_repo_fails_with_one_line(tmp_path):
    out = _cli(["plan"], cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: no featurestore.yaml in {tmp_path.resolve()} or any folder above it: run "
                                  "this in a feature repo, pass --repo, or create one with featurestore init")
    assert "add" not in out.stdout and "remove" not in out.stdout  # no phantom plan
    out = _cli(["plan", "--repo", str(tmp_path)], cwd=tmp_path)
    assert out.returncode == 1 and "no featurestore.yaml or definitions/ in" in out.stderr


def test_the_repo_is_found_from_a_subfolder(repo):
    runner.invoke(app, ["apply", "--repo", str(repo)])
    out = _cli(["plan", "--json"], cwd=repo / "definitions")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert not plan["has_changes"] and {c["name"] for c in plan["changes"]} >= {"user", "transactions", "my_model"}


def test_json_of_plan_apply_backfill_and_list(repo):
    plan = json.loads(runner.invoke(app, ["plan", "--repo", str(repo), "--json"]).stdout)
    assert plan["has_changes"] and {c["action"] for c in plan["changes"]} == {"added"}
    assert {"step", "target", "why"} <= set(plan["stages"][0])
    applied = json.loads(runner.invoke(app, ["apply", "--repo", str(repo), "--json"]).stdout)
    assert applied["applied"] is True
    res = runner.invoke(app, ["backfill", "--repo", str(repo), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["view"] == "user_activity" and row["rows"] == 1500 and row["version"] == 1
    views = json.loads(runner.invoke(app, ["list", "views", "--repo", str(repo), "--json"]).stdout)
    assert [v["name"] for v in views] == ["user_activity"]


def test_naive_times_on_the_command_line_are_utc(repo):
    """--start/--end without a zone mean UTC: the same table as the explicit UTC range (the Python API keeps
    refusing naive times)."""
    from featurestore import FeatureStore
    from featurestore.errors import RequestError

    runner.invoke(app, ["apply", "--repo", str(repo)])
    res = runner.invoke(app, ["backfill", "--repo", str(repo), "--start", "2026-10-31T06:00", "--end", "2026-10-31 18:30",
                              "--json"])
    assert res.exit_code == 0, res.output
    naive = json.loads(res.stdout)[0]["rows"]
    tx = pd.read_parquet(repo / "data" / "transactions")
    ts = tx["ts"].dt.floor("ms")
    want = ((ts >= pd.Timestamp("2026-10-31T06:00Z")) & (ts < pd.Timestamp("2026-10-31T18:30Z"))).sum()
    assert naive == want > 0
    res = runner.invoke(app, ["backfill", "--repo", str(repo), "--start", "2026-10-31", "--json"])
    assert json.loads(res.stdout)[0]["rows"] == (ts >= pd.Timestamp("2026-10-31T00:00Z")).sum()
    res = runner.invoke(app, ["backfill", "--repo", str(repo), "--start", "yesterday-ish"])
    assert res.exit_code == 1 and res.output.startswith("error: --start 'yesterday-ish': not a date or ISO time")
    with pytest.raises(RequestError):
        FeatureStore(repo).backfill(start=pd.Timestamp("2026-10-31T06:00"))


def test_quiet_and_verbose_on_the_group_and_on_commands(repo):
    for args in (["-q", "backfill"], ["backfill", "-q"], ["backfill", "--quiet"]):
        out = _cli([*args, "--repo", str(repo)], cwd=repo)
        assert out.returncode == 0 and out.stderr == "", (args, out.stderr)
    for args in (["-v", "plan"], ["plan", "-vv"], ["plan", "--log-level", "debug"], ["--log-level", "info", "plan"]):
        out = _cli(args, cwd=repo)
        assert out.returncode == 0, (args, out.stderr)
    out = _cli(["plan", "--log-level", "loud"], cwd=repo)
    assert out.returncode == 2 and "--log-level" in out.stderr


def test_tables_are_not_cut_when_piped(repo):
    long_name = "user_activity_with_a_rather_long_name_that_a_narrow_terminal_would_cut_somewhere"
    defs = repo / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace("user_activity", long_name))
    out = _cli(["plan"], cwd=repo, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert long_name in out.stdout and "definitions/features.py:" in out.stdout
    row = next(line for line in out.stdout.splitlines() if long_name in line)
    assert f"definitions/features.py:{defs.read_text().splitlines().index(long_name + ' = FeatureView(') + 1}" in row


def test_shell_completion_works_in_bash(repo):
    exe = shutil.which("featurestore", path=str(Path(sys.executable).parent))
    assert exe, "the featurestore command is installed next to this interpreter"
    script = subprocess.run([exe, "--show-completion"], capture_output=True, text=True, env={**os.environ,
                            "SHELL": "/bin/bash"}, timeout=60, cwd=repo)
    assert script.returncode == 0 and "complete" in script.stdout, script.stderr

    def complete(*words: str) -> list:
        cmd = (f'eval "$({exe} --show-completion)"; COMP_WORDS=(featurestore {" ".join(words)}); '
               f'COMP_CWORD={len(words)}; _featurestore_completion {exe}; printf "%s\\n" "${{COMPREPLY[@]}}"')
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, cwd=repo,
                             env={**os.environ, "SHELL": "/bin/bash"})
        return out.stdout.split()

    assert {"plan", "apply", "backfill", "list"} <= set(complete('""'))
    assert complete("back") == ["backfill"]
    assert "--view" in complete("backfill", "--vi")
    assert {"up", "down", "jars", "status"} == set(complete("infra", '""'))


def _stable(doc):
    """A JSON document without what differs between two runs (timings, the offline table's version)."""
    if isinstance(doc, list):
        return [_stable(d) for d in doc]
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in ("seconds", "events_per_second", "version")}
    return doc


def test_quiet_silences_result_tables_but_not_json_errors_or_exit_codes(repo):
    """-q: nothing on stdout for every command that prints a table or a summary; the same command prints
    one without -q (so the test can fail); --json is unaffected by -q; an error still prints and exits 1."""
    commands = [["plan"], ["apply"], ["backfill"], ["list", "views"], ["describe", "user_activity"]]
    for args in commands:
        loud = runner.invoke(app, [*args, "--repo", str(repo)])
        assert loud.exit_code == 0 and loud.stdout.strip(), (args, loud.output)
        quiet = runner.invoke(app, [*args, "--repo", str(repo), "-q"])
        assert quiet.exit_code == 0 and quiet.stdout == "", (args, quiet.stdout)
        group_quiet = runner.invoke(app, ["-q", *args, "--repo", str(repo)])
        assert group_quiet.exit_code == 0 and group_quiet.stdout == "", (args, group_quiet.stdout)
        if args[0] != "apply":  # apply --json after apply: both say there is nothing to apply
            plain, quiet_json = (runner.invoke(app, [*args, "--repo", str(repo), "--json", *q]) for q in ([], ["-q"]))
            assert quiet_json.exit_code == 0 and _stable(json.loads(quiet_json.stdout)) == _stable(
                json.loads(plain.stdout)) != [], args
    res = runner.invoke(app, ["describe", "no_such_thing", "--repo", str(repo), "-q"])
    assert res.exit_code == 1 and res.stdout == "" and res.stderr.startswith("error: "), res.output
    res = runner.invoke(app, ["list", "views", "--repo", str(repo)])  # -q does not stick to the next command
    assert res.stdout.strip()


def test_every_command_a_message_or_doc_suggests_exists_with_its_options():
    """A hint that names a command or an option the CLI does not have (`materialize --views`) sends the user
    to a usage error: every `featurestore <command> --option` written in the package, the docs or the
    README must parse as a real command and option."""
    import re

    import typer.main

    root = Path(__file__).resolve().parents[1]
    cli = typer.main.get_command(app)
    texts = [p for p in (root / "featurestore").rglob("*.py")] + list((root / "docs").glob("*.md"))
    texts.append(root / "README.md")
    hint = re.compile(r"featurestore ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?((?: --[a-z][a-z-]*)+)")
    seen, wrong = 0, []
    for path in texts:
        for m in hint.finditer(path.read_text(encoding="utf-8")):
            command = cli.commands.get(m.group(1))
            if command is not None and m.group(2) and hasattr(command, "commands"):
                command = command.commands.get(m.group(2))
            if command is None:
                wrong.append(f"{path.name}: {m.group(0)} (no such command)")
                continue
            options = {o for p in command.params for o in getattr(p, "opts", [])}
            for option in m.group(3).split():
                seen += 1
                if option not in options:
                    wrong.append(f"{path.name}: {m.group(0)} ({option} is not an option of it)")
    assert seen >= 10, seen  # the pattern still finds the hints
    assert wrong == [], wrong
