"""verify reports zero skew on clean traffic and finds skew injected on purpose."""

import json

import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from featurestore.stores import online_redis as orr
from tests.test_serving_log import serve_traffic

pytestmark = [pytest.mark.redis]


@pytest.fixture
def store(materialized_store):
    return materialized_store(21)


def test_clean_traffic_has_zero_skew(store, tmp_path):
    served = serve_traffic(store, n=30, seed=1)
    report = store.verify("logged_model")
    assert report.rows == len(served)
    assert report.clean and report.exceeds(0.0) == []
    res = CliRunner().invoke(app, ["verify", "logged_model", "--repo", str(store.repo_path), "--html",
                                   str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "no skew" in (tmp_path / "r.html").read_text()


def test_injected_skew_is_found_and_gates(store, tmp_path):
    # Corrupt the online state of one user: drop its most recent event from the profile view.
    client = store.online_store().client
    key = orr.entity_key(store.config.project, "profile", ["u0"])
    doc = json.loads(client.get(key))
    doc["ts"] = doc["ts"][:-1]
    doc["c"] = [col[:-1] for col in doc["c"]]
    client.set(key, json.dumps(doc))
    served = serve_traffic(store, n=60, seed=2)
    report = store.verify("logged_model")
    skewed = {f for f, s in report.features.items() if s.skew_rate > 0}
    assert skewed and skewed <= {"last_amount", "last_tag", "last_qty_plus_one"}
    worst = report.features[sorted(skewed)[0]]
    assert all(e["entity"] == {"user_id": "u0"} for e in worst.examples)
    assert report.exceeds(0.0) and not report.exceeds(1.0)
    res = CliRunner().invoke(app, ["verify", "logged_model", "--repo", str(store.repo_path), "--html",
                                   str(tmp_path / "r.html")])
    assert res.exit_code == 1 and "skew above" in res.output
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "last_" in page and "skew in" in page
    assert len(served) == report.rows


def test_a_logged_key_that_does_not_fit_its_declared_type_is_a_one_line_error(store):
    """Logs keep the keys' declared types; a logged key of another type (written under an older
    definition of the key) is named, not coerced."""
    import pandas as pd

    from featurestore import serving_log
    from featurestore.errors import RequestError
    from tests.randomrepo import BASE

    res = store.get_online_features([{"user_id": "u1"}], feature_service="logged_model",
                                    request_time=BASE + pd.Timedelta("1min"))
    record = serving_log.build_record(store, {**res.to_dict(), "user_id": [12]}, ["user_id"],
                                      {"profile": ["last_tag"]}, "logged_model", 0, "old-def")
    serving_log.write(store.online_store().client, store.config.project, record)
    with pytest.raises(RequestError, match=r"^verify 'logged_model': logged row \d has join key user_id=12, "
                                           r"not a string \(logged under another definition of the key\?\)$"):
        store.verify("logged_model")
