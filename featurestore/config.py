"""Project config: ``featurestore.yaml`` at the repo root, every field overridable by environment.

A repo without the file runs on embedded defaults (state under ``.featurestore/``, the project's
own Redis and Kafka from ``infra/``), so ``FeatureStore(".")`` works on a fresh clone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from featurestore.errors import ConfigError
from featurestore.semantics import DEFAULT_MAX_FUTURE

CONFIG_FILE = "featurestore.yaml"

# field -> environment variable that overrides it
ENV_OVERRIDES = {
    "project": "FEATURESTORE_PROJECT",
    "definitions": "FEATURESTORE_DEFINITIONS",
    "registry": "FEATURESTORE_REGISTRY",
    "offline_root": "FEATURESTORE_OFFLINE_ROOT",
    "redis_url": "FEATURESTORE_REDIS_URL",
    "redis_password": "FEATURESTORE_REDIS_PASSWORD",
    "redis_tls": "FEATURESTORE_REDIS_TLS",
    "kafka_bootstrap": "FEATURESTORE_KAFKA_BOOTSTRAP",
    "flink_jars_dir": "FEATURESTORE_FLINK_JARS_DIR",
    "event_time_max_future": "FEATURESTORE_EVENT_TIME_MAX_FUTURE",
}

# yaml section.key -> field
_YAML_KEYS = {
    ("project",): "project",
    ("definitions",): "definitions",
    ("registry",): "registry",
    ("offline_store", "root"): "offline_root",
    ("online_store", "redis_url"): "redis_url",
    ("online_store", "password"): "redis_password",
    ("online_store", "tls"): "redis_tls",
    ("kafka", "bootstrap_servers"): "kafka_bootstrap",
    ("flink", "jars_dir"): "flink_jars_dir",
    ("event_time", "max_future"): "event_time_max_future",
}
NO_BOUND = ("none", "off", "unbounded")  # event_time.max_future values that turn the bound off


@dataclass(frozen=True)
class ProjectConfig:
    """Where a project's state lives. Relative paths are relative to ``repo_path``."""

    repo_path: Path
    project: str = "default"
    definitions: Optional[str] = None
    registry: str = ".featurestore/registry.json"
    offline_root: str = ".featurestore/offline"
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_password: Optional[str] = None
    redis_tls: bool = False
    kafka_bootstrap: str = "127.0.0.1:19092"
    flink_jars_dir: str = "infra/.cache/flink-jars"
    event_time_max_future: str = DEFAULT_MAX_FUTURE  # a duration ("1h"), or "none"
    sources: Mapping[str, str] = field(default_factory=dict)  # field -> "default" | "file" | "env"

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.repo_path / p

    @property
    def registry_path(self) -> Path:
        return self.path(self.registry)

    @property
    def offline_path(self) -> Path:
        return self.path(self.offline_root)

    @property
    def max_future_ms(self) -> Optional[int]:
        """How far after the ingesting job's wall clock an event time may be (ms); None: no bound."""
        return _max_future_ms(self.event_time_max_future, "event_time.max_future")

    @property
    def definitions_path(self) -> Path:
        """``definitions:`` from config; else ``definitions/`` if present; else the repo itself."""
        if self.definitions:
            return self.path(self.definitions)
        candidate = self.repo_path / "definitions"
        return candidate if candidate.is_dir() else self.repo_path


def _max_future_ms(value: Optional[str], origin: str) -> Optional[int]:
    from featurestore.errors import DefinitionError
    from featurestore.model.durations import parse_duration

    if value is None or str(value).strip().lower() in NO_BOUND:
        return None
    try:
        return parse_duration(str(value), origin)
    except DefinitionError as exc:
        raise ConfigError(f"{exc} (or 'none' for no bound)") from None


def _coerce(name: str, value: Any, origin: str) -> Any:
    if name == "event_time_max_future":
        text = "none" if value is None else f"{value}ms" if isinstance(value, int) and not isinstance(value, bool) \
            else str(value)
        _max_future_ms(text, origin)  # fail at load, naming where the value came from
        return text
    if name == "redis_tls":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{origin}: redis tls must be true or false, got {value!r}")
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"{origin}: expected a string, got {type(value).__name__}")
    return str(value)


def load_config(repo_path: str | os.PathLike = ".", env: Optional[Mapping[str, str]] = None) -> ProjectConfig:
    """Read ``featurestore.yaml`` (if any) under ``repo_path`` and apply environment overrides."""
    env = os.environ if env is None else env
    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise ConfigError(f"repo path {root} is not a directory")
    values: dict = {}
    origins: dict = {}
    cfg_file = root / CONFIG_FILE
    if cfg_file.exists():
        import yaml

        try:
            data = yaml.safe_load(cfg_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg_file}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{cfg_file}: expected a mapping at the top level")
        known_sections = {k[0] for k in _YAML_KEYS}
        for key in data:
            if key not in known_sections:
                raise ConfigError(f"{cfg_file}: unknown key {key!r} (known: {', '.join(sorted(known_sections))})")
        for path, name in _YAML_KEYS.items():
            node: Any = data
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                values[name] = _coerce(name, node, f"{cfg_file}: {'.'.join(path)}")
                origins[name] = "file"
    feast_cfg = root / "feature_store.yaml"
    if "project" not in values and feast_cfg.exists():  # a Feast repo: reuse its project name
        import yaml

        try:
            feast_project = (yaml.safe_load(feast_cfg.read_text()) or {}).get("project")
        except yaml.YAMLError:
            feast_project = None
        if isinstance(feast_project, str) and feast_project:
            values["project"], origins["project"] = feast_project, "file"
    for name, var in ENV_OVERRIDES.items():
        if env.get(var) not in (None, ""):
            values[name] = _coerce(name, env[var], f"environment {var}")
            origins[name] = "env"
    known = {f.name for f in fields(ProjectConfig)}
    cfg = replace(ProjectConfig(repo_path=root), **{k: v for k, v in values.items() if k in known})
    return replace(cfg, sources={f: origins.get(f, "default") for f in ENV_OVERRIDES})
