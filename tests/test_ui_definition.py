"""The web catalog's definition excerpt (featurestore/ui/data.py) shows an object's own lines and context lines
around it, never a line of another definition: a page a principal may read must not show the definition of a
neighbour it may not read (SPEC §8, docs/access-control.md: what one may not read is left out). Random
definition files: objects in random order, written on one or several lines, separated by nothing, blank lines
or comments."""

import random
from types import SimpleNamespace

import pytest

from featurestore.loader import load_repo
from featurestore.ui import data

HEADER = ("from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, ParquetFiles, "
          "Source\n")


def _objects(rng: random.Random):
    """(variable, its lines) of a random repo: entity, source, views, services."""
    multi = rng.random() < 0.5
    out = [("user", ['user = Entity(join_keys=["user_id"])']),
           ("events", ['events = Source(', '    schema={"user_id": "string", "x": "float64", "ts": "timestamp"},',
                       '    timestamp="ts",', '    batch=ParquetFiles("data/*.parquet"),', ')'] if multi else
            ['events = Source(schema={"user_id": "string", "x": "float64", "ts": "timestamp"}, timestamp="ts", '
             'batch=ParquetFiles("data/*.parquet"))'])]
    views = [f"v{i}" for i in range(rng.randint(2, 4))]
    for v in views:
        feats = [f'Aggregation("x", "sum", "1h", name="{v}_secret_{j}")' for j in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            lines = [f"{v} = FeatureView(", "    entities=[user],", "    source=events,", "    features=["]
            lines += [f"        {f}," for f in feats] + ["    ],", ")"]
        else:
            lines = [f"{v} = FeatureView(entities=[user], source=events, features=[{', '.join(feats)}])"]
        out.append((v, lines))
    head, rest = out[:2], out[2:]
    rng.shuffle(rest)
    services = [(f"svc{i}", [f"svc{i} = FeatureService(features=[{rng.choice(views)}])"])
                for i in range(rng.randint(1, 2))]
    return head + rest + services


@pytest.mark.parametrize("seed", range(12))
def test_definition_excerpt_never_shows_another_definitions_line(tmp_path, seed):
    rng = random.Random(seed)
    lines = [HEADER.rstrip("\n")]
    owner = {}  # line number -> variable
    for var, body in _objects(rng):
        for _ in range(rng.choice([0, 0, 1, 2])):
            lines.append(rng.choice(["", "# a comment", ""]))
        for text in body:
            lines.append(text)
            owner[len(lines)] = var
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "features.py").write_text("\n".join(lines) + "\n")
    repo = load_repo(tmp_path / "definitions", repo_root=tmp_path)
    store = SimpleNamespace(repo=repo, repo_path=tmp_path)
    records = {"entity": ("entity", repo.entities), "source": ("source", repo.sources),
               "feature view": ("view", repo.views), "feature service": ("service", repo.services)}
    for kind, (_, objects) in records.items():
        for name in objects:
            shown = data.definition(store, {"kind": kind, "name": name})
            assert shown is not None
            own = {n for n, _, _ in shown.lines if owner.get(n) == name}
            assert own, (seed, name)
            others = [(n, text) for n, text, _ in shown.lines if owner.get(n) not in (None, name)]
            assert not others, (seed, name, others)
            first, last = min(own), max(own)
            assert own == {n for n in owner if owner[n] == name and first <= n <= last}  # the whole definition
            if first > 1 and owner.get(first - 1) is None:  # context lines are still shown where nothing is defined
                assert shown.lines[0][0] < first, (seed, name)
