"""featurestore.yaml: every key at every level is known, or the load fails naming the key path and the
closest valid key (a typo must never turn a setting off silently); typed values; environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import KEYS, RestartStrategy, load_config
from featurestore.errors import ConfigError

REPO_DIR = Path(__file__).resolve().parents[1]


def _load(tmp_path, text: str, env=None):
    (tmp_path / "featurestore.yaml").write_text(text)
    return load_config(tmp_path, env=env or {})


def test_nested_typos_are_errors_naming_the_path_and_the_closest_key_all_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "online_store:\n  redis_url: rediss://h:1/0\n  tsl: true\n  pasword: s3cret\n"
                        "kafka:\n  bootstrap_server: k:9092\nflink:\n  restart_strategy:\n    typ: failure-rate\n")
    text = str(info.value)
    assert "unknown key 'online_store.tsl' (did you mean 'online_store.tls'?)" in text
    assert "unknown key 'online_store.pasword' (did you mean 'online_store.password'?)" in text
    assert "unknown key 'kafka.bootstrap_server' (did you mean 'kafka.bootstrap_servers'?)" in text
    assert "unknown key 'flink.restart_strategy.typ' (did you mean 'flink.restart_strategy.type'?)" in text
    assert "\n" not in text


@pytest.mark.parametrize("text,expected", [
    ("tls: true\n", "unknown key 'tls' (did you mean 'online_store.tls'?)"),
    ("onlinestore:\n  tls: true\n", "unknown key 'onlinestore' (did you mean 'online_store'?)"),
    ("online_store: redis://h:1/0\n", "'online_store' must be a mapping of keys (allow_eviction, password, redis_url, tls, "),
    ("online_store:\n  tls:\n    enabled: true\n", "'online_store.tls' expects a single value, got a dict"),
    ("server:\n  zzz: 1\n", "unknown key 'server.zzz' (valid here: host, max_body_bytes, max_entities, "),
    ("online_store:\n  tls: maybe\n", "redis tls must be true or false, got 'maybe'"),
    ("server:\n  port: 70000\n", "server.port: expected a port (1-65535), got 70000"),
    ("server:\n  max_body_bytes: lots\n", "server.max_body_bytes: expected a whole number >= 1, got 'lots'"),
    ("flink:\n  restart_strategy:\n    type: exponential\n",
     "flink.restart_strategy.type: unknown restart strategy 'exponential' (did you mean 'exponential-delay'?)"),
    ("flink:\n  restart_strategy:\n    reset_after: 10 minutes\n", "flink.restart_strategy.reset_after: cannot parse"),
    ("flink:\n  restart_strategy:\n    max_failures: 3\n",
     "flink.restart_strategy.max_failures applies to restart strategy failure-rate, but the type is exponential-delay"),
    ("flink:\n  restart_strategy:\n    initial_delay: 1m\n    max_delay: 10s\n", "max_delay is shorter than initial_delay"),
    ("online_store:\n  tls_cert: c.pem\n  tls: true\n", "a client certificate needs both"),
    ("server:\n  tls_key: k.pem\n", "HTTPS needs both server.tls_cert and server.tls_key"),
    ("online_store:\n  redis_url: redis+cluster://h1:1,h2\n", "online_store.redis_url: cluster node 'h2' is not host:port"),
    ("online_store:\n  redis_url: [h1:1, {h: 2}]\n", "online_store.redis_url: a list of Redis Cluster nodes must hold"),
    ("online_store:\n  redis_url: []\n", "online_store.redis_url: a list of Redis Cluster nodes must hold"),
    ("online_store:\n  redis_url: h1:6379\n", "online_store.redis_url: expected a redis://, rediss:// or redis+cluster"),
])
def test_config_mistakes_are_one_line_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "my project", "x!", "-x", ".", "", "p\u00e9", "a.b"])
def test_a_project_name_that_is_not_a_safe_name_is_refused(tmp_path, name):
    """The project names folders (state, offline root), Redis keys and Kafka topics: 'project: ../../escaped' wrote
    the ingest state and logs outside .featurestore/, 'my project' made topic names Kafka refuses. One line naming
    where it was set (featurestore.yaml, FEATURESTORE_PROJECT, or the Feast repo's feature_store.yaml)."""
    import json

    with pytest.raises(ConfigError, match=r"featurestore.yaml: project: .* is not a project name"):
        _load(tmp_path, f"project: {json.dumps(name)}\n")
    if name:  # an empty variable, like Feast's empty project, is not used
        with pytest.raises(ConfigError, match=r"environment FEATURESTORE_PROJECT: .* is not a project name"):
            _load(tmp_path, "", env={"FEATURESTORE_PROJECT": name})
        (tmp_path / "featurestore.yaml").unlink()
        (tmp_path / "feature_store.yaml").write_text(f"project: {json.dumps(name)}\n")
        with pytest.raises(ConfigError, match=r"feature_store.yaml: project: .* is not a project name"):
            load_config(tmp_path, env={})
    for good in ("payments", "t_rows_1a2b", "my-team", "_x", "2026"):
        assert _load(tmp_path, f"project: {good}\n").project == good


def test_a_redis_cluster_by_url_or_by_a_list_of_nodes(tmp_path):
    from featurestore.stores import redis_client as orr

    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    assert _load(tmp_path, f"online_store:\n  redis_url: {url}\n").redis_url == url
    listed = _load(tmp_path, "online_store:\n  redis_url: [10.0.0.1:7000, 'redis://10.0.0.2:7001/0']\n")
    assert listed.redis_url == url
    tls = _load(tmp_path, "online_store:\n  redis_url: [rediss://h1:1, h2:2]\n").redis_url
    assert tls == "rediss+cluster://h1:1,h2:2"
    assert _load(tmp_path, "project: p\n", env={"FEATURESTORE_REDIS_URL": url}).redis_url == url
    nodes, opts = orr.parse_cluster_url("rediss+cluster://me:s3cret@h1:1,[::1]:2?ssl_ca_certs=/ca.pem"
                                        "&ssl_check_hostname=false")
    assert nodes == [("h1", 1), ("::1", 2)]
    assert opts == {"username": "me", "password": "s3cret", "ssl": True, "ssl_ca_certs": "/ca.pem",
                    "ssl_check_hostname": False}
    assert orr.redact("redis+cluster://:s3cret@h1:1,h2:2?ssl_ca_certs=/x") == "redis+cluster://:***@h1:1,h2:2"
    assert orr.redact(url) == url
    cfg = _load(tmp_path, f"online_store:\n  redis_url: {url}\n  tls: true\n  tls_ca_cert: /ca.pem\n")
    assert orr.connection_url(cfg).startswith("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001?ssl_ca_certs=%2Fca.pem")


def test_restart_strategies_compile_to_flink_options(tmp_path):
    default = _load(tmp_path, "project: p\n").restart
    assert default == RestartStrategy() and default.type == "exponential-delay"
    assert default.flink_options()["restart-strategy.exponential-delay.reset-backoff-threshold"] == "600000 ms"
    cfg = _load(tmp_path, "flink:\n  restart_strategy:\n    initial_delay: 500ms\n    max_delay: 30s\n"
                          "    multiplier: 1.5\n    reset_after: 5m\n    jitter: 0\n    max_attempts: unlimited\n")
    assert cfg.restart.flink_options() == {
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "500 ms",
        "restart-strategy.exponential-delay.max-backoff": "30000 ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "1.5",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "300000 ms",
        "restart-strategy.exponential-delay.jitter-factor": "0.0",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": "2147483647"}
    rate = _load(tmp_path, "flink:\n  restart_strategy:\n    type: failure-rate\n    max_failures: 4\n"
                           "    failure_interval: 15m\n    delay: 5s\n").restart
    assert rate.flink_options() == {"restart-strategy.type": "failure-rate",
                                    "restart-strategy.failure-rate.max-failures-per-interval": "4",
                                    "restart-strategy.failure-rate.failure-rate-interval": "900000 ms",
                                    "restart-strategy.failure-rate.delay": "5000 ms"}
    assert _load(tmp_path, "flink:\n  restart_strategy:\n    type: none\n").restart.flink_options() == {
        "restart-strategy.type": "disable"}


def test_every_key_has_an_environment_override(tmp_path):
    env = {"FEATURESTORE_FLINK_RESTART_STRATEGY": "failure-rate", "FEATURESTORE_FLINK_RESTART_MAX_FAILURES": "9",
           "FEATURESTORE_SERVER_MAX_LOGGED_ENTITIES": "25", "FEATURESTORE_REDIS_TLS_CA_CERT": "ca.pem",
           "FEATURESTORE_REDIS_TLS": "1"}
    cfg = _load(tmp_path, "server:\n  max_logged_entities: 100\n", env)
    assert cfg.restart.type == "failure-rate" and cfg.restart.max_failures == 9
    assert cfg.server.max_logged_entities == 25 and cfg.redis_tls_ca_cert == "ca.pem"
    assert cfg.sources["server.max_logged_entities"] == "env" and cfg.sources["server.port"] == "default"
    assert len({k.env for k in KEYS}) == len(KEYS) and all(k.env.startswith("FEATURESTORE_") for k in KEYS)


def test_the_example_repo_and_the_documented_keys_agree():
    """Every key of docs/config.md's example is a real key, and every real key is documented there."""
    import re

    load_config(REPO_DIR, env={})
    doc = (REPO_DIR / "docs" / "config.md").read_text()
    block = doc.split("```yaml", 1)[1].split("```", 1)[0]
    documented, stack = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)([a-z][a-z0-9_]*):", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        documented.add(".".join(stack))
    leaves = {k.dotted for k in KEYS}
    assert leaves <= documented, f"not in docs/config.md: {sorted(leaves - documented)}"
    sections = {".".join(k.path[:i]) for k in KEYS for i in range(1, len(k.path))}
    assert documented <= leaves | sections, f"documented but not keys: {sorted(documented - leaves - sections)}"
