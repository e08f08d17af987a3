"""``FeatureStore.get_online_features``: one Redis round trip, exact values, a status per value.

Every (view, entity) of a request is read by the store's read script in one pipeline, together with
the views' markers (:mod:`featurestore.stores.online_redis`); values are computed at the request time
``q`` by :mod:`featurestore.online`. What the online store cannot answer exactly is **refused**, per view
or per entity, never served as a default: a view without a marker (never loaded, or Redis lost its
data), a view or entity written by another definition, a request before the view's (or the entity's)
retention horizon. A refused value is None with status ``REFUSED``; the other rows and views are
answered, and ``response.refusals`` says why, one line each.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import orjson

from featurestore import online as ol
from featurestore import online_reply as oreply
from featurestore.errors import RequestError
from featurestore.stores import online_format as ofmt

log = logging.getLogger("featurestore.online")


def _iso(ms: int) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)).isoformat()


def view_refusal(cv, marker: Optional[dict], q: int, store=None) -> Optional[str]:
    """Why the online state of ``cv`` cannot answer a request at ``q`` (None: it can). The fix names every
    step, in order (``featurestore.engines.backfill.online_fix``: with ``store``, a backfill first when the
    view's offline table holds rows of an earlier definition)."""
    from featurestore.engines.backfill import online_fix
    from featurestore.stores.online_redis import FORMAT_VERSION

    if marker is None:
        return (f"feature view '{cv.name}': no online state (never materialized or streamed, or Redis lost its "
                f"data); {online_fix(store, cv)}")
    if marker.get("v") != FORMAT_VERSION:
        return (f"feature view '{cv.name}': online state has format version {marker.get('v')!r}, this library "
                f"reads {FORMAT_VERSION}; {online_fix(store, cv)}")
    if marker.get("fp") != cv.data_fingerprint:
        return (f"feature view '{cv.name}': online state was written by another definition (fingerprint "
                f"{str(marker.get('fp'))[:12]}, current {cv.data_fingerprint[:12]}); {online_fix(store, cv)}")
    horizon = marker.get("h")
    if horizon is not None and q < horizon:
        return _before_horizon(cv, q, horizon)
    return None


def _before_horizon(cv, q: int, horizon: int) -> str:
    return (f"feature view '{cv.name}': request_time {_iso(q)} is before the online store's retention horizon "
            f"{_iso(horizon)} (online state answers request times at or after it); use get_historical_features "
            "for the past")


def entity_refusal(cv, meta: dict, q: int, fix=None) -> Optional[str]:
    """Why an entity's online state (its meta) cannot answer a request at ``q`` (None: it can)."""
    why = entity_state_refusal(cv, meta, fix)
    if why:
        return why
    horizon = meta.get("h")
    if horizon is not None and q < horizon:
        return _before_horizon(cv, q, horizon)
    return None


def entity_state_refusal(cv, meta: dict, fix=None) -> Optional[str]:
    """Why an entity's stored state must not be read at all: another format (``online_format``) or another
    definition (lookups and push check it before parsing any member). ``fix``: the fix's text (a callable, called
    only on a refusal: :func:`fix_once`), else ``featurestore materialize``."""
    from featurestore.engines.backfill import online_fix
    from featurestore.stores.online_format import FORMAT_VERSION

    if fix is None:
        fix = lambda: online_fix(None, cv)  # noqa: E731

    if meta.get("v", 3) != FORMAT_VERSION:  # (format 3 metas have no "v")
        return (f"feature view '{cv.name}': an entity's online state has format version {meta.get('v', 3)!r}, "
                f"this library reads {FORMAT_VERSION}; {fix()}")
    if meta.get("fp") != cv.data_fingerprint:
        return (f"feature view '{cv.name}': an entity's online state was written by another definition; {fix()}")
    return None


def lookup(store, entity_rows, features=None, feature_service=None, request_time=None, full_feature_names=False):
    """See ``FeatureStore.get_online_features`` (automatic full garbage collections are held off while it
    runs: :mod:`featurestore.sdk.gc_pause`)."""
    from featurestore.sdk.gc_pause import no_full_collections

    with no_full_collections():
        return _lookup(store, entity_rows, features, feature_service, request_time, full_feature_names)


def _lookup(store, entity_rows, features, feature_service, request_time, full_feature_names):
    from featurestore.sdk.refs import output_names, resolve_features
    from featurestore.sdk.timeutil import now_ms, to_epoch_ms
    from featurestore.sdk.inputs import entity_rows as check_rows
    from featurestore.sdk.inputs import key_value
    from featurestore.stores.online_redis import encode_entity, for_store, view_prefix

    selection = resolve_features(store.repo, features, feature_service)
    columns = output_names(selection, full_feature_names)
    for view_name in selection:
        if not store.repo.views[view_name].online:
            raise RequestError(f"feature view '{view_name}' is not online (online=False)")
    rows = check_rows(entity_rows)
    q = now_ms() if request_time is None else to_epoch_ms(request_time, "request_time")
    online = for_store(store)
    cache = online.__dict__.setdefault("_lookup_cache", {})

    views = []  # (cv, layout, plans, read plan, base per row, (slots per window, slots read))
    key_columns: Dict[str, list] = {}
    key_cache: Dict[tuple, list] = {}  # (join key, type) -> its value per row
    encoded: Dict[tuple, str] = {}  # join-key values -> their key text
    reads: Dict[str, list] = {}  # entity base -> script args
    for view_name, names in selection.items():
        view = store.repo.views[view_name]
        hit = cache.get((view_name, tuple(names)))
        if hit is None or hit[0] is not view:  # same definition object: same compiled view (reload() replaces it)
            cv = store.compiled(view_name)
            layout = ol.view_layout(cv)
            plans = ol.plan_features(cv, names)
            wslots = ol.window_slots(layout, plans)
            windows = sorted(wslots, key=lambda w: (w is None, w or 0))
            read_slots = tuple(sorted({i for sl in wslots.values() for i in sl}))
            hit = cache[(view_name, tuple(names))] = (view, cv, layout, plans, wslots, windows, read_slots)
        _, cv, layout, plans, wslots, windows, read_slots = hit
        rplan = ol.read_plan(windows, q, latest_only=len(windows) == 1 and wslots[windows[0]] == (layout.latest_slot,))
        args = rplan.script_args()
        kcols = []  # per join key, its value in every row (each (key, type) checked once per lookup)
        for k in cv.join_keys:
            kt = (k, cv.key_types[k])
            col = key_cache.get(kt)
            if col is None:
                try:
                    col = key_cache[kt] = [key_value(row[k], kt[1], "", k) for row in rows]
                except (KeyError, RequestError):  # the first bad row's error, as the row-by-row check words it
                    _check_keys(rows, cv, view_name)
                    raise
            kcols.append(col)
        for k, col in zip(cv.join_keys, kcols):
            key_columns[k] = col
        prefix = view_prefix(online.project, view_name) + "{"
        bases: List[Optional[str]] = []
        for values in (zip(*kcols) if kcols else [()] * len(rows)):
            if None in values:  # a null key never matches an entity (SQL)
                bases.append(None)
                continue
            enc = encoded.get(values)
            if enc is None:
                enc = encoded[values] = encode_entity(values) + "}"
            base = prefix + enc
            bases.append(base)
            if base not in reads:
                reads[base] = args
        views.append((cv, layout, plans, rplan, bases, (wslots, read_slots)))

    clash = sorted(set(columns.values()) & set(key_columns))
    if clash:
        raise RequestError(f"feature column(s) {clash} would overwrite the join key column(s) of the response; "
                           "pass full_feature_names=True")
    order = list(reads)
    markers, replies = online.read([cv.name for cv, *_ in views], [(b, reads[b]) for b in order])
    by_base = dict(zip(order, replies))

    out = {k: list(v) for k, v in key_columns.items()}
    statuses: Dict[str, List[str]] = {}
    times: Dict[str, List[Optional[int]]] = {}
    refusals: List[str] = []
    for (cv, layout, plans, rplan, bases, slots), marker in zip(views, markers):
        refused = view_refusal(cv, orjson.loads(marker) if marker else None, q, store)
        if refused:
            refusals.append(refused)
        index, done = _view_values(cv, layout, plans, rplan, [b for b in dict.fromkeys(bases) if b is not None],
                                   by_base, q, refused, refusals, slots, store)
        if None in bases:  # a null key: no state
            index[None] = len(index)
            for column, value in zip(done, zip(*_none_values(cv, layout, plans, q, refused, slots))):
                for c, v in zip(column, value):
                    c.append(v)
        at = [index[base] for base in bases]
        for p, (vals, stats, whens) in zip(plans, done):  # per feature: its values over the rows
            name = columns[(cv.name, p.name)]
            out[name] = list(map(vals.__getitem__, at))
            statuses[name] = list(map(stats.__getitem__, at))
            times[name] = list(map(whens.__getitem__, at))
    for r in refusals:
        log.warning("online lookup refused: %s", r)
    return ol.OnlineResponse(out, None, q, statuses, refusals, times)


def _check_keys(rows, cv, view_name: str) -> None:
    """Raise the error of the first row (in row order, then join-key order) whose join key is missing or
    of the wrong type."""
    from featurestore.sdk.inputs import key_value

    for i, row in enumerate(rows):
        for k in cv.join_keys:
            if k not in row:
                raise RequestError(f"entity row {i} has no join key '{k}' (needed by feature view '{view_name}')")
            key_value(row[k], cv.key_types[k], f"entity row {i}", k)


def fix_once(store, cv):
    """A callable giving ``online_fix(store, cv)``, computed on its first call only (entities refused one by
    one read the offline table's manifest once)."""
    from featurestore.engines.backfill import online_fix

    memo: list = []

    def fix() -> str:
        if not memo:
            memo.append(online_fix(store, cv))
        return memo[0]

    return fix


def _view_values(cv, layout, plans, rplan, bases: List[str], by_base: dict, q: int, refused: Optional[str],
                 refusals: List[str], slots, store=None) -> Tuple[Dict[Optional[str], int], list]:
    """``(index, columns)`` of the distinct entities ``bases`` of one view, computed together
    (:func:`featurestore.online.compute_columns`): per feature ``(values, statuses, event times)`` over the
    entities, ``index[base]`` each entity's place in them."""
    from featurestore.stores.online_read import LOST_REPLY, split_reply
    from featurestore.stores.online_redis import LOST

    wslots, read_slots = slots
    refused_bases = []
    members = ofmt.members(cv)
    computed, replies = [], []  # the entities computed together, and their decoded replies
    sparse, dense = [], []  # (base, split reply, meta) of the entities without / with tiles: their raw events
    # parsed together, one call each
    fix = fix_once(store, cv)
    compared = oreply.compares_orders(layout, read_slots)
    metas: dict = {}  # meta text -> (meta, refusal): most entities of a view share one meta (same writer)
    for base in bases:
        raw_reply = by_base.get(base)
        why = refused
        if raw_reply is LOST:  # a Redis Cluster master lost the data of this entity's slot
            why = (f"feature view '{cv.name}': the online state of some entities is lost (a Redis Cluster master "
                   f"lost its data); run 'featurestore materialize --view {cv.name}'")
            if why not in refusals:
                refusals.append(why)
        elif not why and raw_reply == LOST_REPLY:  # its events are stored without its meta hash (evicted, deleted)
            why = (f"feature view '{cv.name}': the online state of some entities is lost (keys evicted or deleted); "
                   f"run 'featurestore materialize --view {cv.name}'")
            if why not in refusals:
                refusals.append(why)
        if not why and raw_reply:  # refused before its values are parsed (another format is never read)
            raw_reply = split_reply(raw_reply, len(rplan.tiles))
            hit = metas.get(raw_reply[0])
            if hit is None:
                meta = orjson.loads(raw_reply[0])
                hit = metas[raw_reply[0]] = (meta, entity_refusal(cv, meta, q, fix))
            meta, why = hit
            if why and why not in refusals:
                refusals.append(why)
            if not why:
                (dense if raw_reply[1] else sparse).append((base, raw_reply, meta))
                continue
        if why:
            refused_bases.append(base)
        else:  # no state: computed together below
            computed.append(base)
            replies.append(None)
    frags = oreply.dense_fragments([r for _, r, _ in dense], rplan, members) if dense else []
    for (base, raw_reply, meta), fragments in zip(dense, frags):  # tiles and raw pieces: computed together
        computed.append(base)
        replies.append(oreply.decode_reply(layout, raw_reply, rplan, read_slots, members=members, meta=meta,
                                       compared=compared, fragments=fragments))
    raws = oreply.raw_events_many([r[4] for _, r, _ in sparse], members)
    for (base, raw_reply, meta), raw in zip(sparse, raws):  # raw events only (as columns): computed together
        computed.append(base)
        replies.append(oreply.decode_reply(layout, raw_reply, rplan, read_slots, members=members, meta=meta, raw=raw,
                                       compared=compared))
    done = ol.compute_columns(layout, plans, replies, q, slots=wslots)
    if any(ol.REFUSED in statuses for _, statuses, _ in done):  # a computed value refused (ol.refusal_reason)
        for j in range(len(computed)):
            for p, (_, statuses, _) in zip(plans, done):
                why = ol.refusal_reason(cv.name, p)
                if statuses[j] == ol.REFUSED and why not in refusals:
                    refusals.append(why)
    for values, statuses, times in done:  # refused entities after the computed ones
        values += [None] * len(refused_bases)
        statuses += [ol.REFUSED] * len(refused_bases)
        times += [None] * len(refused_bases)
    return {base: j for j, base in enumerate(computed + refused_bases)}, done


def _none_values(cv, layout, plans, q: int, refused: Optional[str], slots):
    """The values of a row whose join key is null (it never matches an entity: no state)."""
    n = len(plans)
    if refused:
        return [None] * n, [ol.REFUSED] * n, [None] * n
    return ol.compute_many(layout, plans, [None], q, slots=slots[0])[0]


__all__ = ["lookup", "view_refusal", "entity_refusal", "entity_state_refusal", "fix_once"]
