"""The access policy file and the token file, without a server: every mistake named (with the closest valid
name), grants matched by name, glob and tag exactly as docs/access-control.md says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from featurestore import access
from featurestore.auth import Principal, TokenStore
from featurestore.cli import app as cli
from featurestore.config import load_config
from featurestore.errors import AccessError, ConfigError
from featurestore.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def repo():
    return FeatureStore(ROOT).repo


def policy(text, repo=None):
    return access.parse_policy(yaml.safe_load(text), repo, "access.yaml")


def test_every_mistake_of_the_policy_in_one_line(repo):
    text = """
roles:
  reader:
    - actions: [read_metdata, read_online]
      view: [user_spend]
      services: [fraud_model_v3]
      tags: team
principals:
  bob: [readr]
grups: {}
"""
    with pytest.raises(AccessError) as info:
        policy(text, repo)
    assert str(info.value) == (
        "access.yaml: unknown key 'grups' (did you mean 'groups'?); "
        "roles.reader[0]: unknown key 'view' (did you mean 'views'?); "
        "roles.reader[0]: unknown action 'read_metdata' (did you mean 'read_metadata'?); "
        "roles.reader[0].services: no service matches 'fraud_model_v3' (did you mean 'fraud_model_v2'?); "
        "roles.reader[0].tags: expected a mapping of tag to value, got 'team'; "
        "principals.bob: no role 'readr' (did you mean 'reader'?)")


def test_grants_match_by_name_glob_and_tags(repo):
    p = policy("""
roles:
  r:
    - actions: [read_online]
      views: ["user_*"]
      tags: {pii: country}          # both: a user_* view that carries pii=country
    - actions: [read_metadata]
      tags: {team: risk}            # any kind of object tagged team=risk
    - actions: [push]
      sources: [transactions]
principals: {p: [r]}
""", repo)
    who = Principal("p", "test")
    online = {n for n in repo.views if p.allows(who, "read_online", access.view_obj(repo, n))}
    assert online == {"user_profile"}
    meta = {n for n in [*repo.views, *repo.services] if p.allows(
        who, "read_metadata", access.view_obj(repo, n) if n in repo.views else access.service_obj(repo, n))}
    assert meta == {"user_spend", "user_profile", "fraud_model_v1", "fraud_model_v2"}
    assert p.allows(who, "push", access.source_obj(repo, "transactions"))
    assert not p.allows(who, "push", access.view_obj(repo, "user_spend"))  # a source grant names the source
    assert not p.allows(who, "apply", access.project_obj(repo, "payments"))
    assert not p.allows(Principal("q", "test"), "read_metadata", access.view_obj(repo, "user_spend"))
    assert p.allows(None, "apply", access.project_obj(repo, "payments"))  # access control off: nobody asked
    admin = policy("roles: {a: [{actions: all}]}\nprincipals: {root: [a]}\n", repo)
    assert admin.allows(Principal("root", "t"), "apply", access.project_obj(repo, "payments"))
    scoped = policy("roles: {a: [{actions: all, tags: {team: risk}}]}\nprincipals: {x: [a]}\n", repo)
    assert not scoped.allows(Principal("x", "t"), "apply", access.project_obj(repo, "payments"))  # not project-wide


def test_request_views_are_granted_as_views_and_need_the_views_they_read(repo):
    """A request view's value is computed from the views it reads: reading it online needs those too."""
    only = policy("roles: {r: [{actions: [read_online, read_metadata], views: [transaction_risk]}]}\n"
                  "principals: {p: [r]}\n", repo)
    both = policy("roles: {r: [{actions: [read_online], views: [transaction_risk, user_spend]}]}\n"
                  "principals: {p: [r]}\n", repo)
    who = Principal("p", "test")
    selection = {"transaction_risk": ["above_max_1d"]}
    assert only.allows(who, "read_online", access.view_obj(repo, "transaction_risk"))
    assert not access.lookup_allowed(repo, only, who, selection, None)
    assert access.lookup_allowed(repo, both, who, selection, None)
    assert only.allows(who, "read_metadata", access.obj_of_record(repo, {"kind": "request feature view",
                                                                          "name": "transaction_risk"}))
    src = policy("roles: {r: [{actions: [read_metadata], sources: [transaction_request]}]}\n"
                 "principals: {p: [r]}\n", repo)
    assert src.allows(who, "read_metadata", access.obj_of_record(repo, {"kind": "request source",
                                                                         "name": "transaction_request"}))


def test_groups_of_a_jwt_map_to_roles(repo):
    p = policy("roles: {r: [{actions: [read_online]}]}\ngroups: {analysts: [r]}\n", repo)
    assert p.allows(Principal("carol", "jwt", ("analysts",)), "read_online", access.view_obj(repo, "user_spend"))
    assert not p.allows(Principal("carol", "jwt", ("others",)), "read_online", access.view_obj(repo, "user_spend"))


def test_the_catalog_filter_removes_references(repo):
    from featurestore import catalog

    p = policy("roles: {r: [{actions: [read_metadata], views: [user_spend]}]}\nprincipals: {p: [r]}\n", repo)
    rows = access.filter_records(repo, p, Principal("p", "t"), catalog.records(repo, "views"))
    assert [r["name"] for r in rows] == ["user_spend"] and rows[0]["services"] == []
    features = access.filter_records(repo, p, Principal("p", "t"), catalog.records(repo, "features"))
    assert {r["view"] for r in features} == {"user_spend"}


def test_config_refuses_what_would_do_nothing(tmp_path):
    (tmp_path / "featurestore.yaml").write_text("access_control:\n  jwt_issuer: https://idp\n  enabeld: true\n")
    with pytest.raises(ConfigError, match=r"unknown key 'access_control.enabeld' \(did you mean "
                                          r"'access_control.enabled'\?\)"):
        load_config(tmp_path, env={})
    (tmp_path / "featurestore.yaml").write_text("access_control:\n  jwt_issuer: https://idp\n")
    with pytest.raises(ConfigError, match="access_control.jwt_issuer is set but access_control.jwt_public_key is "
                                          "not"):
        load_config(tmp_path, env={})
    cfg = load_config(tmp_path, env={"FEATURESTORE_ACCESS_CONTROL": "true", "FEATURESTORE_ACCESS_JWT_PUBLIC_KEY":
                                     "k.pem"})
    assert cfg.access.enabled and cfg.access.jwt_public_key == "k.pem"
    assert not load_config(ROOT, env={}).access.enabled  # off by default: the demo needs no token


def test_token_file_keeps_hashes_only(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    token, entry = store.create("svc-a", note="ci")
    assert store.principal(token) == Principal("svc-a", f"token:{entry['id']}")
    assert store.principal(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.principal("fst_" + entry["id"] + "_" + "x" * 43) is None
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text and token.split("_", 2)[2] not in text
    assert store.revoke(principal="svc-a") == [entry["id"]] and store.principal(token) is None
    with pytest.raises(AccessError, match="no token with id 'deadbeef'"):
        store.revoke("deadbeef")
    with pytest.raises(AccessError, match="principal 'a b'"):
        store.create("a b")
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": "?"}))
    with pytest.raises(AccessError, match="is not a featurestore token file"):
        TokenStore(tmp_path / "tokens.json").principal(token)


def test_serve_refuses_to_start_without_a_policy(tmp_path):
    (tmp_path / "featurestore.yaml").write_text("access_control:\n  enabled: true\n")
    (tmp_path / "definitions").mkdir()
    res = runner.invoke(cli, ["auth", "check", "--repo", str(tmp_path)])
    assert res.exit_code == 1
    assert "error: access control is on but the policy file" in res.output and "access.yaml does not exist" in \
        res.output
    from featurestore.server import create_app

    with pytest.raises(AccessError, match="access.yaml does not exist"):
        create_app(FeatureStore(tmp_path))
