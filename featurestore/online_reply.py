"""Decoding of the online store's replies: what the read script returns for one entity (SPEC §3.2) as
an :class:`EntityReply` of decoded partial rows (prefix, tiles) and raw events (as columns, parsed once
per view), plus the JSON parsing of stored values (:func:`loads`, :func:`loads_exact`) that every reader
of the online store shares. The computation from a decoded reply is :mod:`featurestore.online`'s."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import orjson

from featurestore.kernel.columnar import RawBatch, RawEvents
from featurestore.kernel.partials import Layout
from featurestore.stores import online_format as ofmt

if TYPE_CHECKING:
    from featurestore.online import ReadPlan


@dataclass(slots=True)
class EntityReply:
    """What the store returned for one entity (see :mod:`featurestore.stores.online_redis`), decoded."""

    meta: dict  # fp, horizon ("h"), ...
    dense: bool
    prefix: Optional[Tuple[int, list]]  # (boundary ms, decoded row) of the latest prefix <= cut
    prefix_tile: Optional[list]  # decoded top tile at the prefix boundary (when it is before the cut)
    tiles: Dict[str, list]  # tile id -> decoded row (dense: the stored tiles of the plan)
    events: List[Tuple[list, list]]  # (order, inputs) of every raw event read
    plan: Optional[ReadPlan] = None  # dense: what was read
    tile_events: Dict[str, List[Tuple[list, list]]] = field(default_factory=dict)  # tiles not stored: their events
    range_events: List[List[Tuple[list, list]]] = field(default_factory=list)  # dense: per plan range
    prefix_events: Optional[List[Tuple[list, list]]] = None  # the top tile at the prefix, when not stored
    before: Optional[bool] = None  # sparse, read by range: whether some event before ``q`` exists (None: see events)
    raw: Optional[RawEvents] = None  # sparse, from the store: its events as columns (``events`` is then empty)
    # dense, from the store: its unstored tiles' and raw ranges' events as columns (:func:`dense_fragments`);
    # ``tile_events`` / ``range_events`` then hold only the pieces of an unbounded window
    fragments: Optional[Tuple[Dict[str, RawEvents], List[RawEvents]]] = None


def dense_fragments(raw_replies: Sequence[list], plan: ReadPlan, members: ofmt.Members
                    ) -> List[Tuple[Dict[str, RawEvents], List[RawEvents]]]:
    """The raw events of entities with tiles (split replies of one view: :func:`decode_reply`'s
    ``fragments``), parsed in one call: per entity, the events of each tile the hash does not hold (by
    tile id, those with events) and of each raw range of ``plan``, each a slice of one batch. The read
    script returns an entity's raw pieces merged, in time order (``online_read.READ_LUA``): a piece's
    events are those of its time span."""
    raws = raw_events_many([r[5] for r in raw_replies], members)
    times = raws[0].batch.times if raws else []
    unstored = [(name, tile_span(name)) for name in plan.tiles]
    out = []
    for r, ev in zip(raw_replies, raws):
        batch, s, t = ev.batch, ev.lo, ev.hi
        tmap = {}
        for (name, (lo, hi)), stored in zip(unstored, r[4]):
            if not stored and t > s:
                a = bisect_left(times, lo, s, t)
                b = bisect_right(times, hi, a, t)
                if b > a:
                    tmap[name] = RawEvents(batch=batch, lo=a, hi=b)
        rlist = []
        for lo, hi in plan.ranges:
            a = bisect_left(times, lo, s, t)
            rlist.append(RawEvents(batch=batch, lo=a, hi=bisect_right(times, hi, a, t)))
        out.append((tmap, rlist))
    return out


def tile_span(name: str) -> Tuple[int, int]:
    """The inclusive ms range of the events of tile ``name`` (``"<level>:<minute>"``)."""
    level, _, minute = name.partition(":")
    lo = int(minute) * 60_000
    return lo, lo + 60_000 * 2 ** int(level) - 1


def decode_reply(layout: Layout, raw_reply, plan: ReadPlan, slots: Optional[Sequence[int]] = None, *,
                 members: ofmt.Members, meta: Optional[dict] = None, raw: Optional[RawEvents] = None,
                 compared: Optional[bool] = None,
                 fragments: Optional[Tuple[Dict[str, RawEvents], List[RawEvents]]] = None) -> Optional[EntityReply]:
    """An :class:`EntityReply` from the read script's reply (None when the entity has no state); rows are
    decoded on ``slots`` only (default: all); ``members``: how the view stores raw events
    (``online_format.members``). ``meta`` (the parsed first part) and ``raw`` (an entity without tiles:
    its raw events, :func:`raw_events_many`), ``compared`` (:func:`compares_orders` of ``slots``) and
    ``fragments`` (an entity with tiles: its raw pieces, :func:`dense_fragments`) when the caller has them
    already."""
    if not raw_reply:
        return None
    if meta is None:
        meta = orjson.loads(raw_reply[0])
    dense = bool(raw_reply[1])
    decode = layout.decode

    width = len(layout.inputs)
    order_of = members.order_of
    if compared is None:
        compared = compares_orders(layout, slots)

    def pairs(arrs: list) -> List[Tuple[list, list]]:  # parsed members -> (order, inputs)
        if compared:
            return [(order_of(e), e[2:2 + width]) for e in arrs]
        return [([e[1]], e[2:2 + width]) for e in arrs]

    def events_of(blob: bytes) -> List[Tuple[list, list]]:  # members joined by newlines: one parse
        return pairs(loads(b"[" + blob.replace(b"\n", b",") + b"]")) if blob else []

    def events_in(f: RawEvents) -> List[Tuple[list, list]]:  # a slice of a parsed batch
        return pairs(f.batch.members[f.lo:f.hi])

    prefix = None
    if raw_reply[2]:
        boundary, prow = loads_exact(raw_reply[2])
        prefix = (boundary, decode(prow, slots))
    ptile, pevents = raw_reply[3], None
    if ptile and ptile[:1] == b"\n":  # a tile not stored: its raw events
        ptile, pevents = None, events_of(ptile[1:])
    elif ptile:
        ptile = decode(loads_exact(ptile), slots)
    else:
        ptile = None
    if not dense:
        before = bool(raw_reply[5]) if len(raw_reply) > 5 else None
        return EntityReply(meta, False, prefix, ptile, {}, [], None, {}, [], pevents, before,
                           raw if raw is not None else raw_events(raw_reply[4], members))
    tiles: Dict[str, list] = {}
    for name, raw in zip(plan.tiles, raw_reply[4]):
        if raw:
            tiles[name] = decode(loads_exact(raw), slots)
    if fragments is None:
        fragments = dense_fragments([raw_reply], plan, members)[0]
    # finite windows read ``fragments``: events are listed only for an unbounded window's pieces
    tile_ix, range_ix = plan.pieces.get(None, ((), ()))
    tmap, rlist = fragments
    tile_events = {plan.tiles[j]: events_in(tmap[plan.tiles[j]]) for j in tile_ix if plan.tiles[j] in tmap}
    range_events = [events_in(f) if j in range_ix else [] for j, f in enumerate(rlist)]
    # every event read (fragments of several windows may overlap: an event can be listed twice)
    events = [ev for evs in (pevents or (), *tile_events.values(), *range_events) for ev in evs]
    before = bool(raw_reply[6]) if len(raw_reply) > 6 else None
    return EntityReply(meta, True, prefix, ptile, tiles, events, plan, tile_events, range_events, pevents, before,
                       fragments=fragments)


def compares_orders(layout: Layout, slots: Optional[Sequence[int]]) -> bool:
    """Whether a read of ``slots`` (None: all) compares event orders (first/last/latest): an event's full
    order is built only then, else its time alone."""
    return ofmt.compares_orders(layout) and any(
        layout.slots[i][0] in ofmt.ORDER_KINDS for i in (range(len(layout.slots)) if slots is None else slots))


def raw_events(blob: bytes, members: ofmt.Members) -> RawEvents:
    """The raw events of a reply fragment (members joined by newlines, in time order) as columns; their
    orders are built from the parsed members on demand (few are ever compared)."""
    return raw_events_many([blob], members)[0]


def raw_events_many(blobs: Sequence[bytes], members: ofmt.Members) -> List[RawEvents]:
    """:func:`raw_events` of several reply fragments (a lookup's entities without tiles, of one view):
    one parse and one transposition for all of them, then a slice per entity (per-entity calls were most
    of the decoding of a many-entity lookup)."""
    full = [b for b in blobs if b]
    evs = loads(b"[" + b",".join(full).replace(b"\n", b",") + b"]") if full else []
    batch = RawBatch(list(map(itemgetter(1), evs)), members.columns(evs), evs, members.order_of)
    out, a = [], 0
    for blob in blobs:
        n = blob.count(b"\n") + 1 if blob else 0  # members are joined by newlines and never hold one
        b = a + n
        out.append(RawEvents(batch=batch, lo=a, hi=b))
        a = b
    if a != len(evs):  # pragma: no cover (a member with a raw newline: never written)
        raise ValueError("online store: a raw event member holds a newline")
    return out


def loads(raw):
    """Parse online-store JSON (``bytes`` or ``str``). orjson is several times faster; it refuses the
    NaN/Infinity tokens a feature expression can produce, and those values fall back to the standard parser
    (same values). orjson reads an integer beyond 64 bits as a float: raw events never hold one (their
    inputs are int64 at most), partial rows can: read those with :func:`loads_exact`."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG, _LONG_NEGATIVE = b"0" * 20, b"-" + b"0" * 19  # every int64 fits in 19 digits and a sign
_INT64_MIN_DIGITS = str(2**63).encode()


def may_hold_wide_integers(text: bytes) -> bool:
    """Whether JSON ``text`` may hold an integer orjson does not read exactly: orjson reads one beyond 64 bits
    (above 2**64 - 1, below -2**63) as a float, without raising. True where 20 digits follow each other, or a
    minus and 19 digits above 2**63 (every uint64 has fewer digits, every int64 fewer or those); digits in a
    string or a float's fraction only cost the slower parse."""
    digits = text.translate(_DIGITS)
    if _LONG in digits:
        return True
    at = digits.find(_LONG_NEGATIVE)
    while at >= 0:
        if text[at + 1:at + 20] > _INT64_MIN_DIGITS:  # 19 digits each: compared as text as by value
            return True
        at = digits.find(_LONG_NEGATIVE, at + 1)
    return False


def loads_exact(raw):
    """:func:`loads` of partial rows (tiles, prefixes: an integer sum of int64 values can leave 64 bits):
    text that :func:`may_hold_wide_integers` goes to the standard parser, which reads it exactly."""
    if may_hold_wide_integers(raw.encode() if isinstance(raw, str) else bytes(raw)):
        return json.loads(raw)
    return loads(raw)



__all__ = ["EntityReply", "decode_reply", "dense_fragments", "tile_span", "compares_orders", "raw_events", "raw_events_many",
           "loads", "loads_exact", "may_hold_wide_integers"]
