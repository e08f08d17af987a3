"""Exact sums and variances (featurestore.kernel.exact) against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.kernel.exact import ExactSum, exact_sum, sample_variance, variance_of

finite = st.floats(allow_nan=False, allow_infinity=False)


def ref_variance(xs):
    n = len(xs)
    mean = sum(map(Fraction, xs)) / n
    return float(sum((Fraction(x) - mean) ** 2 for x in xs) / (n - 1))


def test_large_offset_tiny_spread_is_exact():
    # issue 9.1: DuckDB's var_samp gave 6.250012500430557e-06 here
    xs = [123456789.123, 123456789.125, 123456789.126, 123456789.129]
    assert variance_of(xs) == ref_variance(xs) == 6.249993046140527e-06


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=2, max_size=20),
       st.sampled_from([0.0, 1e8, -1e15, 1e-300, 1.7e18, 3.0]))
def test_variance_is_correctly_rounded(xs, offset):
    xs = [x + offset if abs(x) < 1e150 else x for x in xs]
    try:
        expected = ref_variance(xs)
    except OverflowError:
        expected = math.inf
    assert variance_of(xs) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(finite, st.integers(-2**70, 2**70)), max_size=30))
def test_sum_is_correctly_rounded_and_order_free(xs):
    exact = sum(map(Fraction, xs), Fraction(0))
    try:
        expected = float(exact)
    except OverflowError:
        expected = math.inf if exact > 0 else -math.inf
    assert exact_sum(xs).value() == expected
    assert exact_sum(reversed(xs)).value() == expected
    half = len(xs) // 2
    merged = exact_sum(xs[:half]).merge(exact_sum(xs[half:]))
    assert merged == exact_sum(xs) and ExactSum.decode(merged.encode()) == merged


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.data())
def test_subtraction_undoes_addition(xs, data):
    k = data.draw(st.integers(0, len(xs)))
    s = exact_sum(xs)
    for x in xs[:k]:
        s.add(x, -1)
    assert s == exact_sum(xs[k:])


def test_non_finite_follow_ieee():
    assert math.isnan(exact_sum([1.0, math.nan]).value())
    assert math.isnan(exact_sum([math.inf, -math.inf]).value())
    assert exact_sum([math.inf, 1.0]).value() == math.inf
    assert exact_sum([-math.inf, 1.0]).value() == -math.inf
    assert exact_sum([1.7e308, 1.7e308]).value() == math.inf  # the exact sum overflows
    assert math.isnan(variance_of([1.0, math.inf]))
    assert variance_of([1.0]) is None and sample_variance(0, ExactSum(), ExactSum()) is None


def test_numpy_integers_stay_exact():
    big = 2**62 + 1
    assert exact_sum([np.int64(big), np.int64(1)]).value() == float(big + 1)
    assert exact_sum([np.int64(big)]).m == big
