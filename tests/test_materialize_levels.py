"""The entry tile of each minute (``duckdb_partials.minute_levels``), which materialize's tiles query
groups the events by: the lowest kept level holding the minute and that tile's start, and no row for a
minute of no kept tile (its events are dropped, not grouped). The tiles' rows themselves are compared
byte for byte with the per-entity build in tests/test_materialize_{vector,text,packed}.py."""

import duckdb

from featurestore.engines import duckdb_partials as dpart

M = dpart.MINUTE_MS


def _levels(events, cut=None, keep_base=False, all_tops=False):
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (__fs_e BIGINT, __fs_ts BIGINT, __fs_d BOOLEAN)")
    con.executemany("INSERT INTO ev VALUES (?, ?, TRUE)", [list(x) for x in events])
    out = dpart.minute_levels(con, "ev", cut, keep_base, 2, 2, all_tops, "lv")
    return con.sql(f"SELECT __fs_e, __fs_m, __fs_k, __fs_g0 FROM {out} ORDER BY ALL").fetchall()


def test_entry_tiles():
    # entity 1: minute 0 holds 3 events (kept at level 0), minutes 1 and 2 one each (minute 1 enters in
    # [0, 2 min) of 4 events, minute 2 in [0, 4 min) of 5), minute 9 alone in every tile holding it;
    # entity 2: 3 events in the minute before 0 (negative times)
    events = [(1, 10), (1, 20), (1, 30), (1, M + 5), (1, 2 * M + 5), (1, 9 * M), (2, -1), (2, -2), (2, -M)]
    assert _levels(events) == [
        (1, 0, 0, 0), (1, M, 1, 0), (1, 2 * M, 2, 0), (2, -M, 0, -M)]


def test_all_tops_and_cut():
    events = [(1, 10), (1, 20), (1, 30), (1, 9 * M), (1, 13 * M)]
    # every top tile (4 min) kept with all_tops; minute 13 enters there
    assert _levels(events, all_tops=True) == [(1, 0, 0, 0), (1, 9 * M, 2, 8 * M), (1, 13 * M, 2, 12 * M)]
    # before the cut: the base group (no row); after it only minute 9's and 13's tiles, none kept
    assert _levels(events, cut=M, keep_base=True) == []
