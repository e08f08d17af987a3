import sys, os, time, dataclasses, re
sys.path.insert(0, os.getcwd())
from bench.common import DATA_ROOT
from bench.materialize_hot import make_repo
from bench.materialize_phases import view_setup
from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.engines import duckdb_partials as dpart
from featurestore.kernel import entity as kentity
from featurestore.kernel.tiles import TOP_LEVEL
from featurestore.stores import online_materialize as om
work = DATA_ROOT / "materialize-hot"
repo = make_repo(work, work / "data")
fs = FeatureStore(repo, config=dataclasses.replace(load_config(repo), project="phases"))
con = fs._connect()
view = sys.argv[1]
v = view_setup(fs, con, view)
cv, rel, ret, layout, cut = v.cv, v.rel, v.ret, v.layout, v.cut
tile_top, text_cols, order_plain, merged = v.tile_top, v.text_cols, v.order_plain, v.merged
con.execute(f"CREATE OR REPLACE TEMP TABLE {om.RANKED} AS {om.ranked_sql(cv, rel, None)}")
con.execute(om.hot_sql(cv, om.RANKED, None, cut, ret.keep_base))
sql, order_text = om._events_sql(cv, picked_order=True, ranked=True)
con.execute(sql.format(relation=om.RANKED))
all_tops = ret.keep_base and tile_top == TOP_LEVEL
lv = dpart.minute_levels(con, om.HOT_EVENTS, cut, ret.keep_base, tile_top, kentity.TILE_MIN_EVENTS, all_tops, om.HOT_LEVELS)
tsql = dpart.tiles_sql(layout, om.HOT_EVENTS, cut, ret.keep_base, order_text, tile_top, kentity.TILE_MIN_EVENTS, all_tops, text_cols,
                       row_text=(order_plain, merged), pick_order=om._pick_order_sql(cv) if order_text else None, levels=lv)
print("slots", layout.slots, "levels", layout.levels, "tile_top", tile_top, "float", layout.float_cols, "text", text_cols)
con.execute("PRAGMA enable_profiling='json'; PRAGMA profiling_output='/tmp/materialize-tiles-prof.json'")
c0 = time.process_time(); con.sql(tsql).to_arrow_table(); print("cpu", time.process_time() - c0)
con.execute("PRAGMA disable_profiling")
import json
prof = json.load(open('/tmp/materialize-tiles-prof.json'))
ops = []
def walk(n, d=0):
    name = n.get("operator_name") or n.get("name")
    t = n.get("operator_timing", n.get("timing", 0))
    ops.append((t, d, name, n.get("operator_cardinality", n.get("cardinality")), (n.get("extra_info") or {}) ))
    for c in n.get("children", []): walk(c, d+1)
walk(prof)
tot = sum(o[0] for o in ops)
print("total op time", tot)
for t, d, name, card, ex in sorted(ops, key=lambda o: -o[0])[:25]:
    info = json.dumps(ex)[:220]
    print(f"{t:.3f} d{d} {name} rows={card} {info}")
