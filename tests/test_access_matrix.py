"""Access control against a brute-force policy oracle (SPEC §8, docs/access-control.md), on random repos and
random policies: every principal x action x object through the HTTP surface that performs it (catalog
records, online lookups by features and by service, push, write-to-online-store, materialize, apply, training
sets through the offline server), and no surface ever names what a principal may not see: catalog listings,
search, pages, lineage, /health, and the error messages of mistaken requests (a "did you mean" must not
suggest a hidden view, feature, service or source; a hidden view's typo'd feature answers like its real one).

The oracle below is written from the docs' table ("a grant has"), not from featurestore.access."""

from __future__ import annotations

import fnmatch
import random
import re
import uuid

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestore import server_offline
from featurestore.cli import app as cli
from featurestore.errors import AccessError, RequestError
from featurestore.offline_client import OfflineClient
from featurestore.server import create_app
from featurestore.store import FeatureStore
from tests.served import drop_online
from tests.services import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ACTIONS = ("read_metadata", "read_online", "read_offline", "push", "apply", "materialize")
PRINCIPALS = ("p0", "p1", "p2", "p3", "p4")


def _word(rng) -> str:  # a name part no other name contains (substring checks stay exact)
    return "".join(rng.choice("bcdfghjkmnpqrstvwxz") for _ in range(5))


def random_repo(root, seed: int) -> dict:
    """Two sources, four or five views over them with random tags, two or three services over random views."""
    rng = random.Random(seed)
    (root / "definitions").mkdir(parents=True)
    objs = {"sources": [f"src_{_word(rng)}" for _ in range(2)], "views": {}, "services": {}, "tags": {}}
    lines = ["from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source",
             'user = Entity(join_keys=["user_id"], tags={"team": "a"})']
    for s in objs["sources"]:
        (root / "data" / s).mkdir(parents=True)
        pd.DataFrame({"user_id": ["u1", "u2", "u1"], "x": [1.0, 2.0, 3.0],
                      "ts": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:10", "2026-01-01 00:20"], utc=True)}
                     ).to_parquet(root / "data" / s / "e.parquet")
        tags = {"team": rng.choice("ab")}
        objs["tags"][s] = tags
        lines.append(f'{s} = Source(schema={{"user_id": "string", "x": "float64", "ts": "timestamp"}}, timestamp="ts", '
                     f'batch=ParquetFiles("data/{s}/*.parquet"), tags={tags!r}, owner="{rng.choice(["Ann", "bob"])}")')
    for i in range(rng.randint(4, 5)):
        v = f"v{i}_{_word(rng)}"
        feats = [f"f_{_word(rng)}" for _ in range(2)]
        tags = {"team": rng.choice("ab"), **({"pii": "yes"} if rng.random() < 0.4 else {})}
        objs["views"][v] = {"source": rng.choice(objs["sources"]), "features": feats}
        objs["tags"][v] = tags
        lines.append(f'{v} = FeatureView(entities=[user], source={objs["views"][v]["source"]}, tags={tags!r}, '
                     f'features=[Aggregation("x", "sum", "1h", name="{feats[0]}"), Latest("x", name="{feats[1]}")])')
    for i in range(rng.randint(2, 3)):
        name = f"svc{i}_{_word(rng)}"
        views = rng.sample(sorted(objs["views"]), rng.randint(1, 3))
        tags = {"team": rng.choice("ab")}
        objs["services"][name] = views
        objs["tags"][name] = tags
        lines.append(f'{name} = FeatureService(features=[{", ".join(views)}], tags={tags!r})')
    (root / "definitions" / "features.py").write_text("\n".join(lines) + "\n")
    objs["project"] = f"aclm_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {objs['project']}\ndefinitions: definitions\n"
                                            "access_control:\n  enabled: true\n")
    return objs


def random_policy(rng, objs) -> dict:
    """Roles of one or two random grants each (project-wide, name lists and globs, tags, both), held by
    random principals."""
    roles = {}
    for r in range(4):
        grants = []
        for _ in range(rng.randint(1, 2)):
            g = {"actions": sorted(rng.sample(ACTIONS, rng.randint(1, 4)))}
            shape = rng.choice(["project", "names", "glob", "tags", "both"])
            if shape in ("names", "both"):
                key = rng.choice(["views", "services", "sources"])
                pool = {"views": sorted(objs["views"]), "services": sorted(objs["services"]),
                        "sources": objs["sources"]}[key]
                g[key] = rng.sample(pool, rng.randint(1, min(2, len(pool))))
            if shape == "glob":
                g["views"] = [f"v{rng.randint(0, 3)}_*"]
            if shape in ("tags", "both"):
                g["tags"] = rng.choice([{"team": "a"}, {"team": "b"}, {"pii": "yes"}, {"team": "a", "pii": "yes"}])
            grants.append(g)
        roles[f"role{r}"] = grants
    principals = {p: rng.sample(sorted(roles), rng.randint(0, 2)) for p in PRINCIPALS}
    return {"roles": roles, "principals": principals}


def oracle(policy, objs, principal: str, action: str, kind: str, name: str) -> bool:
    """The docs' table, by brute force: some grant of some role of the principal lists the action and covers
    the object (no selector: everything incl. the project; name lists: its kind's list matches the name; tags:
    the object carries each)."""
    for role in policy["principals"][principal]:
        for g in policy["roles"][role]:
            if action not in g["actions"]:
                continue
            lists = {k: g[k] for k in ("views", "services", "sources", "entities") if k in g}
            tags = g.get("tags", {})
            if not lists and not tags:
                return True
            if kind == "project":
                continue
            if lists and not any(fnmatch.fnmatchcase(name, p) for p in lists.get(kind + "s", [])):
                continue
            if all(objs["tags"].get(name, {}).get(k) == v for k, v in tags.items()):
                return True
    return False


@pytest.fixture(scope="module", params=[0, 1])
def world(request, tmp_path_factory):
    import yaml

    seed = request.param
    root = tmp_path_factory.mktemp(f"aclm{seed}")
    objs = random_repo(root, seed)
    policy = random_policy(random.Random(1000 + seed), objs)
    (root / "access.yaml").write_text(yaml.safe_dump(policy))
    store = FeatureStore(root)
    store.apply()
    store.backfill()
    store.materialize()
    tokens = {}
    for p in PRINCIPALS:
        res = CliRunner().invoke(cli, ["auth", "create", p, "--repo", str(root)])
        assert res.exit_code == 0, res.output
        tokens[p] = res.stdout.strip().splitlines()[-1]
    client = TestClient(create_app(FeatureStore(root)))
    port = free_port()
    offline = server_offline.start(FeatureStore(root), "127.0.0.1", port)
    yield {"root": root, "objs": objs, "policy": policy, "tokens": tokens, "client": client, "store": store,
           "offline_port": port}
    offline.shutdown()
    drop_online(store)


def _auth(world, p):
    return {"Authorization": f"Bearer {world['tokens'][p]}"}


def _ok(world, p, action, kind, name):
    return oracle(world["policy"], world["objs"], p, action, kind, name)


def expected_requests(world, p):
    """(what, method, path, body, allowed, known) for every action on every object it applies to; ``known``:
    the principal may know the object named exists (its metadata or the action), else a refusal answers as
    an unknown name does."""
    objs = world["objs"]
    ok = lambda a, k, n: _ok(world, p, a, k, n)  # noqa: E731
    sees = lambda a, k, n: ok("read_metadata", k, n) or ok(a, k, n)  # noqa: E731
    row = {"user_id": "u1"}
    out = []
    for v, d in objs["views"].items():
        out.append((f"describe {v}", "GET", f"/catalog/{v}", None, ok("read_metadata", "view", v), False))
        out.append((f"describe {v}:{d['features'][0]}", "GET", f"/catalog/{v}:{d['features'][0]}", None,
                    ok("read_metadata", "view", v), False))
        out.append((f"online {v}", "POST", "/get-online-features",
                    {"features": [f"{v}:{f}" for f in d["features"]], "entity_rows": [row]},
                    ok("read_online", "view", v), sees("read_online", "view", v)))
        out.append((f"materialize {v}", "POST", "/materialize", {"feature_views": [v]}, ok("materialize", "view", v),
                    sees("materialize", "view", v)))
        push_ok = ok("push", "source", d["source"]) or ok("push", "view", v)
        out.append((f"write {v}", "POST", "/write-to-online-store",
                    {"feature_view_name": v, "df": {"user_id": ["u1"], "x": ["bad"], "ts": ["2026-01-01T00:30:00Z"]}},
                    push_ok, sees("push", "view", v)))
    for s, views in objs["services"].items():
        out.append((f"describe {s}", "GET", f"/catalog/{s}", None, ok("read_metadata", "service", s), False))
        allowed = ok("read_online", "service", s) or all(ok("read_online", "view", v) for v in views)
        out.append((f"online {s}", "POST", "/get-online-features", {"feature_service": s, "entity_rows": [row]},
                    allowed, sees("read_online", "service", s)))
    for s in objs["sources"]:
        out.append((f"describe {s}", "GET", f"/catalog/{s}", None, ok("read_metadata", "source", s), False))
        over = [v for v, d in objs["views"].items() if d["source"] == s]
        allowed = ok("push", "source", s) or bool(over) and all(ok("push", "view", v) for v in over)
        out.append((f"push {s}", "POST", "/push",  # one event and one dead letter (its result names views)
                    {"source": s, "rows": [{"user_id": "u9", "x": 1.5, "ts": "2026-01-01T00:30:00Z"},
                                           {"user_id": "u1", "x": "bad", "ts": "2026-01-01T00:30:00Z"}],
                     "to": "offline"}, allowed, sees("push", "source", s)))
    out.append(("materialize all", "POST", "/materialize-incremental", {"end_ts": "2026-02-01T00:00:00"},
                all(ok("materialize", "view", v) for v in objs["views"]), True))
    out.append(("apply", "POST", "/apply", None, ok("apply", "project", ""), True))
    out.append(("metrics", "GET", "/metrics", None, ok("read_metadata", "project", ""), True))
    return out


def test_every_principal_action_and_object_against_the_oracle(world):
    client, objs = world["client"], world["objs"]
    wrong = {}
    for p in PRINCIPALS:
        for what, method, path, body, allowed, known in expected_requests(world, p):
            res = client.request(method, path, json=body, headers=_auth(world, p))
            # a hidden record is one that does not exist; a refused name the caller may not know exists
            # answers as an unknown name (400), one it may know of is a 403
            denied = 404 if path.startswith("/catalog/") else 403 if known else 400
            want = 200 if allowed else denied
            if res.status_code != want:
                wrong[(p, what)] = (res.status_code, want, res.text[:160])
            if res.status_code == 403:
                assert f"principal '{p}' may not" in res.json()["detail"]
            sent = res.request.content.decode() + path  # a refusal names nothing hidden the caller did not name
            leaked = sorted(n for n in _hidden(world, p, "push" if what.startswith(("push", "write")) else
                                                "read_metadata") if n in res.text and n not in sent)
            if what.startswith("write") and res.status_code == 200:  # its result names the source it wrote
                leaked = [n for n in leaked if n != objs["views"][what.split()[1]]["source"]]
            if leaked:
                wrong[(p, what, "leaks")] = (leaked, res.text[:160])
        res = client.request("POST", "/get-online-features", json={"feature_service": "x", "entity_rows": [{}]})
        assert res.status_code == 401
    assert not wrong, f"(principal, request): (got, expected, body): {wrong}"


def _shape(res, name: str):
    """An answer with ``name`` masked and its suggestion left out: what a probe could compare."""
    detail = res.json().get("detail") if res.headers.get("content-type", "").startswith("application/json") else None
    text = str(detail if detail is not None else res.text).replace(name, "<name>")
    return res.status_code, re.sub(r" \(did you mean [^)]*\)", "", text)


def test_a_hidden_name_answers_as_an_unknown_one(world):
    """No existence probe: on every surface that takes a name (lookups by view and by service, push, Feast's
    write, materialize, the catalog, training sets through the offline server), a refused name the principal
    may not know exists gets the same status and the same words as a name that does not exist (before: 403
    "may not ..." against 400 "unknown ..."); a visible typo still gets its suggestion."""
    client, objs = world["client"], world["objs"]
    row = {"user_id": "u1"}
    asks = {  # surface -> (kind, action, request of a name)
        "online view": ("view", "read_online", lambda n: ("POST", "/get-online-features",
                                                          {"features": [f"{n}:f"], "entity_rows": [row]})),
        "online service": ("service", "read_online", lambda n: ("POST", "/get-online-features",
                                                                {"feature_service": n, "entity_rows": [row]})),
        "materialize": ("view", "materialize", lambda n: ("POST", "/materialize", {"feature_views": [n]})),
        "write": ("view", "push", lambda n: ("POST", "/write-to-online-store",
                                             {"feature_view_name": n, "df": {"user_id": ["u1"]}})),
        "push": ("source", "push", lambda n: ("POST", "/push", {"source": n, "rows": [row], "to": "offline"})),
        "catalog": ("view", "read_metadata", lambda n: ("GET", f"/catalog/{n}", None)),
    }
    pools = {"view": list(objs["views"]), "service": list(objs["services"]), "source": list(objs["sources"])}
    probed = 0
    for p in PRINCIPALS:
        auth = _auth(world, p)
        for surface, (kind, action, ask) in asks.items():
            for name in pools[kind]:
                if _ok(world, p, "read_metadata", kind, name) or _ok(world, p, action, kind, name):
                    continue
                if kind == "service" and all(_ok(world, p, "read_online", "view", v) for v in objs["services"][name]):
                    continue  # the views' grants allow the lookup
                if surface == "write" and _ok(world, p, "push", "source", objs["views"][name]["source"]):
                    continue  # a grant on its source allows the write
                if kind == "source" and all(_ok(world, p, "push", "view", v) for v, d in objs["views"].items()
                                            if d["source"] == name):
                    continue
                ghost = name + "0"
                method, path, body = ask(name)
                hidden = client.request(method, path, json=body, headers=auth)
                method, path, body = ask(ghost)
                missing = client.request(method, path, json=body, headers=auth)
                assert _shape(hidden, name) == _shape(missing, ghost), (p, surface, hidden.text, missing.text)
                assert hidden.status_code in (400, 404), (p, surface, hidden.text)
                probed += 1
        for v in objs["views"]:  # a visible view's typo still gets its suggestion
            if _ok(world, p, "read_metadata", "view", v):
                res = client.post("/get-online-features", headers=auth,
                                  json={"features": [f"{v[:-1]}:f"], "entity_rows": [row]})
                assert res.status_code == 400 and "did you mean" in res.json()["detail"], (p, res.text)
    assert probed > 10
    entity_df = pd.DataFrame({"user_id": ["u1"], "event_timestamp": pd.Timestamp("2026-01-01 00:30", tz="UTC")})
    for p in PRINCIPALS:
        with OfflineClient("127.0.0.1", world["offline_port"], token=world["tokens"][p], timeout=120) as offline:
            for v, d in objs["views"].items():
                if _ok(world, p, "read_metadata", "view", v) or _ok(world, p, "read_offline", "view", v):
                    continue
                answers = []
                for name in (v, v + "0"):
                    with pytest.raises((AccessError, RequestError)) as info:
                        offline.get_historical_features(entity_df, features=[f"{name}:{d['features'][0]}"])
                    answers.append((type(info.value), re.sub(r" \(did you mean [^)]*\)", "",
                                                              str(info.value).replace(name, "<name>"))))
                assert answers[0] == answers[1], (p, v, answers)


def _hidden(world, p, action="read_metadata"):
    """Names (views, their features, services, sources) ``p`` may neither read the metadata of nor ``action``."""
    objs = world["objs"]
    sees = lambda k, n: _ok(world, p, "read_metadata", k, n) or _ok(world, p, action, k, n)  # noqa: E731
    out = set()
    for v, d in objs["views"].items():
        if not sees("view", v):
            out.add(v)
            out.update(d["features"])
    out.update(s for s in objs["services"] if not sees("service", s))
    out.update(s for s in objs["sources"] if not sees("source", s))
    # a feature name a visible view shares cannot leak (names are random words: none do)
    return out


def test_no_surface_names_what_a_principal_may_not_see(world):
    from featurestore.engines.backfill import add_pushed

    client, objs = world["client"], world["objs"]
    for s in objs["sources"]:  # a dead-letter breach on every source: the monitor page lists breaches
        add_pushed(world["store"], s, 9, 10)
    for p in PRINCIPALS:
        hidden = _hidden(world, p)
        auth = _auth(world, p)
        pages = {"catalog": client.get("/catalog", headers=auth), "health": client.get("/health", headers=auth),
                 "ui": client.get("/ui/", headers=auth), "monitor": client.get("/ui/monitor", headers=auth),
                 "search f_": client.get("/ui/search", params={"q": "f_"}, headers=auth),
                 "search v": client.get("/catalog", params={"q": "v"}, headers=auth)}
        for v in objs["views"]:
            if v not in hidden:
                pages[f"page {v}"] = client.get(f"/ui/view/{v}", headers=auth)
        for s in objs["services"]:
            if s not in hidden:
                pages[f"page {s}"] = client.get(f"/ui/service/{s}", headers=auth)
        for s in objs["sources"]:
            if s not in hidden:
                pages[f"page {s}"] = client.get(f"/ui/source/{s}", headers=auth)
        pages["page user"] = client.get("/ui/entity/user", headers=auth)
        for what, res in pages.items():
            leaked = sorted(n for n in hidden if n in res.text)
            assert not leaked, (p, what, leaked)


def test_error_messages_name_nothing_hidden(world):
    """Mistaken requests (typos near hidden names, a hidden view's typo'd feature) on every surface that
    resolves names: the answer never names a hidden object; a hidden view's real and typo'd features answer
    alike."""
    client, objs = world["client"], world["objs"]
    for p in PRINCIPALS:
        auth = _auth(world, p)
        checks = []
        hidden_online = _hidden(world, p, "read_online")
        for v, d in objs["views"].items():
            f = d["features"][0]
            typo = {"features": [f"{v}:{f[:-1]}"], "entity_rows": [{"user_id": "u1"}]}
            real = {"features": [f"{v}:{f}"], "entity_rows": [{"user_id": "u1"}]}
            near = {"features": [f"{v[:-1]}:{f}"], "entity_rows": [{"user_id": "u1"}]}
            r_typo = client.post("/get-online-features", json=typo, headers=auth)
            checks += [("typo feature", r_typo, hidden_online),
                       ("typo view", client.post("/get-online-features", json=near, headers=auth), hidden_online)]
            if v in hidden_online:  # the same answer for its real and its misspelt feature (each echoes its ref)
                r_real = client.post("/get-online-features", json=real, headers=auth)
                assert (r_typo.status_code, r_typo.json()["detail"].replace(typo["features"][0], "<ref>")) == \
                    (r_real.status_code, r_real.json()["detail"].replace(real["features"][0], "<ref>")), (p, v)
        for s in objs["services"]:
            checks.append(("typo service", client.post("/get-online-features", json={
                "feature_service": s[:-1], "entity_rows": [{"user_id": "u1"}]}, headers=auth), hidden_online))
        hidden_push = _hidden(world, p, "push")
        for s in objs["sources"]:
            checks.append(("typo source", client.post("/push", json={
                "source": s[:-1], "rows": [{"user_id": "u1"}], "to": "offline"}, headers=auth), hidden_push))
        for what, res, hidden in checks:
            assert res.status_code in (400, 403), (p, what, res.status_code, res.text[:200])
            sent = res.request.content.decode()  # a name the caller sent may be echoed: it knows it
            leaked = sorted(n for n in hidden if n in res.text and n not in sent)
            assert not leaked, (p, what, leaked, res.text[:300])


def test_training_sets_through_the_offline_server_against_the_oracle(world):
    """read_offline on the offline server (Arrow Flight): by feature references and by service, against the
    oracle; a refusal or a mistaken reference names nothing the principal may not see."""
    objs = world["objs"]
    entity_df = pd.DataFrame({"user_id": ["u1", "u2"], "event_timestamp": pd.Timestamp("2026-01-01 00:30", tz="UTC")})
    wrong = {}
    for p in PRINCIPALS:
        ok = lambda k, n: _ok(world, p, "read_offline", k, n)  # noqa: E731
        hidden = _hidden(world, p, "read_offline")
        asks = [(f"view {v}", {"features": [f"{v}:{f}" for f in d["features"]]}, ok("view", v))
                for v, d in objs["views"].items()]
        asks += [(f"service {s}", {"feature_service": s}, ok("service", s) or all(ok("view", v) for v in views))
                 for s, views in objs["services"].items()]
        with OfflineClient("127.0.0.1", world["offline_port"], token=world["tokens"][p], timeout=120) as client:
            for what, ask, allowed in asks:
                try:
                    got = client.get_historical_features(entity_df, **ask)
                    outcome = len(got) == 2
                except AccessError as exc:  # refused, naming what the principal may know exists
                    outcome = False
                    assert f"principal '{p}' may not read_offline" in str(exc), (p, what, str(exc))
                except RequestError as exc:  # a name it may not know exists: answered as an unknown one
                    outcome = False
                    assert str(exc).startswith("unknown feature"), (p, what, str(exc))
                if outcome != allowed:
                    wrong[(p, what)] = (outcome, allowed)
            for v, d in objs["views"].items():  # typos: the answer never names a hidden object
                for ref in (f"{v}:{d['features'][0][:-1]}", f"{v[:-1]}:{d['features'][0]}"):
                    with pytest.raises((AccessError, RequestError)) as info:
                        client.get_historical_features(entity_df, features=[ref])
                    leaked = sorted(n for n in hidden if n in str(info.value) and n not in ref)
                    assert not leaked, (p, ref, leaked, str(info.value))
    assert not wrong, f"(principal, request): (served, expected): {wrong}"


def test_a_push_result_names_no_view_the_pusher_may_not_see(tmp_path):
    """A grant of push on a source writes every view over it; the answer's per-view counts and refusals left
    out the views the pusher may not see (it named them all: 'offline': {view: version})."""
    import yaml

    objs = random_repo(tmp_path, 5)
    source = max(objs["sources"], key=lambda s: sum(d["source"] == s for d in objs["views"].values()))
    over = [v for v, d in objs["views"].items() if d["source"] == source]
    assert len(over) >= 2
    seen = over[0]
    (tmp_path / "access.yaml").write_text(yaml.safe_dump({
        "roles": {"ingest": [{"actions": ["push"], "sources": [source]},
                             {"actions": ["read_metadata"], "views": [seen]}]},
        "principals": {"pusher": ["ingest"]}}))
    res = CliRunner().invoke(cli, ["auth", "create", "pusher", "--repo", str(tmp_path)])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    client = TestClient(create_app(FeatureStore(tmp_path)))
    res = client.post("/push", headers={"Authorization": f"Bearer {token}"}, json={
        "source": source, "rows": [{"user_id": "u9", "x": 1.5, "ts": "2026-01-01T00:30:00Z"}], "to": "offline"})
    assert res.status_code == 200, res.text
    assert list(res.json()["offline"]) == [seen]
    hidden = {v for v in objs["views"] if v != seen} | {f for v, d in objs["views"].items() if v != seen
                                                        for f in d["features"]}
    assert not [n for n in hidden if n in res.text], res.text
