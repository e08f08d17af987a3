"""A CAST out of its type's range in a view's projection or filter (``CAST(x AS FLOAT)`` of a double beyond
float32, ``CAST(x AS INTEGER)`` of 1e20), where DuckDB's evaluation fails: the Flink backfill of the same plan
(SPEC §4) used to store +-inf (FLOAT) or NULL (integers). Now both backfills make such an event a dead letter of
the view naming the part (as the streaming job does), and store the same rows. (TRY_CAST is NULL in both.)"""

from __future__ import annotations

import random
import shutil
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.store import FeatureStore
from tests.stream_helpers import assert_backfills_agree, backfill_letters

pytestmark = [pytest.mark.flink, pytest.mark.slow]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "amount": "float64", "ts": "timestamp"}}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
narrow = FeatureView(entities=[user], source=events, filter="{filter}",
                     projections={{"small": "{projection}", "safe": "TRY_CAST(amount * 1e10 AS FLOAT)"}},
                     features=[Aggregation("small", "sum", None, name="small_sum"), Aggregation("safe", "max", None, name="safe_max")])
'''
CASES = [("CAST(amount AS FLOAT)", "amount IS NOT NULL", 3.5e38), ("CAST(amount * 2 AS INTEGER)", "true", 2e9),
         ("amount", "CAST(amount AS FLOAT) IS NOT NULL", -1e300)]


def _repo(root, projection: str, flt: str, amounts) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(projection=projection, filter=flt))
    (root / "featurestore.yaml").write_text(f"project: fbc_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    n = len(amounts)
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(n)], "amount": pa.array(amounts, pa.float64()),
                             "ts": pa.array([1_767_225_600_000 + 1000 * i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root)


def test_a_cast_out_of_range_is_a_dead_letter_of_the_view_in_both_backfills_and_they_agree(tmp_path):
    rng = random.Random(8)
    for k, (projection, flt, big) in enumerate(CASES):
        amounts = [rng.choice([None, rng.uniform(-1e6, 1e6), 0.5, -0.0]) for _ in range(rng.randint(20, 60))]
        clean = _repo(tmp_path / f"clean{k}", projection, flt, amounts)
        shutil.copytree(clean.repo_path, tmp_path / f"clean{k}f")
        (want,), (got,) = clean.backfill(), FeatureStore(tmp_path / f"clean{k}f").backfill(engine="flink")
        assert (got.rows, got.dead_letters) == (want.rows, want.dead_letters) and want.rows > 0
        a = clean.offline.table("narrow", "ts").read().to_pylist()
        b = FeatureStore(tmp_path / f"clean{k}f").offline.table("narrow", "ts").read().to_pylist()
        assert sorted(map(repr, a)) == sorted(map(repr, b)), projection
        bad = list(amounts)
        for i in rng.sample(range(len(bad)), rng.randint(1, 3)):
            bad[i] = big * rng.choice([1, -1])
        duck = _repo(tmp_path / f"bad{k}", projection, flt, bad)
        shutil.copytree(duck.repo_path, tmp_path / f"bad{k}f")
        # each huge value a dead letter of the view in both, worded alike; the other events stored alike
        results = assert_backfills_agree(duck, FeatureStore(tmp_path / f"bad{k}f"))
        letters = backfill_letters(duck)
        assert results["narrow"].failed == sum(letters.values()) == sum(1 for a in bad if abs(a or 0) == abs(big))
        part = "filter (" if flt.startswith("CAST") else "projection 'small'"
        assert all(r.startswith(f"view 'narrow': {part}") and "CAST" in r for r, _ in letters), letters


LAZY_DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "amount": "float64", "ts": "timestamp"}}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
''' + "".join(f'''
lazy{i} = FeatureView(entities=[user], source=events, filter="{{filter{i}}}", projections={{{{"p": "{{projection{i}}}"}}}},
                     features=[Aggregation("p", "sum", None, name="p_sum")])
''' for i in range(6))
# (filter, projection) with a CAST that fails DuckDB on the huge amounts, in a part DuckDB evaluates only on the
# rows below the threshold {t}: a CASE/IF branch, a later WHEN, a later COALESCE argument, a simple CASE's branch
LAZY = [("TRUE", "CASE WHEN abs(amount) < {t} THEN CAST(amount AS FLOAT) ELSE 0 END"),
        ("TRUE", "IF(abs(amount) >= {t}, -1, CAST(amount * 2 AS INTEGER))"),
        ("TRUE", "COALESCE(CASE WHEN abs(amount) >= {t} THEN 0 END, CAST(amount AS INTEGER))"),
        ("TRUE", "CASE WHEN amount IS NULL THEN 0 WHEN abs(amount) >= {t} THEN 1 WHEN CAST(amount AS FLOAT) > 0 "
                 "THEN 2 ELSE 3 END"),
        ("CASE WHEN abs(amount) < {t} THEN CAST(amount AS INTEGER) > 0 ELSE amount > 0 END", "amount"),
        ("TRUE", "CASE user_id WHEN 'big' THEN 0 ELSE CAST(amount AS INTEGER) END")]


def _lazy_repo(root, amounts, users, thresholds) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    parts = {}
    for i, ((flt, projection), t) in enumerate(zip(LAZY, thresholds)):
        parts[f"filter{i}"], parts[f"projection{i}"] = flt.format(t=t), projection.format(t=t)
    (root / "definitions" / "features.py").write_text(LAZY_DEFINITIONS.format(**parts))
    (root / "featurestore.yaml").write_text(f"project: fbl_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    n = len(amounts)
    pq.write_table(pa.table({"user_id": users, "amount": pa.array(amounts, pa.float64()),
                             "ts": pa.array([1_767_225_600_000 + 1000 * i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    return FeatureStore(root)


def test_a_cast_in_a_branch_never_taken_fails_neither_backfill(tmp_path):
    """DuckDB evaluates a CASE/IF branch only on the rows that take it (and a later WHEN or COALESCE argument only
    where the earlier ones did not decide): an out-of-range value there fails nothing. The Flink backfill checked
    every CAST on every row and failed such a view; now both store the same rows, and both make an event whose huge
    value takes the branch a dead letter of the view."""
    rng = random.Random(21)
    n = 60
    huge = [3.5e38, -1e300, 2e20, -5e9, 1e300]
    amounts, users = [], []
    for i in range(n):
        big = rng.random() < 0.25
        amounts.append(rng.choice(huge) if big else rng.choice([None, rng.uniform(-1e6, 1e6), 0.5, -0.0, 2.5]))
        users.append("big" if big else f"u{i % 4}")
    thresholds = ["1e9"] * len(LAZY)
    clean = _lazy_repo(tmp_path / "lazy", amounts, users, thresholds)
    shutil.copytree(clean.repo_path, tmp_path / "lazyf")
    flink = FeatureStore(tmp_path / "lazyf")
    want = {r.view: (r.rows, r.dead_letters) for r in clean.backfill()}
    got = {r.view: (r.rows, r.dead_letters) for r in flink.backfill(engine="flink")}
    assert got == want and all(rows > 0 for rows, _ in want.values())
    for view in want:
        a = clean.offline.table(view, "ts").read().to_pylist()
        b = flink.offline.table(view, "ts").read().to_pylist()
        assert sorted(map(repr, a)) == sorted(map(repr, b)), view
    # one view's branch taken by a huge value (its threshold above it): dead letters of that view in both engines
    k = rng.randrange(len(LAZY) - 1)  # (the simple CASE's branch is chosen by the user, not a threshold)
    thresholds[k] = "1e301"
    duck = _lazy_repo(tmp_path / "taken", amounts, users, thresholds)
    shutil.copytree(duck.repo_path, tmp_path / "takenf")
    results = assert_backfills_agree(duck, FeatureStore(tmp_path / "takenf"), views=[f"lazy{k}"])
    letters = backfill_letters(duck)
    assert results[f"lazy{k}"].failed == sum(letters.values()) > 0
    assert all(r.startswith(f"view 'lazy{k}': ") for r, _ in letters), letters


TEXT_COLUMNS_DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "n": "int32", "amount": "float64", "f": "float32",
                        "ts": "timestamp"}, timestamp="ts", batch=ParquetFiles("data/*.parquet"))
v = FeatureView(entities=[user], source=events,
                features=[Aggregation("qty", "sum", None, name="qty_sum"), Aggregation("n", "max", None, name="n_max"),
                          Aggregation("amount", "sum", None, name="amount_sum"), Aggregation("f", "min", None, name="f_min")])
'''


def test_a_file_holding_text_in_numeric_columns_reads_alike_in_both_backfills(tmp_path):
    """A Parquet file whose numeric schema columns hold text ('12', ' 7 ', '12x', '1e3', ''): each text is read
    with DuckDB's cast rules, and a text that is no number is a dead letter naming the column, in both backfills
    alike. The Flink backfill did not register the text-to-number functions its file reads call, so its plan
    failed to compile (No match found for function signature fs_text_bigint(<CHARACTER>))."""
    rng = random.Random(3)
    texts = ["12", " 7 ", "12x", "1e3", "", "-0", "3.5", "9223372036854775808", None, "+4"]
    n = 40
    root = tmp_path / "duck"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(TEXT_COLUMNS_DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: fbt_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    pick = lambda: [rng.choice(texts) for _ in range(n)]  # noqa: E731
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(n)], "qty": pick(), "n": pick(),
                             "amount": pick(), "f": pick(),
                             "ts": pa.array([1_767_225_600_000 + 1000 * i for i in range(n)], pa.int64()).cast(
                                 pa.timestamp("ms", tz="UTC"))}), root / "data" / "part.parquet")
    shutil.copytree(root, tmp_path / "flink")
    want = assert_backfills_agree(FeatureStore(root), FeatureStore(tmp_path / "flink"))
    assert want["v"].rows > 0 and want["v"].dead_letters > 0
