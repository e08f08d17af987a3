"""Feast 0.67 as a second, independent reference for *latest* point-in-time joins.

One Feast repo (``feature_store.yaml`` with the ``duckdb`` offline store, and one definitions file written
with the ``feast`` package) is run twice over the same Parquet files:

* by Feast itself: ``feast.FeatureStore(...).apply(objects)`` then ``get_historical_features(...).to_df()``;
* by us: a ``featurestore.yaml`` whose ``definitions:`` points at the Feast repo, so our loader translates
  the very same Feast objects (``featurestore/feast_import/``).

Semantics being reconciled (SPEC §2 vs FIELD-NOTES "Feast"):

* Feast: ``ts <= q'`` (inclusive), TTL lower bound ``ts >= q' - ttl`` (inclusive), ``ttl=0`` unbounded, ties
  on the event time broken by the greatest ``created_timestamp_column``; event times compared at full
  (microsecond) precision.
* Ours: event times floored to the millisecond, ``ts < q`` (exclusive), ``ts >= q - ttl``, ties broken by the
  greatest ``tiebreak`` (= Feast's created column after translation).

Shift. Request times ``q`` are whole milliseconds and the data is microsecond-precise, so
``floor_ms(ts) < q  <=>  ts < q  <=>  ts <= q - 1us``. Feast is therefore asked at ``q' = q - 1 us`` (not
``q - 1 ms``: with ``q - 1 ms`` an event with a sub-millisecond part inside ``(q - 1ms, q)`` would be visible
to us and not to Feast). With that shift the upper edges agree exactly; the TTL edges are
``ts >= q - ttl`` (ours, ``q - ttl`` a whole ms) vs ``ts >= q - ttl - 1us`` (Feast), which differ only for
an event exactly at ``q - ttl - 1us``, i.e. one whose sub-millisecond part is 999 us. The generator never
makes such an event (sub-ms parts are 1..998 us) and the test asserts that no (request, event) pair sits on
that point, so no row is dropped.

Where the two stores legitimately differ, the data avoids it: an event with a sub-millisecond part never
shares its millisecond with another event of the same driver (we order by the floored time, then
``created``; Feast by the full time, then ``created``).
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.compare import assert_features_equal, is_null

pytestmark = [
    pytest.mark.feast,
    pytest.mark.slow,
    # ibis 12 on duckdb 2.0 still calls the deprecated fetch_arrow_table(); harmless here.
    pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning"),
]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")

from featurestore import FeatureStore  # noqa: E402

SEEDS = (11, 23, 57)
GLOBAL_SEED = 57  # the events of the view without entities (one global row)
CREATED_SEED = 23  # the view whose events are created after their event time (filter_by_created_timestamp)
MAPPED_SEED = 11  # the view whose source maps its file column `driver` to the join key `driver_id`
# Per seed: the view's TTL. 0 is Feast's "unbounded" (we translate it to no TTL).
TTLS = {11: timedelta(seconds=45), 23: timedelta(minutes=4), 57: timedelta(0)}
FEATURES = ("conv_rate", "acc_rate", "trips")
T0_MS = int(pd.Timestamp("2026-03-01 08:00:00", tz="UTC").value // 1_000_000)
CREATED0_US = int(pd.Timestamp("2026-03-02 00:00:00", tz="UTC").value // 1_000)
SPAN_MS = 10 * 60 * 1000  # events of a driver fall within 10 minutes
US = 1_000  # microseconds per millisecond
NO_EVENT_DRIVERS = (9001, 9002)

# The hand-made scenario (view `driver_stats_hand`): driver 7, times in ms after T0.
HAND_EVENTS = [
    # ts offset ms, created offset us, conv_rate, acc_rate, trips
    (0, 5, 0.1, 0.11, 1),
    (5_000, 3, 0.5, 0.55, 5),
    (9_000, 1, 0.7, 0.77, 7),  # tie at 9 s: created smaller ...
    (9_000, 9, 0.9, 0.99, 9),  # ... created greater: the winner for both stores
    (9_000, 2, 0.8, 0.88, 8),
]

DEFS_TEMPLATE = '''\
"""Feast definitions (written with the feast package) read by Feast and by featurestore alike."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)

SCHEMA = [Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
          Field(name="trips", dtype=Int64)]
'''

VIEW_TEMPLATE = '''
driver_events_{tag} = FileSource(
    name="driver_events_{tag}",
    path={path!r},
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

driver_stats_{tag} = FeatureView(
    name="driver_stats_{tag}",
    entities=[driver],
    ttl=timedelta(seconds={ttl_s}),
    schema=SCHEMA,
    source=driver_events_{tag},
)
'''

# One view read twice by a service: for the driver (with_name alone), and (with_name + with_join_key_map) for
# another driver. (Both are aliased: Feast 0.67 cannot compare a service mixing an aliased and a plain projection
# of one view, TypeError in FeatureService.__eq__.)
SERVICE_DEFS = """
from feast import FeatureService

driver_pair = FeatureService(name="driver_pair", features=[
    driver_stats_s11.with_name("mine"),
    driver_stats_s11.with_name("other").with_join_key_map({"driver_id": "other_driver_id"}),
])
"""

FEAST_YAML = """\
project: feast_reference
registry: {repo}/data/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {repo}/data/online.db
entity_key_serialization_version: 3
"""


# -- data ---------------------------------------------------------------------------------------------
def _write_events(path: Path, driver_id, ts_us, created_us, conv, acc, trips, key_column="driver_id") -> None:
    """Parquet with microsecond UTC timestamps (nanoseconds break Feast's duckdb store)."""
    table = pa.table({
        key_column: pa.array(driver_id, pa.int64()),
        "conv_rate": pa.array(conv, pa.float64()),
        "acc_rate": pa.array(acc, pa.float64()),
        "trips": pa.array(trips, pa.int64()),
        "event_timestamp": pa.array(ts_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "created": pa.array(created_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, path)


def make_events(seed: int) -> pd.DataFrame:
    """Random events: several per driver, equal event times (distinct `created`), nulls, a few times with a
    sub-millisecond part (alone in their millisecond for that driver, sub-ms part in 1..998 us)."""
    rng = np.random.default_rng(seed)
    rows = []
    drivers = 1000 + np.arange(8)
    for d in drivers:
        n = int(rng.integers(4, 20))
        ms = np.sort(rng.integers(0, SPAN_MS, n)) + T0_MS
        # equal event times: copy some times onto the next event (groups of 2-3)
        for i in range(1, n):
            if rng.random() < 0.3:
                ms[i] = ms[i - 1]
        ms = np.sort(ms)
        uniq, counts = np.unique(ms, return_counts=True)
        alone = set(uniq[counts == 1].tolist())
        for m in ms.tolist():
            frac = int(rng.integers(1, 999)) if (m in alone and rng.random() < 0.15) else 0
            rows.append((int(d), m * US + frac))
    n = len(rows)
    created = CREATED0_US + rng.choice(10**9, size=n, replace=False)  # unique, unrelated to row order

    def nullable(values, p=0.15):
        return [None if rng.random() < p else v for v in values]

    df = pd.DataFrame({
        "driver_id": [r[0] for r in rows],
        "ts_us": [r[1] for r in rows],
        "created_us": created.astype("int64"),
        "conv_rate": nullable(rng.random(n).round(6).tolist()),
        "acc_rate": nullable(rng.random(n).round(6).tolist()),
        "trips": nullable(rng.integers(0, 500, n).tolist()),
    })
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order means nothing


def make_requests(seed: int, events: pd.DataFrame, ttl: timedelta) -> pd.DataFrame:
    """Request rows: random times, times exactly at event times (inclusive vs exclusive), one ms after,
    TTL edges, drivers without events, duplicates; an extra label column and a row id."""
    rng = np.random.default_rng(seed + 1)
    ttl_ms = int(ttl.total_seconds() * 1000)
    ev_ms = (events["ts_us"] // US).to_numpy()
    rows = []
    for d in sorted(events["driver_id"].unique().tolist()) + list(NO_EVENT_DRIVERS):
        mine = ev_ms[events["driver_id"].to_numpy() == d]
        for q in rng.integers(T0_MS - 60_000, T0_MS + SPAN_MS + 2 * max(ttl_ms, 60_000), 8).tolist():
            rows.append((d, q))
        if len(mine):
            picks = rng.choice(mine, size=min(len(mine), 6), replace=False).tolist()
            for m in picks:
                rows.append((d, m))  # exactly at an event: we do not see it, Feast (unshifted) would
                rows.append((d, m + 1))
                if ttl_ms:
                    rows += [(d, m + ttl_ms - 1), (d, m + ttl_ms), (d, m + ttl_ms + 1)]
        else:
            rows.append((d, T0_MS + 1234))
    df = pd.DataFrame(rows, columns=["driver_id", "q_ms"])
    dup = df.sample(n=max(3, len(df) // 15), random_state=seed)
    df = pd.concat([df, dup], ignore_index=True).sample(frac=1.0, random_state=seed + 2).reset_index(drop=True)
    df["row_id"] = np.arange(len(df), dtype="int64")
    df["label"] = rng.integers(0, 2, len(df)).astype("int64")
    df["driver_id"] = df["driver_id"].astype("int64")
    return df


def _ts(ms_or_us: pd.Series, unit: str) -> pd.Series:
    return pd.to_datetime(ms_or_us.astype("int64"), unit=unit, utc=True).astype("datetime64[us, UTC]")


def ours_entity_df(req: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": req["driver_id"], "event_timestamp": _ts(req["q_ms"], "ms"),
                         "row_id": req["row_id"], "label": req["label"]})


def feast_entity_df(req: pd.DataFrame, shift_us: int) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": req["driver_id"],
                         "event_timestamp": _ts(req["q_ms"] * US - shift_us, "us"),
                         "row_id": req["row_id"], "label": req["label"]})


# -- the shared repo ----------------------------------------------------------------------------------
class World:
    def __init__(self, base: Path):
        self.base = base
        self.feast_repo = base / "feast_repo"
        self.our_repo = base / "our_repo"
        (self.feast_repo / "data").mkdir(parents=True)
        self.our_repo.mkdir()
        self.events = {seed: make_events(seed) for seed in SEEDS}
        defs = DEFS_TEMPLATE
        for seed in SEEDS:
            ev = self.events[seed]
            path = self.feast_repo / "data" / f"drivers_s{seed}.parquet"
            _write_events(path, ev["driver_id"], ev["ts_us"], ev["created_us"], ev["conv_rate"],
                          ev["acc_rate"], ev["trips"])
            defs += VIEW_TEMPLATE.format(tag=f"s{seed}", path=str(path), ttl_s=int(TTLS[seed].total_seconds()))
        hand = self.feast_repo / "data" / "drivers_hand.parquet"
        _write_events(hand, [7] * len(HAND_EVENTS), [(T0_MS + e[0]) * US for e in HAND_EVENTS],
                      [CREATED0_US + e[1] for e in HAND_EVENTS], [e[2] for e in HAND_EVENTS],
                      [e[3] for e in HAND_EVENTS], [e[4] for e in HAND_EVENTS])
        defs += VIEW_TEMPLATE.format(tag="hand", path=str(hand), ttl_s=3600)
        # seed 11's events again, the key column named `driver` in the file and mapped to the join key
        ev = self.events[MAPPED_SEED]
        mapped = self.feast_repo / "data" / "drivers_mapped.parquet"
        _write_events(mapped, ev["driver_id"], ev["ts_us"], ev["created_us"], ev["conv_rate"], ev["acc_rate"],
                      ev["trips"], key_column="driver")
        # seed 23's events created 0..120 s after their event time (distinct per event): with
        # filter_by_created_timestamp=True an event is hidden until then (ties too)
        ev = self.events[CREATED_SEED]
        rng = np.random.default_rng(5)
        delay_us = rng.choice([0, 1, 999, 1_000, 1_001, 30_000_000, 120_000_000], len(ev)) + np.arange(len(ev))
        self.created_us = ev["ts_us"].to_numpy() + delay_us
        late = self.feast_repo / "data" / "drivers_created.parquet"
        _write_events(late, ev["driver_id"], ev["ts_us"], self.created_us, ev["conv_rate"], ev["acc_rate"],
                      ev["trips"])
        defs += VIEW_TEMPLATE.format(tag="created", path=str(late), ttl_s=int(TTLS[CREATED_SEED].total_seconds()))
        defs += VIEW_TEMPLATE.format(tag="mapped", path=str(mapped), ttl_s=int(TTLS[MAPPED_SEED].total_seconds())
                                     ).replace('created_timestamp_column="created",',
                                               'created_timestamp_column="created",\n    field_mapping={"driver": '
                                               '"driver_id"},')
        # seed 57's events as one global row (a view without entities)
        defs += VIEW_TEMPLATE.format(tag="global", path=str(self.feast_repo / "data" / f"drivers_s{GLOBAL_SEED}.parquet"),
                                     ttl_s=int(TTLS[GLOBAL_SEED].total_seconds())
                                     ).replace("entities=[driver],", "entities=[],").replace(
                                         "driver_events_global = FileSource(", "driver_events_global = FileSource(")
        defs += SERVICE_DEFS
        self.defs_file = self.feast_repo / "driver_defs.py"
        self.defs_file.write_text(defs)
        (self.feast_repo / "feature_store.yaml").write_text(FEAST_YAML.format(repo=self.feast_repo))
        (self.our_repo / "featurestore.yaml").write_text(
            f"project: feast_reference\ndefinitions: {self.feast_repo}\n")

        # Feast: import the definitions file and apply its objects.
        spec = importlib.util.spec_from_file_location("feast_reference_driver_defs", self.defs_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        objects = [v for v in vars(module).values()
                   if isinstance(v, (feast.Entity, feast.FileSource, feast.FeatureView, feast.FeatureService))]
        self.feast = feast.FeatureStore(repo_path=str(self.feast_repo))
        self.feast.apply(objects)
        # Ours: the same file, translated by our loader.
        self.ours = FeatureStore(self.our_repo)

    def feast_features(self, view: str, entity_df: pd.DataFrame, **options) -> pd.DataFrame:
        refs = [f"{view}:{f}" for f in FEATURES]
        out = self.feast.get_historical_features(entity_df=entity_df, features=refs, **options).to_df()
        assert len(out) == len(entity_df), "Feast's duckdb store dropped or added entity rows"
        assert sorted(out["row_id"]) == sorted(entity_df["row_id"])
        out = out.sort_values("row_id", kind="stable").reset_index(drop=True)
        back = entity_df.sort_values("row_id").reset_index(drop=True)
        assert (out["label"].to_numpy() == back["label"].to_numpy()).all()
        return out

    def our_features(self, view: str, entity_df: pd.DataFrame, **options) -> pd.DataFrame:
        refs = [f"{view}:{f}" for f in FEATURES]
        out = pd.DataFrame(self.ours.get_historical_features(entity_df, features=refs, **options))
        assert out["row_id"].tolist() == entity_df["row_id"].tolist(), "rows not kept in input order"
        assert out["label"].tolist() == entity_df["label"].tolist()
        return out.sort_values("row_id", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    try:
        import ibis  # noqa: F401  (Feast's duckdb offline store is built on ibis)
    except ImportError:
        pytest.fail("Feast's duckdb offline store needs ibis: install feast's `duckdb` extra "
                    "(ibis-framework[duckdb]==12.0.0 is what this test ran with)")
    return World(tmp_path_factory.mktemp("feast_reference"))


# -- tests --------------------------------------------------------------------------------------------
def test_translation_of_the_shared_definitions(world):
    """Our loader reads the Feast file: created column -> tiebreak, ttl 0 -> unbounded, ttl in ms."""
    repo = world.ours.repo
    for seed in SEEDS:
        view = repo.views[f"driver_stats_s{seed}"]
        assert view.source.tiebreak == ("created",)
        assert view.source.timestamp == "event_timestamp"
        ttl_ms = int(TTLS[seed].total_seconds() * 1000)
        assert view.ttl == (ttl_ms or None)
        assert view.feature_names == FEATURES
        cv = world.ours.compiled(f"driver_stats_s{seed}")
        assert cv.order_columns[:2] == ("event_timestamp", "created")


@pytest.mark.parametrize("seed", SEEDS)
def test_latest_matches_feast_shifted_by_one_microsecond(world, seed):
    view = f"driver_stats_s{seed}"
    events = world.events[seed]
    ttl = TTLS[seed]
    req = make_requests(seed, events, ttl)

    # Guard the construction (see module docstring): no event sits at q - ttl - 1us, the only point where
    # the shifted Feast request and ours could disagree; nor at a sub-ms time sharing its ms.
    ttl_us = int(ttl.total_seconds() * 1_000_000)
    if ttl_us:
        edge = set(zip(req["driver_id"], req["q_ms"] * US - ttl_us - 1))
        on_edge = [p for p in zip(events["driver_id"], events["ts_us"]) if p in edge]
        assert not on_edge, f"events on the TTL edge: {on_edge}"
    assert (events["ts_us"] % US != 999).all()

    ours = world.our_features(view, ours_entity_df(req))
    theirs = world.feast_features(view, feast_entity_df(req, shift_us=1))
    assert_features_equal(ours, theirs, FEATURES, context=f"seed {seed}: ours at q vs Feast at q - 1us")

    # The comparison is not vacuous: values are found, nulls occur, and the exclusive edge matters
    # (rows where an event sits exactly at q, so Feast unshifted would see a different event).
    found = ours["conv_rate"].notna() | ours["acc_rate"].notna() | ours["trips"].notna()
    assert found.sum() > len(ours) // 3
    assert (~found).sum() > 0
    unshifted = world.feast_features(view, feast_entity_df(req, shift_us=0))
    differs = [i for i in range(len(ours))
               if any(not _same(ours[f][i], unshifted[f][i]) for f in FEATURES)]
    assert len(differs) >= 5, "expected rows where inclusive and exclusive joins differ"
    at_event = set(zip(events["driver_id"], events["ts_us"] // US))
    for i in differs:  # inclusive != exclusive only where an event sits exactly at q (ms)
        assert (ours["driver_id"][i], ours["event_timestamp"][i].value // 1_000_000) in at_event


def _same(a, b) -> bool:
    from tests.compare import same_value

    return same_value(a.item() if hasattr(a, "item") else a, b.item() if hasattr(b, "item") else b)


def test_hand_checked_inclusive_vs_exclusive(world):
    """Concrete rows: driver 7, events at +0 s (0.1), +5 s (0.5), three at +9 s (created order 0.7 < 0.8 <
    0.9). Ours is exclusive, Feast inclusive; both break the +9 s tie by the greatest `created` (0.9)."""
    ms = [5_000, 5_001, 9_000, 9_001, 0, 3_609_000, 3_609_001]
    req = pd.DataFrame({"driver_id": np.full(len(ms), 7, dtype="int64"),
                        "q_ms": [T0_MS + m for m in ms],
                        "row_id": np.arange(len(ms), dtype="int64"),
                        "label": np.zeros(len(ms), dtype="int64")})
    ours = world.our_features("driver_stats_hand", ours_entity_df(req))
    feast_raw = world.feast_features("driver_stats_hand", feast_entity_df(req, shift_us=0))
    got_ours = [None if is_null(v) else v for v in ours["conv_rate"].tolist()]
    got_feast = [None if is_null(v) else v for v in feast_raw["conv_rate"].tolist()]
    #           q = +5s   +5.001s  +9s   +9.001s  +0s   +9s+ttl  +9.001s+ttl (ttl 1 h)
    assert got_ours == [0.1, 0.5, 0.5, 0.9, None, 0.9, None]
    assert got_feast == [0.5, 0.5, 0.9, 0.9, 0.1, 0.9, None]
    assert ours["trips"].tolist()[3] == 9 and feast_raw["trips"].tolist()[2] == 9


def test_join_key_read_through_field_mapping_matches_feast(world):
    """``FileSource(field_mapping={"driver": "driver_id"})``: the file's `driver` column is the join key
    `driver_id`, as Feast's offline store reads it (a projection here); same values as Feast (shifted 1 us)
    and as the unmapped copy of the same events."""
    view = world.ours.repo.views["driver_stats_mapped"]
    assert dict(view.projections) == {"driver_id": '"driver"'} and "driver" in view.source.columns
    req = make_requests(MAPPED_SEED, world.events[MAPPED_SEED], TTLS[MAPPED_SEED])
    ours = world.our_features("driver_stats_mapped", ours_entity_df(req))
    theirs = world.feast_features("driver_stats_mapped", feast_entity_df(req, shift_us=1))
    assert_features_equal(ours, theirs, FEATURES, context="mapped join key: ours at q vs Feast at q - 1us")
    plain = world.our_features(f"driver_stats_s{MAPPED_SEED}", ours_entity_df(req))
    assert_features_equal(ours, plain, FEATURES, context="mapped join key vs the same events unmapped")
    assert ours["conv_rate"].notna().sum() > len(ours) // 3


def test_filter_by_created_timestamp_matches_feast(world):
    """``get_historical_features(filter_by_created_timestamp=True)``: an event is hidden until its created time
    too (ours ``created < q``, Feast ``created <= q'`` at ``q' = q - 1 us``: the same rows), the tie among equal
    event times taken among the visible events; equal to Feast's duckdb store on random data, and different
    from the unfiltered values (the filter is not vacuous)."""
    view = "driver_stats_created"
    events = world.events[CREATED_SEED]
    req = make_requests(CREATED_SEED, events, TTLS[CREATED_SEED])
    ours = world.our_features(view, ours_entity_df(req), filter_by_created_timestamp=True)
    theirs = world.feast_features(view, feast_entity_df(req, shift_us=1), filter_by_created_timestamp=True)
    assert_features_equal(ours, theirs, FEATURES, context="filter_by_created_timestamp: ours at q vs Feast at q - 1us")
    unfiltered = world.our_features(view, ours_entity_df(req))
    differs = sum(any(not _same(ours[f][i], unfiltered[f][i]) for f in FEATURES) for i in range(len(ours)))
    assert differs >= 5, "the created filter changed no row: the comparison proves nothing"
    assert ours["conv_rate"].notna().sum() > len(ours) // 4
    with pytest.raises(Exception, match="cannot be saved as a training set"):
        world.ours.get_historical_features(ours_entity_df(req), features=[f"{view}:conv_rate"],
                                           filter_by_created_timestamp=True, save_as="x")


def test_with_name_and_join_key_map_match_feast(world):
    """A service reading one view twice, the second time as ``with_name("other")`` joined on the entity frame's
    ``other_driver_id``: the same values as Feast's (full feature names ``other__conv_rate``...), and the aliased
    columns equal the plain view's values at the other driver."""
    repo = world.ours.repo
    other = repo.views["other"]
    assert other.join_keys == ("other_driver_id",) and dict(other.projections) == {"other_driver_id": '"driver_id"'}
    assert repo.views["mine"].join_keys == ("driver_id",) and not repo.views["mine"].projections
    req = make_requests(11, world.events[11], TTLS[11])
    rng = np.random.default_rng(3)
    others = rng.permutation(req["driver_id"].to_numpy())
    ours_df = ours_entity_df(req).assign(other_driver_id=others)
    feast_df = feast_entity_df(req, shift_us=1).assign(other_driver_id=others)
    ours = pd.DataFrame(world.ours.get_historical_features(ours_df, feature_service="driver_pair",
                                                           full_feature_names=True))
    theirs = world.feast.get_historical_features(entity_df=feast_df, features=world.feast.get_feature_service(
        "driver_pair"), full_feature_names=True).to_df().sort_values("row_id", kind="stable").reset_index(drop=True)
    ours = ours.sort_values("row_id", kind="stable").reset_index(drop=True)
    columns = [f"{v}__{f}" for v in ("mine", "other") for f in FEATURES]
    assert [c for c in ours.columns if "__" in c] == columns
    assert_features_equal(ours, theirs, columns, context="with_name/with_join_key_map: ours at q vs Feast at q - 1us")
    plain = world.our_features("driver_stats_s11", ours_df)
    by_other = world.our_features("driver_stats_s11", ours_df.assign(driver_id=others))
    for f in FEATURES:
        assert all(_same(a, b) for a, b in zip(ours[f"mine__{f}"], plain[f])), f
        assert all(_same(a, b) for a, b in zip(ours[f"other__{f}"], by_other[f])), f
    assert ours["other__conv_rate"].notna().sum() > len(ours) // 4


def test_view_without_entities_is_one_global_row_like_feast(world, redis_client):
    """Feast's entityless view: every request row reads the latest event of all drivers together. Offline equal
    to Feast's duckdb store (shifted 1 us) whatever the row's driver; online (after materialize) equal to
    offline for any entity row; the placeholder key `__dummy_id` never shows in what is returned."""
    import uuid

    from tests.conftest import drop_project

    view = world.ours.repo.views["driver_stats_global"]
    assert view.join_keys == ("__dummy_id",) and dict(view.projections) == {"__dummy_id": "''"}
    events = world.events[GLOBAL_SEED]
    req = make_requests(GLOBAL_SEED, events, TTLS[GLOBAL_SEED])
    ours = world.our_features("driver_stats_global", ours_entity_df(req))
    theirs = world.feast_features("driver_stats_global", feast_entity_df(req, shift_us=1))
    assert "__dummy_id" not in ours.columns
    assert_features_equal(ours, theirs, FEATURES, context="entityless view: ours at q vs Feast at q - 1us")
    assert ours["conv_rate"].notna().sum() > len(ours) // 2
    import dataclasses

    from featurestore.config import load_config

    store = FeatureStore(world.our_repo, config=dataclasses.replace(load_config(world.our_repo),
                                                                    project=f"t_global_{uuid.uuid4().hex[:8]}"))
    try:
        derived = ["driver_stats_global", "driver_stats_mapped", "other"]  # keys made by projections
        before = {v: pd.DataFrame(store.get_historical_features(
            ours_entity_df(req).assign(other_driver_id=req["driver_id"]), features=[f"{v}:{f}" for f in FEATURES]))
            for v in derived}  # computed from the source files (no offline table yet)
        store.backfill(views=derived)
        for v in derived:  # ... equal to the backfilled offline tables'
            after = pd.DataFrame(store.get_historical_features(
                ours_entity_df(req).assign(other_driver_id=req["driver_id"]), features=[f"{v}:{f}" for f in FEATURES]))
            assert_features_equal(after, before[v], FEATURES, context=f"{v}: backfilled vs from the source")
        store.materialize(views=["driver_stats_global"])
        q = pd.Timestamp(T0_MS + SPAN_MS, unit="ms", tz="UTC")
        rows = [{"driver_id": d} for d in (1, 2, 424242)]
        online = store.get_online_features(rows, features=[f"driver_stats_global:{f}" for f in FEATURES],
                                           request_time=q).to_dict()
        offline = pd.DataFrame(store.get_historical_features(
            pd.DataFrame({"driver_id": [1, 2, 424242], "event_timestamp": [q] * 3}),
            features=[f"driver_stats_global:{f}" for f in FEATURES]))
        assert "__dummy_id" not in online
        for f in FEATURES:
            assert len(set(map(str, online[f]))) == 1 and all(_same(a, b) for a, b in zip(online[f], offline[f])), f
    finally:
        drop_project(redis_client, store.config.project)
