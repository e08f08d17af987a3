import os, re, time
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tiles_setup.py')).read().split('con.execute("PRAGMA enable_profiling')[0])
def split(sql):
    assert sql.startswith("WITH ")
    i = 5; ctes = []
    while True:
        m = re.match(r"\s*(\w+) AS (MATERIALIZED )?\(", sql[i:])
        if not m: break
        name = m.group(1); j = i + m.end(); d = 1; k = j
        while d:
            c = sql[k]
            if c == "(": d += 1
            elif c == ")": d -= 1
            elif c == "'":
                k = sql.index("'", k + 1)
            k += 1
        ctes.append((name, sql[j:k-1])); i = k
        if sql[i:i+2] == ", ": i += 2
        else: break
    return ctes, sql[i:]
ctes, final = split(tsql)
tot = 0
for name, body in ctes:
    c0 = time.process_time(); con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {body}"); c = time.process_time() - c0
    tot += c
    print(f"{name}: {c:.3f}", flush=True)
c0 = time.process_time(); con.sql(final).to_arrow_table(); c = time.process_time() - c0
print(f"final: {c:.3f}; total {tot + c:.3f}")
# final without row text
inner = final[final.index("FROM (")+6: final.rindex(") ORDER BY")]
c0 = time.process_time(); con.sql(inner).to_arrow_table(); print(f"final w/o text, order: {time.process_time() - c0:.3f}")
inner2 = re.sub(r" LEFT JOIN __fs_mat_hev AS __fs_p\d+ ON [^L]*?(?= LEFT JOIN|$)", "", inner)
sel = re.sub(r", [^,]*__fs_p\d[^,]* AS [ovw]\d+(_\d+)?", "", inner2)
try:
    c0 = time.process_time(); con.sql(sel).to_arrow_table(); print(f"final w/o text, picks: {time.process_time() - c0:.3f}")
except Exception as e: print("err", str(e)[:200]); print(sel[:1500])
