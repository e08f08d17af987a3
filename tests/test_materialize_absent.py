"""Online = offline after the batch face loses an entity (SPEC §3.2).

After ``materialize``, a re-backfill in which every event of an entity left a view (its events were deleted
from the batch face, or their values no longer pass the view's filter), and ``materialize`` again, the
offline table has no row of that entity: its online keys must go too, or lookups keep serving the old state
(found by the random-definition fuzzer, h-auditL). ``materialize`` deletes the view's online entities the
materialized table does not hold (``RedisOnlineStore._delete_absent``), on a single node and on a cluster."""

import dataclasses
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.store import FeatureStore
from tests.conftest import drop_project
from tests.randomrepo import random_events, write_events, write_repo

pytestmark = [pytest.mark.redis]


@pytest.mark.parametrize("seed", [3])
def test_an_entity_gone_from_the_batch_face_is_gone_online_after_materialize(tmp_path, redis_client, seed):
    root = write_repo(tmp_path)
    project = f"t_absent_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    try:
        events = random_events(seed)
        write_events(root, events)
        store.backfill()
        store.materialize()
        gone = events["user_id"].value_counts().index[-1]  # a user with few events
        write_events(root, events[events["user_id"] != gone])
        store.backfill()
        store.materialize()
        q = events["ts"].max() + pd.Timedelta("1s")
        features = ["amount_stats:events_all", "profile_forever:tag_ever"]
        offline = store.get_historical_features(pd.DataFrame({"user_id": [gone], "event_timestamp": [q]}),
                                                features=features)
        online = store.get_online_features([{"user_id": gone}], features=features, request_time=q).to_dict()
        assert offline["events_all"].tolist() == [0] and online["events_all"] == [0]
        assert online["tag_ever"] == [None]
    finally:
        drop_project(redis_client, project)


@pytest.mark.parametrize("seed,online_backend,end", [(5, "single", False), (8, "single", True), (6, "cluster", False)],
                         indirect=["online_backend"])
def test_every_view_online_equals_offline_after_entities_leave_it(tmp_path, online_backend, seed, end):
    """Random events; the quietest and the busiest user leave the batch face (so do their (user, shop)
    pairs); re-backfill and materialize (with and without ``end``): every feature of every view, online =
    offline for every user and pair, gone or not, at several request times; the rest keeps its keys."""
    from tests.compare import assert_features_equal

    root = write_repo(tmp_path)
    project = f"t_absent_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    client = store.online_store().client
    assert store.online_store().cluster == (online_backend == "cluster")
    try:
        events = random_events(seed)
        write_events(root, events)
        store.backfill()
        store.materialize()
        counts = events["user_id"].value_counts()
        gone = {counts.index[0], counts.index[-1]}
        kept = events[~events["user_id"].isin(gone)]
        write_events(root, kept)
        store.backfill()
        cut = events["ts"].max() - pd.Timedelta("10s") if end else None
        results = store.materialize(end=cut)
        assert sum(r.deleted for r in results) > 0
        pairs = events[["user_id", "shop"]].dropna().drop_duplicates()
        for q in [events["ts"].max() + pd.Timedelta("1s"), events["ts"].max() - pd.Timedelta("5s")]:
            requests = pairs.assign(event_timestamp=q).reset_index(drop=True)
            offline = store.get_historical_features(requests, feature_service="everything")
            online = store.get_online_features(requests[["user_id", "shop"]], feature_service="everything",
                                               request_time=q).to_df()
            columns = [f for v in store.repo.views.values() for f in v.feature_names]
            assert_features_equal(online, offline, columns, f"seed {seed} q {q}")
        # the gone users have no key left in any view; every kept user still has its keys
        left = {k.decode() if isinstance(k, bytes) else k
                for k in client.scan_iter(match=f"fs:{project}:*", count=1000)}
        for user in gone:
            assert not [k for k in left if f'"{user}"' in k], user
        assert all(any(f'"{u}"' in k for k in left) for u in kept["user_id"].dropna().unique()[:3])
    finally:
        drop_project(client, project)
