"""Materialize's vectorised build (minute partials from DuckDB, tiles merged from them:
``featurestore.stores.online_materialize`` + ``featurestore.engines.duckdb_partials``) writes exactly
what the per-entity build (``kernel.batch.full_changes`` over every parsed event, itself checked against
the stream's event-by-event state in ``tests/test_kernel.py``) writes: every raw member, tile field and
prefix, byte for byte, for every view of the random repo (every aggregation, latest with and without
TTL, unbounded windows, two join keys), on random events with hot keys, bursts of equal times, nulls,
extreme values (+-0.0, +-1e300, subnormals, infinities, large integers), with and without a cut, and
spans from minutes to weeks (every tile level). No Redis needed: the writes are captured.
"""

import random

import pandas as pd
import pytest

from featurestore.kernel import entity as kentity
from featurestore.kernel.partials import dumps_row
from featurestore.online import view_layout
from featurestore.store import FeatureStore
from featurestore.stores import online_materialize as om
from featurestore.stores import online_redis as orr
from tests.randomrepo import random_events, write_events, write_repo

EXTREME_AMOUNTS = [0.0, -0.0, 1e300, -1e300, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                   float("inf"), float("-inf"), 0.1, 1e-300, 3.0]
EXTREME_QTY = [0, 2**40, -(2**40), 1, -1]


class Capture:
    """A materialize writer that keeps what would be written, per entity."""

    def __init__(self):
        self.got = {}

    def add(self, keys, last, changes):
        assert tuple(keys) not in self.got
        self.got[tuple(keys)] = (last, changes)


def _bytes(changes):
    enc = orr._ENC.encode
    return {"head": (changes.full, changes.dense, changes.horizon, changes.last_ts, changes.meta),
            "raw": list(changes.raw_add),
            "tiles": {k: dumps_row(v, enc) for k, v in changes.tiles_set.items()},
            "prefixes": {k: enc([k, v]) for k, v in changes.prefix_set.items()},
            "deletes": (changes.tiles_del, changes.raw_below, changes.prefix_below)}


def _events(seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    span = [300, 6 * 3600, 3 * 86_400, 20 * 86_400][seed % 4]
    df = random_events(seed, n=rng.choice([1_500, 3_000]), users=6, span_s=span)
    # extreme values, many in one burst of equal times (ties of order and of value, a zero's sign)
    ix = rng.sample(range(len(df)), len(df) // 5)
    burst = df["ts"].iloc[ix[0]]
    for j, i in enumerate(ix):
        if rng.random() < 0.7:
            df.loc[i, "amount"] = rng.choice(EXTREME_AMOUNTS)
        if rng.random() < 0.3:
            df.loc[i, "qty"] = rng.choice(EXTREME_QTY)
        if j % 4 == 0:
            df.loc[i, "ts"] = burst
    return df


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_build_equals_the_per_entity_build(tmp_path, monkeypatch, seed):
    rng = random.Random(1000 + seed)
    monkeypatch.setattr(kentity, "DENSE_EVENTS", rng.choice([0, 5, 40, 128]))
    monkeypatch.setattr(kentity, "TILE_MIN_EVENTS", rng.choice([0, 2, 16]))
    events = _events(seed)
    root = write_repo(tmp_path / "repo")
    write_events(root, events)
    store = FeatureStore(root)
    if seed % 2:
        store.backfill()  # read the offline tables (odd seeds) or the batch face (even)
    con = store._connect()
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    ends = [None, times[len(times) // 2], times[-1] + 1, times[-1] + 40 * 86_400_000]
    compared = 0
    for name in store.repo.views:
        cv = store.compiled(name)
        relation = store._view_input(con, cv).events_relation
        layout = view_layout(cv)
        ret = orr.retention(cv)
        for end in ends:
            cut = orr.cut_for(cv, end)
            con.execute(om.hot_sql(cv, relation, None, cut, ret.keep_base))
            vec, ref = Capture(), Capture()
            om._kernel(con, cv, relation, layout, cut, ret.keep_base, vec, None, packed=seed < 6)  # else pairs (cluster)
            om._plain(con, cv, relation, None, layout, cut, ret, ref, None, only=om.HOT)
            assert sorted(vec.got) == sorted(ref.got), (name, end)
            for key, (last, want) in ref.got.items():
                got_last, got = vec.got[key]
                assert got_last == last, (name, end, key)
                assert _bytes(got) == _bytes(want), (name, end, key)
                compared += 1
    assert compared > 20


def test_kernel_entities_are_the_dense_ones_and_those_with_a_prefix(tmp_path):
    """Which entities take the vectorised build: those with more kept events than DENSE_EVENTS, and, in
    views with an unbounded window, those with events before the cut; every other entity's members are
    forwarded as DuckDB encoded them (and their result equals the per-entity path's: checked above)."""
    events = _events(3)
    root = write_repo(tmp_path / "repo")
    write_events(root, events)
    store = FeatureStore(root)
    con = store._connect()
    times = sorted(int(t.value // 1_000_000) for t in events["ts"])
    for name in ("amount_stats", "profile"):
        cv = store.compiled(name)
        relation = store._view_input(con, cv).events_relation
        ret = orr.retention(cv)
        cut = orr.cut_for(cv, times[len(times) // 2])
        con.execute(om.hot_sql(cv, relation, None, cut, ret.keep_base))
        hot = {r[0] for r in con.sql(f"SELECT user_id FROM {om.HOT}").fetchall()}
        counts = events.assign(ms=events["ts"].astype("int64") // 1_000_000)
        kept = counts[counts["ms"] >= cut].groupby("user_id").size()
        old = counts[counts["ms"] < cut].groupby("user_id").size()
        want = {u for u, n in kept.items() if n > kentity.DENSE_EVENTS}
        if ret.keep_base:
            want |= set(old.index)
        assert hot == want, name
