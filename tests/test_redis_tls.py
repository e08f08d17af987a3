"""Redis over TLS with a private CA (featurestore.yaml online_store.tls / tls_ca_cert): a real TLS-only
redis-server on a spare port, a CA and server certificate made by openssl. The CA configured: materialize
and lookups work, in this process and the way the streaming job's writer connects. Not configured, another
CA, or TLS off: refused with one line."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.errors import InfraError
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.randomrepo import random_events, random_requests, write_events, write_repo
from tests.services import RedisServer, make_ca

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    certs = make_ca(folder / "certs")
    server = RedisServer(folder / "redis", tls=certs).start()
    yield server, certs
    server.stop()


def _store(root, server, yaml_tail: str) -> FeatureStore:
    (root / "featurestore.yaml").write_text(f"project: tls_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n"
                                            f"online_store:\n{yaml_tail}")
    # FEATURESTORE_REDIS_URL (the shared test Redis) would win over the file: point at the TLS server
    return FeatureStore(root, config=dataclasses.replace(load_config(root), redis_url=server.url))


def test_redis_over_tls_with_a_private_ca(tmp_path, tls_redis):
    server, certs = tls_redis
    root = write_repo(tmp_path / "repo")
    (root / "certs").mkdir()
    (root / "certs" / "ca.pem").write_bytes(certs.ca.read_bytes())
    store = _store(root, server, "  tls: true\n  tls_ca_cert: certs/ca.pem\n")  # relative to the repo
    events = random_events(4)
    write_events(root, events)
    store.backfill()
    store.materialize()
    requests = random_requests(4, events, n=20)
    offline = store.get_historical_features(requests, feature_service="everything")
    for i, row in enumerate(requests.itertuples()):
        got = store.get_online_features([{"user_id": row.user_id, "shop": row.shop}], feature_service="everything",
                                        request_time=row.event_timestamp).to_dict()
        assert got["events_all"][0] == offline["events_all"].iloc[i]
    assert store.config.redis_tls_ca_cert == "certs/ca.pem" and store.config.redis_tls_check_hostname
    # the streaming job's Redis writes connect with exactly these options (online.RedisWrites)
    options = streaming.redis_options(store.config)
    assert options["url"].startswith("rediss://") and "ssl_ca_certs=" in options["url"]
    client = orr.connect(options["url"], options["password"], options["tls"])
    assert client.ping() and client.connection_pool.connection_kwargs["ssl_check_hostname"] is True
    client.close()


@pytest.mark.parametrize("yaml_tail,expected", [
    ("  tls: true\n", "certificate verify failed"),  # the system's CAs do not know the private CA
    ("  tls: true\n  tls_ca_cert: other-ca.pem\n", "certificate verify failed"),
    ("  tls: false\n", "cannot reach Redis at redis://127.0.0.1:"),  # the server speaks TLS only
])
def test_redis_tls_misconfigured_is_refused_in_one_line(tmp_path, tls_redis, yaml_tail, expected):
    server, _ = tls_redis
    root = write_repo(tmp_path / "repo")
    make_ca(tmp_path / "other")
    (root / "other-ca.pem").write_bytes((tmp_path / "other" / "ca-ca.pem").read_bytes())
    store = _store(root, server, yaml_tail)
    with pytest.raises(InfraError) as info:
        store.online_store()._guard(store.online_store().client.ping)
    text = str(info.value)
    assert expected in text and "\n" not in text, text


def test_tls_settings_without_tls_are_a_config_error(tmp_path):
    from featurestore.errors import ConfigError

    (tmp_path / "featurestore.yaml").write_text("online_store:\n  tls_ca_cert: ca.pem\n")
    with pytest.raises(ConfigError, match=r"online_store.tls_ca_cert is set but TLS is off"):
        load_config(tmp_path, env={})
