"""Hand-worked cases for the reference oracle. Every expected number is written by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from featurestore.model import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source
from tests.oracle import aggregate, events_ms, in_window, point_in_time, to_ms

T0 = pd.Timestamp("2024-01-01 00:00:00", tz="UTC")
T0_MS = 1_704_067_200_000
MS = pd.Timedelta(milliseconds=1)
MIN = pd.Timedelta(minutes=1)

USER = Entity(name="user", join_keys=["user_id"])
MERCHANT = Entity(name="merchant", join_keys=["merchant_id"])
SCHEMA = {"user_id": "string", "merchant_id": "int64", "amount": "float64", "qty": "int64",
          "cat": "string", "seq": "int64", "ts": "timestamp"}
TX = Source(name="tx", schema=SCHEMA, timestamp="ts", batch=ParquetFiles("tx.parquet"), tiebreak=("seq",))
TX_NO_TIEBREAK = Source(name="tx2", schema=SCHEMA, timestamp="ts", batch=ParquetFiles("tx.parquet"))


def events(*rows):
    """rows: dicts with at least ts; missing columns are null."""
    full = [{c: r.get(c) for c in SCHEMA} for r in rows]
    df = pd.DataFrame(full, columns=list(SCHEMA)).astype({"ts": "datetime64[ns, UTC]"})
    return df.astype({"user_id": object, "cat": object, "merchant_id": "Int64", "qty": "Int64", "seq": "Int64"})


def requests(*rows):
    return pd.DataFrame([{"user_id": u, "event_timestamp": q} for u, q in rows])


def view(*features, source=TX, **kw):
    return FeatureView(name="v", entities=[USER], source=source, features=list(features), **kw)


def values(df, name):
    return list(df[name])


def test_window_edges_exact():
    v = view(Aggregation("amount", "sum", "10m"), Aggregation("*", "count", "10m"))
    ev = events({"user_id": "u", "ts": T0 - MS, "amount": 8.0},       # before q - W: out
                {"user_id": "u", "ts": T0, "amount": 1.0},            # exactly q - W: in
                {"user_id": "u", "ts": T0 + 5 * MIN, "amount": 2.0},  # in
                {"user_id": "u", "ts": T0 + 10 * MIN, "amount": 4.0})  # exactly q: out
    out = point_in_time(ev, v, requests(("u", T0 + 10 * MIN)))
    assert values(out, "amount_sum_10m") == [3.0]
    assert values(out, "count_10m") == [2]


def test_nanoseconds_floor_to_ms():
    ns = pd.Timedelta(nanoseconds=1)
    assert to_ms(T0 + 999_999 * ns) == T0_MS
    assert to_ms(T0 - ns) == T0_MS - 1
    assert to_ms(pd.Timestamp(-1, unit="ns", tz="UTC")) == -1  # floor, not toward zero
    assert to_ms(pd.Timestamp("2024-01-01 00:00:00")) == T0_MS  # naive is UTC
    q = T0 + pd.Timedelta(seconds=1)
    ev = events({"user_id": "u", "ts": T0 - 500_000 * ns, "qty": 1},   # -> T0 - 1ms: before q - W, out
                {"user_id": "u", "ts": T0 + 300_000 * ns, "qty": 10},  # -> T0 = q - W: in
                {"user_id": "u", "ts": q - 500_000 * ns, "qty": 100},  # -> q - 1ms: in
                {"user_id": "u", "ts": q + 900_000 * ns, "qty": 1000})  # -> q: out
    assert [r["ts"] for r in events_ms(ev, TX)] == [T0_MS - 1, T0_MS, T0_MS + 999, T0_MS + 1000]
    v = view(Aggregation("qty", "sum", "1s"))
    out = point_in_time(ev, v, requests(("u", q + 700_000 * ns)))  # request floors to q too
    assert values(out, "qty_sum_1s") == [110]
    assert type(out["qty_sum_1s"][0]) is int


def test_in_window_rule():
    assert in_window(90, 100, 10) and not in_window(89, 100, 10) and not in_window(100, 100, 10)
    assert in_window(-(10 ** 12), 100, None) and not in_window(100, 100, None)


def test_ttl_boundary_inclusive():
    v = view(Latest("amount"), ttl="1h")
    ev = events({"user_id": "u", "ts": T0, "amount": 5.0},
                {"user_id": "u", "ts": T0 + 60 * MIN, "amount": 6.0})
    out = point_in_time(ev, v, requests(("u", T0 + 60 * MIN), ("u", T0 + 60 * MIN + MS), ("u", T0)))
    # q = T0+1h: T0 is exactly q - ttl (in), T0+1h is q (out); q+1ms sees only T0+1h; q = T0 sees nothing
    assert values(out, "amount") == [5.0, 6.0, None]
    out = point_in_time(ev, v, requests(("u", T0 + 120 * MIN + MS)))
    assert values(out, "amount") == [None]  # T0+1h is now older than the TTL


def test_latest_takes_null_value_of_greatest_event_but_last_skips_it():
    v = view(Latest("amount"), Aggregation("amount", "last"), Aggregation("amount", "first"))
    ev = events({"user_id": "u", "ts": T0, "amount": 1.0},
                {"user_id": "u", "ts": T0 + MIN, "amount": 2.0},
                {"user_id": "u", "ts": T0 + 2 * MIN, "amount": None})
    out = point_in_time(ev, v, requests(("u", T0 + 3 * MIN)))
    assert values(out, "amount") == [None]
    assert values(out, "amount_last_lifetime") == [2.0]
    assert values(out, "amount_first_lifetime") == [1.0]


def test_ties_follow_declared_tiebreak_not_arrival_order():
    v = view(Latest("amount"), Aggregation("amount", "last", name="l"), Aggregation("amount", "first", name="f"))
    ev = events({"user_id": "u", "ts": T0, "seq": 2, "amount": 10.0},
                {"user_id": "u", "ts": T0, "seq": 3, "amount": None},
                {"user_id": "u", "ts": T0, "seq": 1, "amount": 20.0},
                {"user_id": "u", "ts": T0 - MIN, "seq": 9, "amount": 99.0})
    out = point_in_time(ev, v, requests(("u", T0 + MS)))
    assert values(out, "amount") == [None]  # seq 3 is the greatest event at T0
    assert values(out, "l") == [10.0]  # greatest non-null: seq 2
    assert values(out, "f") == [99.0]  # the earlier ts wins over any tiebreak
    out = point_in_time(ev, v, requests(("u", T0)))
    assert values(out, "amount") == [99.0]  # equal-ts events are all outside together


def test_ties_without_tiebreak_use_schema_columns_nulls_first():
    # order: ts, user_id, merchant_id, amount, qty, cat, seq
    v = view(Latest("cat"), Aggregation("cat", "first", name="f"), Aggregation("cat", "last", name="l"),
             source=TX_NO_TIEBREAK)
    ev = events({"user_id": "u", "ts": T0, "amount": 3.0, "cat": "a"},
                {"user_id": "u", "ts": T0, "amount": 1.0, "cat": "b"},
                {"user_id": "u", "ts": T0, "amount": None, "cat": "z"})
    out = point_in_time(ev, v, requests(("u", T0 + MS)))
    assert values(out, "cat") == ["a"]  # amount 3.0 is the greatest
    assert values(out, "l") == ["a"]
    assert values(out, "f") == ["z"]  # null amount sorts first


def test_empty_window_counts_zero_rest_null_or_default():
    v = view(Aggregation("*", "count", "1h", name="c"),
             Aggregation("*", "count", "1h", name="c_default", default=7),
             Aggregation("cat", "count_distinct", "1h", name="cd"),
             Aggregation("amount", "sum", "1h", name="s"),
             Aggregation("amount", "sum", "1h", name="s_default", default=0.0),
             Aggregation("amount", "mean", "1h", name="m"),
             Aggregation("cat", "last", "1h", name="last_default", default="none"),
             Aggregation("amount", "stddev", "1h", name="sd"))
    ev = events({"user_id": "u", "ts": T0, "amount": 1.0, "cat": "a"})
    out = point_in_time(ev, v, requests(("u", T0 + 61 * MIN)))  # slid past: decays to empty
    row = out.iloc[0]
    assert (row.c, row.c_default, row.cd) == (0, 0, 0)
    assert (row.s, row.s_default, row.m, row.last_default, row.sd) == (None, 0.0, None, "none", None)


def test_a_default_is_a_value_of_the_features_type():
    """COALESCE(agg, default) has the aggregation's type: 0.1 of a float32 max is the float32 nearest 0.1 (what
    the engines read, offline and online); 1 of a float64 max is 1.0."""
    v = view(Aggregation("CAST(amount AS FLOAT)", "max", "1h", name="mx32", default=0.1),
             Aggregation("CAST(amount AS FLOAT)", "mean", "1h", name="mean32", default=0.1),
             Aggregation("amount", "max", "1h", name="mx", default=1))
    out = point_in_time(events({"user_id": "u", "ts": T0, "amount": 2.0}), v, requests(("u", T0 + 61 * MIN)))
    assert values(out, "mx32") == [0.10000000149011612] and values(out, "mean32") == [0.1]
    assert values(out, "mx") == [1.0] and isinstance(values(out, "mx")[0], float)


def test_all_null_inputs_are_an_empty_window():
    v = view(Aggregation("amount", "sum", name="s"), Aggregation("amount", "count", name="c"),
             Aggregation("amount", "max", name="mx", default=-1.0))
    ev = events({"user_id": "u", "ts": T0, "amount": None}, {"user_id": "u", "ts": T0, "amount": None, "seq": 1})
    out = point_in_time(ev, v, requests(("u", T0 + MS)))
    assert (values(out, "s"), values(out, "c"), values(out, "mx")) == ([None], [0], [-1.0])


def test_stddev_variance_sample_statistics():
    v = view(Aggregation("amount", "stddev", name="sd"), Aggregation("amount", "variance", name="var"),
             Aggregation("amount", "stddev", name="sd_default", default=0.0))
    ev = events({"user_id": "u", "ts": T0, "amount": 1.0},
                {"user_id": "u", "ts": T0 + MIN, "amount": None},
                {"user_id": "u", "ts": T0 + 2 * MIN, "amount": 4.0})
    out = point_in_time(ev, v, requests(("u", T0 + MS), ("u", T0 + 3 * MIN)))
    # one value: null (default applies to a null result); 1 and 4: mean 2.5, (2.25 + 2.25) / 1 = 4.5
    assert values(out, "sd") == [None, 2.1213203435596424]
    assert values(out, "var") == [None, 4.5]
    assert values(out, "sd_default") == [0.0, 2.1213203435596424]


def test_count_distinct_count_column_and_count_star():
    v = view(Aggregation("cat", "count_distinct", name="cd"), Aggregation("cat", "count", name="cc"),
             Aggregation("*", "count", name="c"), Aggregation("cat", "min", name="mn"),
             Aggregation("cat", "max", name="mx"))
    ev = events({"user_id": "u", "ts": T0, "cat": "b"}, {"user_id": "u", "ts": T0, "cat": "a", "seq": 1},
                {"user_id": "u", "ts": T0 + MIN, "cat": "b"}, {"user_id": "u", "ts": T0 + MIN, "cat": None})
    out = point_in_time(ev, v, requests(("u", T0 + 2 * MIN)))
    assert out.iloc[0][["cd", "cc", "c", "mn", "mx"]].tolist() == [2, 3, 4, "a", "b"]


def test_sum_and_mean_are_exact():
    v = view(Aggregation("amount", "sum", name="s"), Aggregation("amount", "mean", name="m"),
             Aggregation("qty", "sum", name="qs"), Aggregation("qty", "mean", name="qm"))
    ev = events({"user_id": "u", "ts": T0, "amount": 0.1, "qty": 1},
                {"user_id": "u", "ts": T0 + MS, "amount": 0.2, "qty": 2},
                {"user_id": "u", "ts": T0 + 2 * MS, "amount": 0.3, "qty": None})
    out = point_in_time(ev, v, requests(("u", T0 + MIN)))
    # naive left-to-right float sum is 0.6000000000000001; the exact sum rounds to 0.6, mean to 0.2
    assert out.iloc[0][["s", "m", "qs", "qm"]].tolist() == [0.6, 0.2, 3, 1.5]


def test_unbounded_window():
    v = view(Aggregation("qty", "sum"), Aggregation("qty", "sum", "1d"))
    ev = events({"user_id": "u", "ts": T0 - pd.Timedelta(days=3650), "qty": 1},
                {"user_id": "u", "ts": T0 - pd.Timedelta(hours=1), "qty": 2},
                {"user_id": "u", "ts": T0, "qty": 4})
    out = point_in_time(ev, v, requests(("u", T0)))
    assert values(out, "qty_sum_lifetime") == [3] and values(out, "qty_sum_1d") == [2]


def test_multi_key_entity_and_null_keys():
    v = FeatureView(name="um", entities=[USER, MERCHANT], source=TX, features=[Aggregation("qty", "sum")])
    ev = events({"user_id": "u1", "merchant_id": 1, "ts": T0, "qty": 1},
                {"user_id": "u1", "merchant_id": 2, "ts": T0, "qty": 10},
                {"user_id": "u2", "merchant_id": 1, "ts": T0, "qty": 100},
                {"user_id": None, "merchant_id": 1, "ts": T0, "qty": 1000})
    ent = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3", None],
                        "merchant_id": [1, 2, 1, 1, 1],
                        "event_timestamp": [T0 + MS] * 5})
    out = point_in_time(ev, v, ent)
    assert values(out, "qty_sum_lifetime") == [1, 10, 100, None, None]


def test_filter_and_projection():
    v = view(Aggregation("amount_cents", "sum", name="s"), Latest("amount_cents"),
             Aggregation("amount_cents + qty", "max", name="mx"), Aggregation("*", "count", name="c"),
             filter="amount > 1", projections={"amount_cents": "CAST(amount * 100 AS BIGINT)"})
    ev = events({"user_id": "u", "ts": T0, "amount": 0.5, "qty": 1},       # filtered out
                {"user_id": "u", "ts": T0 + MS, "amount": None, "qty": 1},  # NULL filter: dropped
                {"user_id": "u", "ts": T0 + 2 * MS, "amount": 2.5, "qty": 7},
                {"user_id": "u", "ts": T0 + 3 * MS, "amount": 1.25, "qty": 9},
                {"user_id": "u", "ts": T0 + 4 * MS, "amount": 0.0, "qty": 9})  # filtered out, latest skips it
    out = point_in_time(ev, v, requests(("u", T0 + MIN)))
    assert out.iloc[0][["s", "amount_cents", "mx", "c"]].tolist() == [375, 125, 257, 2]


def test_entity_rows_order_duplicates_columns_kept_and_no_events():
    v = view(Aggregation("qty", "sum"), Aggregation("*", "count"), Latest("qty"))
    ev = events({"user_id": "a", "ts": T0, "qty": 1}, {"user_id": "b", "ts": T0 + MIN, "qty": 2})
    ent = pd.DataFrame({"user_id": ["b", "a", "b", "nobody", "a"],
                        "event_timestamp": [T0 + 2 * MIN, T0 + MS, T0 + 2 * MIN, T0 + MIN, T0],
                        "label": [1, 2, 3, 4, 5]}, index=[10, 5, 7, 3, 1])
    out = point_in_time(ev, v, ent)
    assert list(out.index) == [0, 1, 2, 3, 4]
    assert list(out.columns) == ["user_id", "event_timestamp", "label", "qty_sum_lifetime", "count_lifetime", "qty"]
    assert values(out, "label") == [1, 2, 3, 4, 5]
    assert values(out, "qty_sum_lifetime") == [2, 1, 2, None, None]
    assert values(out, "count_lifetime") == [1, 1, 1, 0, 0]
    assert values(out, "qty") == [2, 1, 2, None, None]


def test_aggregate_directly():
    items = [((1, "x"), 3), ((0, "y"), None), ((2, "a"), 5), ((1, "a"), 4)]
    assert aggregate("count", items) == 3
    assert aggregate("sum", items, integer_input=True) == 12
    assert aggregate("first", items) == 4 and aggregate("last", items) == 5
    assert aggregate("min", []) is None and aggregate("min", [], default=1) == 1
    assert aggregate("count_distinct", [((0,), 1), ((1,), 1), ((2,), None)]) == 1
    assert math.isnan(aggregate("sum", [((0,), math.inf), ((1,), -math.inf)]))
    assert aggregate("max", [((0,), 1.0), ((1,), math.nan)]) != 1.0  # NaN above every number
    with pytest.raises(ValueError):
        aggregate("median", items)
