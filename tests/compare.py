"""Exact comparison of feature values (SPEC §3: exact, floats to 1e-9 relative), with readable diffs."""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd


def is_null(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def same_value(a, b, rel: float = 1e-9, abs_tol: float = 1e-12) -> bool:
    if is_null(a) or is_null(b):
        return is_null(a) and is_null(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b) and type(a) is type(b) or (a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isinf(a) or math.isinf(b):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_tol)
    if hasattr(a, "item"):
        a = a.item()
    if hasattr(b, "item"):
        b = b.item()
    return a == b


def same_engine_value(a, b, dtype) -> bool:
    """A value from DuckDB and one from Flink are the same exactly: nulls alike, NaNs alike, zeros of one sign."""
    if a is None or b is None:
        return a is None and b is None
    if dtype == "float32":  # Flink hands FLOAT to Python through its decimal text; compare as float32
        import numpy as np

        a, b = float(np.float32(a)), float(np.float32(b))
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b and type(a) is type(b)


def assert_features_equal(actual: pd.DataFrame, expected: pd.DataFrame, columns: Iterable[str], context: str = "",
                          abs_tol: float = 1e-12):
    """Every value of ``columns`` equal row by row; the message lists the first mismatches. ``abs_tol=0``
    makes float comparisons purely relative (1e-9), for values far below 1 (tiny variances)."""
    assert len(actual) == len(expected), f"{context}: {len(actual)} rows, expected {len(expected)}"
    problems = []
    for col in columns:
        a_col = actual[col].tolist()
        e_col = expected[col].tolist()
        for i, (a, e) in enumerate(zip(a_col, e_col)):
            if not same_value(_py(a), _py(e), abs_tol=abs_tol):
                problems.append(f"row {i} {col}: got {a!r}, expected {e!r}")
    assert not problems, f"{context}: {len(problems)} mismatches, e.g.\n" + "\n".join(problems[:15])


def _py(v):
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    return v
