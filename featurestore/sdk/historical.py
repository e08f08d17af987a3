"""Point-in-time-correct training sets: ``get_historical_features`` (SPEC §2, §6).

Every input row comes back, in input order, duplicates and extra columns (labels) kept, with each
feature's value at that row's own timestamp. The heavy lifting is one DuckDB query per view, compiled
by :mod:`featurestore.engines.duckdb_pit` (its plan picked per entity key by the data's shape); DuckDB
spills to disk when inputs outgrow memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import duckdb
import pandas as pd
import pyarrow as pa

from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_sql as dsql
from featurestore.engines.duckdb_pit import point_in_time
from featurestore.errors import RequestError
from featurestore.dtypes import FLOAT_EXACT_INT, JSON, TIMESTAMP
from featurestore.sdk.inputs import key_column
from featurestore.sdk.json_values import decode_frame

DEFAULT_TS = "event_timestamp"




def features_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Feature columns as pandas: ``to_pandas()`` (Feast's conversion: an integer column with a null is
    float64), except an integer column with a null and a value float64 cannot hold (beyond 2^53): that one
    is pandas' nullable ``Int64``, never silently rounded (SPEC §3: integers are identical)."""
    import pyarrow.compute as pc

    frame = table.to_pandas()
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_integer(col.type) and col.null_count and col.null_count < len(col):
            low, high = pc.min_max(col).values()
            if max(-low.as_py(), high.as_py()) > FLOAT_EXACT_INT:
                frame[name] = pd.array(col.to_pylist(), dtype=pd.Int64Dtype())
    return frame


class TrainingFrame(pd.DataFrame):
    """A pandas DataFrame of the training set that also offers ``to_df()``/``to_arrow()`` (Feast style)
    and ``manifest`` (what it read: definition fingerprints, table versions, entity frame hash)."""

    _metadata = ["_arrow", "manifest"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def to_df(self) -> pd.DataFrame:
        return pd.DataFrame(self)

    def to_arrow(self) -> pa.Table:
        arrow = getattr(self, "_arrow", None)
        return arrow if arrow is not None else pa.Table.from_pandas(pd.DataFrame(self), preserve_index=False)


def request_times_ms(entity_df: pd.DataFrame, column: str, what: str = "entity_df",
                     rows: Optional[Sequence[int]] = None) -> pd.Series:
    """Epoch ms of each row's timestamp (floored), with clear errors for naive or mixed time zones (naming the
    frame as ``what``: ``entity_df``, ``labels_df``; ``rows``: the positions in the caller's frame of
    ``entity_df``'s rows when it is a subset of it, so an error names the caller's row)."""
    col = entity_df[column]
    position = (lambda i: i) if rows is None else (lambda i: int(rows[i]))
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dt, "tz", None) is None:
            raise RequestError(
                f"{what} column '{column}' is timezone-naive; times are UTC: use "
                f"df['{column}'] = df['{column}'].dt.tz_localize('UTC')"
            )
        if col.isna().any():
            row = position(int(col.isna().to_numpy().argmax()))  # a position, as every entity_df error names rows
            raise RequestError(f"{what} column '{column}' has a null timestamp at row {row}")
        ns = col.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").astype("int64")
        return ns // 1_000_000
    if col.dtype == object:
        tzs = {getattr(v, "tzinfo", "not-a-time") is None for v in col}
        kinds = {type(v).__name__ for v in col}
        if any(getattr(v, "tzinfo", None) is None for v in col):
            bad = next(i for i, v in enumerate(col) if getattr(v, "tzinfo", None) is None)
            raise RequestError(
                f"{what} column '{column}' row {position(bad)}: {col.iloc[bad]!r} is not a timezone-aware timestamp"
            )
        if len(tzs) > 1 or len(kinds) > 1:
            raise RequestError(f"{what} column '{column}' mixes value types {sorted(kinds)}")
        # Mixed time zones: convert each value to UTC explicitly.
        from featurestore.sdk.timeutil import timestamp_ms

        return pd.Series([timestamp_ms(pd.Timestamp(v).tz_convert("UTC")) for v in col], index=col.index,
                         dtype="int64")
    message = f"{what} column '{column}' has type {col.dtype}, not a timezone-aware timestamp"
    if pd.api.types.is_integer_dtype(col.dtype) and col.notna().any():
        from featurestore.sdk.timeutil import probable_unit

        guess = probable_unit(int(col.dropna().iloc[0]))
        if guess is not None:  # name the unit the numbers look like, so the fix is not a silent 1970
            message += (f"; its values look like {guess[1]}: use "
                        f"pd.to_datetime(df['{column}'], unit='{guess[0]}', utc=True)")
    raise RequestError(message)


def check_unique_columns(frame, what: str) -> None:
    """A frame naming one column twice is refused in one line (pandas would hand each a frame, not a column)."""
    if isinstance(frame, pd.DataFrame) and frame.columns.has_duplicates:
        twice = list(dict.fromkeys(frame.columns[frame.columns.duplicated()]))
        raise RequestError(f"{what} has more than one column named {', '.join(repr(c) for c in twice)}")


def naive_as_utc(entity_df, timestamp_column: Optional[str]):
    """Feast's rule for a Feast repo's entity frame: a timezone-naive timestamp column is UTC. Returns the frame
    (a copy with the column made UTC, and a one-line warning, when it was naive; else ``entity_df`` itself)."""
    if not isinstance(entity_df, pd.DataFrame):
        return entity_df
    column = timestamp_column or (DEFAULT_TS if DEFAULT_TS in entity_df.columns else None)
    if column is None:
        candidates = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c].dtype)]
        column = candidates[0] if len(candidates) == 1 else None
    if column not in entity_df.columns:
        return entity_df
    col = entity_df[column]
    if not pd.api.types.is_datetime64_any_dtype(col.dtype) or getattr(col.dt, "tz", None) is not None:
        return entity_df
    import warnings

    warnings.warn(f"entity_df column '{column}' is timezone-naive: read as UTC, as Feast does (a Feast repo); "
                  "see docs/coming-from-feast.md", UserWarning, stacklevel=3)
    return entity_df.assign(**{column: col.dt.tz_localize("UTC")})


def created_column(cv: CompiledView) -> Optional[str]:
    """The column Feast's ``filter_by_created_timestamp=True`` compares with the request time: the view's first
    tiebreak column when it is a timestamp (a Feast ``created_timestamp_column`` translates to it); None
    (nothing filtered, as in Feast without a created column) otherwise."""
    if len(cv.order_columns) < 2:
        return None
    column = cv.order_columns[1]
    return column if dict(cv.source_columns).get(column) == TIMESTAMP else None


def pick_timestamp_column(entity_df: pd.DataFrame, timestamp_column: Optional[str], what: str = "entity_df") -> str:
    if timestamp_column is not None:
        if timestamp_column not in entity_df.columns:
            raise RequestError(f"{what} has no timestamp column '{timestamp_column}'")
        return timestamp_column
    if DEFAULT_TS in entity_df.columns:
        return DEFAULT_TS
    candidates = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c].dtype)]
    if len(candidates) == 1:
        return candidates[0]
    raise RequestError(
        f"{what} needs a timestamp column: name it '{DEFAULT_TS}' or pass timestamp_column= "
        f"(found {len(candidates)} datetime columns)"
    )


@dataclass
class ViewInput:
    """What one view's part of a retrieval reads."""

    compiled: CompiledView  # restricted to the requested features
    events_relation: str  # a FROM-able relation of stored events
    version: Optional[int]  # offline table version read, None when computed from the source
    unique: bool = False  # no two events share (join keys, ms time): the table version's ``unique_on``
    checked: Optional[str] = None  # computed from the source: its checked rows (``duckdb_sql.checked_sql``)


def check_entity_df(entity_df, views: Sequence[CompiledView], ts_col: str) -> None:
    if not isinstance(entity_df, pd.DataFrame):
        raise RequestError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
    if len(entity_df) == 0:
        raise RequestError("entity_df is empty: give at least one (entity keys, timestamp) row")
    for cv in views:
        for key in cv.join_keys:
            if key not in entity_df.columns:
                raise RequestError(f"entity_df has no column '{key}' (join key of feature view '{cv.name}')")
    if ts_col in {k for cv in views for k in cv.join_keys}:
        raise RequestError(f"entity_df column '{ts_col}' cannot be both the timestamp and a join key")


def expression_failed(view: str, exc: BaseException, event: Optional[str] = None) -> str:
    """One line for a user's SQL expression that DuckDB could not evaluate on some event (an INT64 overflow
    of ``n * n``, a ``CAST`` of a text that is no number, ``x % 0``), naming the view, and the part and the event
    when :func:`failing_event` found them (``event``), else DuckDB's own message."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return (f"feature view '{view}': an expression of its filter, projections or features fails on an event: "
            f"{event or first}")


def failing_event(con, vi: ViewInput) -> Optional[str]:
    """For the error of a read that failed on a view's expression: ``part: why, on the event {...}`` and what to do,
    the first event a backfill would dead-letter (computed from the source: ``vi.checked``), or the first stored
    one a feature input fails on (a table written before backfills checked them); None when not found."""
    from featurestore.engines import duckdb_sql as dsql
    from featurestore.engines.backfill import dead_letter_row
    from featurestore.engines.duckdb_engine import without_optimizer

    cv = vi.compiled
    try:
        with without_optimizer(con, dsql.NO_CSE):
            if vi.checked is not None:
                found = con.sql(f"{dsql.view_failures_sql(cv, vi.checked)} LIMIT 1").fetchall()
                where = "of the batch face (a read records no dead letter: backfill the view, which dead-letters such events)"
            else:
                found = con.sql(dsql.stored_failure_sql(cv, vi.events_relation)).fetchall()
                where = ("stored (its table was written before backfills checked feature inputs: backfill the view "
                         "again)")
    except Exception:  # the diagnosis is best effort: the read's own error stands
        return None
    if not found:
        return None
    reason, row, ts = found[0]
    label = reason.split(": ", 1)[1] if reason.startswith(f"view '{cv.name}': ") else reason
    return f"{label}, on the event {dead_letter_row(row, ts, cv.source_columns, cv.ts_column)} {where}"


def retrieve(
    con,
    entity_df: pd.DataFrame,
    inputs: List[ViewInput],
    columns: Dict[tuple, str],
    ts_col: str,
    created_filter: bool = False,
    request_order: bool = True,
) -> TrainingFrame:
    """Run the point-in-time queries and assemble the frame (entity columns untouched, in order), each view's
    features in the order of ``columns`` (the request's; ``request_order=False``: the view's definition order, as
    training sets saved before manifest format 2 hold them).
    ``created_filter``: Feast's ``filter_by_created_timestamp=True`` (:func:`created_column`)."""
    q_ms = request_times_ms(entity_df, ts_col)
    keys = sorted({k for vi in inputs for k in vi.compiled.join_keys})
    clash = [c for c in columns.values() if c in entity_df.columns]
    if clash:
        raise RequestError(f"entity_df already has column(s) {clash} that the features would produce")
    key_types = {}
    for vi in inputs:
        for k, dtype in vi.compiled.key_types.items():
            key_types.setdefault(k, []).append(dtype)
    key_arrays = {}
    for k in keys:
        for dtype in dict.fromkeys(key_types[k]):  # each type the key has in the requested views
            key_arrays[k] = key_column(entity_df[k], dtype, "entity_df", k)
    req = pa.table({
        dsql.REQ_ROW: pa.array(range(len(entity_df)), pa.int64()),
        dsql.REQ_Q: pa.array(q_ms.to_numpy(), pa.int64()),
        **key_arrays,
    })
    con.register("__requests", req)
    try:
        parts = []
        for vi in inputs:
            created = created_column(vi.compiled) if created_filter else None
            if created is not None and vi.compiled.aggregations:
                raise RequestError(f"filter_by_created_timestamp=True applies to latest features; feature view "
                                   f"'{vi.compiled.name}' has aggregations")
            try:
                parts.append((vi, point_in_time(con, vi.compiled, vi.events_relation, "__requests", unique=vi.unique,
                                                prefix=f"{vi.compiled.name}::", created=created)))
            except (duckdb.DataError, duckdb.InvalidInputException) as exc:  # never an I/O error: those are retried
                raise RequestError(expression_failed(vi.compiled.name, exc, failing_event(con, vi))) from None
    finally:
        con.unregister("__requests")
    out_cols, out_names = [], []
    n = len(entity_df)
    import pyarrow.compute as pc

    for vi, table in parts:
        order = pc.sort_indices(table[dsql.REQ_ROW])
        table = table.take(order)
        if table.num_rows != n:  # pragma: no cover - one output row per request by construction
            raise AssertionError(f"view {vi.compiled.name}: {table.num_rows} rows for {n} requests")
        feats = [f for v, f in columns if v == vi.compiled.name] if request_order else vi.compiled.feature_dtypes
        for feat in feats:
            out_cols.append(table[f"{vi.compiled.name}::{feat}"])
            out_names.append(columns[(vi.compiled.name, feat)])
    arrow_features = pa.table(out_cols, names=out_names) if out_cols else pa.table({})
    feats_df = features_to_pandas(arrow_features)
    base = entity_df.reset_index(drop=True)
    frame = TrainingFrame(pd.concat([base, feats_df], axis=1))
    entity_arrow = pa.Table.from_pandas(base, preserve_index=False)
    for name, col in zip(arrow_features.column_names, arrow_features.columns):
        entity_arrow = entity_arrow.append_column(name, col)
    frame._arrow = entity_arrow  # JSON values stay their text in Arrow; pandas gets the Python values
    decode_frame(frame, [columns[(vi.compiled.name, f)] for vi in inputs
                         for f, d in vi.compiled.feature_dtypes.items() if d == JSON])  # by name: any order
    return frame


__all__ = ["TrainingFrame", "retrieve", "request_times_ms", "pick_timestamp_column", "check_entity_df", "ViewInput",
           "Union", "naive_as_utc", "check_unique_columns"]
