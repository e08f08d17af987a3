"""CPU seconds of each DuckDB query of materialize's vectorised path, each timed alone (no Redis).

On the data of ``bench/materialize_hot.py`` (generate it first: run that bench once with the same
``FS_BENCH_DATA``), per view: the pass's events read and ranked (``ranked``, code that has it), the
kernel entities' table (``hot``), the plain entities' packed members
(``plain``), the kernel entities' events table (``events``), the tiles query with each row's text
(``tiles``) and the kernel entities' packed members (``members``; ``plain`` and ``members`` with each
entity's bytes sliced from the sorted rows where the code does so; the tiles query includes the minutes' levels it reads), as
:mod:`featurestore.stores.online_materialize` runs them; then the Python decoding of the tile rows
(``decode``). CPU is this process's (Python and DuckDB's threads, ``time.process_time``).

    .venv/bin/python bench/materialize_phases.py [--reps 2] [--threads N]

Run from a checkout (its ``featurestore`` is the one measured: old and new code alternate by running
this file from two worktrees).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.getcwd())


def view_setup(fs, con, view: str) -> SimpleNamespace:
    """What materialize derives from a view before its queries (its relation, retention, layout, cut, tile
    levels, text columns, order texts), as the phases and the variants in bench/materialize_variants/ use it."""
    from bench.materialize_hot import MATERIALIZE_END_MS
    from featurestore.engines import duckdb_tile_text as dtext
    from featurestore.kernel.tiles import TOP_LEVEL
    from featurestore.online import view_layout
    from featurestore.stores import online_format as ofmt
    from featurestore.stores import online_materialize as om
    from featurestore.stores import online_redis as orr

    cv = fs.compiled(view)
    ret, layout = orr.retention(cv), view_layout(cv)
    tile_top = min(TOP_LEVEL, layout.max_level)
    types = dict(cv.stored_columns)
    return SimpleNamespace(
        cv=cv, rel=fs._view_input(con, cv).events_relation, ret=ret, layout=layout,
        cut=orr.cut_for(cv, MATERIALIZE_END_MS), tile_top=tile_top,
        text_cols=frozenset(j for j, (_, d) in enumerate(om.input_columns(cv)) if d in om.TEXT_TYPES),
        order_plain=dtext.order_plain([types[c] for c in ofmt.order_columns(cv)]),
        merged=tile_top if ret.keep_base else None)


def main(argv=None) -> int:
    import pyarrow as pa

    from bench.common import DATA_ROOT
    from bench.materialize_hot import VIEWS, make_repo
    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.engines import duckdb_partials as dpart
    from featurestore.kernel import entity as kentity
    from featurestore.kernel.tiles import TOP_LEVEL
    from featurestore.online_reply import loads
    from featurestore.stores import online_materialize as om
    from featurestore.stores import online_packed as opk
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    work = DATA_ROOT / "materialize-hot"
    repo = make_repo(work, work / "data")
    fs = FeatureStore(repo, config=dataclasses.replace(load_config(repo), project="phases"))
    con = fs._connect()
    if args.threads:
        con.execute(f"SET threads={int(args.threads)}")

    def runs(sql, cut):
        """The packed members query, read as the code reads it: rows sorted by entity and rank sliced per
        entity (:class:`online_packed.EntityRuns`, code that has it), else one row per entity."""
        if not hasattr(opk, "EntityRuns"):  # one row per entity: its texts made bytes as that code did
            table = con.sql(sql).to_arrow_table()
            if "__fs_packed" in table.column_names:
                table.column("__fs_packed").cast(pa.binary()).to_pylist()
            if "__fs_ps" in table.column_names:
                [t.encode() for ts in table.column("__fs_ps").to_pylist() for t in ts or () if t]
            return table
        for block in opk.entity_blocks(con.sql(sql).to_arrow_reader(om.EVENT_ROWS)):
            r = opk.EntityRuns(block, cut)
            for i in range(len(r.starts)):
                r.chunks(i, orr.STAGE_ITEMS)

    def timed(fn):
        c0 = time.process_time()
        out = fn()
        return time.process_time() - c0, out

    print(f"load {os.getloadavg()}")
    for view in VIEWS:
        v = view_setup(fs, con, view)
        cv, rel, ret, layout, cut = v.cv, v.rel, v.ret, v.layout, v.cut
        tile_top, text_cols, order_plain, merged = v.tile_top, v.text_cols, v.order_plain, v.merged
        for _ in range(args.reps):
            cpu = {}
            if hasattr(om, "ranked_sql"):  # the pass's events read and ranked once, the rest from them
                cpu["ranked"], _ = timed(lambda: con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {om.RANKED} AS {om.ranked_sql(cv, rel, None)}"))
                cpu["hot"], _ = timed(lambda: con.execute(om.hot_sql(cv, om.RANKED, None, cut, ret.keep_base)))
                cpu["plain"], _ = timed(lambda: runs(om.packed_members_sql(cv, cut), cut))
                sql, order_text = om._events_sql(cv, picked_order=True, ranked=True)
                cpu["events"], _ = timed(lambda: con.execute(sql.format(relation=om.RANKED)))
            else:  # code before the ranked table
                cpu["hot"], _ = timed(lambda: con.execute(om.hot_sql(cv, rel, None, cut, ret.keep_base)))
                cpu["plain"], _ = timed(lambda: con.sql(om.packed_members_sql(cv, rel, None, cut)).to_arrow_table())
                sql, order_text = om._events_sql(cv, picked_order=True)
                cpu["events"], _ = timed(lambda: con.execute(sql.format(relation=rel)))
            all_tops = ret.keep_base and tile_top == TOP_LEVEL

            def tiles_query():  # with each minute's lowest kept level first (code that has it)
                extra = {}
                if hasattr(dpart, "minute_levels"):
                    extra["levels"] = dpart.minute_levels(con, om.HOT_EVENTS, cut, ret.keep_base, tile_top,
                                                          kentity.TILE_MIN_EVENTS, all_tops, om.HOT_LEVELS)
                tsql = dpart.tiles_sql(layout, om.HOT_EVENTS, cut, ret.keep_base, order_text, tile_top,
                                       kentity.TILE_MIN_EVENTS, all_tops, text_cols, row_text=(order_plain, merged),
                                       pick_order=om._pick_order_sql(cv) if order_text else None, **extra)
                return con.sql(tsql).to_arrow_table()
            cpu["tiles"], tiles = timed(tiles_query)
            cpu["decode"], _ = timed(lambda: [dpart.decode_rows(layout, b, order_text, loads, text_cols, merged)
                                              for b in tiles.to_batches(20_000)])
            cpu["members"], _ = timed(lambda: runs(om._packed_members_sql(cv, cut, order_text), cut))
            con.execute(f"DROP TABLE IF EXISTS {om.HOT}; DROP TABLE IF EXISTS {om.HOT_EVENTS}")
            con.execute("DROP TABLE IF EXISTS __fs_mat_hlv; DROP TABLE IF EXISTS __fs_mat_rnk")
            print(f"{view}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                  + f"; all {sum(cpu.values()):.2f} s CPU ({tiles.num_rows:,} tile rows)", flush=True)
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
