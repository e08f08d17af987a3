"""Render a :class:`CompiledView` as DuckDB SQL: the backfill query (the point-in-time query is in
:mod:`featurestore.engines.duckdb_pit`).

Times inside queries are epoch milliseconds (BIGINT): exact, cheap to compare, and the unit of
SPEC §2. Every window bound comes from :func:`featurestore.semantics.window_predicate_sql`.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Sequence

from featurestore import dtypes
from featurestore.compiler.ir import CompiledView
from featurestore.semantics import (column_reason_sql, null_key_reason_sql, row_reason_sql, time_read_reason_sql,
                                   time_supported_sql, time_value_checked_sql, time_value_supported_sql)

SQL_TYPES = dtypes.DUCKDB_TYPES
TS_MS = "__ts_ms"  # event time, epoch ms
REQ_ROW, REQ_Q = "__row", "__q_ms"


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


NOW_MS = "getvariable('featurestore_now_ms')"  # the job's wall clock (epoch ms), set by duckdb_engine
REASON, ROW, KIND, RAW = "__reason", "__row", "__kind", "__raw_"
EVENT, DEAD_LETTER, NULL_KEY = 0, 1, 2  # __kind of a routed backfill row


def nan_as_null_sql(value: str, col: str) -> str:
    """``value`` (SQL), or NULL where the float ``col`` is NaN: float NaN is null at ingestion (JSON cannot
    carry NaN, so both jobs agree on null). The test reads ``[col][1]``, not ``col``: DuckDB folds
    ``isnan(col)`` (and ``col <> col``) to false from a Parquet column's min/max statistics, which writers
    (pyarrow, DuckDB) compute without the NaNs, so a NaN in a batch file would stay a value."""
    return f"CASE WHEN isnan([{col}][1]) THEN NULL ELSE {value} END"


def _typed(name: str, dtype: str, src: str = "src.") -> str:
    """A declared column cast to its type: NULL when the value does not convert (the row is then a dead
    letter); float NaN is null at ingestion (:func:`nan_as_null_sql`)."""
    col = src + q(name)
    cast = f"TRY_CAST({col} AS {SQL_TYPES[dtype]})"
    if dtype in (dtypes.FLOAT32, dtypes.FLOAT64):
        return nan_as_null_sql(cast, f"TRY_CAST({col} AS DOUBLE)")
    return cast


def checked_sql(source_columns, ts_column: str, relation: str, max_future_ms: Optional[int],
                types: Optional[Dict[str, str]] = None) -> str:
    """One row per source row of ``relation`` (a ``duckdb_batch.batch_relation``): each declared column
    cast to its type, the event time as TIMESTAMPTZ floored to the millisecond, ``__ts_ms``, ``__reason``
    (why the row is a dead letter, :func:`featurestore.semantics.row_reason_sql`; NULL for an event) and
    each column as read (``__raw_<name>``: the dead-letter table shows the row as read). ``types``: the
    relation's DuckDB column types when known; a column already of its declared type needs no cast and
    cannot fail one."""
    from featurestore.engines.duckdb_batch import TS_MS, TS_UNREADABLE

    cols, checks = [], []
    for name, dtype in source_columns:
        if name == ts_column:
            cols.append(f"CASE WHEN {time_supported_sql('src.' + TS_MS)} THEN CAST(epoch_ms(src.{TS_MS}) AS TIMESTAMPTZ) "
                        f"END AS {q(name)}")
            continue
        if dtype == dtypes.JSON:  # a nested column as its JSON text, a text column as it is (valid JSON only)
            col = f"src.{q(name)}"
            cols.append(f"CASE WHEN typeof({col}) = 'VARCHAR' THEN CAST({col} AS VARCHAR) "
                        f"ELSE CAST(to_json({col}) AS VARCHAR) END AS {q(name)}")
            checks.append((name, dtype, f"({col} IS NOT NULL AND typeof({col}) = 'VARCHAR' "
                                        f"AND NOT coalesce(json_valid(CAST({col} AS VARCHAR)), false))"))
            continue
        if dtype == dtypes.TIMESTAMP:  # years 1 to 9999 (semantics.time_value_supported), whatever the file holds
            typed = f"TRY_CAST(src.{q(name)} AS TIMESTAMPTZ)"
            cols.append(f"{typed} AS {q(name)}")
            checks.append((name, dtype, f"(src.{q(name)} IS NOT NULL AND NOT "
                                        f"{time_value_supported_sql(f'epoch_us({typed})')})"))
            continue
        if types is not None and _DESCRIBED.get(types.get(name, ""), types.get(name)) == SQL_TYPES[dtype]:
            col = f"src.{q(name)}"
            typed = nan_as_null_sql(col, col) if dtype in (dtypes.FLOAT32, dtypes.FLOAT64) else col
            cols.append(f"{typed} AS {q(name)}")
            continue
        cols.append(f"{_typed(name, dtype)} AS {q(name)}")
        if dtype != dtypes.STRING:
            checks.append((name, dtype, f"(src.{q(name)} IS NOT NULL AND TRY_CAST(src.{q(name)} AS {SQL_TYPES[dtype]}) IS NULL)"))
    reason = row_reason_sql(
        ts_column, time_read_reason=time_read_reason_sql(ts_column, f"src.{q(ts_column)} IS NULL", f"src.{TS_UNREADABLE}"),
        ts_ms_sql=f"src.{TS_MS}", now_ms_sql=NOW_MS, max_future_ms=max_future_ms, column_reason=column_reason_sql(checks))
    raw = ", ".join(f"src.{q(n)} AS {q(RAW + n)}" for n, _ in source_columns)
    return (f"SELECT {', '.join(cols)},\n  src.{TS_MS} AS {TS_MS},\n  {reason} AS {REASON},\n  {raw}\n"
            f"FROM {relation} AS src")


_DESCRIBED = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}  # DESCRIBE's spelling -> ours


def _row_json(source_columns) -> str:
    """The source row as read (the ``__raw_`` columns of :func:`checked_sql`), JSON text."""
    return "to_json(struct_pack(" + ", ".join(f"{q(n)} := {q(RAW + n)}" for n, _ in source_columns) + "))"


def _range(start_ms: Optional[int], end_ms: Optional[int]) -> List[str]:
    from featurestore.engines.duckdb_batch import TS_MS

    out = []
    if start_ms is not None:
        out.append(f"{TS_MS} >= {int(start_ms)}")
    if end_ms is not None:
        out.append(f"{TS_MS} < {int(end_ms)}")
    return out


def _key_sql(cv: CompiledView, key: str) -> str:
    """A join key over source columns: the column, or the projection that makes it (a Feast field_mapping'd or
    entityless key, docs/coming-from-feast.md)."""
    expr = next((e for n, e, _ in cv.projections if n == key), None)
    return q(key) if expr is None else f"({expr})"


def _stored_columns(cv: CompiledView) -> List[str]:
    cols = [q(n) for n, _ in cv.source_columns]
    return cols + [f"{input_sql(e, t)} AS {q(n)}" for n, e, t in cv.projections]


def input_sql(expr: str, dtype: str) -> str:
    """A user's expression (projection, feature input) as its declared type; a timestamp outside years 1 to
    9999 fails the query on that event (:func:`~featurestore.semantics.time_value_checked_sql`)."""
    if dtype == dtypes.TIMESTAMP:
        return time_value_checked_sql(expr)
    return f"CAST(({expr}) AS {SQL_TYPES[dtype]})"


def events_sql(cv: CompiledView, checked: str, start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> str:
    """Stored events of the view from ``checked`` (a :func:`checked_sql` relation), optionally for
    ``start_ms <= ts < end_ms``: rows without a dead-letter reason and with every join key, that pass
    the filter (source columns only), plus the projections (source columns only)."""
    where = [f"{REASON} IS NULL", *(f"{_key_sql(cv, k)} IS NOT NULL" for k in cv.join_keys), *_range(start_ms, end_ms)]
    if cv.filter:
        where.append(f"({cv.filter}) IS TRUE")
    return f"SELECT {', '.join(_stored_columns(cv))}\nFROM ({checked}) AS checked\nWHERE {' AND '.join(where)}"


def backfill_sql(cv: CompiledView, checked: str, key_group_views: Sequence[str], start_ms: Optional[int] = None,
                 end_ms: Optional[int] = None, carry: Sequence[str] = ()) -> str:
    """What a backfill of the view reads in one pass, routed by ``__kind``: its stored events for the range
    (``EVENT``), the source's dead letters (``DEAD_LETTER``: every row with a reason whose event time is in
    the range or could not be read), its events without a join key (``NULL_KEY``, reason
    ``null join key <key> (views ...)`` naming ``key_group_views``, the views sharing its join keys) and its
    events of the range its filter, a projection or a feature input fails on (``VIEW_FAILED``, reason
    :class:`FailureReasons`' of the first failing part, as the streaming job words it).

    Each part that can fail runs under ``try`` where the view evaluates it (the filter on the events, the rest
    on the events it would store; a join key made by a projection on every event, before the filter; a volatile
    call once per row before it, :func:`_hoisted`), so a failure is that event's dead letter, never the backfill's:
    run the query with :data:`NO_CSE` (DuckDB's common-subexpression pass would lift a shared term out of ``try``).
    ``carry``: further columns of ``checked`` each output row keeps (a pushed row's index)."""
    from featurestore.engines.duckdb_batch import TS_MS
    from featurestore.engines.flink.exprs import feature_part, filter_part, projection_part

    in_range = " AND ".join(_range(start_ms, end_ms)) or "TRUE"
    null_key_reason = null_key_reason_sql(cv.join_keys, key_group_views, lambda k: _key_sql(cv, k))
    labels = FailureReasons(cv)
    failures = []  # (flag column: true where the part failed, reason), in the order a failure names the first
    # a join key made by a projection that can fail (DuckDB only) is attempted on every event: where it fails the
    # event is a dead letter of the view (the first failure named), wherever the filter would put it
    keys = {k: _key_sql(cv, k) for k in cv.join_keys}
    key_tries = []
    for i, (name, expr, dtype) in enumerate(cv.projections):
        if name in keys and _can_fail(cv, expr, dtype, projection_part(name, expr), labels.safe):
            key_tries.append((f"{_TRIED}k{i}", expr, dtype, projection_part(name, expr)))
            keys[name] = f"{_TRIED}k{i}.v"
    key_null = " OR ".join(f"{sql} IS NULL" for sql in keys.values())
    if key_tries:
        hoists = [h for h in (_hoisted(e, col, f"{REASON} IS NULL")[0] for col, e, _, _ in key_tries) if h]
        if hoists:
            checked = f"SELECT *, {', '.join(hoists)} FROM ({checked})"
        checked = "SELECT *, " + ", ".join(
            f"CASE WHEN {REASON} IS NULL THEN {_attempt(_hoisted(e, col, '')[1], dt, labels.checks.get(part, ()))} "
            f"END AS {col}" for col, e, dt, part in key_tries) + f" FROM ({checked})"
        key_failed = " OR ".join(f"({REASON} IS NULL AND {_attempt_failed(col, dt, labels.checks.get(part, ()))})"
                                 for col, _, dt, part in key_tries)
        checked = f"SELECT *, {key_failed} AS {_KEY_FAILED} FROM ({checked})"
        failures.extend((f"{_KEY_FAILED}{col}", labels[part]) for col, _, _, part in key_tries)
        kind = (f"CASE WHEN {REASON} IS NOT NULL THEN {DEAD_LETTER} WHEN {_KEY_FAILED} THEN {EVENT} "
                f"WHEN {key_null} THEN {NULL_KEY} ELSE {EVENT} END")
    else:
        kind = f"CASE WHEN {REASON} IS NOT NULL THEN {DEAD_LETTER} WHEN {key_null} THEN {NULL_KEY} ELSE {EVENT} END"
    # The kind is computed once and the range and filter are one CASE on it, not an OR: DuckDB then evaluates the
    # reason once per row (an OR over it cost twice the events query here).
    rows = f"SELECT *, {kind} AS {KIND} FROM ({checked})"
    if key_tries:  # one flag per key, as the failures name them
        rows = "SELECT *, " + ", ".join(
            f"{KIND} = {EVENT} AND {_attempt_failed(col, dt, labels.checks.get(part, ()))} AS {_KEY_FAILED}{col}"
            for col, _, dt, part in key_tries) + f" FROM ({rows})"
    is_event = f"{KIND} = {EVENT}" + (f" AND NOT {_KEY_FAILED}" if key_tries else "")
    if cv.filter and _can_fail(cv, cv.filter, dtypes.BOOL, filter_part(cv), labels.safe):
        checks = labels.checks.get(filter_part(cv), ())
        hoist, text = _hoisted(f"({cv.filter})", _FILTER, is_event)
        if hoist:
            rows = f"SELECT *, {hoist} FROM ({rows})"
        rows = (f"SELECT *, CASE WHEN {is_event} THEN {_attempt(text, None, checks)} END AS {_FILTER}\n"
                f"FROM ({rows})\nWHERE CASE {KIND} WHEN {DEAD_LETTER} THEN ({TS_MS} IS NULL OR {in_range}) "
                f"ELSE {in_range} END")
        failed = _attempt_failed(_FILTER, None, checks)
        rows = (f"SELECT *, {is_event} AND {_FILTER}.v IS TRUE AS {_STORED}, {is_event} AND ({failed}) "
                f"AS {_FAILED}f FROM ({rows})\nWHERE {KIND} <> {EVENT} OR {failed} OR {_FILTER}.v IS TRUE")
        failures.append((f"{_FAILED}f", labels[filter_part(cv)]))
    else:  # the events the filter drops are gone here: every event left is stored
        flt = f"({cv.filter}) IS TRUE" if cv.filter else "TRUE"
        if key_tries and cv.filter:
            flt = f"({_KEY_FAILED} OR {flt})"
        rows = (f"SELECT *, {is_event} AS {_STORED} FROM ({rows})\nWHERE CASE {KIND} WHEN {DEAD_LETTER} THEN "
                f"({TS_MS} IS NULL OR {in_range}) WHEN {NULL_KEY} THEN {in_range}\n  ELSE {in_range} AND {flt} END")
    # the projections (on the events the view would store), then the feature inputs over them
    tried, named = [], []
    for i, (name, expr, dtype) in enumerate(cv.projections):
        if _can_fail(cv, expr, dtype, projection_part(name, expr), labels.safe):
            tried.append((f"{_TRIED}p{i}", expr, dtype, projection_part(name, expr)))
            named.append(f"{_TRIED}p{i}.v AS {q(name)}")
        else:
            named.append(f"{input_sql(expr, dtype)} AS {q(name)}")
    rows = _with_attempts(rows, tried, failures, labels)
    if named:
        rows = f"SELECT *, {', '.join(named)} FROM ({rows})"
    tried = [(f"{_TRIED}i{j}", e, dt, feature_part(cv, e)) for j, (e, dt) in enumerate(computed_inputs(cv))
             if _can_fail(cv, e, dt, feature_part(cv, e), labels.safe)]
    rows = _with_attempts(rows, tried, failures, labels)
    failed_reason = "CASE " + " ".join(f"WHEN {flag} THEN {literal(why)}" for flag, why in failures) + " END" \
        if failures else "CAST(NULL AS VARCHAR)"
    rows = f"SELECT *, {failed_reason} AS {_FAILED} FROM ({rows})"
    cols = [q(n) for n, _ in cv.source_columns] + [q(n) for n, _, _ in cv.projections] + [
        f"CASE WHEN {_FAILED} IS NOT NULL THEN {VIEW_FAILED} ELSE {KIND} END AS {KIND}",
        f"CASE {KIND} WHEN {DEAD_LETTER} THEN {REASON} WHEN {NULL_KEY} THEN {null_key_reason} ELSE {_FAILED} END "
        f"AS {REASON}",
        f"CASE WHEN {KIND} <> {EVENT} OR {_FAILED} IS NOT NULL THEN {_row_json(cv.source_columns)} END AS {ROW}",
        TS_MS,
    ] + [q(c) for c in carry]
    return f"SELECT {', '.join(cols)}\nFROM ({rows}) AS routed"


def view_events_sql(cv: CompiledView, checked: str) -> str:
    """The events the view stores from ``checked`` (a :func:`checked_sql` relation) by the backfill's rule
    (:func:`backfill_sql`'s ``EVENT`` rows: an event its filter, a projection or a feature input fails on is left
    out, as a dead letter of the view, :func:`view_failures_sql`), its stored columns. Run it with :data:`NO_CSE`
    (``duckdb_engine.without_optimizer``): with DuckDB's common-subexpression pass a query may fail instead."""
    cols = [q(n) for n, _ in cv.source_columns] + [q(n) for n, _, _ in cv.projections]
    return f"SELECT {', '.join(cols)} FROM ({backfill_sql(cv, checked, [cv.name])}) WHERE {KIND} = {EVENT}"


def view_failures_sql(cv: CompiledView, checked: str, carry: Sequence[str] = ()) -> str:
    """``reason``, ``row`` (JSON text of the source row), ``__ts_ms`` and the ``carry`` columns of ``checked`` (a
    pushed row's index) of every event of ``checked`` the view's filter, a projection or a feature input fails on
    (:func:`backfill_sql`'s ``VIEW_FAILED`` rows)."""
    from featurestore.engines.duckdb_batch import TS_MS

    kept = "".join(f", {q(c)}" for c in carry)
    return (f"SELECT {REASON} AS reason, {ROW} AS row, {TS_MS}{kept} FROM "
            f"({backfill_sql(cv, checked, [cv.name], carry=carry)}) WHERE {KIND} = {VIEW_FAILED}")


def stored_failure_sql(cv: CompiledView, relation: str) -> str:
    """The first stored event of ``relation`` (a view table) a computed feature input fails on: its reason (as a
    backfill words it), row (JSON text) and ``__ts_ms``; no row when none fails."""
    from featurestore.engines.duckdb_batch import TS_MS
    from featurestore.engines.flink.exprs import feature_part

    labels = FailureReasons(cv)
    row = "to_json(struct_pack(" + ", ".join(f"{q(n)} := {q(n)}" for n, _ in cv.source_columns) + "))"
    parts = [f"SELECT {literal(labels[feature_part(cv, e)])} AS reason, {row} AS row, epoch_ms({q(cv.ts_column)}) "
             f"AS {TS_MS} FROM {relation} WHERE {_attempt(e, dt)} IS NULL"
             for e, dt in computed_inputs(cv) if not _VOLATILE.search(e)]  # (try refuses a volatile call)
    return " UNION ALL ".join(f"({p} LIMIT 1)" for p in parts) + " LIMIT 1" if parts else \
        f"SELECT NULL AS reason, NULL AS row, NULL AS {TS_MS} WHERE FALSE"


_VOLATILE = re.compile(r"\b(random|uuid|gen_random_uuid|setseed|nextval|currval)\s*\(", re.IGNORECASE)
_KEY_FAILED = "__key_failed"


def _hoisted(expr: str, col: str, where: str) -> tuple:
    """(SQL of each volatile function call in ``expr`` (``random()`` ...) as a column ``<col>_vN``, evaluated once
    per row where ``where`` holds, or ""; ``expr`` reading those columns instead): DuckDB refuses ``try`` around
    a volatile call, so the call runs in the SELECT before and the rest of the part under ``try``."""
    if not _VOLATILE.search(expr):
        return "", expr
    import sqlglot
    from sqlglot import exp

    calls = []

    def swap(node):
        if isinstance(node, exp.Func) and _VOLATILE.match(node.sql(dialect="duckdb")):
            calls.append(node.sql(dialect="duckdb"))
            return exp.column(f"{col}_v{len(calls) - 1}", quoted=True)
        return node

    text = sqlglot.parse_one(expr, read="duckdb").transform(swap).sql(dialect="duckdb")
    guard = (lambda call: f"CASE WHEN {where} THEN {call} END") if where else (lambda call: call)
    return ", ".join(f"{guard(c)} AS {q(f'{col}_v{i}')}" for i, c in enumerate(calls)), text


VIEW_FAILED = 3  # __kind of an event of the range the view's filter, a projection or a feature input fails on
NO_CSE = "common_subexpressions"  # the optimizer a backfill query runs without (disabled_optimizers)
_FILTER, _STORED, _FAILED, _TRIED = "__filter", "__stored", "__failed", "__tried_"


def _can_fail(cv: CompiledView, expr: str, dtype: str, part: str, safe: Sequence[str]) -> bool:
    """Whether to evaluate ``expr`` (the view's ``part``) as ``dtype`` under ``try``, as DuckDB's evaluation of it
    can fail: anything but a part the streaming compiler found none in (``safe``; tests/test_stream_exprs.py checks
    its rules against DuckDB) or a source column of that type. A volatile call in it (``random()``, which ``try``
    refuses) is evaluated once per row before the ``try`` (:func:`_hoisted`)."""
    if part in safe:
        return False
    name = expr.strip()
    name = name[1:-1].replace('""', '"') if len(name) > 1 and name[0] == name[-1] == '"' else name
    return dict((n.lower(), d) for n, d in cv.source_columns).get(name.lower()) != dtype


def _attempt(expr: str, dtype: Optional[str], checks: Sequence[str] = ()) -> str:
    """``expr`` (as ``dtype`` when given) evaluated under ``try``: a struct whose ``v`` is the value, NULL where
    DuckDB's evaluation fails (a timestamp outside years 1 to 9999 is checked by :func:`_attempt_failed`), and
    with ``checks`` (the part's :attr:`FailureReasons.checks`) ``m``: whether one holds, under the same ``try``
    (a check reads the part's own terms, which may fail on the row)."""
    if dtype == dtypes.TIMESTAMP:
        value = f"CAST(({expr}) AS TIMESTAMPTZ)"
    else:
        value = expr if dtype is None else f"CAST(({expr}) AS {SQL_TYPES[dtype]})"
    flagged = f", m := ({' OR '.join(checks)}) IS TRUE" if checks else ""
    return f"try(struct_pack(v := {value}{flagged}))"


def _attempt_failed(col: str, dtype: Optional[str], checks: Sequence[str] = ()) -> str:
    """True where the part attempted in ``col`` (:func:`_attempt`) failed or one of its ``checks`` holds."""
    failed = f"{col} IS NULL" + (f" OR {col}.m" if checks else "")
    if dtype == dtypes.TIMESTAMP:  # as input_sql's time_value_checked_sql fails
        return f"({failed} OR ({col}.v IS NOT NULL AND NOT {time_value_supported_sql(f'epoch_us({col}.v)')}))"
    return f"({failed})"


def _with_attempts(rows: str, tried: Sequence[tuple], failures: list, labels: "FailureReasons") -> str:
    """``rows`` plus each (column, expr, dtype, part) of ``tried`` attempted on the events the view would store,
    and a flag per part where it failed (appended to ``failures`` with its reason in ``labels``)."""
    if not tried:
        return rows
    hoists = [h for h in (_hoisted(e, col, _STORED)[0] for col, e, _, _ in tried) if h]
    if hoists:
        rows = f"SELECT *, {', '.join(hoists)} FROM ({rows})"
    rows = "SELECT *, " + ", ".join(
        f"CASE WHEN {_STORED} THEN {_attempt(_hoisted(e, col, '')[1], dt, labels.checks.get(part, ()))} END AS {col}"
        for col, e, dt, part in tried) + f" FROM ({rows})"
    flags = []
    for col, e, dt, part in tried:
        flags.append(f"{_STORED} AND {_attempt_failed(col, dt, labels.checks.get(part, ()))} AS {_FAILED}{col}")
        failures.append((f"{_FAILED}{col}", labels[part]))
    return f"SELECT *, {', '.join(flags)} FROM ({rows})"


def computed_inputs(cv: CompiledView) -> List[tuple]:
    """The feature inputs of ``cv`` (``online.input_columns``) that compute something: not a stored column
    itself (a column was checked when it was read or projected)."""
    from featurestore.online import input_columns

    stored = {n.lower() for n, _ in cv.source_columns} | {n.lower() for n, _, _ in cv.projections}
    return [(e, dt) for e, dt in input_columns(cv) if e.strip().strip('"').lower() not in stored]


class FailureReasons(dict):
    """Part (``exprs.filter_part`` ...) -> the reason of an event it fails on (``exprs.view_failure_reason``), as
    the streaming job words it (``exprs.failure_labels``), ``exprs.EVALUATION_FAILS`` for a part the streaming
    compiler has no failure of; ``safe``: the parts it compiled with none (DuckDB's evaluation cannot fail);
    ``checks``: part -> DuckDB SQL true where the Flink jobs flag a value DuckDB computes wrongly (``misread``)."""

    def __init__(self, cv: CompiledView):
        from featurestore.engines.flink import exprs

        try:
            labels, self.safe, self.checks = exprs.failure_labels(cv)
        except Exception:  # a view the streaming compiler cannot read: every part may fail
            labels, self.safe, self.checks = {}, (), {}
        self.view = cv.name
        super().__init__({part: exprs.view_failure_reason(cv.name, label) for part, label in labels.items()})

    def __missing__(self, part: str) -> str:
        from featurestore.engines.flink import exprs

        return exprs.view_failure_reason(self.view, exprs.failure_label(part, ()))


def ties_sql(cv: CompiledView, routed: str) -> str:
    """Whether two stored events of ``routed`` (a :func:`backfill_sql`) share (join keys, ms time): one row, one
    boolean."""
    keys = ", ".join(q(k) for k in cv.join_keys)
    return (f"SELECT count(*) > 0 FROM (SELECT 1 FROM ({routed}) WHERE {KIND} = {EVENT} "
            f"GROUP BY {keys}, {q(cv.ts_column)} HAVING count(*) > 1 LIMIT 1)")


def keys_eq(cv: CompiledView, left: str, right: str) -> str:
    """``left.k = right.k`` for every join key of ``cv``."""
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in cv.join_keys)


def requests_sql(cv: CompiledView, requests: str) -> str:
    """The request rows of a point-in-time join (``__row``, ``__q_ms``, the join keys cast to their type)."""
    keys = ", ".join(f"CAST({q(k)} AS {SQL_TYPES[t]}) AS {q(k)}" for k, t in cv.key_types.items())
    return f"SELECT {REQ_ROW}, {REQ_Q}, {keys} FROM {requests}"


def columns_list(names: Iterable[str]) -> str:
    return ", ".join(q(n) for n in names)


__all__: Sequence[str] = ("checked_sql", "events_sql", "view_events_sql", "view_failures_sql", "backfill_sql", "ties_sql", "keys_eq", "requests_sql", "SQL_TYPES",
                          "q", "literal")
