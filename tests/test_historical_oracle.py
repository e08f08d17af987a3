"""get_historical_features equals the brute-force oracle on random event sets, for every aggregation,
window, latest feature with and without TTL, computed from the batch face and from the offline store."""

import pandas as pd
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


@pytest.mark.parametrize("seed,where", [(100, "local"), (101, "local"), (102, "local"), (100, "s3")])
def test_backfilled_offline_store_equals_oracle(tmp_path, request, monkeypatch, seed, where):
    if where == "s3":  # the same on an s3:// offline root (the local S3 server of infra/s3.sh)
        root = request.getfixturevalue("s3_root")
        monkeypatch.setenv("FEATURESTORE_OFFLINE_ROOT", str(root))
        monkeypatch.setenv("FEATURESTORE_OFFLINE_S3_ENDPOINT", root.endpoint)
    store = FeatureStore(write_repo(tmp_path))
    events = random_events(seed)
    write_events(store.repo_path, events)
    results = {r.view: r for r in store.backfill()}
    assert results["amount_stats"].rows == len(events)  # nothing lost: no null times or keys here
    assert results["qty_stats"].rows == int((events["flag"] == True).sum())  # noqa: E712 - the filter
    store.backfill()  # re-running replaces, never duplicates
    assert store.offline.table("amount_stats", "ts").read().num_rows == len(events)
    requests = random_requests(seed, events)
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert store.offline.table(view.name, "ts").version == 2
        assert store.offline.table(view.name, "ts").files()[0].startswith("s3://" if where == "s3" else "/")
        expected = oracle.point_in_time(events, view, requests)
        assert_features_equal(got, expected, view.feature_names, f"seed {seed} view {view.name} (offline store)")


def test_partial_range_backfill_heals_only_that_range(tmp_path):
    store = FeatureStore(write_repo(tmp_path))
    events = random_events(7)
    write_events(store.repo_path, events)
    store.backfill()
    cut = events["ts"].sort_values().iloc[len(events) // 2].floor("s")
    changed = events.copy()
    late = changed["ts"] >= cut
    changed.loc[late, "amount"] = changed.loc[late, "amount"] * 2
    write_events(store.repo_path, changed)
    store.backfill(start=cut, end=cut + pd.Timedelta("1h"), views=["amount_stats"])
    requests = random_requests(7, events)
    got = store.get_historical_features(requests, features=["amount_stats:amount_sum_all", "amount_stats:events_all"])
    view = store.repo.views["amount_stats"]
    assert_features_equal(got, oracle.point_in_time(changed, view, requests), ["amount_sum_all", "events_all"])


def test_training_set_is_reproducible_bit_for_bit(tmp_path, use_offline_root):
    from featurestore.sdk.training_sets import file_sha256, write_parquet_deterministic

    root = write_repo(tmp_path)
    store = FeatureStore(root)
    events = random_events(3)
    write_events(root, events)
    store.backfill()
    requests = random_requests(3, events)
    first = store.get_historical_features(requests, feature_service="everything", save_as="ts1")
    # the world moves on: more events, a new backfill, a changed definition
    write_events(root, pd.concat([events, random_events(4)], ignore_index=True))
    store.backfill()
    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('ttl="45s"', 'ttl="10s"'))
    store.reload()
    changed = store.get_historical_features(requests, feature_service="everything")
    assert not changed.to_arrow().equals(first.to_arrow())  # the live answer did change
    again = store.recreate_training_set("ts1")
    assert again.to_arrow().equals(first.to_arrow())
    out = tmp_path / "again.parquet"
    write_parquet_deterministic(again.to_arrow(), out)
    assert file_sha256(out) == first.manifest["result_sha256"]
    with pytest.raises(Exception, match="training set 'ts1' already exists"):
        store.get_historical_features(requests, feature_service="everything", save_as="ts1")
    saved = use_offline_root / "rnd" / "_training_sets" / "ts1" / "result.parquet"  # where the root says
    assert file_sha256(saved) == first.manifest["result_sha256"]


@pytest.mark.parametrize("seed", [21, 22])
def test_offline_rows_of_another_definition_are_never_read_as_this_ones(tmp_path, seed):
    """After a definition change that alters a view's stored rows (its filter, a projection), the rows
    backfilled under the old definition are refused to every reader (one line naming the view and the
    fix), also when only a part of the range was backfilled again; a backfill of the whole range heals it,
    each event once. A change that keeps the rows (a window, a TTL) reads the table as it is."""
    import random

    from featurestore.errors import OfflineStoreError

    rng = random.Random(seed)
    root = write_repo(tmp_path)
    store = FeatureStore(root)
    events = random_events(seed)
    write_events(root, events)
    store.backfill()
    requests = random_requests(seed, events, n=60)
    defs = root / "definitions" / "features.py"
    keeps_rows = [('ttl="45s"', 'ttl="20s"'), ('("qty", "sum", "30s"', '("qty", "sum", "20s"')]
    defs.write_text(defs.read_text().replace(*rng.choice(keeps_rows)))
    store.reload()
    got = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, view.name)

    alters_rows = [('filter="flag"', 'filter="NOT flag"'), ('"qty2": "qty * 2"', '"qty2": "qty * 3"'),
                   ('"tag_len": "length(tag)"', '"tag_len": "length(tag) + 1"')]
    defs.write_text(defs.read_text().replace(*rng.choice(alters_rows)))
    store.reload()
    view = store.repo.views["qty_stats"]
    stale = "view 'qty_stats': its offline table was backfilled under an earlier definition"
    with pytest.raises(OfflineStoreError, match=stale):
        store.get_historical_features(requests, feature_service="everything")
    others = [f"amount_stats:{f}" for f in store.repo.views["amount_stats"].feature_names]
    store.get_historical_features(requests, features=others)  # the other views' tables are theirs still
    cut = events["ts"].sort_values().iloc[len(events) // 2].floor("s")
    store.backfill(start=cut, views=["qty_stats"])  # a part of the range only: two definitions' rows
    with pytest.raises(OfflineStoreError, match="view 'qty_stats': its offline table holds rows backfilled under two"):
        store.get_historical_features(requests, features=["qty_stats:tags_1m"])
    (result,) = store.backfill(views=["qty_stats"])
    assert store.offline.table("qty_stats", "ts").read().num_rows == result.rows  # each event once
    got = store.get_historical_features(requests, feature_service="everything")
    assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, "healed")


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_a_redefined_view_backfilled_again_in_pieces_reads_again(tmp_path, seed):
    """After a definition change that alters a view's stored rows, backfilling its whole range again in
    overlapping pieces, in any order (how a long history is backfilled: a month at a time), heals it as one
    backfill of the whole range does: each event once, the new definition's values. Until the last piece
    covers the last rows of the earlier definition, the table is refused (never read half old)."""
    import random

    from featurestore.errors import OfflineStoreError

    rng = random.Random(seed)
    root = write_repo(tmp_path)
    store = FeatureStore(root)
    events = random_events(seed)
    write_events(root, events)
    store.backfill()
    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace(*rng.choice([('filter="flag"', 'filter="NOT flag"'),
                                                           ('"qty2": "qty * 2"', '"qty2": "qty * 3"')])))
    store.reload()
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    cuts = sorted(rng.sample(times[5:-5], 4))  # at event times: pieces overlap by 0 to 3 s
    pieces = [(None, cuts[0])] + [(cuts[i] - rng.choice([0, 1, 3000]), cuts[i + 1]) for i in range(3)]
    pieces.append((cuts[3] - rng.choice([0, 1]), None))
    rng.shuffle(pieces)
    ms = lambda v: None if v is None else pd.Timestamp(v, unit="ms", tz="UTC")  # noqa: E731
    requests = random_requests(seed, events, n=60)
    view = store.repo.views["qty_stats"]
    for i, (start, end) in enumerate(pieces):
        store.backfill(start=ms(start), end=ms(end), views=["qty_stats"])
        if i < len(pieces) - 1:
            with pytest.raises(OfflineStoreError, match="view 'qty_stats': its offline table holds rows backfilled"):
                store.get_historical_features(requests, features=["qty_stats:tags_1m"])
    got = store.get_historical_features(requests, feature_service="everything")
    assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, "in pieces")
    kept = oracle.apply_view_rows(oracle.events_ms(events, view.source, max_future_ms=None), view)
    assert store.offline.table("qty_stats", "ts").read().num_rows == len(kept)  # each event once
