"""The offline server's metrics (SPEC §6 "health and metrics endpoints", §8 monitoring): it had no /metrics.
Random calls of every outcome (served, unauthenticated, unauthorized, a mistaken reference, a refused API)
are counted exactly by API and outcome, with the rows served; scraped from ``serve-offline --metrics-port``'s
/metrics (401 without a token, 403 without read_metadata on the project) and from the HTTP server's /metrics
of the same process (``serve --offline-port``)."""

from __future__ import annotations

import random
import re
import uuid

import httpx
import pandas as pd
import pyarrow.flight as fl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestore import server_offline
from featurestore.cli import app as cli
from featurestore.errors import AccessError, RequestError
from featurestore.offline_client import OfflineClient
from featurestore.server import create_app
from featurestore.server_offline_metrics import serve_metrics
from featurestore.store import FeatureStore
from tests.services import free_port

pytestmark = [pytest.mark.redis]

POLICY = """
roles:
  admin: [{actions: all}]
  trainer: [{actions: [read_offline], views: [spend]}, {actions: [read_metadata], views: [secret]}]
principals:
  admin: [admin]
  trainer: [trainer]
"""


def _repo(root):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    pd.DataFrame({"user_id": ["u1", "u2", "u1"], "x": [1.0, 2.0, 3.0],
                  "ts": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:10", "2026-01-01 00:20"], utc=True)}
                 ).to_parquet(root / "data" / "e.parquet")
    (root / "definitions" / "features.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        'events = Source(schema={"user_id": "string", "x": "float64", "ts": "timestamp"}, timestamp="ts", '
        'batch=ParquetFiles("data/*.parquet"))\n'
        'spend = FeatureView(entities=[user], source=events, features=[Aggregation("x", "sum", "1h", name="s1h")])\n'
        'secret = FeatureView(entities=[user], source=events, features=[Aggregation("x", "max", "1h", name="m1h")])\n'
        'hidden = FeatureView(entities=[user], source=events, features=[Aggregation("x", "min", "1h", name="n1h")])\n')
    (root / "featurestore.yaml").write_text(f"project: om_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n"
                                            "access_control:\n  enabled: true\n")
    (root / "access.yaml").write_text(POLICY)


def test_every_call_is_counted_by_api_and_outcome(tmp_path):
    _repo(tmp_path)
    store = FeatureStore(tmp_path)
    store.apply()
    store.backfill()
    tokens = {}
    for p in ("admin", "trainer"):
        res = CliRunner().invoke(cli, ["auth", "create", p, "--repo", str(tmp_path)])
        assert res.exit_code == 0, res.output
        tokens[p] = res.stdout.strip().splitlines()[-1]
    port, metrics_port = free_port(), free_port()
    server = server_offline.start(store, "127.0.0.1", port)
    web = serve_metrics(store, server.gate, server.metrics, "127.0.0.1", metrics_port)
    rng = random.Random(3)
    want = {}  # (api, outcome) -> calls
    rows = entity_rows = 0
    try:
        for _ in range(24):
            kind = rng.choice(["ok", "unauthenticated", "unauthorized", "hidden", "invalid", "refused"])
            n = rng.randint(1, 5)
            entity_df = pd.DataFrame({"user_id": [rng.choice(["u1", "u2", "u3"]) for _ in range(n)],
                                      "event_timestamp": pd.Timestamp("2026-01-01 00:30", tz="UTC")})
            token = None if kind == "unauthenticated" else tokens["trainer"]
            api = "get_historical_features"
            with OfflineClient("127.0.0.1", port, token=token, timeout=60) as client:
                if kind == "refused":
                    api = "persist"
                    with pytest.raises(fl.FlightServerError):
                        list(client._client.do_action(fl.Action("persist", b""), client._options))
                elif kind == "ok":
                    got = client.get_historical_features(entity_df, features=["spend:s1h"])
                    rows += len(got)
                    entity_rows += n
                else:
                    # a view the trainer may see but not read is refused; one it may not see answers as
                    # an unknown name (no existence probe) and counts as a mistaken reference
                    refs = {"unauthenticated": ["spend:s1h"], "unauthorized": ["secret:m1h"],
                            "hidden": ["hidden:n1h"], "invalid": ["spend:s1"]}[kind]
                    refused = kind in ("unauthenticated", "unauthorized")
                    error, match = (AccessError, None) if refused else (RequestError, "unknown|has no")
                    with pytest.raises(error, match=match):
                        client.get_historical_features(entity_df, features=refs)
                    if kind == "hidden":
                        kind = "invalid"
            if kind == "unauthenticated":
                api = "do_exchange"  # refused before the command is read
            want[(api, kind)] = want.get((api, kind), 0) + 1
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(url, timeout=30).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {tokens['trainer']}"}, timeout=30).status_code == 403
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=30)
        assert scraped.status_code == 200
        # the HTTP server of the same process (serve --offline-port) exports them too
        http = TestClient(create_app(FeatureStore(tmp_path))).get(
            "/metrics", headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert http.status_code == 200
        for text in (scraped.text, http.text):
            got = {(a, o): float(v) for a, o, v in re.findall(
                r'featurestore_offline_calls_total\{api="([^"]+)",outcome="([^"]+)"\} (\S+)', text)}
            assert got == {k: float(v) for k, v in want.items()}, text
            assert f"featurestore_offline_training_set_rows_total {float(rows)}" in text
            assert f"featurestore_offline_entity_rows_total {float(entity_rows)}" in text
            calls = want.get(("get_historical_features", "ok"), 0)
            assert f"featurestore_offline_training_set_seconds_count {float(calls)}" in text
    finally:
        web.should_exit = True
        server.shutdown()
