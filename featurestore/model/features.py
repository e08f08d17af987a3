"""The two kinds of feature: *latest* values and window aggregations (meaning: featurestore.semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from featurestore.errors import DefinitionError
from featurestore.model.base import NAME_RE, check_column_name
from featurestore.model.checks import Checks
from featurestore.model.durations import DurationLike, format_duration, parse_span
from featurestore.semantics import AGG_ALIASES, AGG_FUNCTIONS

_SIMPLE_COLUMN = NAME_RE


def _check_expr(expr: Any, what: str) -> str:
    # Whether it is exactly one SQL expression is checked by validation (DuckDB's parser).
    if not isinstance(expr, str) or not expr.strip():
        raise DefinitionError(f"{what}: expected a column name or SQL expression string, got {expr!r}")
    return expr.strip()


def _default_value(value: Any, what: str) -> Any:
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise DefinitionError(f"{what}: default must be a bool, int, float or str, got {type(value).__name__}")
    return value


@dataclass(frozen=True, init=False)
class Latest:
    """The most recent value of a column or expression for the entity (row-level feature).

    >>> Latest("country").name
    'country'
    >>> Latest("amount * 100", name="amount_cents").expr
    'amount * 100'
    """

    expr: str
    name: str
    description: str

    def __init__(self, expr: str, *, name: Optional[str] = None, description: str = ""):
        checks = Checks()
        expr = checks.attempt(_check_expr, expr, "Latest expr", fallback="")
        if name is None:
            if expr and not _SIMPLE_COLUMN.match(expr):
                checks.add(f"Latest({expr!r}): an expression needs name=")
            elif expr:
                name = expr
        elif checks.attempt(check_column_name, name, "feature name") is None:
            name = None
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "name", name)  # None only while a repo with problems loads
        object.__setattr__(self, "description", description)
        checks.settle(self)

    @property
    def kind(self) -> str:
        return "latest"

    def canonical(self) -> dict:
        return {"kind": "latest", "name": self.name, "expr": self.expr}


def _window_label(window_ms: Optional[int]) -> str:
    return format_duration(window_ms)


@dataclass(frozen=True, init=False)
class Aggregation:
    """A window aggregation: ``function`` over ``column`` (or a SQL expression) in the last ``window``.

    ``window=None`` is unbounded (all events before the request). ``column="*"`` with ``count``
    counts events. Names default to ``{column}_{function}_{window}``.

    >>> Aggregation("amount", "sum", "1h").name
    'amount_sum_1h'
    >>> Aggregation("*", "count", "10m").name
    'count_10m'
    """

    column: Optional[str]
    function: str
    window_ms: Optional[int]
    name: str
    default: Any
    description: str

    def __init__(
        self,
        column: Optional[str],
        function: str,
        window: Optional[Union[DurationLike, int]] = None,
        *,
        name: Optional[str] = None,
        default: Any = None,
        description: str = "",
    ):
        checks = Checks()
        fn = None
        if not isinstance(function, str):
            checks.add(f"Aggregation function: expected a name, got {function!r}")
        else:
            fn = function.strip().lower()
            fn = AGG_ALIASES.get(fn, fn)
            if fn not in AGG_FUNCTIONS:
                checks.add(f"Aggregation function {function!r} is not supported; use one of {', '.join(AGG_FUNCTIONS)}")
        label = fn or "?"
        if column in (None, "*"):
            if fn in AGG_FUNCTIONS and AGG_FUNCTIONS[fn].needs_column:
                checks.add(f"Aggregation {fn}: needs a column or expression")
            column = None
        else:
            column = checks.attempt(_check_expr, column, f"Aggregation {label} column")
        window_ok = True
        window_ms = None
        if window is not None:
            window_ms = checks.attempt(parse_span, window, f"Aggregation {label} window")
            window_ok = window_ms is not None
        if name is None:
            if isinstance(column, str) and not _SIMPLE_COLUMN.match(column):
                checks.add(f"Aggregation {label}({column!r}): an expression needs name=")
            elif not checks and window_ok:
                parts = [column] if column else []
                name = "_".join(parts + [fn, _window_label(window_ms)])
        elif checks.attempt(check_column_name, name, "feature name") is None:
            name = None
        default = checks.attempt(_default_value, default, f"feature {name or label} default")
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "function", fn)
        object.__setattr__(self, "window_ms", window_ms)
        object.__setattr__(self, "name", name)  # None only while a repo with problems loads
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "description", description)
        checks.settle(self)

    @property
    def kind(self) -> str:
        return "aggregation"

    @property
    def window(self) -> str:
        return _window_label(self.window_ms)

    @property
    def spec(self):
        return AGG_FUNCTIONS[self.function]

    def canonical(self) -> dict:
        return {
            "kind": "aggregation",
            "name": self.name,
            "function": self.function,
            "column": self.column,
            "window_ms": self.window_ms,
            "default": self.default,
        }


Feature = Union[Latest, Aggregation]
