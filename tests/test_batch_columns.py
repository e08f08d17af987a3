"""Declared columns against a batch face's files (docs/definitions.md): a declared column that NONE of the files
holds is one error naming the source and the column in plan, apply and backfill (both engines) and the
point-in-time read from the batch face; it used to read as all-null, silently (a misspelled column gave nulls
and zero counts). A column SOME files hold (schema evolution: added later) reads null in the older ones, in
both engines. Join keys are exempt: an event without its key is counted as ``rejected_null_key`` (Feast's
spark template relies on it, tests/test_feast_templates.py)."""

from __future__ import annotations

import random
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import FeatureStoreError, ValidationError
from featurestore.store import FeatureStore

DEFINITIONS = '''
from featurestore import Aggregation, DuckDBTable, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "{amount}": "float64", "{qty}": "int64", "{note}": "string",
                        "ts": "timestamp"}}, timestamp="ts", batch={batch})
stats = FeatureView(entities=[user], source=events, features=[
    Aggregation("{amount}", "sum", None, name="amount_sum"), Aggregation("{qty}", "count", None, name="qty_n"),
    Latest("{note}", name="last_note"), Aggregation("*", "count", None, name="n")])
'''
COLUMNS = {"amount": "float64", "qty": "int64", "note": "string"}
LATER = ("qty", "note")  # columns added to the files later: absent from the older files
BASE = pd.Timestamp("2026-01-01T00:00:00Z")


def _repo(root, names=None, batch='ParquetFiles("data/*.parquet")'):
    """A repo declaring COLUMNS under ``names`` ({column: the name the definitions give it})."""
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    names = {c: c for c in COLUMNS} if names is None else names
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(batch=batch, **names))
    (root / "featurestore.yaml").write_text(f"project: bc_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    return FeatureStore(root)


def write_files(root, seed: int) -> pd.DataFrame:
    """2-5 random files; the first ``old`` of them lack the LATER columns. Returns every event, the LATER
    columns null where their file lacks them (what a backfill must store)."""
    rng = random.Random(seed)
    n_files = rng.randint(2, 5)
    old = rng.randint(1, n_files - 1)
    frames = []
    for i in range(n_files):
        n = rng.randint(1, 40)
        frame = pd.DataFrame({
            "user_id": [f"u{rng.randrange(4)}" for _ in range(n)],  # hot keys
            "amount": [rng.choice([None, rng.uniform(-1e6, 1e6), 0.0, 1.5]) for _ in range(n)],
            "qty": pd.array([rng.choice([None, rng.randint(-2**40, 2**40), 0]) for _ in range(n)], "Int64"),
            "note": [rng.choice([None, "a", "é", ""]) for _ in range(n)],
            "ts": [BASE + pd.Timedelta(milliseconds=rng.randrange(0, 60_000)) for _ in range(n)],  # ties
        })
        written = frame.drop(columns=list(LATER)) if i < old else frame
        pq.write_table(pa.Table.from_pandas(written, preserve_index=False), root / "data" / f"part-{i}.parquet")
        if i < old:
            frame = frame.assign(qty=pd.array([None] * n, "Int64"), note=[None] * n)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _offline(store) -> list:
    rows = store.offline.table("stats", "ts").read().select(["user_id", "amount", "qty", "note", "ts"]).to_pylist()
    return sorted(repr((*list(r.values())[:4], round(r["ts"].timestamp() * 1000))) for r in rows)


def _expected(events: pd.DataFrame) -> list:
    rows = [(u, None if pd.isna(a) else a, None if pd.isna(q) else int(q), n, round(t.timestamp() * 1000))
            for u, a, q, n, t in events[["user_id", "amount", "qty", "note", "ts"]].itertuples(index=False)]
    return sorted(repr(r) for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_column_added_later_reads_null_in_the_older_files(tmp_path, seed):
    store = _repo(tmp_path / "repo")
    events = write_files(store.repo_path, seed)
    store.plan()  # the column is in some files: no problem
    (result,) = store.backfill()
    assert (result.rows, result.dead_letters) == (len(events), 0)
    assert _offline(store) == _expected(events)


def _misspelled(rng: random.Random):
    """COLUMNS' names with one of them (at random) misspelled the way people do: letters swapped, a letter
    dropped, another case."""
    wrong = rng.choice(sorted(COLUMNS))
    i = rng.randrange(len(wrong) - 1)
    name = rng.choice([wrong[:i] + wrong[i + 1] + wrong[i] + wrong[i + 2:], wrong[:i] + wrong[i + 1:], wrong.upper()])
    return name, {c: name if c == wrong else c for c in COLUMNS}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_declared_column_in_none_of_the_files_is_one_error_naming_it(tmp_path, seed):
    rng = random.Random(seed)
    name, names = _misspelled(rng)
    root = tmp_path / "repo"
    store = _repo(root, names)
    write_files(root, seed)
    for attempt in (store.backfill, store.plan, store.apply,
                    lambda: store.get_historical_features(pd.DataFrame({"user_id": ["u0"], "event_timestamp": [BASE]}),
                                                          ["stats:n"])):
        with pytest.raises(FeatureStoreError) as err:
            attempt()
        message = str(err.value)
        line = next(ln for ln in message.splitlines() if f"'{name}'" in ln)
        assert "source 'events'" in line and f"'{name}' is in none of the" in line, message
        if not isinstance(err.value, ValidationError):
            assert "\n" not in message.strip(), message
    # a DuckDB relation as the batch face: the same rule
    _repo(root, names, batch=f'DuckDBTable("read_parquet(\'{root}/data/*.parquet\', union_by_name = true)")')
    with pytest.raises(FeatureStoreError, match=f"source 'events': declared column '{name}' is in none of"):
        FeatureStore(root).backfill()


def test_a_missing_join_key_is_still_counted_not_refused(tmp_path):
    store = _repo(tmp_path / "repo")
    events = write_files(store.repo_path, 7)
    for f in (store.repo_path / "data").glob("*.parquet"):
        pq.write_table(pq.read_table(f).drop(["user_id"]), f)
    store.plan()
    (result,) = store.backfill()
    assert (result.rows, result.rejected_null_key) == (0, len(events))


@pytest.mark.flink
@pytest.mark.slow
def test_flink_backfill_agrees_on_missing_and_later_columns(tmp_path):
    """The Flink backfill: the same error for a column in none of the files, the same rows (nulls in the
    older files) for a column added later."""
    rng = random.Random(5)
    name, names = _misspelled(rng)
    bad = _repo(tmp_path / "bad", names)
    write_files(bad.repo_path, 5)
    store = _repo(tmp_path / "repo")
    events = write_files(store.repo_path, 5)
    with pytest.raises(FeatureStoreError, match=f"source 'events': declared column '{name}' is in none of the"):
        bad.backfill(engine="flink")
    (result,) = store.backfill(engine="flink")
    assert (result.rows, result.dead_letters) == (len(events), 0)
    assert _offline(store) == _expected(events)
