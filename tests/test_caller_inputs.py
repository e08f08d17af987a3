"""Caller mistakes are refused with one line naming the column and the expected type, identically offline
(entity_df), online (Python and HTTP) and in training sets from logs; nothing wrong is ever returned.

Before: an int for a string join key read zeros offline and matched the string "1" online, bools and lists
were stringified, a request_time in epoch seconds was read as milliseconds (every window empty), and numpy
ints or float milliseconds got a misleading "timezone-naive" error."""

import re
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from featurestore.errors import RequestError
from featurestore.server import create_app
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.randomrepo import BASE, random_events, random_requests, write_events, write_repo

pytestmark = [pytest.mark.redis]

PAIR = ["pair_stats:pair_sum_1m", "pair_stats:pair_last_qty"]
Q = BASE + pd.Timedelta("150s")
Q_MS = int(Q.value // 1_000_000)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("inputs"))
    project = f"in_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    store = FeatureStore(root)
    events = random_events(21)
    write_events(root, events)
    store.backfill()
    store.materialize()
    yield store, TestClient(create_app(store)), events
    redis = store.online_store().client
    keys = list(redis.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*"))
    if keys:
        redis.delete(*keys)


# (user_id, shop, the message after "<where> row 0: ")
KEY_MISTAKES = [
    (0, 1, "join key 'user_id' expects a string, got 0 (int)"),
    (True, 1, "join key 'user_id' expects a string, got True (bool)"),
    (["u0"], 1, "join key 'user_id' expects a string, got ['u0'] (list)"),
    (1.5, 1, "join key 'user_id' expects a string, got 1.5 (float)"),
    ("u0", "1", "join key 'shop' expects an integer (int64), got '1' (str)"),
    ("u0", True, "join key 'shop' expects an integer (int64), got True (bool)"),
    ("u0", 1.5, "join key 'shop' expects an integer (int64), got 1.5 (float)"),
    ("u0", 2**63, "join key 'shop' expects an integer (int64), got 9223372036854775808 (out of range)"),
    # an int64 key that went through float64 (pandas, a column with a gap): beyond 2^53 it may be another key
    # (123456789012345678 -> 123456789012345680.0); it was looked up as that other key, or crashed at 2^63
    *[("u0", v, f"join key 'shop' got {v!r} (float), a float at or beyond 2^53 that may not be the integer meant (pandas "
                "turns an integer column with a missing value into float64); pass the column as pandas' nullable Int64")
      for v in (float(123456789012345678), 2.0**53, -(2.0**53) - 2, float(2**63 - 1), -(2.0**63))],
]


@pytest.mark.parametrize("user_id,shop,message", KEY_MISTAKES)
def test_a_join_key_of_the_wrong_type_is_refused_on_every_path(served, user_id, shop, message):
    store, client, _ = served
    entity_df = pd.DataFrame({"user_id": [user_id], "shop": [shop], "event_timestamp": [Q]})
    with pytest.raises(RequestError) as offline:
        store.get_historical_features(entity_df, features=PAIR)
    assert str(offline.value) == f"entity_df row 0: {message}"

    with pytest.raises(RequestError) as online:
        store.get_online_features([{"user_id": user_id, "shop": shop}], features=PAIR, request_time=Q)
    assert str(online.value) == f"entity row 0: {message}"
    with pytest.raises(RequestError) as frame:  # a DataFrame of entity rows: the same
        store.get_online_features(entity_df[["user_id", "shop"]], features=PAIR, request_time=Q)
    assert str(frame.value) == f"entity row 0: {message}"

    for body in ({"entity_rows": [{"user_id": user_id, "shop": shop}]},
                 {"entities": {"user_id": [user_id], "shop": [shop]}}):
        res = client.post("/get-online-features", json={"features": PAIR, "request_time": Q_MS, **body})
        assert (res.status_code, res.json()) == (400, {"detail": f"entity row 0: {message}"})

    if isinstance(user_id, list) or user_id != "u0":  # the logged service reads user_id keys only
        labels = pd.DataFrame({"user_id": [user_id], "event_timestamp": [Q], "label": [1]})
        with pytest.raises(RequestError) as logs:
            store.training_set_from_logs(labels, "logged_model")
        assert str(logs.value) == f"labels_df row 0: {message}"


def test_the_first_wrong_row_is_named_and_nulls_are_keys_that_match_nothing(served):
    store, _, _ = served
    entity_df = pd.DataFrame({"user_id": ["u0", None, 7], "event_timestamp": [Q] * 3})
    with pytest.raises(RequestError) as info:
        store.get_historical_features(entity_df, features=["amount_stats:events_all"])
    assert str(info.value) == "entity_df row 2: join key 'user_id' expects a string, got 7 (int)"
    nulls = pd.DataFrame({"user_id": ["u0", None], "event_timestamp": [Q] * 2})
    offline = store.get_historical_features(nulls, features=["amount_stats:events_all"])["events_all"].tolist()
    online = store.get_online_features(nulls[["user_id"]], features=["amount_stats:events_all"],
                                       request_time=Q).to_dict()["events_all"]
    assert offline == online and offline[0] > 0 and offline[1] == 0


def test_equivalent_spellings_of_a_key_give_the_same_values(served):
    """Integral floats (pandas makes an int column with a gap float), nullable Int64, numpy ints, pandas'
    string dtype and categoricals are the same keys: the same values offline and online, on random requests."""
    store, client, events = served
    requests = random_requests(21, events, n=40)[["user_id", "shop", "event_timestamp"]].reset_index(drop=True)
    want = store.get_historical_features(requests, features=PAIR)
    variants = {
        "float shop": requests.assign(shop=requests["shop"].astype("float64")),
        "Int64 shop": requests.assign(shop=requests["shop"].astype("Int64")),
        "object shop": requests.assign(shop=pd.Series([np.int64(s) for s in requests["shop"]], dtype=object)),
        "string user": requests.assign(user_id=requests["user_id"].astype("string")),
        "category user": requests.assign(user_id=requests["user_id"].astype("category")),
    }
    for label, frame in variants.items():
        got = store.get_historical_features(frame, features=PAIR)
        pd.testing.assert_frame_equal(got[["pair_sum_1m", "pair_last_qty"]], want[["pair_sum_1m", "pair_last_qty"]],
                                      obj=label)
    for i in range(0, len(requests), 7):
        row = requests.iloc[i]
        when = int(row["event_timestamp"].value // 1_000_000)
        base = store.get_online_features([{"user_id": row["user_id"], "shop": int(row["shop"])}], features=PAIR,
                                         request_time=when).to_dict()
        for shop in (float(row["shop"]), np.int64(row["shop"]), np.float32(row["shop"])):
            assert store.get_online_features([{"user_id": row["user_id"], "shop": shop}], features=PAIR,
                                             request_time=when).to_dict() == base
        res = client.post("/get-online-features", json={"features": PAIR, "request_time": when, "entity_rows": [
            {"user_id": row["user_id"], "shop": float(row["shop"])}]})
        assert res.status_code == 200 and res.json()["results"]["pair_last_qty"] == base["pair_last_qty"]


REQUEST_TIME_MISTAKES = [
    (Q_MS // 1000, f"request_time: {Q_MS // 1000} looks like epoch seconds; integer times are epoch milliseconds: "
                   f"pass {Q_MS} or a timezone-aware datetime"),
    (Q_MS * 1000, f"request_time: {Q_MS * 1000} looks like epoch microseconds; integer times are epoch milliseconds: "
                  f"pass {Q_MS} or a timezone-aware datetime"),
    (Q_MS * 1_000_000, f"request_time: {Q_MS * 1_000_000} looks like epoch nanoseconds; integer times are epoch "
                       f"milliseconds: pass {Q_MS} or a timezone-aware datetime"),
    (5, "request_time: 5 is not epoch milliseconds between 1973-03-03 and 2262-04-11; pass a timezone-aware datetime"),
    (float(Q_MS), f"request_time: {float(Q_MS)!r} is a float; pass int epoch milliseconds or a timezone-aware "
                  "datetime"),
    (Q_MS / 1000 + 0.25, f"request_time: {Q_MS / 1000 + 0.25!r} is a float of epoch seconds (like time.time()); "
                         "pass int(t * 1000) epoch milliseconds or a timezone-aware datetime"),
    (True, "request_time: expected a timestamp, got True"),
    ("2026-03-01T00:02:30", "request_time: '2026-03-01T00:02:30' is timezone-naive; give a UTC time "
                            "(e.g. '2026-01-01T00:00:00Z')"),
    (str(Q_MS), f"request_time: '{Q_MS}' is a number in a string; pass epoch milliseconds as an integer, or an "
                "ISO-8601 time with a zone (e.g. '2026-01-01T00:00:00Z')"),
    ([Q_MS], "request_time: expected a timezone-aware datetime, an ISO-8601 string with a zone or int epoch "
             "milliseconds, got list"),
]


@pytest.mark.parametrize("request_time,message", REQUEST_TIME_MISTAKES)
def test_a_request_time_in_the_wrong_unit_or_type_is_refused_python_and_http(served, request_time, message):
    store, client, _ = served
    with pytest.raises(RequestError) as info:
        store.get_online_features([{"user_id": "u0"}], features=["amount_stats:events_all"], request_time=request_time)
    assert str(info.value) == message
    res = client.post("/get-online-features", json={"features": ["amount_stats:events_all"],
                                                    "entity_rows": [{"user_id": "u0"}], "request_time": request_time})
    assert (res.status_code, res.json()) == (400, {"detail": message})


def test_numpy_and_other_accepted_request_times_equal_the_offline_value(served):
    store, client, _ = served
    offline = store.get_historical_features(pd.DataFrame({"user_id": ["u0"], "event_timestamp": [Q]}),
                                            features=["amount_stats:events_1m"])["events_1m"].iloc[0]
    assert offline > 0
    for when in (Q_MS, np.int64(Q_MS), np.int32(0) + np.int64(Q_MS), Q, Q.to_pydatetime(), Q.tz_convert("Asia/Tokyo"),
                 "2026-03-01T00:02:30Z", "2026-03-01T01:02:30+01:00"):
        got = store.get_online_features([{"user_id": "u0"}], features=["amount_stats:events_1m"], request_time=when)
        assert got.to_dict()["events_1m"] == [offline], repr(when)
    for when in (Q_MS, "2026-03-01T00:02:30Z"):
        res = client.post("/get-online-features", json={"features": ["amount_stats:events_1m"],
                                                        "entity_rows": [{"user_id": "u0"}], "request_time": when})
        assert res.json()["results"]["events_1m"] == [offline]


def test_backfill_bounds_follow_the_same_rules(served):
    store, _, _ = served
    with pytest.raises(RequestError) as info:
        store.backfill(start=int(time.time()), views=["profile"])
    assert "looks like epoch seconds; integer times are epoch milliseconds" in str(info.value)


def _exact_ms(when) -> int:
    """The reference: epoch ms of a tz-aware datetime / ISO text by plain datetime arithmetic (floored)."""
    import datetime as dt

    if isinstance(when, str):
        import re

        m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", when)
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        frac = (m.group(7) or "").ljust(9, "0")[:9]
        base = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc)
        ns = int(frac)
    else:
        base, ns = when.replace(microsecond=0), when.microsecond * 1000
    delta = base - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + ns // 1_000_000


def test_a_time_whose_zone_would_be_misread_is_refused():
    """'2026-01-01 00:00 PST' (a zone name pandas does not know: it dropped it, and the CLI read the time as UTC,
    eight hours off) and 'UTC+2' (dateutil's POSIX reading: two hours *behind* UTC) were taken silently, by the
    CLI's --start/--end, request_time and request-data timestamps; both are one line naming the text. Zones
    that read right still do."""
    from featurestore.cli_support import utc_time
    from featurestore.errors import RequestError
    from featurestore.sdk.timeutil import to_epoch_ms

    for text in ("2026-01-01 00:00 PST", "2026-01-01T00:00:00 CET", "2026-01-01 00:00 XYZ",
                 "2026-01-01T00:00 UTC+2", "2026-01-01 00:00 GMT-05:00", "2026-01-01 00:00 utc + 1"):
        for read in (lambda t: to_epoch_ms(t, "request_time"), lambda t: utc_time(t, "--start")):
            with pytest.raises(RequestError, match=re.escape(repr(text))):
                read(text)
    jan1 = 1767225600000
    for text, ms in (("2026-01-01T00:00:00Z", jan1), ("2026-01-01 00:00 UTC", jan1), ("2026-01-01 00:00 GMT", jan1),
                     ("2026-01-01T02:00:00+02:00", jan1), ("2025-12-31T19:00:00-05:00", jan1)):
        assert to_epoch_ms(text) == ms == int(utc_time(text, "--end").timestamp() * 1000), text


def test_times_beyond_pandas_nanoseconds_are_exact_bounds_and_request_times(served):
    """'--start 0001-01-01 --end 9999-12-31' (a backfill over everything), materialize --end in the far future,
    and request times of the year 1 or 9999 crashed with pandas' OverflowError (an unexpected failure and a
    traceback): they are read exactly, in the Timestamp's own unit, floored to milliseconds."""
    import datetime as dt
    import random

    from typer.testing import CliRunner

    from featurestore.cli import app
    from featurestore.sdk.timeutil import to_epoch_ms

    rng = random.Random(5)
    utc = dt.timezone.utc
    for _ in range(300):
        y = rng.choice([1, 2, 1677, 1678, 1900, 1969, 1970, 2262, 2263, 5000, 9999, rng.randint(1, 9999)])
        frac = rng.choice(["", ".5", ".0005", ".999999", ".123456789", ".000000001"])
        text = f"{y:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:" \
               f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{frac}Z"
        assert to_epoch_ms(text) == _exact_ms(text), text
        when = dt.datetime(y, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), microsecond=rng.randrange(10**6),
                           tzinfo=utc)
        assert to_epoch_ms(when) == _exact_ms(when), when
    store, _, events = served
    root = str(store.repo_path)
    for args in (["backfill", "--start", "0001-01-01", "--end", "9999-12-31", "--view", "profile"],
                 ["materialize", "--end", "9999-12-31", "--view", "profile"]):
        result = CliRunner().invoke(app, [*args, "--repo", root])
        assert result.exit_code == 0, (args, result.output)
    store.materialize(views=["profile"])
    far = pd.DataFrame({"user_id": ["u0", "u0", "u0"],
                        "event_timestamp": pd.Series([dt.datetime(9999, 12, 31, tzinfo=utc), dt.datetime(1, 1, 1, tzinfo=utc),
                                                      Q.to_pydatetime()], dtype=object)})
    offline = store.get_historical_features(far, features=["amount_stats:events_all", "profile:last_tag"]).to_arrow()
    assert offline.column("events_all").to_pylist()[1:] == [
        0, store.get_online_features([{"user_id": "u0"}], features=["amount_stats:events_all"],
                                     request_time=Q).to_dict()["events_all"][0]]
    assert offline.column("events_all").to_pylist()[0] == int((events["user_id"] == "u0").sum())
    for when, want in ((far["event_timestamp"][0], offline.column("events_all")[0].as_py()), ("0001-01-01T00:00:00Z", 0)):
        got = store.get_online_features([{"user_id": "u0"}], features=["amount_stats:events_all"], request_time=when)
        assert got.to_dict()["events_all"] == [want], when


@pytest.mark.parametrize("labels,kwargs,message", [
    # was "entity_df column ...": training_set_from_logs names its own frame, as for its join keys
    (pd.DataFrame({"user_id": ["u0", "u1"], "event_timestamp": [Q, pd.NaT], "label": [1, 0]}, index=["a", "b"]), {},
     "labels_df column 'event_timestamp' has a null timestamp at row 1"),
    (pd.DataFrame({"user_id": ["u0"], "event_timestamp": [Q.tz_localize(None)], "label": [1]}), {},
     "labels_df column 'event_timestamp' is timezone-naive; times are UTC: use "
     "df['event_timestamp'] = df['event_timestamp'].dt.tz_localize('UTC')"),
    (pd.DataFrame({"user_id": ["u0"], "event_timestamp": [Q], "label": [1]}), {"timestamp_column": "when"},
     "labels_df has no timestamp column 'when'"),
])
def test_a_labels_frame_mistake_names_labels_df(served, labels, kwargs, message):
    store, _, _ = served
    with pytest.raises(RequestError) as info:
        store.training_set_from_logs(labels, "logged_model", **kwargs)
    assert str(info.value) == message


def test_a_null_time_of_a_label_filled_by_the_join_names_its_own_row(served):
    """Labels matched by request id need no time; the rest are filled by the point-in-time join, whose null time
    named its position among those rows ('row 0'), not in labels_df."""
    store, _, _ = served
    logged = store.get_online_features([{"user_id": "u0"}], feature_service="logged_model", request_time=Q, log=True)
    labels = pd.DataFrame({"request_id": [logged.request_id, "never"], "user_id": ["u0", "u1"],
                           "event_timestamp": [Q, pd.NaT], "label": [1, 0]})
    with pytest.raises(RequestError) as info:
        store.training_set_from_logs(labels, "logged_model")
    assert str(info.value) == "labels_df column 'event_timestamp' has a null timestamp at row 1"
