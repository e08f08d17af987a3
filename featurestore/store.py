"""``FeatureStore``: the thin facade users script against (SPEC §6). Work happens in the modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from featurestore.config import ProjectConfig, load_config
from featurestore.errors import NotImplementedYet
from featurestore.loader import Repo, load_repo
from featurestore.plan import Plan, apply_plan, build_plan
from featurestore.registry import read_registry, write_registry


class FeatureStore:
    """A feature repo: its definitions, config, registry and stores.

    >>> fs = FeatureStore(".")          # doctest: +SKIP
    >>> fs.plan().has_changes           # doctest: +SKIP
    True
    """

    def __init__(self, repo_path: str | os.PathLike = ".", config: Optional[ProjectConfig] = None):
        self.config = config or load_config(repo_path)
        self.repo_path = self.config.repo_path
        self._repo: Optional[Repo] = None

    # -- definitions ------------------------------------------------------------------------
    @property
    def repo(self) -> Repo:
        """The loaded, validated definitions (loaded once; ``reload()`` re-reads the files)."""
        if self._repo is None:
            self._repo = load_repo(self.config.definitions_path, self.repo_path)
        return self._repo

    def reload(self) -> Repo:
        self._repo = None
        return self.repo

    def plan(self) -> Plan:
        """What ``apply`` would record and which jobs the changes call for."""
        registry = read_registry(self.config.registry_path, self.config.project)
        return build_plan(self.reload(), registry)

    def apply(self) -> Plan:
        """Record the current definitions in the registry; returns the plan that was applied."""
        registry = read_registry(self.config.registry_path, self.config.project)
        plan = build_plan(self.reload(), registry)
        if plan.has_changes:
            write_registry(self.config.registry_path, apply_plan(plan, registry))
        return plan

    # -- not built yet: never pretend -------------------------------------------------------
    def _later(self, what: str):
        raise NotImplementedYet(f"{what} is not implemented yet in featurestore {_version()}")

    def backfill(self, start=None, end=None, views=None):
        self._later("backfill")

    def materialize(self, *args, **kwargs):
        self._later("materialize")

    def stream(self, *args, **kwargs):
        self._later("stream")

    def get_historical_features(self, entity_df, features=None, feature_service=None, **kwargs):
        self._later("get_historical_features")

    def get_online_features(self, entity_rows, features=None, feature_service=None, request_time=None, log=False):
        self._later("get_online_features")

    def training_set_from_logs(self, labels_df, feature_service, **kwargs):
        self._later("training_set_from_logs")

    def verify(self, *args, **kwargs):
        self._later("verify")


def _version() -> str:
    from featurestore import __version__

    return __version__


__all__ = ["FeatureStore", "Path"]
