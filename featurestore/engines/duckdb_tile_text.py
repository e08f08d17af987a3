"""The stored text of materialize's tile rows, written by DuckDB (``featurestore.engines.duckdb_partials``).

A tile row is stored as the compact JSON text of :meth:`featurestore.kernel.partials.Layout.encode`
(``json``'s encoder, ``separators=(",", ":")``, ``ensure_ascii=False``). Decoding 40k tile rows of a hot
view into Python values only to encode them again costs more than the tiles query itself, so DuckDB
writes each row's text (:func:`row_text_sql`) and Python only splices in what SQL cannot write:

* exact float sums and sums of squares (:class:`~featurestore.kernel.exact.ExactSum`: integers beyond
  128 bits): SQL writes :data:`FLOAT_MARK` in their place, :func:`splice` the encoded sums;
* everything else is SQL text equal to the encoder's: counts and integer sums (``CAST(... AS VARCHAR)``),
  doubles (``CAST(double AS VARCHAR)`` is Python's ``repr`` for every finite double, checked on random
  bits in ``tests/test_materialize_text.py``; NaN and infinities mapped to ``NaN``/``Infinity``), a zero
  min/max's sign from the first zero added, strings and distinct sets through ``to_json`` (equal to the
  encoder's but for the hex case of ``\\u00XX`` escapes: such text is not used), booleans, orders.

A row SQL cannot write exactly comes with NULL text and is decoded into Python values as before
(:func:`featurestore.engines.duckdb_partials.decode_rows`): an integer sum of squares near 128 bits, a
string or order holding a ``\\u00XX`` escape, float distinct sets, JSON in an order or a value
compared by first/last/latest, and the rows that are merged further (the base row, the top tiles of
views with an unbounded window). Nothing here holds meaning: the slots and their empty forms are the
Layout's; the tests compare every stored byte with the per-entity build.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from featurestore import dtypes as t
from featurestore.kernel.exact import ExactSum
from featurestore.kernel.partials import Layout

FLOAT_MARK = "\x01"  # stands for an exact float sum (never in encoded text: the encoder escapes it)
_EMPTY_SUM = '["0",0]'  # ExactSum().encode()
_H62 = "CAST('4611686018427387904' AS HUGEINT)"  # 2**62
_H92 = "CAST('4951760157141521099596496896' AS HUGEINT)"  # 2**92
_H124 = "CAST('21267647932558653966460912964485513216' AS HUGEINT)"  # 2**124
_H64 = "CAST('18446744073709551616' AS HUGEINT)"  # 2**64
_H33 = "CAST(8589934592 AS HUGEINT)"  # 2**33
_TEXT_TYPES = (t.STRING, t.INT32, t.INT64, t.BOOL, t.TIMESTAMP, t.FLOAT32, t.FLOAT64)
FLOAT_TYPES = (t.FLOAT32, t.FLOAT64)


def float_text(x: str) -> str:
    """The encoder's text of a non-null double ``x``."""
    return (f"CASE WHEN isnan({x}) THEN 'NaN' WHEN {x} = 'inf'::DOUBLE THEN 'Infinity' "
            f"WHEN {x} = '-inf'::DOUBLE THEN '-Infinity' ELSE CAST({x} AS VARCHAR) END")


def _json_safe(text: str) -> str:
    """``text`` (``to_json`` output) unless it holds an escape DuckDB writes otherwise (then NULL)."""
    return f"CASE WHEN contains({text}, '\\u00') THEN NULL ELSE {text} END"


def value_text(x: str, dtype: str, safe: bool = True) -> Optional[str]:
    """The encoder's text of input value ``x`` of ``dtype`` ('null' for NULL; NULL: not writable); None
    when no value of the type is written by SQL. ``safe=False``: a string with a ``\\u00XX`` escape is
    ``to_json``'s text (the same value, other text) instead of NULL."""
    if dtype in FLOAT_TYPES:
        body = float_text(x)
    elif dtype in (t.INT32, t.INT64, t.TIMESTAMP):  # timestamps are epoch microseconds here
        body = f"CAST({x} AS VARCHAR)"
    elif dtype == t.BOOL:
        body = f"CASE WHEN {x} THEN 'true' ELSE 'false' END"
    elif dtype == t.STRING:
        body = _json_safe(f"to_json({x})") if safe else f"to_json({x})"
    else:
        return None
    return f"CASE WHEN {x} IS NULL THEN 'null' ELSE {body} END"


def order_text_sql(ts: str, order: Sequence[tuple]) -> str:
    """An event's order as the encoder writes it (``[ts,[v],[],...]``; ``order``: ``(column SQL, dtype)`` of
    :func:`featurestore.stores.online_format.order_columns`): what tile rows hold for first / last / latest,
    in the encoder's text, but for strings holding a ``\\u00XX`` escape."""
    parts = [f"CAST({ts} AS VARCHAR)"]
    for c, d in order:
        x = f"epoch_us({c})" if d == t.TIMESTAMP else (f"CAST({c} AS DOUBLE)" if d == t.FLOAT32 else c)
        body = value_text(x, d, safe=False)
        parts.append(f"CASE WHEN {c} IS NULL THEN '[]' ELSE '[' || "
                     + (f"to_json({x})" if body is None else body) + " || ']' END")
    return "'[' || " + " || ',' || ".join(parts) + " || ']'"


def order_plain(dtypes: Sequence[str]) -> bool:
    """Whether :func:`order_text_sql` of order columns of ``dtypes`` is the encoder's text."""
    return all(value_text("x", d) is not None for d in dtypes)


def row_text_sql(layout: Layout, order_text: bool, order_plain: bool, merged_level: Optional[int],
                 text_cols: frozenset) -> str:
    """The text of each row of :func:`duckdb_partials.tiles_sql`'s result (its column names), NULL for
    the rows Python decodes (see the module docstring). ``order_plain``: the order text holds no value
    without an encoder's text (JSON; see :func:`order_plain`): it is then the encoder's text (:func:`order_text_sql`, or materialize's
    ``_pick_order_sql`` for the picked events)."""
    types = [d for _, d in layout.inputs]
    parts: List[str] = []
    never = "NULL"
    for i, (kind, col) in enumerate(layout.slots):
        fl = col in layout.float_cols
        empty = "'0'"
        if kind in ("*", "n"):
            full = f"CAST(s{i} AS VARCHAR)"
        elif kind in ("s", "q") and fl:
            full, empty = f"'{FLOAT_MARK}'", f"'{_EMPTY_SUM}'"
        elif kind == "s":
            full = f"coalesce(CAST(s{i} AS VARCHAR), '0')"
        elif kind == "q":  # ExactSum(h * 2**64 + k * 2**33 + l, 0): within 127 bits, else Python
            h, k, lo = (f"CAST({n}{i} AS HUGEINT)" for n in "hkl")  # (the result holds them as text)
            m = f"({h} * {_H64} + {k} * {_H33} + {lo})"
            full = (f"CASE WHEN h{i} IS NULL THEN '{_EMPTY_SUM}' WHEN {h} < {_H62} AND {k} < {_H92} AND {lo} < {_H124} "
                    f"THEN '[\"' || lower(hex({m})) || '\",0]' END")
            empty = f"'{_EMPTY_SUM}'"
        elif kind in ("<", ">"):
            empty = "'null'"
            if fl:
                zero = f"CASE WHEN coalesce(z{i} % 2, 0) = 1 THEN '-0.0' ELSE '0.0' END"
                full = f"CASE WHEN s{i} IS NULL THEN 'null' WHEN s{i} = 0 THEN {zero} ELSE {float_text(f's{i}')} END"
            else:
                full = value_text(f"s{i}", types[col]) or never
        elif kind == "d":
            empty = "'[]'"
            full = _json_safe(f"s{i}") if col in text_cols and not fl else never
        elif kind in ("f", "l", "L"):
            empty = "'null'"
            if order_text and not order_plain:
                full = never
            else:
                order = _json_safe(f"o{i}") if order_text else f"'[' || CAST(o{i} AS VARCHAR) || ']'"
                cols = layout.latest_cols if kind == "L" else [col]
                values = [value_text(f"w{i}_{c}" if c in layout.float_cols else f"v{i}_{c}", types[c]) for c in cols]
                if any(v is None for v in values):
                    full = never
                else:
                    value = values[0] if kind != "L" else "'[' || " + " || ',' || ".join(values) + " || ']'"
                    full = f"CASE WHEN o{i} IS NULL THEN 'null' ELSE '[' || {order} || ',' || {value} || ']' END"
        else:  # pragma: no cover
            raise ValueError(kind)
        lvl = layout.levels[i]
        parts.append(f"CASE WHEN __fs_l <= {lvl} THEN {full} ELSE {empty} END")
    merged = "" if merged_level is None else f" AND __fs_l <> {int(merged_level)}"
    return f"CASE WHEN __fs_l >= 0{merged} THEN '[' || " + " || ',' || ".join(parts) + f" || ']' END"


def sum_text(x: ExactSum) -> str:
    """The encoder's text of ``x.encode()``."""
    e = x.encode()
    if len(e) == 2:
        return '["%s",%d]' % (e[0], e[1])
    return '["%s",%d,%d,%d,%d]' % tuple(e)


def float_slots(layout: Layout, level: int) -> List[int]:
    """The exact float sum slots a row of ``level`` holds (in slot order: the order of its marks)."""
    return [i for i in layout.kept(level) if layout.slots[i][0] in ("s", "q") and layout.slots[i][1] in layout.float_cols]


def splice(text: str, sums: Sequence[str]) -> Optional[str]:
    """``text`` with its :data:`FLOAT_MARK` s replaced by ``sums`` in order (None if they do not match)."""
    if not sums:
        return text if FLOAT_MARK not in text else None
    parts = text.split(FLOAT_MARK)
    if len(parts) != len(sums) + 1:  # pragma: no cover (a mark is never in encoded text)
        return None
    out = [parts[0]]
    for s, p in zip(sums, parts[1:]):
        out += [s, p]
    return "".join(out)


__all__ = ["FLOAT_MARK", "float_slots", "float_text", "order_plain", "order_text_sql", "row_text_sql", "splice", "sum_text", "value_text"]
