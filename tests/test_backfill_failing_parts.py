"""The DuckDB backfill's parts that cannot simply run under ``try``: a part calling a volatile function (DuckDB
refuses ``try`` around ``random()``: the call is evaluated once per row before it, the rest under ``try``) and a join
key made by a projection (evaluated on every event, before the filter). An event either fails on is a dead letter of
the view, as any failing part's (tests/test_stream_failing_exprs.py); neither stops the backfill. Was: the whole
backfill failed in one line on the first such event. Only the DuckDB backfill runs these views (the Flink jobs
refuse volatile functions and projected keys at plan time)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.engines.flink.exprs import EVALUATION_FAILS, OVERFLOW
from featurestore.store import FeatureStore
from tests.stream_helpers import backfill_letters

T0_MS = 1_772_323_200_000
DEFINITIONS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
owner = Entity(join_keys=["k"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
lucky = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty + CAST(random() * 0 AS BIGINT)"},
                    features=[Latest("sq")])
drawn = FeatureView(entities=[user], source=events, filter="100 % qty <> 1 AND random() < 2",
                    features=[Latest("qty", name="drawn_qty")])
keyed = FeatureView(entities=[owner], source=events, projections={"k": "CAST(qty * qty AS VARCHAR)"},
                    features=[Latest("qty", name="keyed_qty")], filter="qty > 5")
'''
LUCKY = f"view 'lucky': projection 'sq' (qty * qty + CAST(random() * 0 AS BIGINT)): {EVALUATION_FAILS}"
DRAWN = f"view 'drawn': filter (100 % qty <> 1 AND random() < 2): {EVALUATION_FAILS}"
KEYED = f"view 'keyed': projection 'k' (CAST(qty * qty AS VARCHAR)): {OVERFLOW}"
BIG = 4 * 10**9  # qty * qty overflows BIGINT


def _repo(root):
    rng = random.Random(5)
    events = [{"user_id": f"u{i % 3}", "qty": [None, 0, BIG, -BIG, rng.randrange(-50, 50)][i % 5] if i % 2 else
               rng.randrange(-50, 50), "ts": T0_MS + 1000 * i} for i in range(60)]
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: t_parts\ndefinitions: definitions\n")
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events], pa.int64()),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root), events


def test_a_volatile_part_and_a_projected_key_dead_letter_the_events_they_fail_on(tmp_path):
    store, events = _repo(tmp_path / "p")
    got = {r.view: r for r in store.backfill()}
    big = [e for e in events if e["qty"] in (BIG, -BIG)]
    zero = [e for e in events if e["qty"] == 0]
    want = Counter({(LUCKY, e["ts"]): 1 for e in big})
    want.update({(DRAWN, e["ts"]): 1 for e in zero})
    want.update({(KEYED, e["ts"]): 1 for e in big})  # the key fails before the filter (qty > 5) is asked
    nulls = [e for e in events if e["qty"] is None]
    want.update({("null join key k (views keyed)", e["ts"]): 1 for e in nulls})
    assert backfill_letters(store) == want and big and zero
    assert (got["lucky"].rows, got["lucky"].failed) == (len(events) - len(big), len(big))
    drawn = [e for e in events if e["qty"] and math.fmod(100, e["qty"]) != 1]
    assert (got["drawn"].rows, got["drawn"].failed) == (len(drawn), len(zero))
    keyed = [e for e in events if e["qty"] is not None and e["qty"] not in (BIG, -BIG) and e["qty"] > 5]
    assert (got["keyed"].rows, got["keyed"].failed, got["keyed"].rejected_null_key) == (len(keyed), len(big), len(nulls))
    stored = store.offline.table("keyed", "ts").read().to_pylist()
    assert sorted((r["k"], r["qty"]) for r in stored) == sorted((str(e["qty"] ** 2), e["qty"]) for e in keyed)
    assert [r["sq"] for r in store.offline.table("lucky", "ts").read().to_pylist()] and all(
        r["sq"] == (r["qty"] ** 2 if r["qty"] is not None else None)
        for r in store.offline.table("lucky", "ts").read().to_pylist())
