"""The web catalog in a real headless Chromium, against a real `featurestore serve` with access control on:
log in, the overview and its lineage, search finds a feature by its tag, a view page shows its lineage,
definition, fingerprints, offline versions and freshness, a service page its skew history with a plot, and
another team's principal sees only what it may read. One server and one browser for the module.

``FEATURESTORE_SCREENSHOTS=docs`` writes the screenshots to docs/screenshots/ (committed); otherwise to a
temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore.cli import app as cli
from featurestore.store import FeatureStore
from tests.browser import Browser
from tests.served import ROOT, drop_online, example_repo, serve

pytestmark = [pytest.mark.redis, pytest.mark.slow]
runner = CliRunner()

POLICY = """
roles:
  admin: [{actions: all}]
  fraud-online: [{actions: [read_metadata, read_online], services: [fraud_model_v1]}]
principals:
  lead: [admin]
  growth-svc: [fraud-online]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = example_repo(tmp_path_factory.mktemp("ui"), yaml_extra="access_control:\n  enabled: true\n")
    (root / "access.yaml").write_text(POLICY)
    views = (root / "definitions" / "payments.py").read_text()
    (root / "definitions" / "payments.py").write_text(views.replace(
        '    tags={"team": "risk", "domain": "payments"},\n)\n\nuser_profile',
        '    tags={"team": "risk", "domain": "payments"},\n    expected_freshness="1h",\n)\n\nuser_profile', 1))
    store = FeatureStore(root)
    store.apply()
    store.backfill()
    store.materialize()
    rows = [{"user_id": f"u{i:04d}", "merchant_id": f"m{i % 40:03d}"} for i in range(1, 30)]
    for at in ("2026-10-31T06:00:00Z", "2026-10-31T18:00:00Z"):  # logged lookups, then two verify runs
        store.get_online_features(rows, feature_service="fraud_model_v1", request_time=pd.Timestamp(at))
        store.verify("fraud_model_v1")
    # a training set of the morning's rows only: the evening's served values drift from it
    store.get_historical_features(pd.DataFrame(rows).assign(event_timestamp=pd.Timestamp("2026-10-31T06:00:00Z")),
                                  feature_service="fraud_model_v1", save_as="morning")
    yield root
    drop_online(store)


@pytest.fixture(scope="module")
def tokens(repo):
    out = {}
    for p in ("lead", "growth-svc"):
        res = runner.invoke(cli, ["auth", "create", p, "--repo", str(repo)])
        assert res.exit_code == 0, res.output
        out[p] = res.stdout.strip().splitlines()[-1]
    return out


@pytest.fixture(scope="module")
def site(repo, tokens, tmp_path_factory):
    with serve(repo, tmp_path_factory.mktemp("ui-log") / "serve.log") as (_, _client, url):
        browser = Browser()
        try:
            yield browser, url
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    if os.environ.get("FEATURESTORE_SCREENSHOTS") == "docs":
        return ROOT / "docs" / "screenshots"
    return tmp_path_factory.mktemp("screenshots")


def login(browser, url, token):
    browser.open(f"{url}/ui/logout")
    assert browser.url().endswith("/ui/login")
    browser.submit("#login-form", token=token)


def test_a_browser_must_log_in(site, tokens):
    browser, url = site
    browser.open(f"{url}/ui/logout").open(f"{url}/ui/view/user_spend")
    assert browser.text("h1") == "Log in" and browser.js("document.querySelector('#token') !== null")
    browser.submit("#login-form", token="fst_00000000_" + "x" * 43)
    assert "not valid" in browser.text("#login-error")
    browser.submit("#login-form", token=tokens["lead"])
    assert browser.url() == f"{url}/ui/view/user_spend"  # back where it was going
    assert browser.text("#object-name") == "user_spend"


def test_overview_lists_every_kind_and_draws_the_project(site, tokens, shots):
    browser, url = site
    login(browser, url, tokens["lead"])
    browser.open(f"{url}/ui/")
    assert browser.all_text("#view-table td:first-child a") == ["user_spend", "user_profile", "merchant_activity",
                                                                 "transaction_risk"]  # a request view too
    assert sorted(browser.all_text("#service-table td:first-child a")) == ["fraud_model_v1", "fraud_model_v2",
                                                                           "growth_model"]
    nodes = set(browser.attrs("#lineage a.node", "data-name"))
    assert nodes == {"transactions", "user_spend", "user_profile", "merchant_activity", "fraud_model_v1",
                     "fraud_model_v2", "growth_model", "transaction_request", "transaction_risk"}
    edges = set(zip(browser.attrs("#lineage path.edge", "data-from"), browser.attrs("#lineage path.edge", "data-to")))
    assert ("source:transactions", "view:merchant_activity") in edges
    assert ("view:merchant_activity", "service:growth_model") in edges
    # a request view: fed by its request source and by the view it reads
    assert {("source:transaction_request", "view:transaction_risk"), ("view:user_spend", "view:transaction_risk"),
            ("view:transaction_risk", "service:fraud_model_v2")} <= edges
    browser.screenshot(shots / "catalog.png")


def test_search_finds_a_feature_by_its_tag(site, tokens, shots):
    browser, url = site
    login(browser, url, tokens["lead"])
    browser.open(f"{url}/ui/")
    browser.submit("form[role=search]", q="pii=country")  # the search box, as a person types it
    found = list(zip(browser.attrs("tr.result", "data-kind"), browser.attrs("tr.result", "data-name")))
    assert ("feature", "user_profile:home_country") in found and ("view", "user_profile") in found
    assert all(name.startswith("user_profile") for _, name in found)
    browser.screenshot(shots / "search.png")
    browser.click('tr.result[data-name="user_profile:home_country"] a.ref')
    assert browser.text("#object-name") == "user_profile:home_country"
    assert {"user_profile", "home_country", "fraud_model_v1", "transactions"} <= {
        t.strip() for t in browser.all_text("#lineage a.node text")}


def test_a_view_page_shows_lineage_definition_and_state(site, tokens, repo, shots):
    browser, url = site
    login(browser, url, tokens["lead"])
    browser.open(f"{url}/ui/view/user_spend")
    edges = set(zip(browser.attrs("#lineage path.edge", "data-from"), browser.attrs("#lineage path.edge", "data-to")))
    assert ("source:transactions", "view:user_spend") in edges
    assert ("view:user_spend", "feature:user_spend:spend_usd_1h") in edges
    assert ("feature:user_spend:spend_usd_1h", "service:fraud_model_v1") in edges
    assert browser.attrs('#lineage a.node[data-name="fraud_model_v1"]', "href") == ["/ui/service/fraud_model_v1"]
    store = FeatureStore(repo)
    view = store.repo.views["user_spend"]
    assert browser.text("#defined-at") == "definitions/payments.py:8"
    marked = browser.all_text("#definition .hl")
    assert marked[0].strip().endswith("user_spend = FeatureView(") and 'expected_freshness="1h",' in "".join(marked)
    assert view.data_fingerprint in browser.text("#fingerprints") and view.meta_fingerprint in browser.text(
        "#fingerprints")
    assert "added" in browser.text("#fingerprint-history")
    versions = browser.all_text("#versions tr td:first-child")
    assert versions == [str(m["version"]) for m in reversed(store.offline.table("user_spend").history())]
    fresh = browser.text("#freshness")
    assert "2026-10-31" in fresh and "materialize" in fresh
    assert browser.js("document.querySelector('#freshness td.bad') !== null")  # a month old, expected within 1h
    browser.screenshot(shots / "view.png")


def test_drift_of_served_values_is_plotted_for_who_may_read_them(site, tokens, repo):
    from featurestore import drift

    browser, url = site
    res = runner.invoke(cli, ["monitor", "--repo", str(repo), "--drift", "fraud_model_v1=morning"])
    assert res.exit_code == 1 and "breach: view 'user_spend'" in res.stderr  # a month old: stale anyway
    report = drift.last_report(FeatureStore(repo), "fraud_model_v1")
    assert report.training_set == "morning" and report.served_rows == 58 and report.training_rows == 29
    login(browser, url, tokens["lead"])
    browser.open(f"{url}/ui/service/fraud_model_v1")
    card = 'div.drift[data-service="fraud_model_v1"]'
    assert "58 served rows" in browser.text(card) and "morning" in browser.text(card)
    shown = dict(zip(browser.attrs(f"{card} tr.feature", "data-feature"), browser.all_text(f"{card} td.psi")))
    assert len(shown) == 15 and shown == {f: f"{d.psi:.4f}" for f, d in report.features.items()}
    bins = report.features["tx_count_1h"].bins
    plot = "#drift-fraud_model_v1-tx_count_1h"
    assert browser.attrs(f"{plot} rect.bar.training", "data-bin") == [b[0] for b in bins]
    assert [float(x) for x in browser.attrs(f"{plot} rect.bar.training", "data-share")] == [b[1] for b in bins]
    assert [float(x) for x in browser.attrs(f"{plot} rect.bar.served", "data-share")] == [b[2] for b in bins]
    browser.open(f"{url}/ui/view/merchant_activity")  # a view's page: its own features only
    assert set(browser.attrs(f"{card} tr.feature", "data-feature")) == {
        "merchant_tx_count_1h", "merchant_volume_1d", "merchant_distinct_users_1h"}
    drifted = [f for f, d in report.features.items() if d.psi is not None and d.psi > 0.2]
    browser.open(f"{url}/ui/monitor")
    assert len(browser.attrs('#breaches li.breach[data-kind="drift"]', "data-kind")) == len(drifted)
    assert browser.attrs("#drift tr[data-service]", "data-service") == ["fraud_model_v1"]
    assert browser.text('#drift tr[data-service="fraud_model_v1"] td.over') == ", ".join(sorted(drifted))
    top = max(d.psi for d in report.features.values() if d.psi is not None)
    assert f"{top:.4f}" in browser.text('#drift tr[data-service="fraud_model_v1"]')
    # another team, granted read_metadata and read_online on the service: no read_offline, no values
    login(browser, url, tokens["growth-svc"])
    browser.open(f"{url}/ui/service/fraud_model_v1")
    assert browser.text("#object-name") == "fraud_model_v1" and browser.attrs(card, "data-service") == []
    browser.open(f"{url}/ui/monitor")
    assert browser.attrs('li.breach[data-kind="drift"]', "data-kind") == []
    assert browser.attrs("#drift tr[data-service]", "data-service") == []


def test_a_service_page_plots_its_skew_history(site, tokens, shots):
    browser, url = site
    login(browser, url, tokens["lead"])
    browser.open(f"{url}/ui/service/fraud_model_v1")
    card = browser.text('.skew[data-service="fraud_model_v1"]')
    assert "2 verify runs" in card
    series = browser.attrs("#skew-fraud_model_v1 polyline.series", "data-name")
    assert "tx_count_1h" in series and len(series) >= 6
    points = browser.js("document.querySelector('#skew-fraud_model_v1 polyline').getAttribute('points')")
    assert len(points.split()) == 2  # one point per run
    browser.screenshot(shots / "service.png")
    browser.open(f"{url}/ui/monitor")
    assert "view 'user_spend': newest event" in browser.text("#breaches")
    browser.screenshot(shots / "monitor.png")


def test_another_team_sees_only_what_it_may_read(site, tokens):
    browser, url = site
    login(browser, url, tokens["growth-svc"])
    browser.open(f"{url}/ui/")
    assert browser.all_text("#service-table td:first-child a") == ["fraud_model_v1"]
    assert browser.all_text("#view-table td:first-child a") == []
    assert set(browser.attrs("#lineage a.node", "data-name")) <= {"fraud_model_v1"}
    browser.open(f"{url}/ui/view/user_spend")
    assert browser.text("h1") == "Not found"
    browser.submit("form[role=search]", q="team=risk")
    assert browser.attrs("tr.result", "data-name") == ["fraud_model_v1"]
    browser.open(f"{url}/ui/service/fraud_model_v1")
    assert set(browser.attrs("#lineage a.node", "data-name")) == {"fraud_model_v1"}  # its views stay hidden
    browser.open(f"{url}/ui/monitor")
    assert browser.all_text("#freshness td:first-child a") == [] and "user_spend" not in browser.text("body")


def test_featurestore_ui_serves_and_opens_the_catalog(repo, tmp_path):
    """`featurestore ui` serves like `serve` and opens /ui/ in the user's browser ($BROWSER, as webbrowser reads
    it: here a command that writes the URL it was given to a file)."""
    import subprocess
    import sys
    import time

    from tests.services import free_port

    port, opened = free_port(), tmp_path / "opened.txt"
    fake = f"{sys.executable} -c \"import sys; open('{opened}', 'w').write(sys.argv[1])\" %s"
    proc = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "ui", "--repo", str(repo), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "BROWSER": fake})
    try:
        deadline = time.monotonic() + 60
        while not (opened.exists() and opened.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.2)
        assert opened.read_text() == f"http://127.0.0.1:{port}/ui/"
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/ui/").status_code == 401  # access control is on: log in first
    finally:
        proc.terminate()
        proc.wait(timeout=30)
