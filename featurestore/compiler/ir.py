"""Compile a feature view into an engine-neutral plan: what to store, and what each feature means.

Engines (DuckDB now, Flink next) render this plan; none of them re-derives a rule. The rules come
from :mod:`featurestore.semantics`:

* the **stored events** of a view: the source's columns (event time truncated to ms) for rows that
  pass the view's filter, plus the view's projections. Rows with a null event time or a null join
  key cannot be features of anything and are counted as rejected, never silently lost.
* the **event order** (ties): ``order_columns`` ascending, nulls first.
* each feature: its input expression over the stored columns, its window, TTL, empty value, default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from featurestore import dtypes
from featurestore.model import Aggregation, FeatureView, Latest
from featurestore.semantics import AGG_FUNCTIONS


@dataclass(frozen=True)
class LatestSpec:
    name: str
    expr: str
    dtype: str


@dataclass(frozen=True)
class AggSpec:
    name: str
    function: str
    expr: Optional[str]  # None: count of events
    window_ms: Optional[int]  # None: unbounded
    default: object
    dtype: str  # output type
    input_dtype: Optional[str]

    @property
    def empty_value(self):
        """Value of a window with no (non-null) input: 0 for counts, else the default (may be None)."""
        empty = AGG_FUNCTIONS[self.function].empty_value
        return empty if empty is not None else self.default


@dataclass(frozen=True)
class CompiledView:
    name: str
    join_keys: Tuple[str, ...]
    ts_column: str  # the source's event-time column; stored truncated to ms, UTC
    source_columns: Tuple[Tuple[str, str], ...]  # (name, dtype) in schema order
    filter: Optional[str]
    projections: Tuple[Tuple[str, str, str], ...]  # (name, expr, dtype)
    order_columns: Tuple[str, ...]  # event order for ties, ts first
    ttl_ms: Optional[int]
    latest: Tuple[LatestSpec, ...]
    aggregations: Tuple[AggSpec, ...]
    data_fingerprint: str
    # The ingestion's future bound (config event_time.max_future, ms; None: no bound): it decides which source
    # rows are events, so it is part of what the stored rows depend on. "default": the default bound.
    max_future_ms: Optional[int] = "default"  # type: ignore[assignment]

    @property
    def stored_columns(self) -> Tuple[Tuple[str, str], ...]:
        """Columns of the offline events table, in order: source schema, then projections."""
        return self.source_columns + tuple((n, t) for n, _, t in self.projections)

    @property
    def rows_fingerprint(self) -> str:
        """What the stored events depend on (source columns, event time, join keys, filter, projections, the
        ingestion's future bound), not what is computed from them: an offline table written under another one
        holds other rows. The default bound adds nothing (tables written before it counted stay current)."""
        from featurestore.model.base import digest
        from featurestore.model.durations import parse_duration
        from featurestore.semantics import DEFAULT_MAX_FUTURE

        rows = {"columns": self.source_columns, "ts": self.ts_column, "keys": self.join_keys,
                "filter": self.filter, "projections": self.projections}
        if self.max_future_ms != "default" and self.max_future_ms != parse_duration(DEFAULT_MAX_FUTURE):
            rows["max_future_ms"] = self.max_future_ms
        return digest(rows)

    @property
    def key_types(self) -> Dict[str, str]:
        cols = dict(self.stored_columns)
        return {k: cols[k] for k in self.join_keys}

    @property
    def max_window_ms(self) -> Optional[int]:
        """Largest finite window; None if some aggregation is unbounded (or there are none)."""
        if any(a.window_ms is None for a in self.aggregations):
            return None
        return max((a.window_ms for a in self.aggregations), default=None)

    @property
    def feature_dtypes(self) -> Dict[str, str]:
        return {**{f.name: f.dtype for f in self.latest}, **{a.name: a.dtype for a in self.aggregations}}


def compile_view(view: FeatureView) -> CompiledView:
    """The plan of one validated view (types come from the DuckDB binder used by validation)."""
    from featurestore.validation import Binder

    source = view.source
    binder = Binder(source.columns, source.name)
    projections = tuple((n, e, binder.dtype(e)) for n, e in view.projections)
    binder.columns = {**source.columns, **{n: t for n, _, t in projections}}
    latest, aggs = [], []
    for f in view.features:
        if isinstance(f, Latest):
            latest.append(LatestSpec(f.name, f.expr, binder.dtype(f.expr)))
        elif isinstance(f, Aggregation):
            in_type = binder.dtype(f.column) if f.column is not None else None
            out = AGG_FUNCTIONS[f.function].result_dtype(in_type or dtypes.INT64)
            aggs.append(AggSpec(f.name, f.function, f.column, f.window_ms, f.default, out, in_type))
    return CompiledView(
        name=view.name,
        join_keys=view.join_keys,
        ts_column=source.timestamp,
        source_columns=source.schema,
        filter=view.filter,
        projections=projections,
        order_columns=source.order_columns,
        ttl_ms=view.ttl,
        latest=tuple(latest),
        aggregations=tuple(aggs),
        data_fingerprint=view.data_fingerprint,
    )
