"""SPEC §5 "each event once" and §3.1/§3.2 with the streaming job in random sequences of operations
(tests/test_store_sequences.py does the batch-only operations).

A small source with a batch face (Parquet files) and a Kafka face over the same events, two views: ``v``
(filter ``qty < limit``, projection ``q2 = qty * mult``, both changed between runs) and ``w`` (no filter, never
changed). Operations, in a random order per seed:

* ``produce``: new events to Kafka and, as a file, to the batch face (the two faces of one event set): ties at
  one millisecond, null and extreme values (±2^40, ±1e300, -0.0), late times (behind every other event, one in
  1970), an accepted near-future time, and records that are dead letters (event times outside the supported
  range, malformed JSON);
* ``push``: rows through ``FeatureStore.push`` (the source has a stream face: they go to the topic), landed on the
  batch face too;
* ``stream``: a bounded run from the last checkpoint (or, at random, with fresh state);
* ``kill``: an unbounded run cancelled after a checkpoint (no final commit): the next run restores that
  checkpoint;
* ``backfill``: an explicit range before, overlapping or after what was streamed;
* ``redefine``: a new filter limit and projection factor of ``v``;
* ``materialize``.

A model keeps, per event, the definition its row was computed under and by whom (the backfill whose range last
held it; else, inside that backfill's range, the stream run that read it after that backfill, when the run's
definition of the view was the backfill's; outside every range, the stream run that read it last;
docs/offline-store.md "Each event once"). After every operation:

* each view's offline table holds each event at most once, and after every completed operation exactly the
  model's rows (after a kill: a subset of them);
* the streaming job's dead letters hold each bad record (partition, offset, reason) once;
* a training set either refuses ``v`` (rows of an earlier definition are stored) or equals the brute-force
  oracle over the table's events; after a stream run (events that arrived after the backfill claiming their
  range included, seed 1) or a materialize, ``get_online_features`` equals ``get_historical_features`` at
  random requests, or refuses explicitly.

Seeds: 1 (backfills around the streamed events, events arriving in a claimed range), 2 (a kill, then two
definition changes before the restore), 3 (pushes, a run with fresh state, definition changes). Three Flink
launches each.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.errors import OfflineStoreError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import same_value
from tests.test_stream import JOB_TIMEOUT_S, create_topic, dead_letters, drop_project, produce

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

DEFS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
events = Source(schema={{"user_id": "string", "eid": "int64", "qty": "int64", "amount": "float64", "ts": "timestamp"}},
                timestamp="ts", batch=ParquetFiles("data/*.parquet"), stream=KafkaTopic("{topic}"), watermark_delay="2s")
v = FeatureView(entities=[user], source=events, filter="qty < {limit}", projections={{"q2": "qty * {mult}"}},
                features=[Aggregation("q2", "sum", "1m", name="s_1m"), Aggregation("q2", "count", None, name="n"),
                          Aggregation("eid", "max", "30s", name="max_eid_30s"), Latest("eid", name="last_eid"),
                          Latest("q2", name="last_q2")], ttl="90s")
w = FeatureView(entities=[user], source=events,
                features=[Aggregation("*", "count", None, name="events"), Aggregation("amount", "max", "1m", name="amax_1m"),
                          Latest("amount", name="last_amount"), Latest("eid", name="w_last_eid")])
'''
FEATURES = {"v": ["s_1m", "n", "max_eid_30s", "last_eid", "last_q2"], "w": ["events", "amax_1m", "last_amount", "w_last_eid"]}
BASE = pd.Timestamp("2026-03-01T00:00:00Z")
BASE_MS = BASE.value // 1_000_000
SPAN_S = 600
USERS = ["u0", "u1", "u2", "u3"]
BAD_TIMES = [2**63 - 1, -(2**63), 253_402_300_800_000, BASE_MS * 1_000_000, -62_135_596_800_001]  # out of range
SCHEMA = ["user_id", "eid", "qty", "amount", "ts"]


def ms(ts) -> int:
    return pd.Timestamp(ts).value // 1_000_000


class Model:
    def __init__(self, rng: random.Random, root: Path, topic: str):
        self.rng, self.root, self.topic = rng, root, topic
        self.events = {}  # eid -> row (every good event, on both faces)
        self.kafka = []  # eids in the order their records were produced
        self.read = 0  # records of self.kafka a completed stream run has read
        self.stream_def = {}  # eid -> the definition of the stream run that last wrote it (outside batch ranges)
        # view -> eid -> (index of a backfill, definition): the stream added the event inside that backfill's
        # range (it arrived after the backfill, under the backfill's definition of the view)
        self.claimed = {"v": {}, "w": {}}
        self.backfills = []  # (lo, hi, definition, eids on the batch face then)
        self.bad, self.bad_read = 0, 0  # bad records produced; read by a completed run
        self.partial = None  # view -> rows a killed run may have committed (None: no kill since the last run)
        self.definition = (rng.randint(0, 30), rng.randint(1, 3))
        self.next_eid, self.files = 0, 0
        self.write_defs()

    def write_defs(self):
        limit, mult = self.definition
        (self.root / "definitions" / "f.py").write_text(DEFS.format(topic=self.topic, limit=limit, mult=mult))

    # -- events -----------------------------------------------------------------------------------------
    def new_rows(self, n: int, lo_s: int, hi_s: int):
        rng, out = self.rng, []
        for _ in range(n):
            self.next_eid += 1
            t = BASE_MS + rng.randrange(lo_s * 1000, hi_s * 1000)
            if self.events and rng.random() < 0.25:  # a tie at one millisecond with an earlier event
                t = ms(rng.choice(list(self.events.values()))["ts"])
            qty = rng.choice([None, 2**40, -(2**40)]) if rng.random() < 0.2 else rng.randint(-10, 40)
            amount = rng.choice([None, 1e300, -1e300, -0.0]) if rng.random() < 0.2 else round(rng.uniform(-50, 50), 2)
            out.append({"user_id": rng.choice(USERS), "eid": self.next_eid, "qty": qty, "amount": amount,
                        "ts": pd.Timestamp(t, unit="ms", tz="UTC")})
        return out

    def land(self, rows):
        """The rows as a file of the batch face."""
        self.files += 1
        df = pd.DataFrame(rows, columns=SCHEMA).astype({"qty": "Int64", "amount": "float64", "eid": "int64"})
        df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ms, UTC]")
        df.to_parquet(self.root / "data" / f"f{self.files:03d}.parquet")
        for r in rows:
            self.events[r["eid"]] = r

    def produce(self, n: int, lo_s: int, hi_s: int, extremes: bool):
        rows = self.new_rows(n, lo_s, hi_s)
        if extremes:
            late = dict(self.new_rows(1, 0, 1)[0],  # behind every other event
                        ts=pd.Timestamp(self.rng.choice([1_700_000, 0, -1]), unit="ms", tz="UTC"))
            future = dict(self.new_rows(1, 0, 1)[0], user_id="u_future",  # accepted: within the hour ahead
                          ts=pd.Timestamp(int(time.time() * 1000) + 20 * 60_000, unit="ms", tz="UTC"))
            rows = rows + [late, future]
        records = [(r["user_id"].encode(), record(r)) for r in rows]
        self.rng.shuffle(records)  # arrival order is not event-time order
        bad = []
        if extremes:
            bad = [(b"u0", json.dumps({"user_id": "u0", "eid": 0, "qty": 1, "ts": t}).encode())
                   for t in self.rng.sample(BAD_TIMES, 2)] + [(None, b'{"user_id": "u1", "ts": '), (b"u2", b"[1, 2]")]
        for rec in bad:
            records.insert(self.rng.randrange(len(records) + 1), rec)
        produce(self.topic, records)
        self.bad += len(bad)
        self.kafka += [r["eid"] for r in rows]
        self.land(rows)

    def pushed(self, store: FeatureStore, n: int, lo_s: int, hi_s: int):
        rows = self.new_rows(n, lo_s, hi_s)
        res = store.push("events", [dict(r, ts=r["ts"].isoformat()) for r in rows])
        assert res.events == n and not res.dead_letters and res.topic == self.topic, res
        self.kafka += [r["eid"] for r in rows]
        self.land(rows)

    # -- what the tables hold ---------------------------------------------------------------------------
    def owner(self, t: int):
        """The index of the last backfill whose range holds ``t`` (None: the stream's)."""
        for i in reversed(range(len(self.backfills))):
            if self.backfills[i][0] <= t < self.backfills[i][1]:
                return i
        return None

    def streamed(self):
        """A completed stream run read every record produced so far, under the current definition: outside
        the backfilled ranges it writes them; inside one, it adds those the backfill did not hold when its
        definition of the view is the backfill's (``w`` never changes)."""
        for eid in self.kafka:
            self.stream_def[eid] = self.definition
            i = self.owner(ms(self.events[eid]["ts"]))
            if i is None or eid in self.backfills[i][3]:
                continue
            for view, same in (("v", self.backfills[i][2] == self.definition), ("w", True)):
                if same and self.claimed[view].get(eid, (None,))[0] != i:
                    self.claimed[view][eid] = (i, self.definition)

    def computed(self, view: str = "v"):
        """eid -> the definition its row of ``view`` was computed under (filter not applied yet)."""
        out = {}
        for eid, r in self.events.items():
            i = self.owner(ms(r["ts"]))
            if i is not None:
                if eid in self.backfills[i][3]:
                    out[eid] = self.backfills[i][2]
                elif self.claimed[view].get(eid, (None,))[0] == i:
                    out[eid] = self.claimed[view][eid][1]
            elif eid in self.stream_def:
                out[eid] = self.stream_def[eid]
        return out

    def expected(self, view: str):
        """Sorted (eid, q2 or None) rows of ``view``'s table."""
        out = []
        for eid, (limit, mult) in self.computed(view).items():
            qty = self.events[eid]["qty"]
            if view == "w":
                out.append((eid, None))
            elif qty is not None and qty < limit:
                out.append((eid, qty * mult))
        return sorted(out)

    def current(self) -> bool:
        return all(d == self.definition for d in self.computed().values())


def record(r: dict) -> bytes:
    return json.dumps({"user_id": r["user_id"], "eid": r["eid"], "qty": r["qty"],
                       "amount": None if r["amount"] is None else r["amount"], "ts": ms(r["ts"])}).encode()


def table_rows(store: FeatureStore, view: str):
    t = store.offline.table(view)
    if t.version is None:
        return []
    data = t.read()
    q2 = data.column("q2").to_pylist() if view == "v" else [None] * data.num_rows
    return sorted(zip(data.column("eid").to_pylist(), q2))


def check_tables(store: FeatureStore, model: Model, context: str, exact: bool = True):
    for view in ("v", "w"):
        got = table_rows(store, view)
        twice = [e for e, c in Counter(e for e, _ in got).items() if c > 1]
        assert not twice, f"{context}: view {view} holds events {twice[:5]} more than once"
        want = model.expected(view)
        if exact:
            assert got == want, (f"{context}: view {view}: only in the table {sorted(set(got) - set(want))[:5]}, "
                                 f"missing {sorted(set(want) - set(got))[:5]}")
        else:  # a killed run committed part of what it read
            extra = sorted(set(got) - set(want) - model.partial[view])
            assert not extra, f"{context}: view {view} holds rows no run wrote: {extra[:5]}"


def expected_after_stream(model: Model, view: str):
    """The rows ``view``'s table holds once a stream run read every record produced so far."""
    saved = dict(model.stream_def), {v: dict(c) for v, c in model.claimed.items()}
    model.streamed()
    try:
        return model.expected(view)
    finally:
        model.stream_def, model.claimed = saved


def check_dead_letters(store: FeatureStore, model: Model, context: str):
    rows = dead_letters(store)
    keys = Counter((r["kafka_partition"], r["kafka_offset"], r["reason"]) for r in rows)
    assert all(c == 1 for c in keys.values()), f"{context}: a dead letter counted twice: {keys.most_common(2)}"
    records = len({(p, o) for p, o, _ in keys})
    assert model.bad_read <= records <= model.bad, f"{context}: {records} dead records, {model.bad_read} bad ones read"
    assert model.partial is not None or records == model.bad_read, f"{context}: {records} dead records"


def requests(rng: random.Random, model: Model, n: int = 24) -> pd.DataFrame:
    times = [ms(r["ts"]) for r in model.events.values()]
    qs = [rng.choice(times) + rng.choice((0, 1, -1, 30_000, 60_000, 90_001)) for _ in range(n)]
    qs += [max(times) + 1, BASE_MS + SPAN_S * 1000 + 60_000]
    return pd.DataFrame({"user_id": [rng.choice(USERS + ["u_future"]) for _ in qs],
                         "event_timestamp": pd.to_datetime(qs, unit="ms", utc=True)})


def check_reads(store: FeatureStore, model: Model, rng: random.Random, context: str, online: bool,
                exact: bool = True) -> int:
    """Training sets vs the oracle (or refused); with ``online``, online vs offline per request. Returns the
    online comparisons made."""
    req = requests(rng, model)
    compared = 0
    for view in ("v", "w"):
        refs = [f"{view}:{f}" for f in FEATURES[view]]
        try:
            frame = store.get_historical_features(req, features=refs)
        except OfflineStoreError as exc:
            assert view == "v" and not model.current(), f"{context}: {view} refused: {exc}"
            continue
        assert view == "w" or model.current() or not exact, f"{context}: read rows of an earlier definition"
        if not exact:  # which rows a killed run committed is not modelled
            continue
        held = sorted(model.computed(view))
        covered = pd.DataFrame([model.events[e] for e in held], columns=SCHEMA)
        want = oracle.point_in_time(covered, store.repo.views[view], req)
        for f in FEATURES[view]:
            for i, (a, e) in enumerate(zip(plain(frame[f]), want[f].tolist())):
                assert same_value(a, e), f"{context}: training set {view}:{f} row {i}: {a!r}, oracle {e!r}"
        if not online:
            continue
        for i, r in enumerate(req.to_dict("records")):
            res = store.get_online_features([{"user_id": r["user_id"]}], features=refs,
                                            request_time=r["event_timestamp"])
            if res.refusals:
                continue
            got = res.to_dict()
            for f in FEATURES[view]:
                e = plain(frame[f])[i]
                assert same_value(got[f][0], e), (f"{context}: {view}:{f} at {r}: online {got[f][0]!r}, offline {e!r}; "
                                                  f"the user's events: {user_events(model, r)}")
            compared += 1
    return compared


def user_events(model: Model, r: dict) -> list:
    """The events of the request's user in the two minutes before it: (eid, ms before it, qty, computed by)."""
    q, held = ms(r["event_timestamp"]), model.computed()
    return [(e, q - ms(x["ts"]), x["qty"], held.get(e)) for e, x in model.events.items()
            if x["user_id"] == r["user_id"] and 0 < q - ms(x["ts"]) <= 120_000]


def plain(column) -> list:
    """A frame column as Python values, null (None, NaN, NaT, NA) as None."""
    return column.astype(object).where(column.notna(), None).tolist()


def run_sequence(tmp: Path, seed: int, redis_client, kafka_admin, ops=None):
    rng = random.Random(seed)
    topic, project = f"fs_seq_{uuid.uuid4().hex[:10]}", f"t_seq_{uuid.uuid4().hex[:8]}"
    root = tmp / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    model = Model(rng, root, topic)
    create_topic(kafka_admin, topic, partitions=2)
    ckpt = tmp / "checkpoints"
    log = []
    launches = compared = 0
    ops = list(ops) if ops is not None else random_ops(rng)
    try:
        model.produce(30, 0, SPAN_S // 3, extremes=True)
        store = FeatureStore(root)
        store.apply()
        log.append("produce")
        for op in ops:
            online, began = False, time.monotonic()
            if op == "produce":
                lo = rng.randrange(0, SPAN_S)
                n, hi = rng.randint(4, 15), min(SPAN_S, lo + rng.randint(1, 200))
                model.produce(n, lo, hi, extremes=rng.random() < 0.5)
            elif op == "push":
                lo = rng.randrange(0, SPAN_S)
                model.pushed(store, rng.randint(1, 6), lo, min(SPAN_S, lo + 100))
            elif op in ("stream", "fresh"):
                streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                              checkpoint_interval_ms=1000, restore=op == "stream")
                launches += 1
                model.streamed()
                model.read, model.partial, model.bad_read = len(model.kafka), None, model.bad
                online = True
            elif op == "kill":
                kill_after_checkpoint(store, ckpt)
                launches += 1
                model.partial = {view: set(expected_after_stream(model, view)) for view in ("v", "w")}
            elif op == "backfill":
                streamed = [t for t in (ms(model.events[e]["ts"]) for e in model.kafka[:model.read])
                            if BASE_MS <= t < BASE_MS + SPAN_S * 1000] or [BASE_MS]  # (not the late and future ones)
                where = rng.choice(["before", "overlapping", "after"])
                mid = rng.choice(streamed)
                if where == "before":
                    lo, hi = BASE_MS - 1000, min(streamed) + rng.randrange(0, 60_000)
                elif where == "after":
                    lo, hi = max(streamed) - rng.randrange(0, 3_000), BASE_MS + (SPAN_S + 60) * 1000
                else:
                    lo, hi = mid - rng.randrange(0, 120_000), mid + rng.randrange(1, 120_000)
                store.backfill(start=pd.Timestamp(lo, unit="ms", tz="UTC"), end=pd.Timestamp(hi, unit="ms", tz="UTC"))
                model.backfills.append((lo, hi, model.definition, set(model.events)))
                op = f"backfill[{lo - BASE_MS}, {hi - BASE_MS}) {where}"
            elif op == "redefine":
                new = model.definition
                while new == model.definition:
                    new = (rng.randint(0, 30), rng.randint(1, 3))
                model.definition = new
                model.write_defs()
                store = FeatureStore(root)
                store.apply()
                op = f"redefine{new}"
            elif op.startswith("materialize"):
                try:
                    store.materialize()
                    online = True
                except OfflineStoreError as exc:
                    assert not model.current(), f"{log}: materialize refused: {exc}"
            log.append(f"{op} ({time.monotonic() - began:.0f}s)")
            context = f"seed {seed}, after {' -> '.join(log)}"
            exact = model.partial is None
            check_tables(store, model, context, exact)
            if launches:
                check_dead_letters(store, model, context)
            # online = offline: the table holds every event the job applied online, those that arrived after
            # the backfill claiming their range included (a view read under another definition is refused)
            compared += check_reads(store, model, rng, context, online and exact, exact)
        assert compared, f"seed {seed}: no online lookup compared with a training set: pick other operations"
        return launches
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def kill_after_checkpoint(store: FeatureStore, ckpt: Path):
    """An unbounded run cancelled (no savepoint, no final commit) once it took a checkpoint of its own."""
    names = streaming.stream_views(store)
    root = streaming.checkpoint_root(store, streaming.job_name(store, names), ckpt)
    before = streaming.latest_snapshot(root) if root.exists() else None
    handle = streaming.start(store, checkpoint_dir=ckpt, checkpoint_interval_ms=500, commit_interval_s=0.3)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while streaming.latest_snapshot(root) in (None, before):
            assert time.monotonic() < deadline, "no checkpoint before the kill"
            time.sleep(0.3)
    finally:
        handle.cancel()


def random_ops(rng: random.Random):
    """A handful of operations with three Flink launches (two of them after the first)."""
    ops = ["stream"] + [rng.choice(["produce", "push", "backfill", "backfill", "redefine", "materialize"])
                        for _ in range(3)]
    ops += [rng.choice(["kill", "stream", "fresh"])]
    ops += [rng.choice(["produce", "backfill", "redefine"]) for _ in range(2)]
    return ops + ["stream", "backfill", "materialize"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_with_the_stream_keep_each_event_once_and_online_equal_to_offline(
        tmp_path, seed, redis_client, kafka_admin):
    assert run_sequence(tmp_path, seed, redis_client, kafka_admin) == 3
