"""Exact sums of doubles: the arithmetic behind every float ``sum``, ``mean``, ``variance`` partial.

A finite double is an integer multiple of a power of two, so a sum of doubles is held exactly as one
Python integer ``m`` over ``2**s`` (``s`` grows to the finest input). Adding, subtracting and merging
are exact and order-free, so tiles, sliding windows and merges of any shape give the same bits; the
result is rounded once, correctly (``int / int`` is correctly rounded in Python). Non-finite inputs
are counted apart and follow IEEE: any NaN, or +inf with -inf, gives NaN; otherwise an infinity wins.

``variance`` is computed from exact ``n``, ``S1 = sum(x)`` and ``S2 = sum(x*x)`` as
``(n*S2 - S1**2) / (n*(n-1))``, an exact rational rounded once: the correctly rounded sample variance
of the doubles, whatever their offset or spread (no cancellation, no shift to choose).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Optional

_INF = math.inf


class ExactSum:
    """An exact running sum of ints and doubles (see the module docstring). Mutable, cheap to copy."""

    __slots__ = ("m", "s", "nan", "pinf", "ninf")

    def __init__(self, m: int = 0, s: int = 0, nan: int = 0, pinf: int = 0, ninf: int = 0):
        self.m, self.s, self.nan, self.pinf, self.ninf = m, s, nan, pinf, ninf

    # -- building --------------------------------------------------------------------------------
    def add(self, x: Any, sign: int = 1) -> None:
        """Add ``x`` (int or float) exactly; ``sign=-1`` subtracts it (sliding windows)."""
        if isinstance(x, int) or (not isinstance(x, float) and hasattr(x, "__index__")):
            self.m += sign * (x.__index__() << self.s)  # ints (numpy's too) stay exact
            return
        x = float(x)
        if x != x:
            self.nan += sign
            return
        if x == _INF:
            self.pinf += sign
            return
        if x == -_INF:
            self.ninf += sign
            return
        n, d = x.as_integer_ratio()
        k = d.bit_length() - 1
        if k > self.s:
            self.m <<= k - self.s
            self.s = k
        self.m += sign * (n << (self.s - k))

    def add_square(self, x: Any, sign: int = 1) -> None:
        """Add ``x*x`` exactly (the second moment of a variance)."""
        if isinstance(x, int) or (not isinstance(x, float) and hasattr(x, "__index__")):
            i = x.__index__()
            self.m += sign * ((i * i) << self.s)
            return
        x = float(x)
        if not math.isfinite(x):
            if x != x:
                self.nan += sign
            else:
                self.pinf += sign
            return
        n, d = x.as_integer_ratio()
        k = 2 * (d.bit_length() - 1)
        if k > self.s:
            self.m <<= k - self.s
            self.s = k
        self.m += sign * ((n * n) << (self.s - k))

    def merge(self, other: "ExactSum") -> "ExactSum":
        """Add ``other`` into this sum (in place); returns self."""
        if other.s > self.s:
            self.m = (self.m << (other.s - self.s)) + other.m
            self.s = other.s
        else:
            self.m += other.m << (self.s - other.s)
        self.nan += other.nan
        self.pinf += other.pinf
        self.ninf += other.ninf
        return self

    def plus(self, other: "ExactSum") -> "ExactSum":
        """A new sum, ``self + other`` (neither is changed): ``self.copy().merge(other)`` in one step."""
        if other.s > self.s:
            m, s = (self.m << (other.s - self.s)) + other.m, other.s
        else:
            m, s = self.m + (other.m << (self.s - other.s)), self.s
        return ExactSum(m, s, self.nan + other.nan, self.pinf + other.pinf, self.ninf + other.ninf)

    def copy(self) -> "ExactSum":
        return ExactSum(self.m, self.s, self.nan, self.pinf, self.ninf)

    # -- reading ---------------------------------------------------------------------------------
    @property
    def finite(self) -> bool:
        return not (self.nan or self.pinf or self.ninf)

    def value(self) -> float:
        """The sum, correctly rounded to a double (IEEE rules for non-finite inputs; an exact sum of
        finite inputs beyond the double range is an infinity of its sign)."""
        if not self.finite:
            return self._nonfinite()
        return _div(self.m, 1 << self.s)

    def mean(self, n: int) -> float:
        """``sum / n``, correctly rounded."""
        if not self.finite:
            return self._nonfinite()
        return _div(self.m, n << self.s)

    def _nonfinite(self) -> float:
        if self.nan or (self.pinf and self.ninf):
            return math.nan
        return _INF if self.pinf else -_INF

    # -- storage ---------------------------------------------------------------------------------
    def encode(self) -> list:
        """A compact JSON-able form: ``[hex(m), s]`` (+ ``nan, pinf, ninf`` when any is non-zero), with
        ``m`` reduced to an odd number (canonical: equal sums encode equally)."""
        m, s = reduced(self.m, self.s)
        out: list = [format(m, "x"), s]
        if not self.finite:
            out += [self.nan, self.pinf, self.ninf]
        return out

    @classmethod
    def decode(cls, obj: list) -> "ExactSum":
        m = int(obj[0], 16)
        if len(obj) > 2:
            return cls(m, obj[1], obj[2], obj[3], obj[4])
        return cls(m, obj[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExactSum) and self.encode() == other.encode()

    def __repr__(self) -> str:
        return f"ExactSum({self.value()!r})"


def _div(num: int, den: int) -> float:
    try:
        return num / den
    except OverflowError:
        return _INF if num > 0 else -_INF


def exact_sum(xs: Iterable[Any]) -> ExactSum:
    s = ExactSum()
    for x in xs:
        s.add(x)
    return s


def sample_variance(n: int, s1: ExactSum, s2: ExactSum) -> Optional[float]:
    """Correctly rounded sample variance (n - 1) from exact ``n``, ``sum(x)``, ``sum(x*x)``; None for
    ``n < 2``; NaN if any input was not finite (IEEE: inf - inf)."""
    if n < 2:
        return None
    if not (s1.finite and s2.finite):
        return math.nan
    # n*S2 - S1^2 over a common power of two; exact, and never negative.
    a1, a2 = s1.s, s2.s
    shift = max(a2, 2 * a1)
    num = n * (s2.m << (shift - a2)) - ((s1.m * s1.m) << (shift - 2 * a1))
    return _div(num, (n * (n - 1)) << shift)


def variance_of(xs: List[Any]) -> Optional[float]:
    """Sample variance of ``xs`` (non-null values), exactly as the partial states compute it."""
    s1, s2 = ExactSum(), ExactSum()
    for x in xs:
        s1.add(x)
        s2.add_square(x)
    return sample_variance(len(xs), s1, s2)


def reduced(m: int, s: int):
    """The same ``m * 2**-s`` with ``m``'s trailing zero bits shifted out (at most ``s`` of them), or ``(0, 0)``:
    the canonical pair a sum is stored as (equal sums encode equally)."""
    if m == 0:
        return 0, 0
    tz = min((m & -m).bit_length() - 1, s)
    return m >> tz, s - tz


__all__ = ["ExactSum", "exact_sum", "reduced", "sample_variance", "variance_of"]

