"""One serving-log table per stream (SPEC §7): lookups logged by feature list (the ``_adhoc`` stream) and by
services named ``adhoc``, ``_x`` and ``x`` land in four tables, each holding exactly its own lookups; before,
the table name was the stream's name with leading ``_`` stripped, so ``adhoc`` shared the feature-list
lookups' table and ``_x`` shared ``x``'s (training_set_from_logs and verify read the other's rows). The
feature-list stream's own name is refused as a service name, in one line."""

from __future__ import annotations

import pandas as pd
import pytest

from featurestore import FeatureStore, serving_log
from featurestore.errors import FeatureStoreError
from tests import logrepo

pytestmark = [pytest.mark.redis]

SERVICES = ["adhoc", "_x", "x"]
EXTRA = "".join(f"\n{name} = FeatureService(features=[account_stats], "
                "logging=LoggingConfig(enabled=True, sample_rate=1.0))\n" for name in SERVICES)


def test_each_stream_ships_to_its_own_table(tmp_path, redis_client):
    from tests.conftest import drop_project

    root = logrepo.write_repo(tmp_path / "repo")
    (root / "definitions" / "features.py").write_text(logrepo.DEFINITIONS + EXTRA)
    fs = FeatureStore(root)
    try:
        events = logrepo.random_payments(3, n=120)
        logrepo.write_payments(root, events)
        fs.backfill()
        fs.materialize()
        want = {s: set() for s in SERVICES + [serving_log.ADHOC]}
        for i, lookup in enumerate(logrepo.random_lookups(3, events, n=24)):
            stream = (SERVICES + [serving_log.ADHOC])[i % 4]
            kwargs = ({"features": ["account_stats:n_1m"], "log": True} if stream == serving_log.ADHOC
                      else {"feature_service": stream})
            rows = [{"account_id": lookup["rows"][0]["account_id"]}]  # one entity: a label per request id
            res = fs.get_online_features(rows, request_time=lookup["request_time"], **kwargs)
            want[stream].add(res.request_id)
        fs.ship_logs()
        names = {serving_log.log_table_name(s) for s in want}
        assert len(names) == 4, names
        for stream, ids in want.items():
            table = serving_log.log_table(fs, stream).read().to_pandas()
            assert set(table["request_id"]) == ids, stream
            assert set(table["feature_service"]) == {stream}, stream
        labels = pd.DataFrame({"request_id": sorted(want["adhoc"]), "label": 1})
        got = fs.training_set_from_logs(labels, "adhoc")
        assert len(got) and got["_from_log"].all()
    finally:
        drop_project(redis_client, fs.config.project)


def test_the_feature_list_stream_name_is_not_a_service_name(tmp_path):
    root = logrepo.write_repo(tmp_path / "repo")
    (root / "definitions" / "features.py").write_text(
        logrepo.DEFINITIONS + "\n_adhoc = FeatureService(features=[account_stats])\n")
    with pytest.raises(FeatureStoreError) as err:
        FeatureStore(root).plan()
    assert "name '_adhoc' is reserved" in str(err.value) and len(str(err.value).splitlines()) <= 3
