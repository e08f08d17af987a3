"""The catalog (SPEC §6, §8): list, search and describe from Python and the CLI, on the example repo."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore import catalog
from featurestore.cli import app
from featurestore.errors import RequestError
from featurestore.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def store():
    return FeatureStore(ROOT)


def names(rows):
    return [r["name"] for r in rows]


def test_every_kind_lists_every_object(store):
    repo = store.repo
    assert names(catalog.records(repo, "entities")) == list(repo.entities)
    assert names(catalog.records(repo, "sources")) == [*repo.sources, *repo.request_sources]
    assert names(catalog.records(repo, "views")) == [*repo.views, *repo.request_views]
    assert names(catalog.records(repo, "services")) == list(repo.services)
    assert names(catalog.records(repo, "features")) == [f"{v}:{f}" for views in (repo.views, repo.request_views)
                                                        for v, view in views.items() for f in view.feature_names]
    assert repo.request_views and repo.request_sources  # the example repo has request-time features
    with pytest.raises(RequestError, match="unknown kind 'widgets': use one of entities, sources, views"):
        catalog.records(repo, "widgets")


def test_filters_by_tag_owner_and_search(store):
    repo = store.repo
    assert names(catalog.list_objects(repo, "views", tag=("team", "risk"))) == ["user_spend", "user_profile",
                                                                               "transaction_risk"]
    assert names(catalog.list_objects(repo, "views", tag=("pii", ""))) == ["user_profile"]  # any value
    assert names(catalog.list_objects(repo, "sources", owner="payments-platform@example.com")) == ["transactions"]
    assert names(catalog.list_objects(repo, "views", query="MERCHANT velocity")) == ["merchant_activity"]
    assert catalog.list_objects(repo, "views", query="no such words") == []
    found = catalog.search(repo, "spend")
    assert {r["kind"] for r in found} >= {"feature view", "feature"}
    assert [r["name"] for r in store.list_feature_views(tags={"team": "merchant-risk"})] == ["merchant_activity"]


def test_describe_gives_lineage_and_origin(store):
    rec = store.describe("user_spend:spend_usd_1h")
    assert rec["kind"] == "feature" and rec["function"] == "sum" and rec["window_ms"] == 3_600_000
    assert rec["source"] == "transactions" and rec["entities"] == ["user"] and rec["view"] == "user_spend"
    assert rec["services"] == ["fraud_model_v1", "fraud_model_v2"]
    file, line = rec["defined_at"].rsplit(":", 1)
    assert file == "definitions/payments.py" and "spend_usd_1h" in (ROOT / file).read_text().splitlines()[int(line) - 1]
    view = store.describe("user_spend")
    assert view["services"] == ["fraud_model_v1", "fraud_model_v2"]
    assert view["data_fingerprint"] == store.repo.views["user_spend"].data_fingerprint
    assert "user_spend" in store.describe("transactions")["views"]
    risk = store.describe("transaction_risk:foreign_merchant")  # request-time features: lineage too
    assert risk["type"] == "request" and risk["input"] == "merchant_country IS DISTINCT FROM last_country_7d"
    assert risk["services"] == ["fraud_model_v2"] and risk["source"] == "transaction_request, user_spend"
    file, line = risk["defined_at"].rsplit(":", 1)
    assert "foreign_merchant" in (ROOT / file).read_text().splitlines()[int(line) - 1]
    assert store.describe("transaction_request")["views"] == ["transaction_risk"]
    with pytest.raises(RequestError) as info:
        store.describe("user_spnd")
    assert str(info.value) == "nothing called 'user_spnd' in the catalog (did you mean 'user_spend', 'user'?)"
    assert store.get_feature_view("user_spend") is store.repo.views["user_spend"]
    with pytest.raises(RequestError, match=r"no view called 'usr_spend' \(did you mean 'user_spend'\?\)"):
        store.get_feature_view("usr_spend")


def test_cli_list_and_describe():
    res = runner.invoke(app, ["list", "features", "--repo", str(ROOT), "--tag", "team=merchant-risk", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == [f"merchant_activity:{f}"
                                        for f in FeatureStore(ROOT).repo.views["merchant_activity"].feature_names]
    res = runner.invoke(app, ["list", "views", "--repo", str(ROOT), "--search", "velocity"])
    assert res.exit_code == 0 and "merchant_activity" in res.output and "user_spend" not in res.output
    assert "Merchant-side velocity." in res.output  # not cut when piped
    res = runner.invoke(app, ["describe", "fraud_model_v1", "--repo", str(ROOT), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["kind"] == "feature service"
    res = runner.invoke(app, ["describe", "nope", "--repo", str(ROOT)])
    assert res.exit_code == 1 and res.output.strip() == "error: nothing called 'nope' in the catalog"


def test_cli_search_finds_every_kind_and_prints_json():
    from featurestore import catalog

    repo = FeatureStore(ROOT).repo
    res = runner.invoke(app, ["search", "merchant", "--repo", str(ROOT), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["kind"], r["name"]) for r in rows] == [(r["kind"], r["name"]) for r in catalog.search(repo, "merchant")]
    assert {r["kind"] for r in rows} >= {"entity", "feature view", "feature"}
    res = runner.invoke(app, ["search", "velocity", "--repo", str(ROOT), "--tag", "team=merchant-risk"])
    assert res.exit_code == 0 and "merchant_activity" in res.output and "user_spend" not in res.output
    res = runner.invoke(app, ["search", "no-such-word-anywhere", "--repo", str(ROOT), "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == []
