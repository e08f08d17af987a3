import os, re, time
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ctes.py')).read().split("tot = 0")[0])
for name, body in ctes:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {body}")
inner = final[final.index("FROM (")+6: final.rindex(") ORDER BY")]
joins = re.findall(r"LEFT JOIN __fs_mat_hev AS (__fs_p\d+) ON \1\.__fs_e = a\.__fs_e AND \1\.__fs_r = (.+?)(?= LEFT JOIN|$)", inner)
print(joins)
alt = inner
for alias, rank in joins:
    narrow = (f"(SELECT * FROM __fs_mat_hev SEMI JOIN (SELECT DISTINCT __fs_e, {rank.replace('a.', '')} AS __fs_r FROM __fs_agg) USING (__fs_e, __fs_r))")
    alt = alt.replace(f"LEFT JOIN __fs_mat_hev AS {alias} ON", f"LEFT JOIN {narrow} AS {alias} ON")
for rep in range(3):
    out = []
    for name, q in (("orig", inner), ("semi", alt)):
        c0 = time.process_time(); rows = con.sql(q + " ORDER BY __fs_e, __fs_l, __fs_g").fetchall(); c = time.process_time() - c0
        out.append(f"{name} {c:.3f}")
        if rep == 0:
            if name == "orig": ref = rows
            else: out.append("same" if rows == ref else "DIFF")
    print(", ".join(out), flush=True)
