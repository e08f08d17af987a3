"""The hand-off's seed is bounded by the views' retention, not by the offline history (issue 11.5): the
seed file keeps each entity as the stream's state operator holds it after a flush (its members at or
after the cut the operator's trim applies, and the folded base of those behind), so a rebuild of the
entity (first sight, restore, cache eviction) reads O(retention) members. The state the operator builds
from that record equals, byte for byte, the one built from every offline row of the entity and trimmed.

Random events with a hot user over 30 days (longer than the largest tile, so views with an unbounded
window fold too), every view of tests/randomrepo.py (windows 10 s .. 1 h and unbounded, TTLs, filters,
first/last, count_distinct), the seed written from a real offline table into a real Redis."""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
import uuid

import pandas as pd
import pytest

from featurestore.engines.flink import handoff as stream_handoff
from featurestore.kernel.entity import trim_to_retention
from featurestore.online import view_layout
from featurestore.online_reply import loads
from featurestore.store import FeatureStore
from featurestore.stores import online_format as ofmt
from featurestore.stores.online_redis import encode_entity, materialize_sql, retention
from tests.randomrepo import random_events
from tests.test_stream import drop_project, make_repo

SLACK_MS = 1_500


def _drained(state):
    state.rewrite()
    return dataclasses.asdict(state.drain())


@pytest.mark.redis
@pytest.mark.parametrize("seed, later", [(3, False), (11, True)])
def test_the_seed_holds_the_retention_and_rebuilds_the_same_state(tmp_path, redis_client, seed, later):
    """``later``: the bounded views hand off from a range that starts later (a view cut ``S``, horizon
    ``S + R``); the unbounded ones from the beginning of time."""
    check_seed(tmp_path, redis_client, seed, later)


@pytest.mark.redis
def test_the_seed_reads_an_object_storage_root(tmp_path, redis_client, s3_root, monkeypatch):
    """The same on an s3:// offline root: the seed read the table's files with DuckDB's read_parquet, which
    needs its httpfs extension for s3:// (a download at run time: the hand-off failed)."""
    monkeypatch.setenv("FEATURESTORE_OFFLINE_ROOT", str(s3_root))
    monkeypatch.setenv("FEATURESTORE_OFFLINE_S3_ENDPOINT", s3_root.endpoint)
    check_seed(tmp_path, redis_client, 3, False)


def check_seed(tmp_path, redis_client, seed, later):
    events = random_events(seed, n=1_500, span_s=30 * 86_400)
    hot = events["user_id"].value_counts().index[0]
    assert (events["user_id"] == hot).sum() > 600
    project = f"t_seed_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(make_repo(tmp_path / "repo", f"fs_seed_{uuid.uuid4().hex[:8]}", project, events))
    try:
        store.apply()
        store.backfill()
        handoff = stream_handoff.HandOff()
        start = int(events["ts"].quantile(0.4).value // 10**6)
        for name in store.repo.views:
            table = store.offline.table(name, ts_column=store.compiled(name).ts_column)
            vs = stream_handoff.ViewSeed(name, int(table.version), [[-2**62, 2**62]], {})
            if later and not retention(store.compiled(name)).keep_base:
                vs.cut, vs.horizon = start, start + stream_handoff.retention_ms(store, name)
            handoff.views[name] = vs
        path = tmp_path / "seed.sqlite"
        counts = stream_handoff.write_seed(store, handoff, path, SLACK_MS)
        db = sqlite3.connect(path)
        con = store._connect()
        seeded = full = bases = 0
        for name, vs in handoff.views.items():
            cv = store.compiled(name)
            layout, r, codec = view_layout(cv), retention(cv), ofmt.members(cv)
            rel = stream_handoff._relation(con, store, vs)
            rows = con.sql(materialize_sql(cv, rel)).fetchall()
            assert counts[name] == len(rows)
            nkeys = len(cv.join_keys)
            for row in rows:
                entity = encode_entity(list(row[:nkeys]))
                members = row[nkeys + 2]
                # what the operator held before: every row of the entity, trimmed at its first flush
                want = stream_handoff.entity_state(layout, r.keep_base, codec, vs.cut, vs.horizon, None, members)
                trim_to_retention(want, r.window_ms, SLACK_MS)
                got_members, folded = stream_handoff.read_seed(db, entity)[name]
                got = stream_handoff.entity_state(layout, r.keep_base, codec, vs.cut, vs.horizon, folded, got_members)
                assert _drained(got) == _drained(want), (name, entity)
                # bounded: nothing behind the cut, which is the operator's
                last = max(loads(m)[1] for m in members)
                cut = last - r.window_ms - SLACK_MS
                if r.keep_base:
                    cut -= cut % (60_000 << 14)
                cut = max(cut, vs.cut or cut)
                assert min(loads(m)[1] for m in members) >= (vs.cut or -2**62)  # (the relation starts at the cut)
                assert all(loads(m)[1] >= cut for m in got_members), (name, entity)
                assert len(got_members) == sum(1 for m in members if loads(m)[1] >= cut)
                bases += bool(folded and folded["base"] is not None)
                seeded += len(got_members)
                full += len(members)
            hot_row = db.execute("SELECT members, folded FROM seed WHERE view = ? AND entity = ?",
                                 (name, encode_entity([hot] + ([] if nkeys == 1 else [0])))).fetchone()
            if nkeys == 1 and not r.keep_base:  # a bounded view: the hot user's seed is its retention only
                assert pickle.loads(hot_row[1])["cut"] is not None
                assert len(hot_row[0].split("\n")) < 0.05 * (events["user_id"] == hot).sum(), name
        assert seeded < 0.6 * full, (seeded, full)
        assert bases >= 3  # unbounded views' entities folded a base too (their history is longer than a top tile)
        db.close()
        con.close()
    finally:
        drop_project(redis_client, project)


def test_a_seed_file_written_before_seeds_were_trimmed_is_read_whole(tmp_path):
    """A restored run may find a seed file of the previous layout (no ``folded`` column): its members are
    read whole, without a folded entry (the operator then trims at the entity's next flush, as before)."""
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE seed (view TEXT NOT NULL, entity TEXT NOT NULL, members TEXT NOT NULL, "
               "PRIMARY KEY (view, entity)) WITHOUT ROWID")
    db.execute("INSERT INTO seed VALUES ('v', '\"u1\"', '[-1,5,1]\n[-2,7,2]')")
    assert not stream_handoff.seed_has_folded(db)
    assert stream_handoff.read_seed(db, '"u1"', folded=False) == {"v": (["[-1,5,1]", "[-2,7,2]"], None)}
    assert stream_handoff.read_seed(db, '"u2"', folded=False) == {}
    db.close()


@pytest.mark.redis
def test_an_unbounded_views_seed_is_folded_in_duckdb_as_the_trim_folds_it(tmp_path, redis_client):
    """Views with an unbounded window: the seed's records come from DuckDB (``handoff_seed``: the base of the
    events behind each entity's cut, and its retention's members), never from the entity's history in
    Python. Each record equals, byte for byte, the one ``seed_record`` makes from every offline row of the
    entity (the reference: the operator's own trim), on a hot user with 40 days of events, bursts of equal
    times, nulls, signed zeros, infinities and extreme values in every unbounded function."""
    import random

    from featurestore.engines.flink.handoff_seed import folded_records

    events = random_events(5, n=4_000, span_s=40 * 86_400)
    rng = random.Random(5)
    extremes = [0.0, -0.0, 0.0, -0.0, float("inf"), float("-inf"), 1e308, -1e308, 5e-324, 1e16, 2.5]
    events["amount"] = [rng.choice(extremes) if a == a and rng.random() < 0.4 else a for a in events["amount"]]
    hot = events["user_id"].value_counts().index[0]
    assert (events["user_id"] == hot).sum() > 1_500
    project = f"t_seedf_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(make_repo(tmp_path / "repo", f"fs_seedf_{uuid.uuid4().hex[:8]}", project, events))
    try:
        store.apply()
        store.backfill()
        con = store._connect()
        checked = folds = 0
        for name in store.repo.views:
            cv = store.compiled(name)
            r = retention(cv)
            if not r.keep_base:
                continue
            table = store.offline.table(name, ts_column=cv.ts_column)
            vs = stream_handoff.ViewSeed(name, int(table.version), [[-2**62, 2**62]], {})
            rel = stream_handoff._relation(con, store, vs)
            nkeys = len(cv.join_keys)
            want = {encode_entity(list(row[:nkeys])): (row[nkeys + 2], stream_handoff.seed_record(cv, vs, row[nkeys + 2], SLACK_MS))
                    for row in con.sql(materialize_sql(cv, rel)).fetchall()}
            got = {}
            for batch in folded_records(con, cv, rel, r.window_ms, SLACK_MS, 7):
                assert len(batch) <= 7
                got.update((encode_entity(keys), (kept, folded)) for keys, kept, folded in batch)
            assert got.keys() == want.keys(), name
            for entity, (members, (kept, folded)) in want.items():
                assert repr(got[entity]) == repr((kept, folded)), (name, entity)  # (repr: -0.0 is not 0.0)
                checked += 1
                folds += folded is not None
            history, (kept, folded) = want[encode_entity([hot])]
            assert folded is not None and len(kept) < 0.2 * len(history), name  # the hot user: its retention only
        assert checked >= 10 and folds >= 4
        con.close()
    finally:
        drop_project(redis_client, project)


@pytest.mark.redis
def test_a_duckdb_error_of_the_fold_falls_back_to_the_python_build(tmp_path, redis_client, monkeypatch):
    """As materialize does, a DuckDB error of the vectorised fold (here injected into its base query after
    a first batch of records was written) makes the writer build the view's records in Python from the
    whole history instead: the same records, each once, the same count."""
    from featurestore.engines.flink import handoff_seed

    events = random_events(7, n=600, span_s=30 * 86_400)
    project = f"t_seedx_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(make_repo(tmp_path / "repo", f"fs_seedx_{uuid.uuid4().hex[:8]}", project, events))
    real = handoff_seed.folded_records

    def failing(*args):
        batches = real(*args[:-1], 1)  # one entity per batch: the error comes after a batch was written
        yield next(batches)
        batches.close()
        raise __import__("duckdb").Error("injected")

    try:
        store.apply()
        store.backfill()
        handoff = stream_handoff.HandOff()
        for name in store.repo.views:
            table = store.offline.table(name, ts_column=store.compiled(name).ts_column)
            handoff.views[name] = stream_handoff.ViewSeed(name, int(table.version), [[-2**62, 2**62]], {})
        monkeypatch.setattr(handoff_seed, "folded_records", failing)
        counts = stream_handoff.write_seed(store, handoff, tmp_path / "seed.sqlite", SLACK_MS)
        db = sqlite3.connect(tmp_path / "seed.sqlite")
        con = store._connect()
        unbounded = 0
        for name, vs in handoff.views.items():
            cv = store.compiled(name)
            rel = stream_handoff._relation(con, store, vs)
            rows = con.sql(materialize_sql(cv, rel)).fetchall()
            assert counts[name] == len(rows) == db.execute("SELECT count(*) FROM seed WHERE view = ?", (name,)).fetchone()[0]
            nkeys = len(cv.join_keys)
            for row in rows:
                want = stream_handoff.seed_record(cv, vs, row[nkeys + 2], SLACK_MS)
                got = stream_handoff.read_seed(db, encode_entity(list(row[:nkeys])))[name]
                assert repr(got) == repr(want), (name, row[:nkeys])
            unbounded += retention(cv).keep_base
        assert unbounded >= 2
        db.close()
        con.close()
    finally:
        drop_project(redis_client, project)
