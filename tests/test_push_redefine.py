"""Pushed events and a rows-changing definition change (SPEC §5 "each event once", §6 push: "rows become events
of the source ... through the same filters and projections"): after the view's filter changes, a re-backfill of
the whole range (the default, open-ended) recomputes every pushed event under the new filter too, including
those pushed after the batch face's last event; a backfill whose range leaves pushed rows of the earlier
definition outside is refused at read time ('mixed'), never read as the new definition's. Random events and
pushes, checked against the oracle over batch + pushed rows. Offline only (no services).
"""

import dataclasses
import random
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.errors import OfflineStoreError
from featurestore.store import FeatureStore
from tests import oracle

DEFS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
v = FeatureView(entities=[user], source=events, FILTER
                features=[Aggregation("qty", "count", None, name="n"), Aggregation("qty", "sum", None, name="s"),
                          Latest("qty", name="last")])
'''
BASE = pd.Timestamp("2026-03-01T00:00:00Z")


def _rows(rng, n, lo_s, hi_s):
    return [{"user_id": f"u{rng.randrange(3)}", "qty": rng.randint(-20, 40),
             "ts": BASE + pd.Timedelta(milliseconds=rng.randrange(lo_s * 1000, hi_s * 1000))} for _ in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_a_filter_change_then_backfill_recomputes_pushed_events(tmp_path, seed):
    rng = random.Random(seed)
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "featurestore.yaml").write_text("project: pr\ndefinitions: definitions\n")
    (root / "definitions" / "f.py").write_text(DEFS.replace("FILTER", ""))
    batch = pd.DataFrame(_rows(rng, 40, 0, 600))
    batch.to_parquet(root / "data" / "a.parquet")
    cfg = dataclasses.replace(load_config(root), project=f"pr_{uuid.uuid4().hex[:8]}")
    store = FeatureStore(root, config=cfg)
    store.backfill()
    # pushes inside the batch face's span and after its last event (later than any batch row)
    pushed = _rows(rng, 15, 0, 600) + _rows(rng, 15, 700, 1200)
    for i in range(0, len(pushed), 10):
        store.push("events", pushed[i:i + 10], to="offline")
    limit = rng.randint(0, 20)
    (root / "definitions" / "f.py").write_text(DEFS.replace("FILTER", f'filter="qty < {limit}",'))
    store = FeatureStore(root, config=cfg)
    requests = pd.DataFrame({"user_id": ["u0", "u1", "u2"] * 3,
                             "event_timestamp": [BASE + pd.Timedelta(seconds=s) for s in (300,) * 3 + (650,) * 3
                                                 + (2000,) * 3]})
    everything = pd.concat([batch, pd.DataFrame(pushed)], ignore_index=True)
    want = oracle.point_in_time(everything, store.repo.views["v"], requests)

    # a range that leaves pushed rows of the earlier filter outside: refused, never read as the new filter's
    store.backfill(end=BASE + pd.Timedelta(seconds=650))
    with pytest.raises(OfflineStoreError, match="backfill it again"):
        store.get_historical_features(requests, features=["v:n", "v:s", "v:last"])
    store.backfill()  # the whole range (open end): pushed events after the batch face's last one included
    got = store.get_historical_features(requests, features=["v:n", "v:s", "v:last"]).to_arrow()
    for f in ("n", "s", "last"):
        assert got.column(f).to_pylist() == list(want[f]), (seed, limit, f)
