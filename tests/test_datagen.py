"""The data generator: seeded, realistic, schema-true transactions; Parquet and JSON encodings. No Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.errors import FeatureStoreError
from featurestore.loader import load_repo

REPO = Path(__file__).resolve().parents[1]
N = 20_000
ARGS = dict(events=N, users=1_000, merchants=200, days=7.0)


@pytest.fixture(scope="module")
def source():
    return load_repo(REPO / "definitions", REPO).sources["transactions"]


@pytest.fixture(scope="module")
def df():
    return datagen.generate_transactions(seed=11, **ARGS)


def _us(frame: pd.DataFrame) -> np.ndarray:
    return frame["ts"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy().view(np.int64)


# -- determinism -------------------------------------------------------------------------------------


def test_same_seed_same_frame(df):
    pd.testing.assert_frame_equal(df, datagen.generate_transactions(seed=11, **ARGS))


def test_fixed_end_same_frame_and_default_end_is_not_now():
    end = pd.Timestamp("2025-03-01T12:00:00Z")
    a = datagen.generate_transactions(seed=3, end=end, **ARGS)
    pd.testing.assert_frame_equal(a, datagen.generate_transactions(seed=3, end=end, **ARGS))
    assert a["ts"].max() < end and a["ts"].min() >= end - pd.Timedelta(days=7)
    b = datagen.generate_transactions(seed=3, **ARGS)
    assert b["ts"].max() < datagen.DEFAULT_END <= b["ts"].max() + pd.Timedelta(hours=1)
    # A naive end is UTC.
    pd.testing.assert_frame_equal(a, datagen.generate_transactions(seed=3, end="2025-03-01 12:00:00", **ARGS))


def test_different_seed_differs(df):
    other = datagen.generate_transactions(seed=12, **ARGS)
    assert not other["event_id"].equals(df["event_id"])
    assert not other["ts"].equals(df["ts"])
    assert not other["amount"].equals(df["amount"])


# -- schema ------------------------------------------------------------------------------------------


def test_columns_match_the_source(df, source):
    assert datagen.COLUMNS == source.columns
    assert list(df.columns) == list(source.columns)
    assert source.timestamp == datagen.TIMESTAMP_COLUMN
    for col, dtype in source.columns.items():
        s = df[col]
        if dtype == "string":
            assert s.dtype == object
            assert all(isinstance(v, str) for v in s.dropna())
        elif dtype == "float64":
            assert s.dtype == np.float64
        elif dtype == "bool":
            assert s.dtype == np.bool_
        elif dtype == "timestamp":
            assert isinstance(s.dtype, pd.DatetimeTZDtype) and str(s.dtype.tz) == "UTC"
        else:  # pragma: no cover - the schema has no other types
            pytest.fail(f"unexpected type {dtype}")
    assert len(df) == N


def test_sorted_unique_ids_and_index(df):
    assert df["event_id"].is_unique
    assert df["ts"].is_monotonic_increasing
    assert (df.index == pd.RangeIndex(N)).all()
    ties = df[df["ts"].duplicated(keep=False)]
    for _, group in ties.groupby("ts"):
        assert group["event_id"].is_monotonic_increasing  # sorted by ts, then event_id


def test_nulls_only_in_optional_columns(df):
    nulls = df.isna().sum()
    for col in datagen.COLUMNS:
        if col in datagen.NULLABLE_COLUMNS:
            assert 0.002 < nulls[col] / N < 0.03, col
        else:
            assert nulls[col] == 0, col


def test_values_are_plausible(df):
    assert set(df["currency"]) == {"USD", "EUR", "GBP"}
    shares = df["currency"].value_counts(normalize=True)
    assert shares["USD"] > shares["EUR"] > shares["GBP"] > 0.03
    assert set(df["channel"].dropna()) == {"web", "pos", "app"}
    assert set(df["country"].dropna()) <= set(datagen.COUNTRIES)
    # Amounts: cents, mostly positive, log-normal body with a long tail.
    cents = df["amount"] * 100
    assert np.allclose(cents, np.round(cents), atol=1e-6)
    assert (df["amount"] > 0).mean() > 0.98
    assert df["amount"].max() > 20 * df["amount"].median()
    # card_present follows the channel.
    present = df.groupby("channel")["card_present"].mean()
    assert present["pos"] > 0.9 and present["web"] < 0.05 and present["app"] < 0.1
    # Home-country persistence: most users' events are mostly in one country, but some are abroad.
    top_share = df.dropna(subset=["country"]).groupby("user_id")["country"].agg(
        lambda s: s.value_counts(normalize=True).iloc[0])
    assert top_share.median() > 0.9
    assert (top_share < 1).any()


# -- realism: precision, ties, skew, bursts ----------------------------------------------------------


def test_millisecond_and_microsecond_precision(df):
    us = _us(df)
    sub_ms = us % 1_000 != 0
    assert 0.03 < sub_ms.mean() < 0.3  # some sub-millisecond times to exercise truncation
    assert (~sub_ms).mean() > 0.6  # most are whole milliseconds
    assert (df["ts"].astype("int64") % 1_000 == 0).all()  # nothing finer than a microsecond


def test_ties_within_and_across_users(df):
    same_user = df.duplicated(["user_id", "ts"], keep=False)
    assert same_user.sum() >= 10
    per_ts = df.groupby("ts")["user_id"].nunique()
    assert (per_ts > 1).sum() >= 10


def test_user_and_merchant_skew(df):
    counts = df["user_id"].value_counts()
    top = max(1, int(round(ARGS["users"] * 0.01)))
    assert counts.iloc[:top].sum() / N > 0.10
    assert counts.iloc[0] > 20 * counts.median()
    merchants = df["merchant_id"].value_counts()
    assert merchants.iloc[:2].sum() / N > 0.05


def test_bursts(df):
    # Several events of one user within a minute, the hallmark of card testing.
    gaps = df.sort_values(["user_id", "ts"]).groupby("user_id")["ts"].diff()
    assert (gaps < pd.Timedelta(seconds=10)).sum() > N * 0.02
    assert (df["amount"] == 0).any()  # zero-amount card checks


def test_performance_is_vectorized():
    import time

    t0 = time.perf_counter()
    big = datagen.generate_transactions(200_000, 5_000, 500, 14.0, 1)
    assert len(big) == 200_000 and big["event_id"].is_unique
    assert time.perf_counter() - t0 < 10


def test_edge_sizes_and_bad_arguments():
    assert len(datagen.generate_transactions(0, 10, 5, 1.0, 1)) == 0
    one = datagen.generate_transactions(1, 1, 1, 0.001, 1)
    assert len(one) == 1 and one["user_id"].iloc[0] == "u0000"
    small = datagen.generate_transactions(50, 3, 2, 0.01, 1)
    assert len(small) == 50 and small["event_id"].is_unique
    for bad in (dict(events=-1), dict(users=0), dict(merchants=0), dict(days=0), dict(days=float("nan"))):
        with pytest.raises(FeatureStoreError):
            datagen.generate_transactions(**{**dict(events=10, users=5, merchants=5, days=1.0, seed=1), **bad})


# -- out of order ------------------------------------------------------------------------------------


def test_out_of_order_same_rows_some_inversions(df):
    out = datagen.out_of_order(df, seed=5, fraction=0.05, max_delay_ms=30_000)
    assert len(out) == len(df)
    pd.testing.assert_frame_equal(out.sort_index(), df)  # same rows, labels kept
    ts = _us(out)
    inversions = int((np.diff(ts) < 0).sum())
    assert inversions > 0
    assert (np.diff(ts) >= 0).mean() > 0.9  # mostly in event-time order
    # Nothing is more than max_delay_ms late relative to what arrived before it.
    assert (np.maximum.accumulate(ts) - ts).max() < 30_000 * 1_000
    # By default no event is behind a 5 s watermark when it arrives (max seen - ts < 5 s).
    ts = _us(datagen.out_of_order(df, seed=5, fraction=0.2))
    lateness = np.maximum.accumulate(ts) - ts
    assert 0 < lateness.max() < datagen.DEFAULT_MAX_DELAY_MS * 1_000 == 5_000_000
    pd.testing.assert_frame_equal(out, datagen.out_of_order(df, seed=5, fraction=0.05, max_delay_ms=30_000))
    assert not out.index.equals(datagen.out_of_order(df, seed=6, fraction=0.05, max_delay_ms=30_000).index)
    pd.testing.assert_frame_equal(datagen.out_of_order(df, seed=5, fraction=0.0), df)


# -- JSON stream encoding ----------------------------------------------------------------------------


def test_to_json_record_round_trips(df):
    sample = pd.concat([df.iloc[:200], df[df["country"].isna()].head(20), df[df["channel"].isna()].head(20),
                        df[_us(df) % 1_000 != 0].head(50)])
    for _, row in sample.iterrows():
        payload = datagen.to_json_record(row)
        assert isinstance(payload, bytes)
        rec = json.loads(payload)
        assert list(rec) == list(datagen.COLUMNS)  # schema order, deterministic
        assert rec["ts"] == row["ts"].value // 1_000_000  # epoch ms, floored
        assert isinstance(rec["ts"], int)
        assert rec["amount"] == row["amount"] and isinstance(rec["amount"], float)
        assert rec["card_present"] is bool(row["card_present"])
        for col in ("event_id", "user_id", "merchant_id", "currency", "country", "channel"):
            assert rec[col] == (None if pd.isna(row[col]) else row[col])
        assert payload == datagen.to_json_record(row.to_dict())


def test_to_json_record_floors_and_nulls():
    row = {"ts": pd.Timestamp("1969-12-31 23:59:59.9995", tz="UTC"), "amount": float("nan"), "event_id": "e",
           "card_present": np.bool_(True), "user_id": None, "extra": 1}
    rec = json.loads(datagen.to_json_record(row))
    assert rec["ts"] == -1  # floor, not toward zero
    assert rec["amount"] is None and rec["user_id"] is None and rec["card_present"] is True
    assert list(rec) == ["event_id", "user_id", "amount", "card_present", "ts", "extra"]
    naive = datagen.to_json_record({"ts": pd.Timestamp("2026-01-01 00:00:00.0019")})
    assert json.loads(naive)["ts"] == pd.Timestamp("2026-01-01", tz="UTC").value // 1_000_000 + 1


def test_bulk_encoding_matches_single_records(df):
    out = datagen.out_of_order(df, seed=1)
    encoded = list(datagen.iter_json_records(out))
    assert len(encoded) == len(out)
    for i in list(range(0, len(out), 97)) + list(np.flatnonzero(out["country"].isna().to_numpy())[:20]):
        key, payload = encoded[i]
        assert payload == datagen.to_json_record(out.iloc[i])
        assert key == out["user_id"].iloc[i]



def test_bulk_encoding_of_pandas_nullable_columns():
    """Nullable Int64 / Float64 / boolean columns with nulls encode like to_json_record: null, never <NA>."""
    df = pd.DataFrame({
        "event_id": ["a", "b", "c"],
        "n": pd.array([1, None, -3], dtype="Int64"),
        "x": pd.array([0.5, None, 2.0], dtype="Float64"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "ts": pd.to_datetime([0, 1, 2], unit="ms", utc=True),
    })
    encoded = [p for _, p in datagen.iter_json_records(df)]
    assert [json.loads(p) for p in encoded] == [
        {"event_id": "a", "ts": 0, "n": 1, "x": 0.5, "flag": True},
        {"event_id": "b", "ts": 1, "n": None, "x": None, "flag": None},
        {"event_id": "c", "ts": 2, "n": -3, "x": 2.0, "flag": False},
    ]
    assert encoded == [datagen.to_json_record(df.iloc[i]) for i in range(len(df))]

# -- malformed records -------------------------------------------------------------------------------

REQUIRED = {"event_id": str, "user_id": str, "merchant_id": str, "ts": int, "amount": (int, float)}


def _rejected(payload: bytes) -> bool:
    """What a strict JSON parser for the transactions source does: reject or accept."""
    try:
        rec = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return True
    if not isinstance(rec, dict):
        return True
    for col, typ in REQUIRED.items():
        v = rec.get(col)
        if v is None or isinstance(v, bool) or not isinstance(v, typ):
            return True
    return False


def test_malformed_records_are_all_rejected():
    pairs = datagen.malformed_records(50, seed=4, with_kinds=True)
    assert len(pairs) == 50
    assert {k for k, _ in pairs} == set(datagen.MALFORMED_KINDS)
    assert {k for k, _ in pairs[: len(datagen.MALFORMED_KINDS)]} == set(datagen.MALFORMED_KINDS)
    for kind, payload in pairs:
        assert isinstance(payload, bytes)
        assert _rejected(payload), (kind, payload)
        if kind == "empty":
            assert payload == b""
        elif kind == "missing_ts":
            assert "ts" not in json.loads(payload)
        elif kind == "amount_not_number":
            assert json.loads(payload)["amount"] == "abc"
        elif kind == "ts_not_number":
            assert isinstance(json.loads(payload)["ts"], str)
    assert datagen.malformed_records(50, seed=4) == [p for _, p in pairs]
    assert datagen.malformed_records(50, seed=5) != [p for _, p in pairs]
    assert datagen.malformed_records(0, seed=4) == []
    assert len(datagen.malformed_records(3, seed=4)) == 3
    # A valid record is accepted by the same check.
    assert not _rejected(datagen.to_json_record(datagen.generate_transactions(1, 1, 1, 1.0, 1).iloc[0]))


def test_malformed_count():
    assert datagen.malformed_count(0) == 0
    assert datagen.malformed_count(10) == len(datagen.MALFORMED_KINDS)
    assert datagen.malformed_count(1_000_000) == 1_000


# -- Parquet -----------------------------------------------------------------------------------------


def test_write_parquet_idempotent_and_readable(tmp_path, df, source):
    out = tmp_path / "data" / "transactions"
    res = datagen.write_parquet(out, seed=11, **ARGS)
    assert isinstance(res, datagen.WriteResult)
    assert res.path == out and res.rows == N and res.files == 4
    assert res.malformed == datagen.malformed_count(N)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"part-{i:05d}.parquet" for i in range(4)]
    first = {p.name: p.read_bytes() for p in out.iterdir()}

    table = pq.read_table(sorted(out.glob("*.parquet")))
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.names == list(source.columns)
    back = table.to_pandas()
    back["ts"] = back["ts"].dt.as_unit("ns")
    pd.testing.assert_frame_equal(back, df)  # lossless, sub-ms included, file order = time order

    # Rerun: same files, same bytes; fewer files: the extra old ones are gone.
    (out / "part-00009.parquet").write_bytes(first["part-00000.parquet"])
    datagen.write_parquet(out, seed=11, **ARGS)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    res2 = datagen.write_parquet(out, seed=11, files=2, **ARGS)
    assert res2.files == 2 and sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(sorted(out.glob("*.parquet"))).num_rows == N

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = str(out / "*.parquet")
    (typ,) = con.execute(f"SELECT DISTINCT typeof(ts) FROM read_parquet('{glob}')").fetchone()
    assert typ == "TIMESTAMP WITH TIME ZONE"
    n, lo, hi, sub = con.execute(
        f"SELECT count(*), min(ts), max(ts), count(*) FILTER (WHERE epoch_us(ts) % 1000 <> 0) "
        f"FROM read_parquet('{glob}')").fetchone()
    assert n == N and sub > 0
    assert pd.Timestamp(lo) == df["ts"].min() and pd.Timestamp(hi) == df["ts"].max()


def test_write_parquet_small_and_given_frame(tmp_path, df):
    res = datagen.write_parquet(tmp_path / "few", events=3, users=2, merchants=2, days=1.0, seed=1, files=8)
    assert res.rows == 3 and res.files == 3
    res = datagen.write_parquet(tmp_path / "none", events=0, users=2, merchants=2, days=1.0, seed=1)
    assert res.rows == 0 and res.files == 1 and res.malformed == 0
    assert pq.read_table(tmp_path / "none" / "part-00000.parquet").schema.field("ts").type == pa.timestamp("us", "UTC")
    shuffled = df.sample(frac=1.0, random_state=1)
    res = datagen.write_parquet(tmp_path / "given", df=shuffled, files=2)
    assert res.rows == N
    back = pq.read_table(sorted((tmp_path / "given").glob("*.parquet"))).to_pandas()
    assert back["ts"].is_monotonic_increasing and back["event_id"].tolist() == df["event_id"].tolist()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FeatureStoreError):
        datagen.write_parquet(tmp_path / "afile", events=5, users=2, merchants=2, days=1.0, seed=1)


# -- Kafka target resolution (no broker) ---------------------------------------------------------------


def test_stream_target_resolution(source):
    from types import SimpleNamespace

    store = SimpleNamespace(config=SimpleNamespace(kafka_bootstrap="kafka:9092"),
                            repo=SimpleNamespace(sources={"transactions": source}))
    assert datagen._resolve_stream(store, None, None) == ("kafka:9092", source.stream.topic, "ts",
                                                          tuple(source.columns), source.watermark_delay)
    assert source.watermark_delay == 5_000
    assert datagen._resolve_stream(store, "transactions", None)[1] == "transactions"
    assert datagen._resolve_stream("h:1", source, "other")[:2] == ("h:1", "other")
    with pytest.raises(FeatureStoreError):
        datagen._resolve_stream("h:1", None, None)


def test_times_stay_in_the_window_for_any_end():
    end = pd.Timestamp("2025-06-01 10:00:00.123456", tz="UTC")
    frame = datagen.generate_transactions(5_000, 100, 20, 0.5, 2, end=end)
    assert frame["ts"].min() >= end - pd.Timedelta(days=0.5) and frame["ts"].max() < end
    with pytest.raises(FeatureStoreError):
        datagen.generate_transactions(10, 5, 5, 1.0, -1)
    with pytest.raises(FeatureStoreError):
        datagen.malformed_records(3, seed=1.5)
