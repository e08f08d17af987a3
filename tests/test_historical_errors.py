"""Bad requests to get_historical_features get errors that name the column, view or row."""

import pandas as pd
import pytest

from featurestore.errors import RequestError
from featurestore.store import FeatureStore
from tests.randomrepo import random_events, write_events, write_repo


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("err"))
    write_events(root, random_events(1, n=50))
    return FeatureStore(root)


def frame(**cols):
    base = {"user_id": ["u0", "u1"], "event_timestamp": pd.to_datetime(["2026-03-01T00:01:00Z"] * 2, utc=True)}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize("kwargs,message", [
    (dict(features=["profile:nope"]), "feature view 'profile' has no feature 'nope'"),
    (dict(features=["profil:last_tag"]), "unknown feature view 'profil' in 'profil:last_tag' (did you mean 'profile'?)"),
    (dict(features=["last_tag"]), "feature reference 'last_tag' is not of the form 'view:feature'"),
    (dict(features=[]), "features=[...] is empty; name at least one 'view:feature'"),
    (dict(feature_service="nope"), "unknown feature service 'nope'"),
    (dict(features=["profile:last_tag"], feature_service="everything"),
     "give exactly one of features=[...] or feature_service=..."),
    (dict(features=["profile:last_tag", "profile:last_tag"]), "feature 'profile:last_tag' is requested twice"),
    (dict(features=["profile:last_tag", "qty_stats:last_tag_1h", "profile_forever:tag_ever"]), None),
    (dict(features=["profile:last_tag"], filter_by_created_timestamp=False), None),  # Feast's default
    # Feast's option: the view has no timestamp tiebreak (no created column), so nothing is filtered, as in Feast
    # (compared with Feast where it filters: tests/test_feast_reference.py)
    (dict(features=["profile:last_tag"], filter_by_created_timestamp=True), None),
    (dict(features=["qty_stats:last_tag_1h"], filter_by_created_timestamp=True, save_as="s"),
     "filter_by_created_timestamp=True cannot be saved as a training set yet (the manifest does not record it); "
     "save it without, or build it without save_as"),
])
def test_feature_reference_errors(store, kwargs, message):
    if message is None:
        assert len(store.get_historical_features(frame(), **kwargs)) == 2
        return
    with pytest.raises(RequestError) as info:
        store.get_historical_features(frame(), **kwargs)
    assert str(info.value) == message


def test_name_clash_needs_full_feature_names(store):
    from featurestore.sdk.refs import output_names

    with pytest.raises(RequestError, match="would both be column 'x'; pass full_feature_names=True"):
        output_names({"a": ["x"], "b": ["x"]}, False)
    got = store.get_historical_features(frame(), features=["profile:last_tag"], full_feature_names=True)
    assert "profile__last_tag" in got.columns


@pytest.mark.parametrize("entity_df,message", [
    (frame().drop(columns=["user_id"]), "entity_df has no column 'user_id' (join key of feature view 'profile')"),
    (frame().iloc[0:0], "entity_df is empty: give at least one (entity keys, timestamp) row"),
    (frame(event_timestamp=pd.to_datetime(["2026-03-01", "2026-03-02"])),
     "entity_df column 'event_timestamp' is timezone-naive; times are UTC: use "
     "df['event_timestamp'] = df['event_timestamp'].dt.tz_localize('UTC')"),
    (frame(event_timestamp=["2026-03-01", "x"]), "entity_df column 'event_timestamp' row 0: '2026-03-01' is not a "
                                                  "timezone-aware timestamp"),
    (frame(event_timestamp=[1, 2]), "entity_df column 'event_timestamp' has type int64, not a timezone-aware timestamp"),
    (frame(event_timestamp=[1772323260, 1772323260]), "entity_df column 'event_timestamp' has type int64, not a "
     "timezone-aware timestamp; its values look like epoch seconds: use pd.to_datetime(df['event_timestamp'], "
     "unit='s', utc=True)"),
    (frame(event_timestamp=[1772323260000, 1772323260000]), "entity_df column 'event_timestamp' has type int64, not "
     "a timezone-aware timestamp; its values look like epoch milliseconds: use pd.to_datetime(df['event_timestamp'], "
     "unit='ms', utc=True)"),
    (frame(event_timestamp=[1.5, 2.5]), "entity_df column 'event_timestamp' has type float64, not a timezone-aware "
     "timestamp"),
    (frame(last_tag=[1, 2]), "entity_df already has column(s) ['last_tag'] that the features would produce"),
    # rows are named by position, whatever the index (a labelled index gave int('b')'s ValueError, a reversed
    # one named the label: 'row 5')
    (frame(event_timestamp=pd.to_datetime(["2026-03-01T00:01:00Z", None], utc=True)).set_axis(["a", "b"]),
     "entity_df column 'event_timestamp' has a null timestamp at row 1"),
    (frame(event_timestamp=pd.to_datetime([None, "2026-03-01T00:01:00Z"], utc=True)).set_axis([5, 0]),
     "entity_df column 'event_timestamp' has a null timestamp at row 0"),
    (pd.concat([frame(), frame()[["user_id", "event_timestamp"]]], axis=1),  # was pandas' AttributeError
     "entity_df has more than one column named 'user_id', 'event_timestamp'"),
])
def test_entity_df_errors(store, entity_df, message):
    with pytest.raises(RequestError) as info:
        store.get_historical_features(entity_df, features=["profile:last_tag"])
    assert str(info.value) == message


def test_mixed_time_zones_are_converted_not_misread(store):
    a = pd.Timestamp("2026-03-01T01:00:00+01:00")
    b = pd.Timestamp("2026-03-01T00:00:00Z")
    mixed = pd.DataFrame({"user_id": ["u0", "u0"], "event_timestamp": pd.Series([a, b], dtype=object)})
    got = store.get_historical_features(mixed, features=["amount_stats:events_all"])
    assert got["events_all"].iloc[0] == got["events_all"].iloc[1]


def test_other_timestamp_column_name_and_order_kept(store):
    df = frame().rename(columns={"event_timestamp": "when"})
    df.index = [10, 5]
    got = store.get_historical_features(df, features=["amount_stats:events_all"])
    assert list(got.columns) == ["user_id", "when", "events_all"]
    assert list(got["user_id"]) == ["u0", "u1"]


@pytest.mark.parametrize("seed", [0, 1])
def test_an_expression_failing_on_an_event_is_one_line_naming_the_view(tmp_path, seed):
    """A user's SQL expression that DuckDB cannot evaluate on some random event (an INT64 overflow, a CAST
    of a text that is no number, an integer modulo by zero), in a projection, a filter or a feature, is one
    line naming the view, from the batch face and from the offline store alike; never DuckDB's own exception."""
    import random

    rng = random.Random(seed)
    root = write_repo(tmp_path)
    events = random_events(seed, n=60)
    events.loc[rng.randrange(len(events)), "qty"] = 2**40  # one event on which qty * qty overflows
    events.loc[rng.randrange(len(events)), "tag"] = "x1"  # ... and CAST(tag AS INT) fails
    events.loc[rng.randrange(len(events)), "qty"] = 0  # ... and 7 % qty
    write_events(root, events)
    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text() + '''
broken_projection = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty"},
                                features=[Aggregation("sq", "max", "1h", name="sq_max")])
broken_filter = FeatureView(entities=[user], source=events, filter="CAST(tag AS INT) > 0",
                            features=[Latest("amount", name="amount")])
broken_feature = FeatureView(entities=[user], source=events, features=[Latest("7 % qty", name="mod")])
''')
    store = FeatureStore(root)
    requests = random_requests_at(events)
    for view, feature in [("broken_projection", "sq_max"), ("broken_filter", "amount"), ("broken_feature", "mod")]:
        with pytest.raises(RequestError, match=f"^feature view '{view}': an expression of its filter, projections or "
                                               "features fails on an event: [^\n]+$"):
            store.get_historical_features(requests, features=[f"{view}:{feature}"])
    # a backfill makes each event a part of a view fails on a dead letter of that view, worded as the streaming
    # job words it (docs/streaming.md), and stores the view's other events; the other views keep the event
    import duckdb

    from featurestore.engines.backfill import dead_letter_table

    tags = events["tag"].tolist()
    as_int = [duckdb.sql("SELECT TRY_CAST($t AS INT)", params={"t": t}).fetchall()[0][0] for t in tags]
    ms = [int(t.value // 1_000_000) for t in events["ts"]]
    qty = [None if pd.isna(q) else int(q) for q in events["qty"]]
    failing = {"broken_projection": [m for m, q in zip(ms, qty) if q is not None and abs(q) > 3037000499],
               "broken_filter": [m for m, t, i in zip(ms, tags, as_int) if t is not None and i is None],
               "broken_feature": [m for m, q in zip(ms, qty) if q == 0]}
    kept = {"broken_projection": len(events) - len(failing["broken_projection"]),
            "broken_filter": sum(1 for i in as_int if i is not None and i > 0),
            "broken_feature": len(events) - len(failing["broken_feature"])}
    parts = {"broken_projection": "projection 'sq' (qty * qty): an integer overflow",
             "broken_filter": "filter (CAST(tag AS INT) > 0): a CAST of a text DuckDB cannot read as that type",
             "broken_feature": "feature 'mod' (7 % qty): a division by zero"}
    results = {r.view: r for r in store.backfill(views=list(parts) + ["amount_stats"])}
    letters = dead_letter_table(store, "events").read().to_pylist()
    for view, part in parts.items():
        assert all(failing.values()), failing
        mine = [d for d in letters if d["reason"].startswith(f"view '{view}': ")]
        assert all(d["reason"].startswith(f"view '{view}': {part}") for d in mine), mine
        assert sorted(d["event_time_ms"] for d in mine) == sorted(failing[view]), view
        assert (results[view].rows, results[view].failed) == (kept[view], len(failing[view])), view
    assert results["amount_stats"].rows == len(events) and results["amount_stats"].failed == 0
    assert len(letters) == sum(len(f) for f in failing.values())  # one per (event, view)
    for view, feature in [("broken_projection", "sq_max"), ("broken_filter", "amount"), ("broken_feature", "mod")]:
        store.get_historical_features(requests, features=[f"{view}:{feature}"])  # the stored events read fine
    _stored_unchecked(store, "broken_feature", events)  # as an earlier version stored it: reading it fails alike
    with pytest.raises(RequestError, match="^feature view 'broken_feature': an expression"):
        store.get_historical_features(requests, features=["broken_feature:mod"])


def _stored_unchecked(store, view: str, events) -> None:
    """Write ``events`` into the view's table as a backfill did before it evaluated feature inputs on them."""
    import pyarrow as pa

    from featurestore import semantics
    from featurestore.engines.duckdb_engine import arrow_schema

    cv = store.compiled(view)
    schema = arrow_schema(cv)
    table = pa.Table.from_pandas(events, preserve_index=False).select(schema.names)
    table = table.cast(schema, safe=False)  # event times truncated to milliseconds, as ingestion does
    store.offline.table(view, ts_column=cv.ts_column).write_range(table, semantics.MIN_EVENT_TIME_MS, None,
                                                                  rows_key=cv.rows_fingerprint)


def random_requests_at(events):
    return pd.DataFrame({"user_id": events["user_id"].iloc[:20].tolist(),
                         "event_timestamp": events["ts"].iloc[:20] + pd.Timedelta("1h")})
