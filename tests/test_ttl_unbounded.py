"""A view with a TTL and unbounded windows (SPEC §2): the TTL bounds only its *latest* features; an unbounded
window keeps every event before ``q`` however old. Offline equals the oracle, and online (every layout of the online
state) equals offline, on random events, at request times far past the TTL (where a retention derived from the TTL
alone would have dropped the events the unbounded windows still need)."""

import pandas as pd
import pytest

from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import DEFINITIONS, random_events, random_requests
from tests.test_online import KEYS, _check_online_equals_offline, layout_mode, make_store  # noqa: F401

pytestmark = [pytest.mark.redis]

VIEW = '''
ttl_forever = FeatureView(
    entities=[pair],
    source=events,
    features=[Latest("tag", name="tf_tag"), Aggregation("amount", "sum", None, name="tf_sum_all"),
              Aggregation("tag", "first", None, name="tf_first_all"), Aggregation("qty", "count", "10s", name="tf_n_10s"),
              Aggregation("qty", "last", None, name="tf_last_all")],
    ttl="20s",
)
'''
DEFS = DEFINITIONS.replace("everything = FeatureService(features=[", VIEW + "\neverything = FeatureService(features=[ttl_forever, ")
FEATURES = ["tf_tag", "tf_sum_all", "tf_first_all", "tf_n_10s", "tf_last_all"]


@pytest.mark.parametrize("seed", [3])
def test_ttl_with_unbounded_windows_online_equals_offline_equals_oracle(make_store, seed, layout_mode):
    store = make_store(DEFS)
    events = random_events(seed)
    requests = random_requests(seed, events)
    late = requests.assign(event_timestamp=requests["event_timestamp"] + pd.Timedelta("2h"))  # far past the TTL
    requests = pd.concat([requests, late], ignore_index=True)
    _check_online_equals_offline(store, seed)  # writes the events; every feature, every layout
    offline = store.get_historical_features(requests, features=[f"ttl_forever:{f}" for f in FEATURES])
    want = oracle.point_in_time(events, store.repo.views["ttl_forever"], requests)
    assert_features_equal(offline, want, FEATURES, "ttl_forever vs the oracle")
    assert offline["tf_sum_all"].iloc[len(late):].notna().sum() > len(late) // 2  # old events still count
    assert offline["tf_tag"].iloc[len(late):].isna().all()  # ... while the latest value expired
    for i in range(len(late), len(requests), 5):
        row = requests.iloc[i]
        got = store.get_online_features([{k: row[k] for k in KEYS}], features=[f"ttl_forever:{f}" for f in FEATURES],
                                        request_time=row["event_timestamp"]).to_dict()
        assert_features_equal(pd.DataFrame({f: got[f] for f in FEATURES}), offline.iloc[[i]].reset_index(drop=True),
                              FEATURES, f"online at row {i}")
