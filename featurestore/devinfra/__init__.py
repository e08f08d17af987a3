"""What a job needs on this machine, set up by the installed package itself (no clone needed):
``featurestore infra jars`` fetches the pinned Flink connector jars (:mod:`.pins`, checked by SHA-256)
from Maven Central, or copies them from the local Maven repository (``~/.m2``), into a per-user cache,
``$FEATURESTORE_CACHE_DIR`` or ``~/.cache/featurestore`` (``$XDG_CACHE_HOME``), never inside
site-packages; ``featurestore infra status`` says whether Redis, Kafka, Java and the jars are there.

Standard library only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional


def cache_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """Where fetched jars live: ``$FEATURESTORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/featurestore``, else
    ``~/.cache/featurestore``."""
    env = os.environ if env is None else env
    if env.get("FEATURESTORE_CACHE_DIR"):
        return Path(env["FEATURESTORE_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "featurestore"


def flink_jars_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """The user cache's folder of the Flink connector jars (``featurestore infra jars`` fills it)."""
    from featurestore.devinfra.jars import jars_dir

    return jars_dir("flink", env)


__all__ = ["cache_dir", "flink_jars_dir"]
