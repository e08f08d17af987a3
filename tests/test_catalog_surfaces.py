"""The catalog answers the same from Python, the CLI (``--json``), HTTP (``GET /catalog``) and the web catalog
in a real browser (SPEC §6, §8; docs/catalog.md "Search semantics"), on random repos: random names, owners in
mixed case, descriptions and tags; random queries (words in any case, parts of words, ``key=value`` tags,
owners) against a brute-force oracle of the documented semantics. One server and one browser per module."""

from __future__ import annotations

import json
import random
import uuid

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore.cli import app as cli
from featurestore.store import FeatureStore
from tests.browser import Browser
from tests.served import serve

pytestmark = [pytest.mark.slow]
runner = CliRunner()

WORDS = ["spend", "risk", "fraud", "merchant", "velocity", "Card", "country", "LATE", "night", "refund"]
OWNERS = ["Ann@Example.com", "ann@example.com", "bob@example.com", "Risk-Team", ""]


def _text(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def random_catalog(root, seed: int) -> None:
    rng = random.Random(seed)
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    pd.DataFrame({"user_id": ["u1"], "x": [1.0], "ts": [pd.Timestamp("2026-01-01", tz="UTC")]}).to_parquet(
        root / "data" / "e.parquet")

    def meta():
        keys = rng.sample(["team", "pii", "tier"], rng.randint(0, 2))
        tags = {k: rng.choice(["risk", "growth", "Yes"]) for k in keys}
        return f'description="{_text(rng, rng.randint(0, 3))}", owner="{rng.choice(OWNERS)}", tags={tags!r}'

    lines = ["from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, Source",
             f'user = Entity(join_keys=["user_id"], {meta()})',
             'events = Source(schema={"user_id": "string", "x": "float64", "ts": "timestamp"}, timestamp="ts", '
             f'batch=ParquetFiles("data/*.parquet"), {meta()})']
    views = []
    for i in range(rng.randint(3, 6)):
        name = f"{rng.choice(WORDS).lower()}_{rng.choice(WORDS).lower()}_{i}"
        views.append(name)
        feats = ", ".join(f'Aggregation("x", "sum", "1h", name="{rng.choice(WORDS).lower()}_{j}", '
                          f'description="{_text(rng, 2)}")' for j in range(rng.randint(1, 3)))
        lines.append(f"{name} = FeatureView(entities=[user], source=events, features=[{feats}], {meta()})")
    for i in range(rng.randint(1, 3)):
        lines.append(f'svc_{i} = FeatureService(features=[{", ".join(rng.sample(views, rng.randint(1, len(views))))}], '
                     f'{meta()})')
    (root / "definitions" / "features.py").write_text("\n".join(lines) + "\n")
    (root / "featurestore.yaml").write_text(f"project: cs_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n")


def oracle(records, query=None, tag=None, owner=None):
    """docs/catalog.md, by brute force: (kind, name) of the records that match."""
    out = set()
    for r in records:
        fields = [r["name"], r["description"], r["owner"]] + [f"{k}={v}" for k, v in r["tags"].items()]
        if query and not all(any(w.lower() in f.lower() for f in fields) for w in query.split()):
            continue
        if tag is not None:
            k, _, v = tag.partition("=")
            if k not in r["tags"] or (v and r["tags"][k] != v):
                continue
        if owner is not None and r["owner"].lower() != owner.lower():
            continue
        out.add((r["kind"], r["name"]))
    return out


def _pairs(rows):
    return {(r["kind"], r["name"]) for r in rows}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-surfaces")
    random_catalog(root, 11)
    with serve(root, tmp_path_factory.mktemp("cs-log") / "serve.log") as (_, client, url):
        browser = Browser()
        try:
            yield root, client, url, browser
        finally:
            browser.close()


def _queries(rng, records):
    names = [r["name"] for r in records]
    out = []
    for _ in range(14):
        shape = rng.choice(["word", "case", "part", "two", "tag", "owner", "none"])
        if shape == "word":
            out.append(rng.choice(WORDS))
        elif shape == "case":
            w = rng.choice(WORDS)
            out.append("".join(c.upper() if rng.random() < 0.5 else c.lower() for c in w))
        elif shape == "part":
            n = rng.choice(names)
            i = rng.randint(0, max(0, len(n) - 3))
            out.append(n[i:i + 3])
        elif shape == "two":
            out.append(f"{rng.choice(WORDS)} {rng.choice(WORDS).upper()}")
        elif shape == "tag":
            out.append(rng.choice(["team=risk", "pii=Yes", "tier=", "TEAM=RISK", "team"]))
        elif shape == "owner":
            out.append(rng.choice(["ann@example", "ANN@EXAMPLE.COM", "risk-team"]))
        else:
            out.append("zzzzqq")
    return out


def test_search_is_the_same_on_every_surface_and_as_documented(site):
    root, client, url, browser = site
    store = FeatureStore(root)
    records = [r for r in client.get("/catalog").json()["objects"]]
    assert {r["kind"] for r in records} >= {"entity", "source", "feature view", "feature", "feature service"}
    rng = random.Random(4)
    for q in _queries(rng, records):
        want = oracle(records, query=q)
        python = _pairs(store.search(q))
        res = runner.invoke(cli, ["search", q, "--repo", str(root), "--json"])
        assert res.exit_code == 0, res.output
        cli_rows = _pairs(json.loads(res.stdout))
        http = _pairs(client.get("/catalog", params={"q": q}).json()["objects"])
        browser.open(f"{url}/ui/search?q={q.replace(' ', '+').replace('=', '%3D')}")
        shown = browser.js("JSON.stringify([...document.querySelectorAll('tr.result')].map("
                           "r => [r.dataset.kind, r.dataset.name]))")
        page_kind = {"entity": "entity", "source": "source", "feature view": "view", "feature": "feature",
                     "feature service": "service"}
        ui = {(k, n) for k, n in json.loads(shown)}
        assert python == cli_rows == http == want, (q, python ^ want, cli_rows ^ want, http ^ want)
        assert ui == {(page_kind[k], n) for k, n in want}, (q, ui)


def test_tag_and_owner_filters_are_the_same_on_every_surface(site):
    root, client, url, browser = site
    store = FeatureStore(root)
    records = client.get("/catalog").json()["objects"]
    for tag in ("team=risk", "pii=Yes", "tier", "team=nobody"):
        want = oracle(records, tag=tag)
        res = runner.invoke(cli, ["search", "", "--tag", tag, "--repo", str(root), "--json"])
        assert res.exit_code == 0, res.output
        assert _pairs(json.loads(res.stdout)) == want == _pairs(client.get("/catalog", params={"tag": tag}).json()[
            "objects"]) == _pairs(store.search("", tag=tag)), tag
        k, _, v = tag.partition("=")
        if v:
            views = {n for kind, n in want if kind == "feature view"}
            assert {r["name"] for r in store.list_feature_views(tags={k: v})} == views
            res = runner.invoke(cli, ["list", "views", "--tag", tag, "--repo", str(root), "--json"])
            assert {r["name"] for r in json.loads(res.stdout)} == views
    for owner in ("ann@example.com", "ANN@EXAMPLE.COM", "Risk-Team", "nobody"):
        want = oracle(records, owner=owner)
        res = runner.invoke(cli, ["search", "", "--owner", owner, "--repo", str(root), "--json"])
        assert res.exit_code == 0, res.output
        http = _pairs(client.get("/catalog", params={"owner": owner}).json()["objects"])
        assert _pairs(json.loads(res.stdout)) == want == http == _pairs(store.search("", owner=owner)), owner
        for kind in ("views", "features", "services"):
            res = runner.invoke(cli, ["list", kind, "--owner", owner, "--repo", str(root), "--json"])
            assert {r["name"] for r in json.loads(res.stdout)} == {n for k, n in want if
                                                                   k == {"views": "feature view", "features": "feature",
                                                                         "services": "feature service"}[kind]}


def test_describe_is_the_same_on_every_surface(site):
    root, client, url, browser = site
    store = FeatureStore(root)
    for rec in client.get("/catalog").json()["objects"]:
        name = rec["name"]
        res = runner.invoke(cli, ["describe", name, "--repo", str(root), "--json"])
        assert res.exit_code == 0, res.output
        by_cli = json.loads(res.stdout)
        by_http = client.get(f"/catalog/{name}").json()
        by_python = json.loads(json.dumps(store.describe(name), default=str))
        assert by_cli == by_http == by_python, name
