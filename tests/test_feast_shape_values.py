"""Values in Feast's answer shape are what Feast's own server sends (SPEC §6: Feast's clients work against
``serve``): a timestamp value is Feast's ``UnixTimestamp`` JSON, whole epoch seconds truncated toward zero,
checked against Feast's own conversion (``python_values_to_proto_values`` then its server's
``_value_to_native``) on random times, before and after 1970, naive and zoned."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.feast]
feast = pytest.importorskip("feast")

from featurestore import server_feast  # noqa: E402


def _feast_json(value):
    from feast.feature_server_utils import _value_to_native
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    return _value_to_native(python_values_to_proto_values([value], ValueType.UNIX_TIMESTAMP)[0])


def _times(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    lo, hi = pd.Timestamp("1900-01-01", tz="UTC").value // 1000, pd.Timestamp("2199-12-31", tz="UTC").value // 1000
    us = rng.integers(lo, hi, n).tolist() + [0, -1, 1, -500_000, -1_000_000, -1_000_001, 999_999, 1_000_000]
    for u in us:
        whole, frac = divmod(u, 1_000_000)
        if 0 < frac < 2 or frac > 999_998:  # Feast goes through a float second: within its rounding of a whole
            continue                        # second it may land on the next one (we are exact)
        ts = pd.Timestamp(u * 1000, tz="UTC")
        yield ts
        yield ts.to_pydatetime()
        yield ts.tz_localize(None)
        yield ts.tz_convert("Asia/Kolkata").to_pydatetime()


@pytest.mark.parametrize("seed", [0, 1])
def test_timestamp_values_are_feasts_epoch_seconds(seed):
    for ts in _times(seed):
        assert server_feast._value(ts) == _feast_json(ts), ts


def test_epoch_seconds_truncates_toward_zero_exactly():
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert server_feast.epoch_seconds(epoch - timedelta(microseconds=1)) == 0
    assert server_feast.epoch_seconds(epoch - timedelta(seconds=1, microseconds=1)) == -1
    assert server_feast.epoch_seconds(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)) == 253402300799
    assert server_feast.epoch_seconds(datetime(1, 1, 1, tzinfo=timezone.utc)) == -62135596800
