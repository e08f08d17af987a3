"""get_historical_features equals the brute-force oracle on random event sets, for every aggregation,
window, latest feature with and without TTL, computed from the batch face and from the offline store."""

import pytest

from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import random_events, random_requests, write_events, write_repo

SEEDS = list(range(12))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("rnd"))
    return FeatureStore(root)


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_face_equals_oracle(store, seed):
    events = random_events(seed)
    write_events(store.repo_path, events)
    requests = random_requests(seed, events)
    got = store.get_historical_features(requests, feature_service="everything")
    assert list(got.columns[: len(requests.columns)]) == list(requests.columns)
    assert got["label"].tolist() == requests["label"].tolist()  # extra columns kept, in order
    for view in store.repo.views.values():
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"seed {seed} view {view.name}")
