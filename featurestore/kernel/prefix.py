"""Exact sums, means and variances of many windows over sorted events, from prefix sums of scaled integers.

The sliding-window form of :mod:`featurestore.kernel.exact`. Every double is ``m * 2**e`` with an
integer ``m``, so all values of a sequence are integers over one common power of two. Their prefix
sums ``P1[i] = sum(x[:i])`` and ``P2[i] = sum(x[:i]**2)`` are Python integers: exact, so the moments
of any contiguous range are exact differences (``P[hi] - P[lo]``), with no cancellation, whatever the
offset, spread or signs of the values. Each range's sum, mean or sample variance is then rounded once,
correctly (:class:`featurestore.kernel.exact.ExactSum`, :func:`featurestore.kernel.exact.sample_variance`):
bit-identical to the exact reference.

Cost: one vectorised pass (numpy object arrays) over the values, one merge to find the ranges, and a
few big-integer operations per window. Used by the offline point-in-time join: for the variances of
keys with many events (a SQL window frame cannot shift by an in-window value, see
``engines/duckdb_pit.py``) and for the windows whose compensated float sum cannot be trusted
(``engines/duckdb_exact.py``).

>>> import numpy as np
>>> pm = PrefixMoments(np.array([123456789.123, 123456789.125, 123456789.126, 123456789.129]))
>>> pm.variances(np.array([0]), np.array([4]))
[6.249993046140527e-06]
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from featurestore.kernel.exact import ExactSum, sample_variance

_MANT_BITS = 53


def lower_bounds(groups: np.ndarray, times: np.ndarray, q_groups: np.ndarray, q_times: np.ndarray) -> np.ndarray:
    """For events sorted by ``(groups, times)``, the index of the first event with ``(group, time) >=
    (q_group, q_time)``, for every query: a vectorised binary search on pairs (one merge sort).

    ``lower_bounds(g, t, qg, q)`` is where a window ending before ``q`` (exclusive) stops, and
    ``lower_bounds(g, t, qg, q - W)`` where one starting at ``q - W`` (inclusive) starts."""
    n, m = len(groups), len(q_groups)
    g = np.concatenate([np.asarray(groups, np.int64), np.asarray(q_groups, np.int64)])
    t = np.concatenate([np.asarray(times, np.int64), np.asarray(q_times, np.int64)])
    kind = np.concatenate([np.ones(n, np.int8), np.zeros(m, np.int8)])  # a query sorts before equal events
    order = np.lexsort((kind, t, g))
    is_event = kind[order] == 1
    before = np.cumsum(is_event) - is_event  # events strictly before each sorted position
    out = np.empty(m, np.int64)
    at_query = ~is_event
    out[order[at_query] - n] = before[at_query]
    return out


def _scaled_integers(x: np.ndarray):
    """(values as Python ints over 2**scale, scale, nan, +inf, -inf indicator arrays)."""
    n = len(x)
    none = np.zeros(n, np.int64)
    if x.dtype.kind in "iub":
        return x.astype(np.int64).astype(object), 0, none, none, none
    x = x.astype(np.float64)
    finite = np.isfinite(x)
    mant, exp = np.frexp(np.where(finite, x, 0.0))
    m = (mant * float(2**_MANT_BITS)).astype(np.int64)  # exact: a double has 53 significant bits
    e = exp.astype(np.int64) - _MANT_BITS
    nz = m != 0
    if nz.any():
        # Drop trailing zero bits so the common scale is as coarse as the data allows (smaller ints).
        low = np.where(nz, m & -m, 1)
        tz = np.round(np.log2(low.astype(np.float64))).astype(np.int64)
        m = m >> tz
        e = e + tz
        scale = int(max(0, -e[nz].min()))
    else:
        scale = 0
    shifts = np.where(nz, e + scale, 0)
    values = m.astype(object) << shifts.astype(object)
    return (values, scale, np.isnan(x).astype(np.int64), (x == np.inf).astype(np.int64),
            (x == -np.inf).astype(np.int64))


def _prefix(a: np.ndarray) -> np.ndarray:
    out = np.empty(len(a) + 1, dtype=a.dtype)
    out[0] = 0
    np.cumsum(a, out=out[1:])
    return out


class PrefixMoments:
    """Exact prefix moments of one sequence of non-null values (ints or doubles, any mix of
    magnitudes; NaN and infinities are counted apart and follow IEEE, as in ``ExactSum``). The
    squares are summed on the first call to :meth:`variances`."""

    def __init__(self, values: np.ndarray):
        self._vals, self.scale, nan, pinf, ninf = _scaled_integers(np.asarray(values))
        self.p1 = _prefix(self._vals)
        self._p2: Optional[np.ndarray] = None
        self.nan, self.pinf, self.ninf = _prefix(nan), _prefix(pinf), _prefix(ninf)

    @property
    def p2(self) -> np.ndarray:
        if self._p2 is None:
            self._p2 = _prefix(self._vals * self._vals)
        return self._p2

    def _sums(self, p: np.ndarray, scale: int, lo: np.ndarray, hi: np.ndarray) -> List[ExactSum]:
        d = p[hi] - p[lo]
        dn, dp, dm = self.nan[hi] - self.nan[lo], self.pinf[hi] - self.pinf[lo], self.ninf[hi] - self.ninf[lo]
        return [ExactSum(a, scale, nn, pp, mm) for a, nn, pp, mm in zip(d, dn.tolist(), dp.tolist(), dm.tolist())]

    def sums(self, lo: np.ndarray, hi: np.ndarray) -> List[Optional[float]]:
        """Sum of ``values[lo[i]:hi[i]]`` for every i, correctly rounded (None for an empty range)."""
        return [None if n == 0 else s.value()
                for n, s in zip((hi - lo).tolist(), self._sums(self.p1, self.scale, lo, hi))]

    def means(self, lo: np.ndarray, hi: np.ndarray) -> List[Optional[float]]:
        """Mean of ``values[lo[i]:hi[i]]`` for every i, correctly rounded (None for an empty range)."""
        return [None if n == 0 else s.mean(n)
                for n, s in zip((hi - lo).tolist(), self._sums(self.p1, self.scale, lo, hi))]

    def variances(self, lo: np.ndarray, hi: np.ndarray) -> List[Optional[float]]:
        """Sample variance of ``values[lo[i]:hi[i]]`` for every i (None when fewer than two values)."""
        s1 = self._sums(self.p1, self.scale, lo, hi)
        s2 = self._sums(self.p2, 2 * self.scale, lo, hi)
        return [sample_variance(n, a, b) for n, a, b in zip((hi - lo).tolist(), s1, s2)]


__all__ = ["PrefixMoments", "lower_bounds"]
