"""Project config: ``featurestore.yaml`` at the repo root, every key overridable by environment.

A repo without the file runs on embedded defaults (state under ``.featurestore/``, the project's
own Redis and Kafka from ``infra/``), so ``FeatureStore(".")`` works on a fresh clone.

Every key the file may hold is declared once in :data:`KEYS` (its YAML path, the attribute it sets,
its environment variable and its type). A key that is not declared, at any level, is an error naming
its path and the closest valid key: a typo (``tsl: true``) must never fall back to a default silently.
The full list with defaults is docs/config.md.
"""

from __future__ import annotations

import difflib
import re
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from featurestore.errors import ConfigError
from featurestore.semantics import DEFAULT_MAX_FUTURE

CONFIG_FILE = "featurestore.yaml"


# -- sections with more than a couple of keys ----------------------------------------------------------------
RESTART_TYPES = ("exponential-delay", "failure-rate", "fixed-delay", "none")
# the keys of flink.restart_strategy each type reads (setting another is an error: it would do nothing)
RESTART_KEYS = {
    "exponential-delay": ("initial_delay", "max_delay", "multiplier", "reset_after", "jitter", "max_attempts"),
    "failure-rate": ("max_failures", "failure_interval", "delay"),
    "fixed-delay": ("max_attempts", "delay"),
    "none": (),
}
INT_MAX = 2_147_483_647  # Flink's "unlimited" attempts (Integer.MAX_VALUE)


@dataclass(frozen=True)
class RestartStrategy:
    """How the streaming job recovers from failures (a Redis restart, a broker failover, a lost task
    manager): Flink restarts it from its last checkpoint after a delay, within a budget.

    The default, ``exponential-delay``, waits ``initial_delay``, then twice as long after each further
    failure, up to ``max_delay``; once the job ran ``reset_after`` without a failure, the delay and the
    attempt count start over, so a 24/7 job survives any number of transient faults spread over time
    and fails only after ``max_attempts`` restarts in one burst (``None``: never). ``failure-rate``
    fails the job after more than ``max_failures`` failures within ``failure_interval``.
    ``fixed-delay`` counts every failure ever against ``max_attempts`` (a long-running job eventually
    dies of unrelated transient faults: avoid it for 24/7 streams)."""

    type: str = "exponential-delay"
    initial_delay_ms: int = 1_000
    max_delay_ms: int = 120_000
    multiplier: float = 2.0
    reset_after_ms: int = 600_000
    jitter: float = 0.1
    max_attempts: Optional[int] = 20
    max_failures: int = 5
    failure_interval_ms: int = 600_000
    delay_ms: int = 10_000

    def flink_options(self) -> Dict[str, str]:
        """The ``restart-strategy.*`` options of the job's Flink configuration."""
        if self.type == "none":
            return {"restart-strategy.type": "disable"}
        attempts = str(INT_MAX if self.max_attempts is None else self.max_attempts)
        if self.type == "exponential-delay":
            p = "restart-strategy.exponential-delay."
            return {"restart-strategy.type": "exponential-delay",
                    p + "initial-backoff": f"{self.initial_delay_ms} ms",
                    p + "max-backoff": f"{self.max_delay_ms} ms",
                    p + "backoff-multiplier": repr(float(self.multiplier)),
                    p + "reset-backoff-threshold": f"{self.reset_after_ms} ms",
                    p + "jitter-factor": repr(float(self.jitter)),
                    p + "attempts-before-reset-backoff": attempts}
        if self.type == "failure-rate":
            p = "restart-strategy.failure-rate."
            return {"restart-strategy.type": "failure-rate",
                    p + "max-failures-per-interval": str(self.max_failures),
                    p + "failure-rate-interval": f"{self.failure_interval_ms} ms",
                    p + "delay": f"{self.delay_ms} ms"}
        return {"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": attempts,
                "restart-strategy.fixed-delay.delay": f"{self.delay_ms} ms"}


@dataclass(frozen=True)
class ServerConfig:
    """``featurestore serve``: where it listens and what one request may cost."""

    host: str = "127.0.0.1"  # loopback: nothing outside this machine reaches it unless asked
    port: int = 6566
    workers: int = 1
    max_body_bytes: int = 1_000_000  # request bodies over this are refused (413), chunked or not
    max_entities: int = 10_000  # entity rows per lookup
    max_logged_entities: int = 1_000  # entity rows one logged lookup may append to the serving log
    tls_cert: Optional[str] = None  # PEM certificate (chain) and key: serve HTTPS
    tls_key: Optional[str] = None
    # Feast's remote offline store protocol (Arrow Flight): training sets through the server. Off unless a port
    # is given; it binds to ``host`` and speaks TLS with the same certificate (featurestore.server_offline).
    offline_port: Optional[int] = None
    max_training_rows: int = 10_000_000  # entity rows of one training set through the offline server


NO_BOUND = ("none", "off", "unbounded")  # event_time.max_future values that turn the bound off


@dataclass(frozen=True)
class AccessConfig:
    """Access control of ``featurestore serve`` (docs/access-control.md). Off by default: the local demo
    needs no token. ``enabled: true`` is the one switch; the rest says where the policy and tokens live
    and, optionally, which OIDC provider's JWTs are accepted."""

    enabled: bool = False
    policy: str = "access.yaml"  # roles and who holds them (featurestore.access)
    tokens: str = ".featurestore/tokens.json"  # hashed bearer tokens (featurestore auth ...)
    jwt_public_key: Optional[str] = None  # PEM public key of an OIDC provider: its JWTs are accepted too
    jwt_algorithms: str = "RS256"
    jwt_issuer: Optional[str] = None
    jwt_audience: Optional[str] = None
    jwt_principal_claim: str = "sub"
    jwt_roles_claim: str = "roles"


@dataclass(frozen=True)
class MonitorConfig:
    """What ``featurestore monitor`` (and the catalog's monitor page) call a breach. A view's freshness bound
    is its own ``expected_freshness`` (a definition field)."""

    max_stream_lag: Optional[int] = None  # records the stream may be behind, per topic (None: not checked)
    max_dead_letter_rate: float = 0.01  # dead letters over records read, per source
    max_skew_rate: float = 0.0  # per feature, in a service's last verify run
    max_psi: float = 0.2  # drift of served values against a training set, per feature
    dead_letter_window_ms: int = 86_400_000  # stream commits and pushes the dead-letter check counts: this recent (by the hour)


@dataclass(frozen=True)
class ProjectConfig:
    """Where a project's state lives. Relative paths are relative to ``repo_path``."""

    repo_path: Path
    project: str = "default"
    definitions: Optional[str] = None
    registry: str = ".featurestore/registry.json"
    offline_root: str = ".featurestore/offline"  # a local folder or s3://bucket/prefix
    offline_s3_endpoint: Optional[str] = None  # an S3-compatible store other than AWS: http(s)://host:port
    offline_s3_region: Optional[str] = None
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_password: Optional[str] = None
    redis_tls: bool = False
    redis_tls_ca_cert: Optional[str] = None  # verify Redis against this CA (PEM) instead of the system's
    redis_tls_cert: Optional[str] = None  # client certificate (mutual TLS)
    redis_tls_key: Optional[str] = None
    redis_tls_check_hostname: bool = True
    redis_allow_eviction: bool = False  # accept a Redis that may evict keys (evicted entities read as absent)
    kafka_bootstrap: str = "127.0.0.1:19092"
    flink_jars_dir: str = "infra/.cache/flink-jars"
    restart: RestartStrategy = field(default_factory=RestartStrategy)
    server: ServerConfig = field(default_factory=ServerConfig)
    event_time_max_future: str = DEFAULT_MAX_FUTURE  # a duration ("1h"), or "none"
    access: AccessConfig = field(default_factory=AccessConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    sources: Mapping[str, str] = field(default_factory=dict)  # attribute -> "default" | "file" | "env"

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.repo_path / p

    @property
    def registry_path(self) -> Path:
        return self.path(self.registry)

    @property
    def offline_path(self) -> Union[Path, "S3Location"]:
        """The offline root: a local folder, or an ``S3Location`` for ``s3://bucket/prefix``."""
        from featurestore.stores.object_store import SCHEME, S3Location

        if self.offline_root.startswith(SCHEME):
            return S3Location.parse(self.offline_root, self.offline_s3_endpoint, self.offline_s3_region)
        return self.path(self.offline_root)

    @property
    def state_path(self) -> Path:
        """The repo's state folder (registry, checkpoints, logs of failures): ``<repo>/.featurestore``."""
        return self.repo_path / ".featurestore"

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


# -- value types ------------------------------------------------------------------------------------------
def _max_future_ms(value: Optional[str], origin: str) -> Optional[int]:
    if value is None or str(value).strip().lower() in NO_BOUND:
        return None
    return _duration(str(value), origin, hint=" (or 'none' for no bound)")


def _max_future(value: Any, where: str) -> str:
    """event_time.max_future: a duration (an integer is milliseconds) or 'none', kept as text."""
    text = f"{value}ms" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    _max_future_ms(text, where)  # fail at load, naming where the value came from
    return text


def _text(value: Any, where: str) -> Optional[str]:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return str(value)


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where} must be true or false, got {value!r}")


def _count(value: Any, where: str) -> int:
    try:
        n = int(str(value).strip().replace("_", "")) if not isinstance(value, bool) else None
    except ValueError:
        n = None
    if n is None or n < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {value!r}")
    return n


def _port(value: Any, where: str) -> int:
    n = _count(value, where)
    if n > 65535:
        raise ConfigError(f"{where}: expected a port (1-65535), got {value!r}")
    return n


def _optional_port(value: Any, where: str) -> Optional[int]:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none", "null")):
        return None
    return _port(value, where)


def _attempts(value: Any, where: str) -> Optional[int]:
    if isinstance(value, str) and value.strip().lower() in ("unlimited", "none", "null"):
        return None
    n = _count(value, where)
    return min(n, INT_MAX)


def _number(value: Any, where: str) -> float:
    try:
        x = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        x = float("nan")
    if x != x or x in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return x


def _fraction(value: Any, where: str) -> float:
    x = _number(value, where)
    if not 0 <= x <= 1:
        raise ConfigError(f"{where}: expected a fraction between 0 and 1, got {value!r}")
    return x


def _positive(value: Any, where: str) -> float:
    x = _number(value, where)
    if x <= 0:
        raise ConfigError(f"{where}: expected a number > 0, got {value!r}")
    return x


def _duration(value: Any, where: str, hint: str = "") -> int:
    """A duration in milliseconds (``"5s"``, ``"1h"``; an integer is milliseconds); ``hint`` ends the error."""
    from featurestore.errors import DefinitionError
    from featurestore.model.durations import parse_duration

    try:
        return parse_duration(value if not isinstance(value, float) else str(value), where)
    except DefinitionError as exc:
        raise ConfigError(f"{exc}{hint}") from None


def _redis_url(value: Any, where: str) -> str:
    """One Redis URL (``redis://``, ``rediss://``, or ``redis+cluster://host:port,...`` for a Redis
    Cluster), or a list of cluster nodes (``host:port`` or ``redis://host:port``): a cluster URL."""
    if isinstance(value, (list, tuple)):
        nodes = [str(v).strip() for v in value]
        if not nodes or any(not n or isinstance(v, (dict, list)) for n, v in zip(nodes, value)):
            raise ConfigError(f"{where}: a list of Redis Cluster nodes must hold host:port entries, got {value!r}")
        from featurestore.stores.redis_client import cluster_url

        value = cluster_url(nodes)
    text = _text(value, where).strip()
    schemes = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    if not text.startswith(schemes):
        raise ConfigError(f"{where}: expected a redis://, rediss:// or redis+cluster://host:port,... URL (or a list "
                          f"of cluster nodes), got {text!r}")
    if text.startswith(schemes[3:]):
        from featurestore.stores.redis_client import parse_cluster_url

        try:
            parse_cluster_url(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return text


def _restart_type(value: Any, where: str) -> str:
    text = _text(value, where).strip().lower()
    if text not in RESTART_TYPES:
        near = difflib.get_close_matches(text, RESTART_TYPES, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ConfigError(f"{where}: unknown restart strategy {value!r}{hint}; one of {', '.join(RESTART_TYPES)}")
    return text


@dataclass(frozen=True)
class Key:
    """One key of featurestore.yaml: its YAML path, the attribute it sets (``restart.x`` / ``server.x``
    for the sections), the environment variable that overrides it, and how its value is read."""

    path: Tuple[str, ...]
    attr: str
    env: str
    parse: Callable[[Any, str], Any]
    what: str = ""

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


_RS = ("flink", "restart_strategy")
KEYS: Tuple[Key, ...] = (
    Key(("project",), "project", "FEATURESTORE_PROJECT", _text),
    Key(("definitions",), "definitions", "FEATURESTORE_DEFINITIONS", _text),
    Key(("registry",), "registry", "FEATURESTORE_REGISTRY", _text),
    Key(("offline_store", "root"), "offline_root", "FEATURESTORE_OFFLINE_ROOT", _text),
    Key(("offline_store", "s3_endpoint"), "offline_s3_endpoint", "FEATURESTORE_OFFLINE_S3_ENDPOINT", _text),
    Key(("offline_store", "s3_region"), "offline_s3_region", "FEATURESTORE_OFFLINE_S3_REGION", _text),
    Key(("online_store", "redis_url"), "redis_url", "FEATURESTORE_REDIS_URL", _redis_url),
    Key(("online_store", "password"), "redis_password", "FEATURESTORE_REDIS_PASSWORD", _text),
    Key(("online_store", "tls"), "redis_tls", "FEATURESTORE_REDIS_TLS", _flag, "redis tls"),
    Key(("online_store", "tls_ca_cert"), "redis_tls_ca_cert", "FEATURESTORE_REDIS_TLS_CA_CERT", _text),
    Key(("online_store", "tls_cert"), "redis_tls_cert", "FEATURESTORE_REDIS_TLS_CERT", _text),
    Key(("online_store", "tls_key"), "redis_tls_key", "FEATURESTORE_REDIS_TLS_KEY", _text),
    Key(("online_store", "tls_check_hostname"), "redis_tls_check_hostname",
        "FEATURESTORE_REDIS_TLS_CHECK_HOSTNAME", _flag),
    Key(("online_store", "allow_eviction"), "redis_allow_eviction", "FEATURESTORE_REDIS_ALLOW_EVICTION", _flag),
    Key(("kafka", "bootstrap_servers"), "kafka_bootstrap", "FEATURESTORE_KAFKA_BOOTSTRAP", _text),
    Key(("flink", "jars_dir"), "flink_jars_dir", "FEATURESTORE_FLINK_JARS_DIR", _text),
    Key(("event_time", "max_future"), "event_time_max_future", "FEATURESTORE_EVENT_TIME_MAX_FUTURE", _max_future),
    Key(_RS + ("type",), "restart.type", "FEATURESTORE_FLINK_RESTART_STRATEGY", _restart_type),
    Key(_RS + ("initial_delay",), "restart.initial_delay_ms", "FEATURESTORE_FLINK_RESTART_INITIAL_DELAY", _duration),
    Key(_RS + ("max_delay",), "restart.max_delay_ms", "FEATURESTORE_FLINK_RESTART_MAX_DELAY", _duration),
    Key(_RS + ("multiplier",), "restart.multiplier", "FEATURESTORE_FLINK_RESTART_MULTIPLIER", _number),
    Key(_RS + ("reset_after",), "restart.reset_after_ms", "FEATURESTORE_FLINK_RESTART_RESET_AFTER", _duration),
    Key(_RS + ("jitter",), "restart.jitter", "FEATURESTORE_FLINK_RESTART_JITTER", _number),
    Key(_RS + ("max_attempts",), "restart.max_attempts", "FEATURESTORE_FLINK_RESTART_MAX_ATTEMPTS", _attempts),
    Key(_RS + ("max_failures",), "restart.max_failures", "FEATURESTORE_FLINK_RESTART_MAX_FAILURES", _count),
    Key(_RS + ("failure_interval",), "restart.failure_interval_ms", "FEATURESTORE_FLINK_RESTART_FAILURE_INTERVAL",
        _duration),
    Key(_RS + ("delay",), "restart.delay_ms", "FEATURESTORE_FLINK_RESTART_DELAY", _duration),
    Key(("server", "host"), "server.host", "FEATURESTORE_SERVER_HOST", _text),
    Key(("server", "port"), "server.port", "FEATURESTORE_SERVER_PORT", _port),
    Key(("server", "workers"), "server.workers", "FEATURESTORE_SERVER_WORKERS", _count),
    Key(("server", "max_body_bytes"), "server.max_body_bytes", "FEATURESTORE_SERVER_MAX_BODY_BYTES", _count),
    Key(("server", "max_entities"), "server.max_entities", "FEATURESTORE_SERVER_MAX_ENTITIES", _count),
    Key(("server", "max_logged_entities"), "server.max_logged_entities", "FEATURESTORE_SERVER_MAX_LOGGED_ENTITIES",
        _count),
    Key(("server", "tls_cert"), "server.tls_cert", "FEATURESTORE_SERVER_TLS_CERT", _text),
    Key(("server", "tls_key"), "server.tls_key", "FEATURESTORE_SERVER_TLS_KEY", _text),
    Key(("server", "offline_port"), "server.offline_port", "FEATURESTORE_SERVER_OFFLINE_PORT", _optional_port),
    Key(("server", "max_training_rows"), "server.max_training_rows", "FEATURESTORE_SERVER_MAX_TRAINING_ROWS", _count),
    Key(("access_control", "enabled"), "access.enabled", "FEATURESTORE_ACCESS_CONTROL", _flag),
    Key(("access_control", "policy"), "access.policy", "FEATURESTORE_ACCESS_POLICY", _text),
    Key(("access_control", "tokens"), "access.tokens", "FEATURESTORE_ACCESS_TOKENS", _text),
    Key(("access_control", "jwt_public_key"), "access.jwt_public_key", "FEATURESTORE_ACCESS_JWT_PUBLIC_KEY", _text),
    Key(("access_control", "jwt_algorithms"), "access.jwt_algorithms", "FEATURESTORE_ACCESS_JWT_ALGORITHMS", _text),
    Key(("access_control", "jwt_issuer"), "access.jwt_issuer", "FEATURESTORE_ACCESS_JWT_ISSUER", _text),
    Key(("access_control", "jwt_audience"), "access.jwt_audience", "FEATURESTORE_ACCESS_JWT_AUDIENCE", _text),
    Key(("access_control", "jwt_principal_claim"), "access.jwt_principal_claim",
        "FEATURESTORE_ACCESS_JWT_PRINCIPAL_CLAIM", _text),
    Key(("access_control", "jwt_roles_claim"), "access.jwt_roles_claim", "FEATURESTORE_ACCESS_JWT_ROLES_CLAIM", _text),
    Key(("monitor", "max_stream_lag"), "monitor.max_stream_lag", "FEATURESTORE_MONITOR_MAX_STREAM_LAG", _count),
    Key(("monitor", "max_dead_letter_rate"), "monitor.max_dead_letter_rate",
        "FEATURESTORE_MONITOR_MAX_DEAD_LETTER_RATE", _fraction),
    Key(("monitor", "max_skew_rate"), "monitor.max_skew_rate", "FEATURESTORE_MONITOR_MAX_SKEW_RATE", _fraction),
    Key(("monitor", "max_psi"), "monitor.max_psi", "FEATURESTORE_MONITOR_MAX_PSI", _positive),
    Key(("monitor", "dead_letter_window"), "monitor.dead_letter_window_ms", "FEATURESTORE_MONITOR_DEAD_LETTER_WINDOW",
        _duration),
)
ENV_OVERRIDES = {k.attr: k.env for k in KEYS}  # attribute -> environment variable


def _tree() -> dict:
    """The key paths of KEYS as nested dicts (a leaf is its Key)."""
    root: dict = {}
    for k in KEYS:
        node = root
        for part in k.path[:-1]:
            node = node.setdefault(part, {})
        node[k.path[-1]] = k
    return root


def _suggest(path: Tuple[str, ...], known: List[str]) -> str:
    """`` (did you mean 'a.b'?)`` for an unknown key: the closest key at its level, else the closest
    valid key path anywhere (``tls`` at the top level -> ``online_store.tls``)."""
    prefix = ".".join(path[:-1] + ("",))
    near = difflib.get_close_matches(path[-1], known, n=1, cutoff=0.6)
    if near:
        return f" (did you mean '{prefix}{near[0]}'?)"
    leaves = {k.path[-1]: k.dotted for k in KEYS}
    near = difflib.get_close_matches(path[-1], list(leaves), n=1, cutoff=0.75)
    if near:
        return f" (did you mean '{leaves[near[0]]}'?)"
    return f" (valid here: {', '.join(sorted(known))})"


def _walk(node: Any, tree: dict, path: Tuple[str, ...], found: Dict[Key, Any], problems: List[str]) -> None:
    if not isinstance(node, dict):
        where = ".".join(path) if path else "the top level"
        problems.append(f"'{where}' must be a mapping of keys ({', '.join(sorted(tree))}), got "
                        f"{type(node).__name__} {node!r}"[:300])
        return
    for key, value in node.items():
        here = path + (str(key),)
        spec = tree.get(key) if isinstance(key, str) else None
        if spec is None:
            problems.append(f"unknown key '{'.'.join(here)}'{_suggest(here, list(tree))}")
        elif isinstance(spec, Key):
            if isinstance(value, dict) or (isinstance(value, list) and spec.parse is not _redis_url):
                problems.append(f"'{spec.dotted}' expects a single value, got a {type(value).__name__}")
            elif value is not None:
                found[spec] = value
        elif value is not None:
            _walk(value, spec, here, found, problems)


def load_config(repo_path: str | os.PathLike = ".", env: Optional[Mapping[str, str]] = None) -> ProjectConfig:
    """Read ``featurestore.yaml`` (if any) under ``repo_path`` and apply environment overrides.

    Every problem of the file (unknown keys at any level, each with the closest valid key; values of the
    wrong type) is reported in one ConfigError."""
    env = os.environ if env is None else env
    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise ConfigError(f"repo path {root} is not a directory")
    values: Dict[str, Any] = {}
    origins: Dict[str, str] = {}
    problems: List[str] = []
    cfg_file = root / CONFIG_FILE
    if cfg_file.exists():
        import yaml

        try:
            data = yaml.safe_load(cfg_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg_file}: not valid YAML ({str(exc).splitlines()[0]})") from None
        found: Dict[Key, Any] = {}
        _walk(data, _tree(), (), found, problems)
        for key, raw in found.items():
            try:
                values[key.attr] = key.parse(raw, f"{cfg_file}: {key.what or key.dotted}")
                origins[key.attr] = "file"
            except ConfigError as exc:
                problems.append(str(exc).replace(f"{cfg_file}: ", "", 1))
        if problems:
            raise ConfigError(f"{cfg_file}: " + "; ".join(problems))
    feast_cfg = root / "feature_store.yaml"
    if "project" not in values and feast_cfg.exists():  # a Feast repo: reuse its project name
        import yaml

        try:
            feast_project = (yaml.safe_load(feast_cfg.read_text()) or {}).get("project")
        except yaml.YAMLError:
            feast_project = None
        if isinstance(feast_project, str) and feast_project:
            if not PROJECT_NAME.match(feast_project):
                raise ConfigError(f"{feast_cfg}: project: {_bad_project(feast_project)}")
            values["project"], origins["project"] = feast_project, "file"
    for key in KEYS:
        if env.get(key.env) not in (None, ""):
            values[key.attr] = key.parse(env[key.env], f"environment {key.env}")
            origins[key.attr] = "env"
    cfg = _build(root, values)
    _check(cfg, origins, cfg_file)
    return replace(cfg, sources={k.attr: origins.get(k.attr, "default") for k in KEYS})


def _build(root: Path, values: Dict[str, Any]) -> ProjectConfig:
    sections: Dict[str, Dict[str, Any]] = {"restart": {}, "server": {}, "access": {}, "monitor": {}}
    top = {}
    for attr, value in values.items():
        section, _, name = attr.partition(".")
        if name:
            sections[section][name] = value
        else:
            top[attr] = value
    known = {f.name for f in fields(ProjectConfig)}
    return replace(ProjectConfig(repo_path=root), **{k: v for k, v in top.items() if k in known},
                   restart=RestartStrategy(**sections["restart"]), server=ServerConfig(**sections["server"]),
                   access=AccessConfig(**sections["access"]), monitor=MonitorConfig(**sections["monitor"]))


# a project name is a folder of the state and offline roots, a Redis key prefix and part of Kafka topic names
PROJECT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


def _bad_project(name: str) -> str:
    return (f"{name!r} is not a project name: use letters, digits, '_' and '-' (not first); it names the project's "
            "folders, Redis keys and Kafka topics")


def _check(cfg: ProjectConfig, origins: Dict[str, str], cfg_file: Path) -> None:
    """Combinations no single key can check."""
    def origin(attr: str) -> str:
        key = next(k for k in KEYS if k.attr == attr)
        return f"environment {key.env}" if origins.get(attr) == "env" else f"{cfg_file}: {key.dotted}"

    if not PROJECT_NAME.match(cfg.project):
        raise ConfigError(f"{origin('project')}: {_bad_project(cfg.project)}")
    rs = cfg.restart
    for k in KEYS:
        if k.path[:2] == _RS and k.path[2] != "type" and k.attr in origins and k.path[2] not in RESTART_KEYS[rs.type]:
            users = [t for t, names in RESTART_KEYS.items() if k.path[2] in names]
            raise ConfigError(f"{origin(k.attr)} applies to restart strategy {' and '.join(users)}, but the type is "
                              f"{rs.type} (it would be ignored)")
    if rs.max_delay_ms < rs.initial_delay_ms:
        raise ConfigError(f"{origin('restart.max_delay_ms')}: max_delay is shorter than initial_delay")
    if rs.multiplier < 1:
        raise ConfigError(f"{origin('restart.multiplier')}: must be at least 1, got {rs.multiplier}")
    if not 0 <= rs.jitter <= 1:
        raise ConfigError(f"{origin('restart.jitter')}: must be between 0 and 1, got {rs.jitter}")
    tls_files = [a for a in ("redis_tls_ca_cert", "redis_tls_cert", "redis_tls_key") if getattr(cfg, a)]
    if tls_files and not cfg.redis_tls and not cfg.redis_url.startswith("rediss://"):
        raise ConfigError(f"{origin(tls_files[0])} is set but TLS is off: set online_store.tls: true "
                          "(FEATURESTORE_REDIS_TLS) or use a rediss:// URL")
    if bool(cfg.redis_tls_cert) != bool(cfg.redis_tls_key):
        raise ConfigError(f"{origin('redis_tls_cert' if cfg.redis_tls_cert else 'redis_tls_key')}: a client "
                          "certificate needs both online_store.tls_cert and online_store.tls_key")
    if bool(cfg.server.tls_cert) != bool(cfg.server.tls_key):
        raise ConfigError(f"{origin('server.tls_cert' if cfg.server.tls_cert else 'server.tls_key')}: HTTPS needs "
                          "both server.tls_cert and server.tls_key")
    jwt_keys = [k.attr for k in KEYS if k.path[0] == "access_control" and k.path[1].startswith("jwt_")
                and k.attr in origins]
    if jwt_keys and not cfg.access.jwt_public_key:
        raise ConfigError(f"{origin(jwt_keys[0])} is set but access_control.jwt_public_key is not (it would be "
                          "ignored)")
