"""The streaming job's committer without Flink: each staged file registered exactly once across crashes, and
streamed rows of an earlier definition never read as the current one's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from featurestore.engines.flink import commit as stream_commit
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import random_events, random_requests, write_events
from tests.stream_helpers import _flink_like_file, make_repo


# -- the committer (no Flink) -----------------------------------------------------------------------------


def test_committer_registers_each_file_exactly_once_across_crashes(tmp_path):
    from featurestore.stores.offline import OfflineStore

    staging = tmp_path / "staging"
    table = OfflineStore(tmp_path / "offline").table("v", ts_column="ts")
    _flink_like_file(staging / "part-a-0-0", [("u1", 1772323200000, 0, 0), ("u2", 1772323201000, 0, 1)])
    _flink_like_file(staging / ".part-b-0-1.inprogress.x", [("u3", 1772323202000, 0, 2)])
    c = streaming.DirCommitter(staging, table, stream_commit.StreamIdentity("t", "fp"))
    assert c.commit() == 2
    assert c.commit() == 0  # nothing new; the in-progress file is never taken
    assert table.manifest()["stream"] == {"topic": "t", "fingerprint": "fp", "next_offsets": {"0": 2}}
    # A crash after commit_stream committed but before the committer advanced: the pending intent is
    # replayed as a no-op (the table recorded the token) and the leftover file is deleted, not registered again.
    _flink_like_file(staging / "part-c-0-2", [("u4", 1772323203000, 0, 3)])
    state = json.loads((staging / streaming.COMMITTER_STATE).read_text())
    pending = {"seq": state["seq"] + 1, "files": ["part-c-0-2"], "rebuild": False, "restart": False}
    (staging / streaming.COMMITTER_PENDING).write_text(json.dumps(pending))
    c._commit_files(state, pending)
    assert c.commit() == 1
    assert not (staging / "part-c-0-2").exists()
    # A job started afresh re-reads the topic: its files repeat offsets the table holds, which are not added.
    _flink_like_file(staging / "part-d-0-0", [("u1", 1772323200000, 0, 0), ("u2", 1772323201000, 0, 1),
                                              ("u3", 1772323202000, 0, 2), ("u4", 1772323203000, 0, 3),
                                              ("u5", 1772323204000, 0, 4)])
    assert c.commit() == 1
    import pyarrow.parquet as pq

    rows = sorted(r["user_id"] for f in table.files(table.version) for r in pq.read_table(f).to_pylist())
    assert rows == ["u1", "u2", "u4", "u5"]  # u3 never left the in-progress file of the first run
    assert table.read().column_names == ["user_id", "ts"]  # the Kafka coordinates are not stored
    assert c.totals()["rows"] == 4


def test_streamed_rows_of_an_earlier_definition_are_never_read_as_this_ones(tmp_path):
    """The stream's committer records what its rows were computed under (the view's rows fingerprint): the
    history backfilled, the rest committed as the job commits it; reads equal the oracle. After a change to
    the view's filter and a backfill of the history under it, the streamed rows are still the old filter's:
    every reader refuses the table (one line: run the stream) instead of reading them as the new one's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.errors import OfflineStoreError

    root = make_repo(tmp_path / "r", "t_rows", "p_rows", pd.DataFrame())
    events = random_events(31).sort_values("ts", kind="stable").reset_index(drop=True)
    cut = events["ts"].iloc[200].floor("s")
    write_events(root, events[events["ts"] < cut])
    store = FeatureStore(root)
    store.backfill(end=cut, views=["qty_stats"])
    cv = store.compiled("qty_stats")
    later = events[events["ts"] >= cut]
    later = later[later["flag"] == True]  # noqa: E712 - the view's filter, as the job applies it
    data = pa.Table.from_pandas(later.assign(ts=later["ts"].dt.floor("ms")), preserve_index=False)
    for name, expr, dtype in cv.projections:  # the job's rows carry the projections
        values = oracle.sql_values(later.to_dict("records"), store.repo.views["qty_stats"].source, [expr])[0]
        data = data.append_column(name, pa.array([v[0] for v in values]))
    data = data.append_column("__kafka_partition", pa.array([0] * len(later), pa.int32()))
    data = data.append_column("__kafka_offset", pa.array(range(len(later)), pa.int64()))
    staging = tmp_path / "staging"
    staging.mkdir()
    pq.write_table(data, staging / "part-a-0-0")
    table = store.offline.table("qty_stats", ts_column=cv.ts_column)
    committer = streaming.DirCommitter(staging, table, stream_commit.view_identity(store, "qty_stats"))
    assert committer.commit() == len(later)
    requests = random_requests(31, events, n=60)
    view = store.repo.views["qty_stats"]
    got = store.get_historical_features(requests, features=[f"qty_stats:{f}" for f in view.feature_names])
    assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, "batch + stream")

    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('filter="flag"', 'filter="NOT flag"'))
    store.reload()
    store.backfill(end=cut, views=["qty_stats"])  # the batch face's rows are the new filter's now, not the stream's
    with pytest.raises(OfflineStoreError, match="view 'qty_stats': its offline table holds rows streamed under an "
                                                "earlier definition"):
        store.get_historical_features(requests, features=["qty_stats:tags_1m"])
