"""Access control on a real `featurestore serve` process (SPEC §8, docs/access-control.md): a matrix of
principals x actions x objects, each allowed or denied as the policy below says; every route 401 without a
valid token; revocation reaching the running server; JWTs from an OIDC key; tokens never logged.

The expected outcomes are written out by hand (EXPECTED), not computed by featurestore.access."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from featurestore.cli import app as cli
from featurestore.store import FeatureStore
from tests.served import drop_online, example_repo, serve

pytestmark = [pytest.mark.redis, pytest.mark.slow]
runner = CliRunner()

POLICY = """
roles:
  admin:
    - actions: all
  risk-analyst:
    - actions: [read_metadata, read_online, read_offline]
      tags: {team: risk}
  fraud-online:                       # another team: read-only online access to one service, nothing else
    - actions: [read_metadata, read_online]
      services: [fraud_model_v1]
  ingest:
    - actions: [push]
      sources: [transactions]
  loader:
    - actions: [materialize]
      views: [merchant_*]
principals:
  alice: [admin]
  rita: [risk-analyst]
  growth-svc: [fraud-online]
  pipeline: [ingest, loader]
  nobody: []
groups:
  risk-analysts: [risk-analyst]
"""

PRINCIPALS = ("alice", "rita", "growth-svc", "pipeline", "nobody")
ROW = {"user_id": "u0001", "merchant_id": "m001"}
PUSH_ROW = {"event_id": "acl-1", "user_id": "u0001", "merchant_id": "m001", "amount": "not a number",
            "currency": "USD", "country": "DE", "channel": "web", "card_present": True,
            "ts": "2026-10-30T00:00:00Z"}  # a dead letter: allowed pushes change no value

# request name -> (method, path, body)
REQUESTS = {
    "online fraud_model_v1": ("POST", "/get-online-features", {"feature_service": "fraud_model_v1",
                                                                "entity_rows": [ROW]}),
    "online growth_model": ("POST", "/get-online-features", {"feature_service": "growth_model",
                                                              "entity_rows": [ROW]}),
    "online user_spend features": ("POST", "/get-online-features",
                                   {"features": ["user_spend:tx_count_1h"], "entity_rows": [ROW]}),
    "online merchant_activity features": ("POST", "/get-online-features",
                                          {"features": ["merchant_activity:merchant_tx_count_1h"],
                                           "entity_rows": [ROW]}),
    "online transaction_risk features": ("POST", "/get-online-features",  # a request view: and the view it reads
                                         {"features": ["transaction_risk:above_max_1d"],
                                          "entity_rows": [dict(ROW, amount_usd=12.5, merchant_country="DE")]}),
    "describe user_spend": ("GET", "/catalog/user_spend", None),
    "describe transaction_risk": ("GET", "/catalog/transaction_risk", None),
    "describe user_spend:tx_count_1h": ("GET", "/catalog/user_spend:tx_count_1h", None),
    "describe fraud_model_v1": ("GET", "/catalog/fraud_model_v1", None),
    "describe growth_model": ("GET", "/catalog/growth_model", None),
    "describe transactions": ("GET", "/catalog/transactions", None),
    "push transactions": ("POST", "/push", {"source": "transactions", "rows": [PUSH_ROW], "to": "offline"}),
    "write merchant_activity": ("POST", "/write-to-online-store",
                                {"feature_view_name": "merchant_activity",
                                 "df": {k: [v] for k, v in PUSH_ROW.items()}}),
    "materialize merchant_activity": ("POST", "/materialize", {"feature_views": ["merchant_activity"]}),
    "materialize user_spend": ("POST", "/materialize", {"feature_views": ["user_spend"]}),
    "materialize all": ("POST", "/materialize-incremental", {"end_ts": "2026-11-01T00:00:00"}),
    "apply": ("POST", "/apply", None),
    "metrics": ("GET", "/metrics", None),
    "health": ("GET", "/health", None),
    "openapi": ("GET", "/openapi.json", None),
    "catalog page": ("GET", "/ui/", None),
}

Y, N, H, U = 200, 403, 404, 400  # allowed; denied; hidden (the catalog does not show what one may not read);
# unknown: a refused name the principal may not know exists answers as a name that does not exist (no probe)
EXPECTED = {  # request: alice, rita, growth-svc, pipeline, nobody
    "online fraud_model_v1": (Y, Y, Y, U, U),
    "online growth_model": (Y, U, U, U, U),
    "online user_spend features": (Y, Y, U, U, U),
    "online merchant_activity features": (Y, U, U, U, U),
    "online transaction_risk features": (Y, Y, U, U, U),
    "describe user_spend": (Y, Y, H, H, H),
    "describe transaction_risk": (Y, Y, H, H, H),
    "describe user_spend:tx_count_1h": (Y, Y, H, H, H),
    "describe fraud_model_v1": (Y, Y, Y, H, H),
    "describe growth_model": (Y, H, H, H, H),
    "describe transactions": (Y, H, H, H, H),
    "push transactions": (Y, U, U, Y, U),
    "write merchant_activity": (Y, U, U, Y, U),  # push on the source covers its views
    "materialize merchant_activity": (Y, U, U, Y, U),
    "materialize user_spend": (Y, N, U, U, U),
    "materialize all": (Y, N, N, N, N),
    "apply": (Y, N, N, N, N),
    "metrics": (Y, N, N, N, N),
    "health": (Y, Y, Y, Y, Y),  # any principal; it names only the views the caller may read
    "openapi": (Y, Y, Y, Y, Y),
    "catalog page": (Y, Y, Y, Y, Y),
}
# What each principal finds in the catalog (GET /catalog): every name it may read, and nothing else.
VISIBLE = {
    "alice": None,  # everything
    "rita": {"user_spend", "user_profile", "fraud_model_v1", "fraud_model_v2", "transaction_risk",
             "transaction_request"},  # everything tagged team=risk
    "growth-svc": {"fraud_model_v1"},
    "pipeline": set(),
    "nobody": set(),
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = tmp_path_factory.mktemp("oidc")
    out = {}
    for name in ("idp", "other"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (folder / f"{name}.pem").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        out[name] = key
    out["folder"] = folder
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory, keys):
    root = example_repo(tmp_path_factory.mktemp("acl"), stream=False, yaml_extra=(
        "access_control:\n  enabled: true\n"
        f"  jwt_public_key: {keys['folder'] / 'idp.pem'}\n  jwt_issuer: https://idp.example\n"
        "  jwt_audience: featurestore\n"))
    (root / "access.yaml").write_text(POLICY)
    store = FeatureStore(root)
    store.apply()
    store.backfill()
    store.materialize()
    yield root
    drop_online(store)


@pytest.fixture(scope="module")
def tokens(repo):
    out = {}
    for p in PRINCIPALS:
        res = runner.invoke(cli, ["auth", "create", p, "--repo", str(repo), "--note", "test"])
        assert res.exit_code == 0, res.output
        out[p] = res.stdout.strip().splitlines()[-1]
        assert out[p].startswith("fst_")
    return out


@pytest.fixture(scope="module")
def server(repo, tokens, tmp_path_factory):
    log = tmp_path_factory.mktemp("acl-log") / "serve.log"
    with serve(repo, log) as (proc, client, url):
        yield client, log


def call(client, name, token=None, headers=None):
    method, path, body = REQUESTS[name]
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    return client.request(method, path, json=body, headers=h)


def test_every_route_needs_a_valid_token(server, tokens):
    client, _ = server
    schema = call(client, "openapi", tokens["alice"]).json()
    routes = [(m.upper(), p.replace("{name}", "user_spend")) for p, ops in schema["paths"].items() for m in ops]
    routes += [("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"), ("GET", "/ui/"),
               ("GET", "/ui/view/user_spend"), ("GET", "/no/such/path")]
    assert len(routes) >= 12
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer fst_00000000_" + "x" * 43},
                        {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {tokens['alice']}"},
                        {"Cookie": f"featurestore_token={tokens['alice']}"} if method != "GET" else {}):
            res = client.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert res.status_code == 401, (method, path, headers, res.status_code, res.text[:200])
            assert res.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/ui/login").status_code == 200  # the only open page: where a browser logs in


def test_principals_by_actions_by_objects(server, tokens):
    client, _ = server
    got, want = {}, {}
    for name, outcomes in EXPECTED.items():
        for principal, expected in zip(PRINCIPALS, outcomes):
            res = call(client, name, tokens[principal])
            got[(name, principal)] = res.status_code
            want[(name, principal)] = expected
            if res.status_code == 403:
                assert f"principal '{principal}' may not" in res.json()["detail"]
    wrong = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not wrong, f"(request, principal): (got, expected): {wrong}"


def test_the_catalog_shows_only_what_one_may_read(server, tokens):
    client, _ = server
    everything = {r["name"] for r in client.get("/catalog", headers={"Authorization": f"Bearer {tokens['alice']}"}
                                                ).json()["objects"]}
    assert {"user_spend", "growth_model", "transactions", "user", "fraud_model_v1"} <= everything
    for principal, names in VISIBLE.items():
        rows = client.get("/catalog", headers={"Authorization": f"Bearer {tokens[principal]}"}).json()["objects"]
        seen = {r["name"] for r in rows if r["kind"] != "feature"}
        assert seen == (everything - {r for r in everything if ":" in r} if names is None else names), principal
        for r in rows:  # references to what one may not read are gone too
            if r["kind"] == "feature":
                assert r["view"] in seen
            for s in r.get("services", []) if r["kind"] != "feature service" else []:
                assert s in seen, (principal, r["name"], s)
    rita = client.get("/catalog/user_spend", headers={"Authorization": f"Bearer {tokens['rita']}"}).json()
    assert rita["services"] == ["fraud_model_v1", "fraud_model_v2"]
    health = client.get("/health", headers={"Authorization": f"Bearer {tokens['growth-svc']}"}).json()
    assert health["status"] == "ok" and health["views"] == []


def test_another_team_gets_one_service_read_only_and_nothing_else(server, tokens):
    """The issue's "done when": grant growth-svc read_online on fraud_model_v1 only."""
    client, _ = server
    auth = {"Authorization": f"Bearer {tokens['growth-svc']}"}
    res = client.post("/get-online-features", json={"feature_service": "fraud_model_v1", "entity_rows": [ROW]},
                      headers=auth)
    assert res.status_code == 200 and res.json()["results"]["tx_count_1h"] != [None]
    denied = [
        client.post("/get-online-features", json={"feature_service": "growth_model", "entity_rows": [ROW]},
                    headers=auth),
        # the service's own features, asked for by name, are the views: not granted
        client.post("/get-online-features", json={"features": ["user_spend:tx_count_1h"], "entity_rows": [ROW]},
                    headers=auth),
        client.post("/push", json={"source": "transactions", "rows": [PUSH_ROW]}, headers=auth),
        client.post("/materialize", json={"feature_views": ["user_spend"]}, headers=auth),
        client.post("/apply", headers=auth),
        client.get("/metrics", headers=auth),
    ]
    # the names it may not know exist answer as unknown ones (400); the project's own rights are 403s
    assert [r.status_code for r in denied] == [400, 400, 400, 400, 403, 403]
    assert [r["name"] for r in client.get("/catalog", headers=auth).json()["objects"]] == ["fraud_model_v1"]


def test_revoked_and_expired_tokens_are_refused_by_the_running_server(server, repo):
    client, _ = server
    res = runner.invoke(cli, ["auth", "create", "temp", "--repo", str(repo)])
    token = res.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/health", headers=auth).status_code == 200
    listing = json.loads(runner.invoke(cli, ["auth", "list", "--repo", str(repo), "--json"]).stdout)
    entry = next(e for e in listing if e["principal"] == "temp")
    assert "sha256" not in entry and token not in json.dumps(listing)
    res = runner.invoke(cli, ["auth", "revoke", entry["id"], "--repo", str(repo)])
    assert res.exit_code == 0 and f"revoked {entry['id']}" in res.stdout
    assert client.get("/health", headers=auth).status_code == 401  # no restart needed
    res = runner.invoke(cli, ["auth", "revoke", entry["id"], "--repo", str(repo)])
    assert res.exit_code == 1 and f"error: token '{entry['id']}' has no live token to revoke" in res.output
    res = runner.invoke(cli, ["auth", "create", "brief", "--repo", str(repo), "--expires", "3s"])
    short = res.stdout.strip().splitlines()[-1]
    listing = json.loads(runner.invoke(cli, ["auth", "list", "--repo", str(repo), "--json"]).stdout)
    expires_at = next(e for e in listing if e["principal"] == "brief")["expires_at"]
    status = client.get("/health", headers={"Authorization": f"Bearer {short}"}).status_code
    if time.time() < expires_at - 0.5:  # a loaded machine may have spent the 3 s already: then only the 401 counts
        assert status == 200
    time.sleep(max(0.0, expires_at - time.time()) + 0.2)
    assert client.get("/health", headers={"Authorization": f"Bearer {short}"}).status_code == 401


def _jwt(key, **claims):
    body = {"iss": "https://idp.example", "aud": "featurestore", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256")


def test_jwts_signed_by_the_configured_key_authenticate(server, keys):
    client, _ = server

    def status(token, name="online user_spend features"):
        return call(client, name, token).status_code

    analyst = _jwt(keys["idp"], sub="carol", roles=["risk-analysts"])  # a group the policy maps to a role
    assert status(analyst) == 200 and status(analyst, "online growth_model") == 400
    assert status(_jwt(keys["idp"], sub="alice")) == 200  # a principal named in the policy
    dave = _jwt(keys["idp"], sub="dave")  # authenticated, no role: refused (a view it cannot see is unknown to it)
    assert status(dave, "metrics") == 403 and status(dave) == 400
    assert status(_jwt(keys["other"], sub="alice")) == 401  # signed by another key
    assert status(_jwt(keys["idp"], sub="alice", exp=int(time.time()) - 10)) == 401  # expired
    assert status(_jwt(keys["idp"], sub="alice", aud="someone-else")) == 401
    assert status(_jwt(keys["idp"], sub="alice", iss="https://evil.example")) == 401
    no_exp = jwt.encode({"iss": "https://idp.example", "aud": "featurestore", "sub": "alice"}, keys["idp"],
                        algorithm="RS256")
    assert status(no_exp) == 401


def test_tokens_are_never_logged_or_stored(server, repo, tokens):
    client, log = server
    client.post("/get-online-features", json={"feature_service": "nope", "entity_rows": [ROW]},
                headers={"Authorization": f"Bearer {tokens['alice']}"})  # an error path
    client.get("/ui/", headers={"Cookie": f"featurestore_token={tokens['rita']}"})
    client.post("/ui/login", content=f"token={tokens['nobody']}&next=/ui/",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    texts = [Path(log).read_text()]
    texts += [p.read_text(errors="replace") for p in (repo / ".featurestore").rglob("*") if p.is_file()
              and p.suffix in (".json", ".log", ".txt", "")]
    stored = json.loads((repo / ".featurestore" / "tokens.json").read_text())
    assert all(len(t["sha256"]) == 64 for t in stored["tokens"])
    for principal, token in tokens.items():
        secret = token.split("_", 2)[2]
        assert not any(secret in t for t in texts), f"{principal}'s token appears in a log or state file"
    mode = (repo / ".featurestore" / "tokens.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_auth_check_shows_what_a_principal_may_do(repo):
    res = runner.invoke(cli, ["auth", "check", "--repo", str(repo), "--principal", "growth-svc"])
    assert res.exit_code == 0, res.output
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in res.stdout.splitlines() if line.startswith("│")}
    assert lines["service fraud_model_v1"] == ["yes", "yes", "-", "-", "-", "-"]
    assert lines["service growth_model"] == ["-"] * 6 and lines["view user_spend"] == ["-"] * 6
    res = runner.invoke(cli, ["auth", "check", "--repo", str(repo)])
    assert res.exit_code == 0 and "policy ok" in res.stdout
    # --json: the same answers for scripts
    res = runner.invoke(cli, ["auth", "check", "--repo", str(repo), "--principal", "growth-svc", "--json"])
    assert res.exit_code == 0, res.output
    got = {f"{o['kind']} {o['name']}": ["yes" if v else "-" for v in o["actions"].values()]
           for o in json.loads(res.stdout)["objects"]}
    assert got == lines
    res = runner.invoke(cli, ["auth", "check", "--repo", str(repo), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True, res.output
