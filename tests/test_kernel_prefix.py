"""Windowed exact variances (featurestore.kernel.prefix) against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.kernel.prefix import PrefixMoments, lower_bounds


def ref_variance(xs):
    if len(xs) < 2:
        return None
    if any(not math.isfinite(x) for x in xs):
        return math.nan
    mean = sum(map(Fraction, xs)) / len(xs)
    try:
        return float(sum((Fraction(x) - mean) ** 2 for x in xs) / (len(xs) - 1))
    except OverflowError:
        return math.inf


def same(a, b):
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def ranges(n, data):
    lo = data.draw(st.lists(st.integers(0, n), min_size=1, max_size=12))
    hi = [data.draw(st.integers(lo_i, n)) for lo_i in lo]
    return np.array(lo, np.int64), np.array(hi, np.int64)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6), max_size=25),
       st.sampled_from([0.0, 1e8, -1e15, 1.7e12, 1e-300, 3.0]), st.data())
def test_every_range_is_correctly_rounded(xs, offset, data):
    xs = [x + offset for x in xs]
    lo, hi = ranges(len(xs), data)
    got = PrefixMoments(np.array(xs, np.float64)).variances(lo, hi)
    assert all(same(g, ref_variance(xs[a:b])) for g, a, b in zip(got, lo, hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([math.inf, -math.inf,
       math.nan, 0.0, -0.0, 5e-324])), max_size=20), st.data())
def test_any_doubles_and_non_finite_values(xs, data):
    lo, hi = ranges(len(xs), data)
    got = PrefixMoments(np.array(xs, np.float64)).variances(lo, hi)
    assert all(same(g, ref_variance(xs[a:b])) for g, a, b in zip(got, lo, hi))


def ref_sum(xs, mean=False):
    if not xs:
        return None
    if any(math.isnan(x) for x in xs) or (math.inf in xs and -math.inf in xs):
        return math.nan
    if math.inf in xs or -math.inf in xs:
        return math.inf if math.inf in xs else -math.inf
    total = sum(map(Fraction, xs)) / (len(xs) if mean else 1)
    try:
        return float(total)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([
       1e16, -1e16, 1.0, math.inf, -math.inf, math.nan, 0.0, -0.0, 5e-324, 1e308, -1e308])), max_size=20), st.data())
def test_sums_and_means_are_correctly_rounded(xs, data):
    """Cancelling values (1e16 + 1 - 1e16 = 1), overflow to an infinity, IEEE for non-finite inputs."""
    lo, hi = ranges(len(xs), data)
    pm = PrefixMoments(np.array(xs, np.float64))
    assert all(same(g, ref_sum(xs[a:b])) for g, a, b in zip(pm.sums(lo, hi), lo, hi))
    assert all(same(g, ref_sum(xs[a:b], mean=True)) for g, a, b in zip(pm.means(lo, hi), lo, hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=20), st.data())
def test_int64_values_beyond_2_53_are_exact(xs, data):
    lo, hi = ranges(len(xs), data)
    got = PrefixMoments(np.array(xs, np.int64)).variances(lo, hi)
    assert all(same(g, ref_variance(xs[a:b])) for g, a, b in zip(got, lo, hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 5)), max_size=30),
       st.lists(st.tuples(st.integers(-1, 4), st.integers(-7, 7)), min_size=1, max_size=10))
def test_lower_bounds_is_a_binary_search_on_pairs(events, queries):
    events.sort()
    g = np.array([e[0] for e in events], np.int64)
    t = np.array([e[1] for e in events], np.int64)
    got = lower_bounds(g, t, np.array([x[0] for x in queries], np.int64), np.array([x[1] for x in queries], np.int64))
    assert got.tolist() == [sum(1 for e in events if e < x) for x in queries]
