"""The records of the hand-off seed (``handoff.write_seed``); those of a view with an unbounded window
folded in DuckDB.

The seed keeps each entity as the stream's state operator holds it after its first flush
(``handoff.seed_record``): the operator's trim (``kernel.entity.trim_to_retention``) moves the cut to
``last - R - slack`` floored to a top tile, folds every event behind it into the base row, and keeps the
raw members at or after it. Built in Python from the entity's whole offline history, that held a hot
entity's every event (a year of a busy merchant) in memory; here DuckDB computes it:

* per entity: its last event time, that cut, and whether any event lies behind it (only then does the
  operator's trim fold: otherwise no folded entry, every member kept);
* the base row of the events behind the cut: the partial row ``featurestore.engines.duckdb_partials``
  builds (bit for bit the row :meth:`Layout.add` builds in event order, what the trim folds), encoded
  as the trim's entry is (``Layout.encode``, every slot);
* the members at or after the cut, numbered as ``online_redis.materialize_sql`` numbers them (rank in
  event order over the whole entity), in event order.

So Python holds one entity's retention and one row at a time, never its history.
``tests/test_handoff_seed.py`` compares the records with ``seed_record``'s, entity by entity.

Beside them, :func:`held_rows`: per entity, how many of the version's rows inside its *claimed* batch ranges
have each member content (the member without its id, as :func:`content_key` hashes it): a Kafka record
inside such a range that the version lacks is added online, as the offline committer adds it.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import pyarrow.compute as pc

from featurestore.engines import duckdb_partials as dpart
from featurestore.engines import duckdb_sql as dsql
from featurestore.kernel import entity as kentity
from featurestore.kernel.tiles import TOP_LEVEL, tile_ms

ENTITIES, EVENTS = "__fs_seed_ent", "__fs_seed_ev"
_NEVER = 1 << 62  # a cut after every event: every event of the base table is in the base row


def seed_rows(con, cv, seed, relation: str, r, slack_ms: int, batch_entities: int):
    """Batches of ``(keys, members, folded)`` of every entity of a view (``handoff.seed_record``'s records;
    ``r`` its ``online_redis.Retention``). A view with a base: folded in DuckDB (:func:`folded_records`:
    Python never holds an entity's history); a DuckDB error there (as materialize, e.g. a sum beyond
    HUGEINT) builds them in Python instead, from the whole history, the batches already yielded yielded
    again (the writer replaces them). Other views: from the entity's retention alone (and one event
    behind it, so the trim applies)."""
    import duckdb

    from featurestore.engines.flink.handoff import log, seed_record
    from featurestore.stores.online_redis import materialize_sql

    if r.keep_base and seed.cut is None:
        try:
            yield from folded_records(con, cv, relation, r.window_ms, slack_ms, batch_entities)
            return
        except duckdb.Error as exc:
            log.warning("view %s: seed folded in Python (%s)", cv.name, str(exc).splitlines()[0])
    nkeys = len(cv.join_keys)
    sql = materialize_sql(cv, relation, keep_ms=None if r.keep_base else r.window_ms + slack_ms)
    for batch in con.sql(sql).to_arrow_reader(batch_entities):
        keys = [batch.column(i).to_pylist() for i in range(nkeys)]
        yield [([k[i] for k in keys], *seed_record(cv, seed, members, slack_ms))
               for i, members in enumerate(batch.column(nkeys + 2).to_pylist())]


def folded_records(con, cv, relation: str, window_ms: int, slack_ms: int, batch_entities: int
                   ) -> Iterator[List[Tuple[list, List[str], Optional[dict]]]]:
    """Batches (of at most ``batch_entities``) of ``(keys, members, folded)`` of every entity of
    ``relation`` (the view's offline rows), as ``handoff.seed_record`` makes them for a view that keeps a
    base (``seed.cut`` None)."""
    from featurestore.online import input_columns, view_layout
    from featurestore.online_reply import loads
    from featurestore.stores import online_materialize as omat
    from featurestore.stores import online_redis as orr

    layout = view_layout(cv)
    keys = [dsql.q(k) for k in cv.join_keys]
    klist = ", ".join(keys)
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    where = " AND ".join([f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{k} IS NOT NULL" for k in keys)])
    top = tile_ms(TOP_LEVEL)
    c = f"(__fs_last - {int(window_ms) + int(slack_ms)})"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {ENTITIES} AS SELECT *, __fs_first < __fs_cut AS __fs_trim, "
                    f"FALSE AS __fs_d FROM (SELECT *, row_number() OVER () AS __fs_e, "
                    f"{c} - ((({c} % {top}) + {top}) % {top}) AS __fs_cut FROM (SELECT {klist}, max({ts}) AS __fs_last, "
                    f"min({ts}) AS __fs_first FROM {relation} AS src WHERE {where} GROUP BY ALL))")
        # the events behind each entity's cut (a prefix of its event order: ranks as over every event)
        behind = (f"(SELECT src.* FROM {relation} AS src JOIN {ENTITIES} AS h USING ({klist}) "
                  f"WHERE h.__fs_trim AND {ts} < h.__fs_cut)")
        events, order_text = omat._events_sql(cv, hot=ENTITIES, out=EVENTS)
        con.execute(events.format(relation=behind))
        text_cols = frozenset(j for j, (_, dtype) in enumerate(input_columns(cv)) if dtype in omat.TEXT_TYPES)
        base = dpart.tiles_sql(layout, EVENTS, _NEVER, True, order_text, 0, kentity.TILE_MIN_EVENTS, False,
                               text_cols)
        member = orr.member_sql(cv, "__fs_r", "__fs_ts")
        rank = f"row_number() OVER (PARTITION BY {klist} ORDER BY {', '.join(orr._event_order(cv))})"
        kept = (f"SELECT h.__fs_e, list({member} ORDER BY __fs_r) AS __fs_members FROM (SELECT *, {ts} AS __fs_ts, "
                f"{rank} AS __fs_r FROM {relation} AS src WHERE {where}) AS ev JOIN {ENTITIES} AS h USING ({klist}) "
                f"WHERE ev.__fs_ts >= h.__fs_cut GROUP BY h.__fs_e")
        keyout = ", ".join(f"h.{k} AS __fs_k{j}" for j, k in enumerate(keys))
        sql = (f"SELECT {keyout}, h.__fs_e AS __fs_entity, h.__fs_cut AS __fs_at, h.__fs_trim AS __fs_folds, "
               f"m.__fs_members, b.* FROM {ENTITIES} AS h JOIN ({kept}) AS m USING (__fs_e) "
               f"LEFT JOIN ({base}) AS b USING (__fs_e) ORDER BY h.__fs_e")
        reader = con.sql(sql).to_arrow_reader(batch_entities)
        for batch in reader:
            folds = batch.column("__fs_folds").to_pylist()
            with_base = batch.filter(pc.is_valid(batch.column("__fs_l")))
            rows = iter(dpart.decode_rows(layout, with_base, order_text, loads, text_cols)) if with_base.num_rows else iter(())
            keycols = [batch.column(f"__fs_k{j}").to_pylist() for j in range(len(keys))]
            cuts = batch.column("__fs_at").to_pylist()
            members = batch.column("__fs_members").to_pylist()
            out = []
            for i in range(batch.num_rows):
                folded = None
                if folds[i]:
                    _e, _level, _g, _n, row = next(rows)
                    folded = {"cut": cuts[i], "h": cuts[i] + window_ms, "base": layout.encode(row)}
                out.append(([kc[i] for kc in keycols], members[i], folded))
            yield out
    finally:
        con.execute(f"DROP TABLE IF EXISTS {EVENTS}; DROP TABLE IF EXISTS {ENTITIES}")


def content_key(member: str) -> int:
    """63 bits of the MD5 of a member's text without its id (``[id,`` dropped): equal for the same event
    stored under two ids (the seed's ``-rank``, the stream's Kafka offset); :func:`held_rows` computes the
    same in DuckDB."""
    import hashlib

    digest = hashlib.md5(member[member.index(",") + 1:].encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def held_rows(con, cv, relation: str, claim, batch_rows: int = 100_000):
    """Batches of ``(keys, content_key, rows)``: the view's rows (``relation``) inside the ``claim`` ranges,
    counted per entity and member content (:func:`content_key`)."""
    from featurestore.stores.online_redis import member_sql

    if not claim:
        return
    keys = [dsql.q(k) for k in cv.join_keys]
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    inside = " OR ".join(f"({ts} >= {int(lo)} AND {ts} < {int(hi)})" for lo, hi in claim)
    where = " AND ".join([f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{k} IS NOT NULL" for k in keys), f"({inside})"])
    # the member of rank 0 starts with "[-0,": its content from the fifth character on
    sql = (f"SELECT {', '.join(keys)}, CAST(md5_number_upper(substr(__fs_m, 5)) >> 1 AS BIGINT) AS __fs_h, "
           f"count(*) AS __fs_n FROM (SELECT *, {member_sql(cv, '0', ts)} AS __fs_m FROM {relation} AS src "
           f"WHERE {where}) GROUP BY ALL")
    for batch in con.sql(sql).to_arrow_reader(batch_rows):
        cols = [batch.column(i).to_pylist() for i in range(len(keys))]
        yield list(zip(zip(*cols), batch.column("__fs_h").to_pylist(), batch.column("__fs_n").to_pylist()))


__all__ = ["content_key", "folded_records", "held_rows", "seed_rows"]
