"""A service readable does not make the views it reads readable (SPEC §8, docs/access-control.md): the
catalog record of a service (``GET /catalog/{name}``, the web catalog's service page) lists only features of
views the caller may read, the page hides the service's definition (it names the views) and every skew plot
(service and view pages) leaves out the features of views the caller may not read. Random policies: which
views a principal's team may read is drawn per seed."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestore.cli import app as cli
from featurestore.server import create_app
from featurestore.store import FeatureStore
from featurestore.verify import FeatureSkew, VerifyReport, save_run

pytestmark = [pytest.mark.redis]

VIEWS = ("alpha", "bravo", "charlie", "delta")


def _repo(root, readable):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    pd.DataFrame({"user_id": ["u1"], "x": [1.0], "ts": [pd.Timestamp("2026-01-01", tz="UTC")]}).to_parquet(
        root / "data" / "e.parquet")
    views = "\n".join(
        f'{v} = FeatureView(entities=[user], source=events, tags={{"team": "{"a" if v in readable else "b"}"}}, '
        f'features=[Aggregation("x", "sum", "1h", name="{v}_hush_0"), Aggregation("x", "max", "1h", name="{v}_hush_1")])'
        for v in VIEWS)
    (root / "definitions" / "features.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureService, FeatureView, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        'events = Source(schema={"user_id": "string", "x": "float64", "ts": "timestamp"}, timestamp="ts", '
        'batch=ParquetFiles("data/*.parquet"))\n'
        f"{views}\n"
        f'svc = FeatureService(features=[{", ".join(VIEWS)}], tags={{"team": "a"}})\n')
    (root / "featurestore.yaml").write_text("project: svcpage\ndefinitions: definitions\n"
                                            "access_control:\n  enabled: true\n")
    (root / "access.yaml").write_text("roles:\n  a-reader: [{actions: [read_metadata], tags: {team: a}}]\n"
                                      "principals:\n  ann: [a-reader]\n")


@pytest.mark.parametrize("seed", range(3))
def test_a_service_page_shows_only_features_of_readable_views(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    readable = set(rng.sample(VIEWS, rng.randint(1, len(VIEWS) - 1)))
    hidden = set(VIEWS) - readable
    _repo(tmp_path, readable)
    store = FeatureStore(tmp_path)
    res = CliRunner().invoke(cli, ["auth", "create", "ann", "--repo", str(tmp_path)])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    columns = [f"{v}_hush_{i}" for v in VIEWS for i in range(2)]
    save_run(store, VerifyReport("svc", 3, {c: FeatureSkew(c, rows=3, mismatch=1) for c in columns}, []))
    client = TestClient(create_app(store))
    auth = {"Authorization": f"Bearer {token}"}
    rec = client.get("/catalog/svc", headers=auth).json()
    assert sorted(rec["views"]) == sorted(readable)
    assert sorted(rec["features"]) == sorted(f"{v}:{v}_hush_{i}" for v in readable for i in range(2))
    pages = {"service": client.get("/ui/service/svc", headers=auth)}
    for v in readable:
        pages[v] = client.get(f"/ui/view/{v}", headers=auth)
    for name, page in pages.items():
        assert page.status_code == 200, (name, page.text[:300])
        for v in hidden:  # neither the view nor any of its features, anywhere on the page
            assert v not in page.text, (name, v)
    service = pages["service"].text
    assert "definition-hidden" in service and "FeatureService(" not in service
    for v in readable:
        assert f"{v}_hush_0" in service and f"{v}_hush_1" in service
    # who may read every view sees all of it (the admin's view: access control off)
    monkeypatch.setenv("FEATURESTORE_ACCESS_CONTROL", "false")
    open_page = TestClient(create_app(FeatureStore(tmp_path))).get("/ui/service/svc").text
    assert all(f"{v}_hush_0" in open_page for v in VIEWS) and "FeatureService(" in open_page
