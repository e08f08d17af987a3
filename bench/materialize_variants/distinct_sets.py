import os, re, time
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ctes.py')).read().split("tot = 0")[0])
for name, body in ctes:
    if name in ("__fs_src",):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {body}")
dx = [b for n, b in ctes if n.startswith("dx")]
print(len(dx), dx[0][:600])
m = re.search(r"list\(DISTINCT (__fs_i\d+)\)", dx[0]); x = m.group(1)
tops = re.findall(r"SELECT __fs_e, (\d+) AS __fs_l", dx[0]); top = max(int(t) for t in tops)
BASE = re.search(r"__fs_g0 = (-?\d+)", dx[0]).group(1)
print("x", x, "top", top)
B = (f"SELECT __fs_e, __fs_l, __fs_g, to_json(list_sort(s)) AS s3 FROM (SELECT __fs_e, -1 AS __fs_l, __fs_g0 AS __fs_g, list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) AS s FROM __fs_src WHERE __fs_g0 = {BASE} GROUP BY ALL "
     f"UNION ALL SELECT __fs_e, __fs_l, __fs_g, list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) AS s FROM (SELECT __fs_e, k AS __fs_l, __fs_g0 - (((__fs_g0 % (60000 << k)) + (60000 << k)) % (60000 << k)) AS __fs_g, {x} "
     f"FROM __fs_src, range(0, {top + 1}) AS r(k) WHERE __fs_g0 <> {BASE} AND __fs_k <= k) GROUP BY ALL)")
C = (f"WITH d AS MATERIALIZED (SELECT DISTINCT __fs_e, __fs_g0, __fs_k, {x} FROM __fs_src WHERE {x} IS NOT NULL) "
     f"SELECT __fs_e, __fs_l, __fs_g, to_json(list_sort(s)) AS s3 FROM (SELECT __fs_e, -1 AS __fs_l, __fs_g0 AS __fs_g, list(DISTINCT {x}) AS s FROM d WHERE __fs_g0 = {BASE} GROUP BY ALL "
     + "".join(f"UNION ALL SELECT __fs_e, {k} AS __fs_l, __fs_g0 - (((__fs_g0 % {60000 << k}) + {60000 << k}) % {60000 << k}) AS __fs_g, list(DISTINCT {x}) AS s FROM d WHERE __fs_g0 <> {BASE} AND __fs_k <= {k} GROUP BY ALL " for k in range(top + 1))
     + ")")
def canon(sql):
    return sorted(con.sql(sql.replace("to_json(list_sort(s)) AS s3", "to_json(list_sort(s)) AS s3") ).fetchall(), key=repr)
ref = None
for rep in range(3):
    out = []
    for name, q in (("A", dx[0]), ("B", B), ("C", C)):
        c0 = time.process_time(); rows = con.sql(q).fetchall(); c = time.process_time() - c0
        out.append(f"{name} {c:.3f}")
        if rep == 0:
            s = sorted(map(repr, rows))
            if ref is None: ref = s
            else: out.append("same" if s == ref else f"DIFF {len(s)} {len(ref)}")
    print(", ".join(out), flush=True)
