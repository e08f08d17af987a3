"""What every ``featurestore`` command shares (the consoles, --repo and --json, running a command so that
any error is one line), for the sub-command modules (``cli_auth``, ``cli_monitor``): defined in ``cli``,
which imports those modules after defining them."""

from featurestore.cli import JsonOpt, RepoOpt, _fail, _note, _run, _store, _wide, console, err  # noqa: F401

__all__ = ["JsonOpt", "RepoOpt", "_fail", "_note", "_run", "_store", "_wide", "console", "err"]
