"""The online store: Redis, per (project, view, entity) a few keys sharing one cluster slot (SPEC §5).

Layout (format version 4; readable and writable without this library)::

    fs:{project}:_views                    HASH   view -> marker JSON {"v": 4, "fp": <data fingerprint>,
                                                  "h": <horizon ms> | null, "by": "materialize" | "stream",
                                                  "at": <ms>}: written by every writer of a view; a view
                                                  without it has no online state (never loaded, or Redis
                                                  lost its data) and is refused, never served as defaults
    fs:{project}:{view}:{<entity>}:t       HASH   "_": entity meta JSON {"fp": ..., "h": <ms> | null, "v": 4}
                                                  "T": present when the entity keeps tiles (dense)
                                                  "<level>:<minute>": a tile's partial row (JSON), tiles of more
                                                  than TILE_MIN_EVENTS events only
    fs:{project}:{view}:{<entity>}:r       ZSET   raw events: score = event time (ms), member = JSON
                                                  [event id, ts, inputs..., order values...]
                                                  (:mod:`featurestore.stores.online_format`)
    fs:{project}:{view}:{<entity>}:p       ZSET   prefix rows (views with an unbounded window): score = a
                                                  top-tile boundary b, member = JSON [b, row of every
                                                  event before b]

    fs:{project}:{view}:{<entity>}:t~ :r~ :p~   staging keys of a chunked write (a hot entity's
                                                  materialize: stores/online_staged.py): never read, swapped in
                                                  at once, expire an hour after their last chunk

``<entity>`` is the JSON array of the join-key values in the view's join-key order (compact: ``["u1"]``,
``["u1",2]``); the braces make it the Redis Cluster hash tag, so one entity's keys share a slot.
What the keys hold is :mod:`featurestore.kernel.entity`'s state: rows are
:class:`featurestore.kernel.partials.Layout` rows (``Layout.encode``), raw events are members of
:mod:`featurestore.stores.online_format` (which defines the format version: a view or entity of another
version is refused, never read). A lookup runs :data:`READ_LUA` once per
view for all its entities (on a cluster: once per view and slot), all in one pipeline: one round trip for
any number of entities and views, reading O(tiles + edge events) per window (``featurestore.online``).

Retention. The *retention* ``R`` of a view is its largest finite window, or its TTL if larger (views with
latest features and a TTL). ``materialize(end=E)`` keeps what a request at any ``q >= E`` needs: raw
events (and tiles) with ``ts >= E - R``; views with an unbounded window (or latest features without a
TTL) also keep the prefix of everything before. ``end=None`` keeps every event (horizon: none). Keys of
bounded views expire ``R`` + 10 min after the entity's last event (or the write, when later).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import orjson

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_sql as dsql
from featurestore.errors import FeatureStoreError, InfraError
from featurestore.kernel import batch as kbatch
from featurestore.kernel import entity as kentity
from featurestore.kernel.entity import Changes
from featurestore.kernel.partials import Layout, dumps_row
from featurestore.kernel.tiles import TOP_LEVEL, tile_id, tile_ms
from featurestore.online import input_columns, view_windows
from featurestore.online_reply import loads
from featurestore.stores import online_format as ofmt
from featurestore.stores.online_format import FORMAT_VERSION
from featurestore.stores.online_packed import PackedRaw, transaction, write_calls
from featurestore.stores import online_read
from featurestore.stores.online_read import READ_LUA, _bulk, _pack  # noqa: F401 (re-exported)
from featurestore.stores.redis_client import connect, connection_url, is_cluster, redact  # noqa: F401 (re-exported)

KEY_PREFIX = "fs"
SLACK_MS = 10 * 60 * 1000  # key TTL beyond retention: clock skew, late writers
STAGE_ITEMS = 5_000  # larger entities are written in chunks of this many members or fields (online_staged)
CHUNK_ENTITIES = 500  # entities per pipelined round trip when writing
BATCH_ROWS = 5_000  # entities per Arrow batch read from DuckDB
PASS_ROWS = 20_000_000  # events per materialize pass (passes split the entities by key hash)
_ENC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
TILES, RAW, PREFIXES = "t", "r", "p"
META_FIELD, DENSE_FIELD = "_", "T"


# -- keys ---------------------------------------------------------------------------------------------
def encode_entity(values: Sequence) -> str:
    """The entity part of a key: the join-key values as a compact JSON array. (A lookup encodes one per
    row and view: strings JSON leaves as they are and plain integers are written directly, the same text.)"""
    parts = []
    for v in values:
        if type(v) is str and _ESCAPED.search(v) is None:
            parts.append('"' + v + '"')
        elif type(v) is int:
            parts.append(str(v))
        else:
            return _ENC.encode(list(values))
    return "[" + ",".join(parts) + "]"


_ESCAPED = re.compile(r'[\x00-\x1f"\\]')  # what JSON escapes (ensure_ascii=False: nothing else)


def view_prefix(project: str, view: str) -> str:
    return f"{KEY_PREFIX}:{project}:{view}:"


def entity_base(project: str, view: str, values: Sequence) -> str:
    """``fs:{project}:{view}:{<entity>}``: the common part of the entity's keys (add ``:t``, ``:r``, ``:p``)."""
    return view_prefix(project, view) + "{" + encode_entity(values) + "}"


def entity_keys(base: str, staged: bool = False) -> Tuple[str, str, str]:
    """The entity's tiles hash, raw zset and prefix zset (``staged``: the keys a chunked write fills
    before ``online_staged.COMMIT_LUA`` swaps them in; never read)."""
    s = "~" if staged else ""
    return f"{base}:{TILES}{s}", f"{base}:{RAW}{s}", f"{base}:{PREFIXES}{s}"


def views_key(project: str) -> str:
    return f"{KEY_PREFIX}:{project}:_views"


_SLOT_TAGS: List[str] = []


def slot_key(project: str, slot: int) -> str:
    """``fs:{project}:_slot:{<tag>}``: a Redis Cluster slot's sentinel, its tag chosen to hash to ``slot``.
    Every writer that loads a project's online state sets all 16384 first; a master that loses its data
    loses its slots' sentinels with it, and lookups refuse those slots' entities instead of reading
    them as absent (NOT_FOUND)."""
    if not _SLOT_TAGS:
        from redis.crc import key_slot

        tags: Dict[int, str] = {}
        i = 0
        while len(tags) < 16384:  # ~110k CRC16s, once per process
            tags.setdefault(key_slot(str(i).encode()), str(i))
            i += 1
        _SLOT_TAGS[:] = [tags[k] for k in range(16384)]
    return f"{KEY_PREFIX}:{project}:_slot:{{{_SLOT_TAGS[slot]}}}"


LOST = object()  # read(): the entity's slot lost its data (its sentinel is gone): refuse, never NOT_FOUND


def encode_marker(cv: CompiledView, horizon: Optional[int], by: str) -> str:
    return _ENC.encode({"v": FORMAT_VERSION, "fp": cv.data_fingerprint, "h": horizon, "by": by,
                        "at": int(time.time() * 1000)})


# -- retention ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retention:
    """What the online state of a view keeps (see the module docstring)."""

    keep_base: bool  # an unbounded window (or latest without TTL): prefixes of everything before
    window_ms: int  # R: raw events with ts >= end - R are kept
    expires: bool  # keys expire R + slack after the entity's last event


def retention(cv: CompiledView) -> Retention:
    windows = view_windows(cv)
    keep_base = any(w is None for w in windows)
    span = max((w for w in windows if w is not None), default=0)
    return Retention(keep_base, span, not keep_base)


def cut_for(cv: CompiledView, end_ms: Optional[int], top: int = TOP_LEVEL) -> Optional[int]:
    """The time before which ``materialize(end=end_ms)`` folds events into the prefix (or drops them):
    ``end - R``, floored to a top tile when the view keeps a prefix. None: keep everything."""
    if end_ms is None:
        return None
    ret = retention(cv)
    cut = end_ms - ret.window_ms
    if ret.keep_base:
        cut -= cut % tile_ms(top)
    return cut


# KEYS: the entity's tiles hash, raw zset, prefix zset. ARGV: full ('1': replace everything), meta JSON
# ('' = keep), dense flag ('1' = set), raw_below and prefix_below ('' or: remove members scored below),
# pexpireat ('' = none), then counted lists: tiles to set (field, value), tiles to delete (field), raw
# events to add (score, member), prefixes to set (score, member: replaces the one at that score).
# One script per entity: readers see its state before or after a write, never half of it.
WRITE_LUA = """
local i = 7
if ARGV[1] == '1' then redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], '_', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'T', '1') end
if ARGV[4] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4]) end
if ARGV[5] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5]) end
local function chunked(cmd, key, width)
  local n = tonumber(ARGV[i]); i = i + 1
  local last = i + n * width - 1
  while i <= last do  -- 1000 arguments per call, straight from ARGV (no copy in Lua)
    local j = math.min(i + 999, last)
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
chunked('HSET', KEYS[1], 2)
chunked('HDEL', KEYS[1], 1)
chunked('ZADD', KEYS[2], 2)
local n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[3], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[6] ~= '' then for k = 1, 3 do redis.call('PEXPIREAT', KEYS[k], ARGV[6]) end end
return 1
"""


def write_args(changes: Changes, fingerprint: str, expire_at: Optional[int]) -> list:
    """The write script's arguments for one entity's :class:`~featurestore.kernel.entity.Changes`."""
    enc = _ENC.encode
    meta = enc({"fp": fingerprint, "h": changes.horizon, "v": FORMAT_VERSION}) if changes.meta or changes.full else ""
    args: list = ["1" if changes.full else "", meta, "1" if changes.dense and changes.full else "",
                  "" if changes.raw_below is None else changes.raw_below,
                  "" if changes.prefix_below is None else changes.prefix_below,
                  "" if expire_at is None else expire_at]
    args.append(len(changes.tiles_set))
    for name, row in changes.tiles_set.items():
        args += [name, dumps_row(row, enc)]
    args.append(len(changes.tiles_del))
    args += changes.tiles_del
    args.append(len(changes.raw_add))
    if isinstance(changes.raw_add, PackedRaw):  # materialize: chunks DuckDB packed (online_packed)
        args += changes.raw_add.segments()
    else:
        for ts, member in changes.raw_add:
            args += [ts, member]
    args.append(len(changes.prefix_set))
    for b, row in changes.prefix_set.items():
        args += [b, enc([b, row])]
    return args


# -- the client ---------------------------------------------------------------------------------------
def _arg_bytes(a) -> bytes:
    if isinstance(a, bytes):
        return a
    return (a if isinstance(a, str) else str(a)).encode()


def _replies(conn, n: int) -> list:
    """``n`` replies read on ``conn``, an error reply as its exception (not raised). With redis-py's
    hiredis parser each is taken straight from its reader, one C call (``read_response``'s Python layers
    cost ~1 us a reply: a materialize's transactions have ~7 an entity)."""
    import redis

    parser = conn._parser
    reader = getattr(parser, "_reader", None)
    wait = getattr(sys.modules.get("redis._parsers.hiredis"), "NOT_ENOUGH_DATA", None)  # its "no reply yet"
    if reader is None or wait is None or getattr(parser, "_next_response", None) is not wait:
        out = []
        for _ in range(n):
            try:
                out.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                out.append(exc)
        return out
    out = []
    gets, fill = reader.gets, parser.read_from_socket
    while len(out) < n:
        r = gets()
        if r is wait:
            fill()
            continue
        if isinstance(r, redis.exceptions.ConnectionError):
            raise r
        out.append(r)
    return out


@dataclass
class MaterializeResult:
    view: str
    entities: int  # entities written
    events: int  # raw events stored
    deleted: int  # entities removed because all their events fell behind the horizon
    seconds: float
    horizon: Optional[int]  # earliest exactly answered request time (None: every time)
    tiled: int = 0  # entities stored with tiles (dense)

    @property
    def rows_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


class RedisOnlineStore:
    """The online store of one project."""

    def __init__(self, project: str, url: str, password: Optional[str] = None, tls: bool = False, client=None):
        self.project = project
        self.url = url
        self.password = password
        self.tls = tls
        self._client = client
        self._read = None
        self._write = None
        self._commit = None
        self._eviction_checked = False

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = self._guard(connect, self.url, self.password, self.tls)
            except ValueError as exc:  # a malformed redis+cluster:// URL
                raise InfraError(f"online_store.redis_url {redact(self.url)}: {exc}") from None
        return self._client

    @property
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster (commands go to the node that holds their keys' slot)."""
        return is_cluster(self.url)

    def infra_error(self, exc: Exception) -> InfraError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "run bash infra/redis-cluster.sh start" if self.cluster else "run bash infra/up.sh"
        if "CERTIFICATE_VERIFY_FAILED" in text and "hostname" in text.lower():
            hint = "the certificate does not name this host; connect by a name it holds"
        elif "CERTIFICATE_VERIFY_FAILED" in text:
            hint = ("the server's certificate is not signed by a CA trusted here: set online_store.tls_ca_cert "
                    "to your CA's PEM file")
        return InfraError(f"cannot reach Redis at {redact(self.url)}: {text} ({hint})")

    def _guard(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.AuthenticationError, redis.exceptions.RedisClusterException,
                redis.exceptions.ClusterError, OSError) as exc:
            raise self.infra_error(exc) from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise self.infra_error(exc) from None
            raise

    def base(self, view: str, values: Sequence) -> str:
        return entity_base(self.project, view, values)

    # -- read -------------------------------------------------------------------------------------
    def read(self, views: Sequence[str], reads: Sequence[Tuple[str, list]]) -> Tuple[List[Optional[bytes]], list]:
        """The markers of ``views`` and each ``(entity base, script args)`` of ``reads``' read script reply, in
        one round trip (:func:`featurestore.stores.online_read.read`)."""
        return online_read.read(self, views, reads)

    def _pipelined(self, script: str, commands: Sequence[Tuple[str, Optional[tuple], list]]) -> list:
        """Cluster mode: run ``(key, script keys, args)`` commands in one cluster pipeline: ``EVALSHA`` of
        ``script`` on the keys, ``HMGET key *args`` where the keys are None, ``EXISTS key`` where they are
        ``()``. The first error is raised."""
        import redis

        attr = "_read" if script is READ_LUA else "_write"
        for attempt in (0, 1):
            if getattr(self, attr) is None:
                setattr(self, attr, self._guard(self.client.script_load, script))
            sha = getattr(self, attr)
            pipe = self.client.pipeline(transaction=False)
            for key, keys, args in commands:
                if keys is None:
                    pipe.hmget(key, args)
                elif not keys:
                    pipe.exists(key)
                else:
                    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)  # (pipe.evalsha: refused)
            out = self._guard(pipe.execute, raise_on_error=False)
            errors = [r for r in out if isinstance(r, redis.exceptions.ResponseError)]
            if any(isinstance(e, redis.exceptions.NoScriptError) for e in errors) and not attempt:
                setattr(self, attr, None)
                continue
            if errors:
                raise errors[0]
            return out
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, payload: bytes, n: int) -> list:
        """Send packed commands on one pooled connection and read their ``n`` replies (an error reply is
        returned as its exception). A dropped connection is reconnected and the whole exchange repeated
        (every command it carries is a read)."""
        import redis

        pool = self.client.connection_pool
        try:
            conn = pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            conn = pool.get_connection("EVALSHA")
        try:
            for attempt in range(3):
                try:
                    conn.send_packed_command([payload])
                    return _replies(conn, n)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    conn.disconnect()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            pool.release(conn)

    def markers(self, views: Sequence[str]) -> Dict[str, Optional[dict]]:
        raw = self._guard(self.client.hmget, views_key(self.project), list(views))
        return {v: (orjson.loads(r) if r else None) for v, r in zip(views, raw)}

    # -- write ------------------------------------------------------------------------------------
    def write_slot_sentinels(self) -> None:
        """On a Redis Cluster, set the sentinel of every slot (:func:`slot_key`): called by every writer
        that loads online state (materialize, a stream job's start) before it writes."""
        if not self.cluster:
            return
        pipe = self.client.pipeline(transaction=False)
        for sl in range(16384):
            pipe.set(slot_key(self.project, sl), b"1")
        self._guard(pipe.execute)

    def eviction(self) -> Optional[str]:
        """``"maxmemory-policy P, maxmemory N"`` when Redis (any master of a cluster) may evict keys under
        memory pressure (``maxmemory`` set and a policy other than ``noeviction``): an entity whose keys
        were all evicted would read as one without events, served as NOT_FOUND. None when it cannot
        (or when ``CONFIG`` is not allowed: a managed Redis may rename it; then its docs say)."""
        import redis

        try:
            if self.cluster:
                replies = self._guard(self.client.config_get, "maxmemory*", target_nodes=self.client.PRIMARIES)
                configs = list(replies.values()) if isinstance(replies, dict) and replies and \
                    all(isinstance(v, dict) for v in replies.values()) else [replies]
            else:
                configs = [self._guard(self.client.config_get, "maxmemory*")]
        except redis.exceptions.ResponseError:
            return None
        for cfg in configs:
            cfg = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                   for k, v in (cfg or {}).items()}
            policy, limit = cfg.get("maxmemory-policy", "noeviction"), int(cfg.get("maxmemory", 0) or 0)
            if limit > 0 and policy != "noeviction":
                return f"maxmemory-policy {policy}, maxmemory {limit}"
        return None

    def check_eviction(self, allow: bool) -> None:
        """Refuse to load online state into a Redis that may evict it (:meth:`eviction`), unless ``allow``
        (``online_store.allow_eviction``): evicted entities would be served as absent, never detected."""
        if allow or self._eviction_checked:
            return
        why = self.eviction()
        if why:
            raise InfraError(f"Redis at {redact(self.url)} may evict keys under memory pressure ({why}): an "
                             "entity whose keys were evicted would be served as not found (counts 0, defaults); "
                             "set maxmemory-policy noeviction (or maxmemory 0), or online_store.allow_eviction: "
                             "true to accept that")
        self._eviction_checked = True

    def slots_lost(self) -> int:
        """How many slot sentinels are missing (0 on a single Redis)."""
        if not self.cluster:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for sl in range(16384):
            pipe.exists(slot_key(self.project, sl))
        return sum(1 for n in self._guard(pipe.execute) if not n)

    def write_marker(self, cv: CompiledView, horizon: Optional[int], by: str) -> None:
        self._guard(self.client.hset, views_key(self.project), cv.name, encode_marker(cv, horizon, by))

    def write_sha(self) -> str:
        if self._write is None:
            self._write = self._guard(self.client.script_load, WRITE_LUA)
        return self._write

    def commit_sha(self) -> str:
        from featurestore.stores import online_staged

        if self._commit is None:
            self._commit = self._guard(self.client.script_load, online_staged.COMMIT_LUA)
        return self._commit

    def materialize_view(self, con, cv: CompiledView, relation: str, end_ms: Optional[int] = None,
                         on_rows: Optional[Callable[[int], None]] = None,
                         now_ms: Optional[int] = None) -> MaterializeResult:
        """Write the online state of ``cv`` from a relation of its stored events (see module docs and
        :mod:`featurestore.stores.online_materialize`)."""
        from featurestore.stores import online_materialize

        return online_materialize.materialize_view(self, con, cv, relation, end_ms, on_rows, now_ms)

    def write_entities(self, writes: Sequence[Tuple[str, list]]) -> None:
        """Write each ``(entity base, write_args)`` in one round trip (one per node of a cluster); the first
        error is raised. On a single node each is one transaction of plain commands
        (:func:`online_packed.write_calls`: the write script's effect without its Lua copies), packed here
        (redis-py's packing of every member as an argument was a third of materialize's time)."""
        if self.cluster:
            self._pipelined(WRITE_LUA, [(base, entity_keys(base), args) for base, args in writes])
            return
        self._write_packed([transaction(write_calls([k.encode() for k in entity_keys(base)], args))
                            for base, args in writes])

    def write_staged(self, base: str, changes: Changes, fingerprint: str, at: Optional[int], now: int) -> None:
        """Write one large entity in bounded chunks and swap it in (:mod:`featurestore.stores.online_staged`)."""
        from featurestore.stores import online_staged

        online_staged.write_staged(self, base, changes, fingerprint, at, now)

    def _write_packed(self, commands: List[bytes]) -> None:
        """Single node: run packed commands (or :class:`~featurestore.stores.online_packed.Transaction` s)
        in one round trip; the first error, or error of a transaction's command, is raised."""
        import redis

        replies = sum(getattr(c, "replies", 1) for c in commands)
        out = self._guard(self._exchange, b"".join(commands), replies)
        for r in out:
            if isinstance(r, list):  # an EXEC's replies
                r = next((x for x in r if isinstance(x, redis.exceptions.ResponseError)), None)
            if isinstance(r, redis.exceptions.ResponseError):
                raise r

    def delete_unwritten(self, cv: CompiledView, written: set) -> int:
        """After a materialize of ``cv`` that wrote the entity bases ``written``: delete every other entity of
        the view (SPEC §3: online = the offline table). Those are entities a re-backfill removed (every
        event deleted from the batch face, or no longer passing the view's filter), only pushed online, or
        whose every event fell behind ``end``'s cut (views without a prefix: the horizon already refuses the
        requests they could answer wrongly). One SCAN of the view's key prefix (every master of a
        cluster); the stream must not run meanwhile (docs/streaming.md "Who owns the keys")."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", view_prefix(self.project, cv.name)) + "{*"
        online = set()
        for key in self._guard(lambda: list(self.client.scan_iter(match=pattern, count=1000))):
            key = key.decode() if isinstance(key, bytes) else key
            online.add(key.rsplit(":", 1)[0])  # the entity's base: its keys end in :t, :r, :p (or staged ~)
        return self._delete_bases(sorted(online - written))

    def _delete_bases(self, bases) -> int:
        keys = [k for base in bases for staged in (False, True) for k in entity_keys(base, staged)]
        deleted = 0
        for i in range(0, len(keys), 900):
            deleted += self._guard(self.client.delete, *keys[i:i + 900])
        return deleted


def entity_changes(layout: Layout, tss: List[int], members: List[str], cut: Optional[int],
                   ret: Retention, codec: ofmt.Members) -> Optional[Changes]:
    """Everything one entity stores, from its events in event order (their times and stored members),
    or None when nothing of it is kept. Sparse entities of views without a base need no kernel work:
    their members are stored as DuckDB encoded them."""
    if cut is None:
        first = 0
    else:
        first = next((i for i, ts in enumerate(tss) if ts >= cut), len(tss))  # events come in time order
    if first == len(tss) and not (ret.keep_base and first):
        return None
    if len(tss) - first <= kentity.DENSE_EVENTS and (not ret.keep_base or first == 0):
        return Changes(True, None, False, raw_add=list(zip(tss[first:], members[first:])), last_ts=tss[-1])
    # one parse for all the members (NaN/Infinity from feature expressions take loads' fallback)
    parsed = loads("[" + ",".join(members) + "]")
    events = [(*codec.decode(ev), member) for ev, member in zip(parsed, members)]
    return kbatch.full_changes(layout, events, cut, ret.keep_base)


# -- the FeatureStore's side ---------------------------------------------------------------------------
def for_store(store) -> RedisOnlineStore:
    """The online store of a FeatureStore (one client and connection pool per FeatureStore)."""
    cfg = store.config
    url = connection_url(cfg)
    ident = (cfg.project, url, cfg.redis_password, cfg.redis_tls)
    cached = store.__dict__.get("_online_store")
    if cached is None or cached[0] != ident:
        cached = (ident, RedisOnlineStore(cfg.project, url, cfg.redis_password, cfg.redis_tls))
        store.__dict__["_online_store"] = cached
    return cached[1]


def materialize(store, views=None, end=None, progress=None) -> List[MaterializeResult]:
    """``FeatureStore.materialize``: see the module docstring for what is kept."""
    from featurestore.errors import RequestError
    from featurestore.sdk.timeutil import to_epoch_ms
    from featurestore.stores.offline_reads import retry_moved

    repo = store.repo
    if views is None:
        names = [n for n, v in repo.views.items() if v.online]
    else:
        names = [views] if isinstance(views, str) else list(views)
        for n in names:
            if n not in repo.views:
                raise RequestError(f"unknown feature view '{n}'")
            if not repo.views[n].online:
                raise RequestError(f"feature view '{n}' is not online (online=False)")
    end_ms = to_epoch_ms(end, "end")
    online = for_store(store)
    online._guard(online.client.ping)
    online.check_eviction(store.config.redis_allow_eviction)
    online.write_slot_sentinels()
    con = store._connect()
    results = []
    for n in names:
        cv = store.compiled(n)
        on_rows = progress(n) if progress else None

        def load(cv=cv, on_rows=on_rows):  # again from the listing when a concurrent commit moved a file
            import duckdb

            from featurestore.engines.duckdb_engine import without_optimizer
            from featurestore.sdk.historical import expression_failed, failing_event

            vi = store._view_input(con, cv)
            try:
                if vi.version is not None:
                    return online.materialize_view(con, cv, vi.events_relation, end_ms, on_rows)
                with without_optimizer(con, dsql.NO_CSE):  # pushed events are routed under try (view_events_sql)
                    return online.materialize_view(con, cv, vi.events_relation, end_ms, on_rows)
            except (duckdb.DataError, duckdb.InvalidInputException, FeatureStoreError) as exc:
                event = failing_event(con, vi)  # an event a view's expression fails on, named (else the error stands)
                if event is None:
                    raise
                raise RequestError(f"materialize: {expression_failed(cv.name, exc, event)}") from None
        results.append(retry_moved(load, store._offline_root, f"materialize of view '{n}'", latest=True))
    return results


# -- SQL ----------------------------------------------------------------------------------------------
def _input_sql(expr: str, dtype: str) -> str:
    if dtype == t.TIMESTAMP:
        return f"epoch_us({dsql.input_sql(expr, dtype)})"
    if dtype == t.FLOAT32:  # the float's exact value as a double (JSON cannot say "float32")
        return f"CAST(CAST(({expr}) AS FLOAT) AS DOUBLE)"
    return dsql.input_sql(expr, dtype)


def _event_order(cv: CompiledView) -> List[str]:
    """SPEC event order over every order column (members are numbered in it, whatever they store)."""
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    return [ts] + [f"{dsql.q(c)} ASC NULLS FIRST" for c in cv.order_columns[1:]]


def member_sql(cv: CompiledView, rank: str, ts: str) -> str:
    """The member text (``online_format``) of an event of ``cv`` in a relation of its stored events."""
    types = dict(cv.stored_columns)
    inputs = [ofmt.json_sql(_input_sql(e, d)) for e, d in input_columns(cv)]
    order = [ofmt.json_sql(ofmt.order_value_sql(dsql.q(c), types[c]))
             for c, s in zip(ofmt.order_columns(cv), ofmt.order_sources(cv)) if s < 0]
    return ofmt.member_sql(rank, ts, inputs, order)


def materialize_sql(cv: CompiledView, relation: str, part: Optional[Tuple[int, int]] = None,
                    exclude: Optional[str] = None, only: Optional[str] = None, keep_ms: Optional[int] = None) -> str:
    """One row per entity: join keys, last event time (ms), the events' times and raw members
    (:mod:`featurestore.stores.online_format`, ids -1, -2, ... in event order), and the event count.
    ``part=(i, n)``: only entities whose key hash is ``i`` modulo ``n``; ``exclude`` / ``only``: a table
    of join keys whose entities are left out / the only ones. ``keep_ms``: only the events from the
    entity's last event time minus ``keep_ms`` on, and those at the latest time before that (ids, last
    time and count as over every event but the count): what a trim of a view without a base to that
    cut keeps, and one event behind it (the hand-off's seed, ``engines/flink/handoff.py``)."""
    keys = [dsql.q(k) for k in cv.join_keys]
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    rank = f"row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY {', '.join(_event_order(cv))})"
    member = member_sql(cv, "__fs_r", ts)
    where = [f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{k} IS NOT NULL" for k in keys)]
    if part is not None:
        where.append(f"hash({', '.join(keys)}) % {int(part[1])} = {int(part[0])}")
    join = ""
    if exclude or only:
        join = f" {'ANTI' if exclude else 'SEMI'} JOIN {exclude or only} USING ({', '.join(keys)})"
    ev = f"SELECT *, {ts} AS __fs_ts, {rank} AS __fs_r FROM {relation} AS src{join} WHERE {' AND '.join(where)}"
    if keep_ms is not None:
        by = f"PARTITION BY {', '.join(keys)}"
        ev = (f"WITH ev0 AS ({ev}), ev1 AS (SELECT *, max(__fs_ts) OVER ({by}) - {int(keep_ms)} AS __fs_keep FROM ev0), "
              f"ev2 AS (SELECT *, max(CASE WHEN __fs_ts < __fs_keep THEN __fs_ts END) OVER ({by}) AS __fs_below FROM ev1) "
              "SELECT * FROM ev2 WHERE __fs_ts >= __fs_keep OR __fs_ts = __fs_below")
    return (
        f"WITH ev AS ({ev})\n"
        f"SELECT {', '.join(keys)}, max(__fs_ts) AS __fs_last, list(__fs_ts ORDER BY __fs_r) AS __fs_tss, "
        f"list({member} ORDER BY __fs_r) AS __fs_members, count(*) AS __fs_n FROM ev GROUP BY {', '.join(keys)}"
    )
