import sys, os, time, dataclasses
sys.path.insert(0, os.getcwd())
from bench.common import DATA_ROOT
from bench.materialize_hot import MATERIALIZE_END_MS, VIEWS, make_repo
from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.stores import online_materialize as om, online_redis as orr
work = DATA_ROOT / "materialize-hot"
repo = make_repo(work, work / "data")
fs = FeatureStore(repo, config=dataclasses.replace(load_config(repo), project="phases"))
con = fs._connect()
def timed(fn):
    c0 = time.process_time(); out = fn(); return time.process_time() - c0, out
for view in VIEWS:
    cv = fs.compiled(view)
    rel = fs._view_input(con, cv).events_relation
    full = om.ranked_sql(cv, rel, None)
    short = full.replace(", " + ", ".join(orr._event_order(cv)[2:]), "")
    nowin = f"SELECT *, epoch_ms(ts) AS __fs_ts FROM {rel} AS src WHERE ts IS NOT NULL"
    noo = full.replace(", rank() OVER (__fs_w) AS __fs_o", "")
    dup = f"SELECT count(*) FROM (SELECT merchant_id, user_id, ts, event_id FROM {rel} GROUP BY ALL HAVING count(*) > 1)"
    for rep in range(2):
        out = []
        for name, q in (("full", full), ("short", short), ("nowindow", nowin), ("no-rank", noo)):
            c, _ = timed(lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE {om.RANKED} AS {q}"))
            out.append(f"{name} {c:.2f}")
        c, _ = timed(lambda: con.sql(dup).fetchall())
        out.append(f"dupcheck {c:.2f}")
        print(view, ", ".join(out), flush=True)
