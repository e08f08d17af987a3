"""Seeded, realistic card transactions for the ``transactions`` source: Parquet history and Kafka events.

Everything here is deterministic: the same arguments (and the same ``seed``) give the same rows, the
same event ids, the same arrival order and the same malformed payloads. Time does not depend on the
clock either: without ``end`` the history ends at :data:`DEFAULT_END`.

What the data looks like (:func:`generate_transactions`):

* **Skew.** Users and merchants are drawn from Zipf-like (power-law) weights: a few users and merchants
  carry a large share of the events (top 1% of users > 10% of events at the defaults).
* **Bursts.** About 6% of events come in bursts of one user: *card testing* (seconds apart, tiny
  amounts including 0.00, web/app, random merchants, often from a foreign country) and *sprees*
  (about a minute apart, ordinary purchases).
* **Ties.** Some burst events share exactly the timestamp of the previous event of the same user, about
  1% of the other events copy the timestamp of an unrelated event (ties across users), and some
  timestamps are whole seconds. ``event_id`` is the tiebreak column and is unique.
* **Time.** Timestamps lie in ``[end - days, end)``, UTC, with a daily (UTC) rhythm. Most have millisecond
  precision, about 8% whole seconds and about 12% microsecond precision (sub-millisecond, so every
  engine must floor them to the millisecond). Nothing is finer than a microsecond.
* **Values.** Amounts are log-normal (user and merchant price levels), a few very large ones, a few
  refunds (negative) and card-testing amounts, all rounded to cents. ``country`` persists per user
  (a home country) with occasional foreign ones; ``currency`` (USD/EUR/GBP) follows the country;
  ``channel`` is web/pos/app by user preference; ``card_present`` is true for most ``pos`` events and
  false for most others. About 1% of ``country`` and of ``channel`` are null; no other column is.

The frame (:data:`COLUMNS`, schema order): strings as ``object`` (``None`` for null), ``amount``
float64, ``card_present`` bool, ``ts`` ``datetime64[ns, UTC]`` (values are whole microseconds), sorted
by ``ts`` then ``event_id``.

Batch face (:func:`write_parquet`): ``part-NNNNN.parquet`` files, consecutive time ranges, ``ts`` as
``timestamp[us, tz=UTC]`` (never ns: Feast's DuckDB offline store breaks on ns). Parquet is typed, so the
files hold valid rows only; ``WriteResult.malformed`` is the number of malformed records that go with
the same data on the stream (:func:`malformed_count`), i.e. held back from the files.

Stream face (:func:`to_json_record`, :func:`produce_kafka`): one JSON object per event, keys = the
schema columns in schema order; event time is carried as **epoch milliseconds** (an integer) under the
timestamp column's own name (``ts``); sub-millisecond precision is truncated (floored); another timestamp
column (a created time) is an ISO-8601 UTC string with its microseconds. Amounts are JSON
numbers, booleans JSON booleans, nulls JSON ``null``. The Kafka key is ``user_id``; the Kafka record
timestamp is left to the producer (create time), event time is only in the payload. Records arrive
mostly in event-time order, a fraction late (:func:`out_of_order`), with malformed payloads
(:func:`malformed_records`) interleaved; a consumer must reject those and carry on.

Split by concern: :mod:`featurestore.datagen_events` (generation, arrival order),
:mod:`featurestore.datagen_records` (the stream face's records, malformed payloads) and
:mod:`featurestore.datagen_write` (Parquet files, Kafka); their public names are here.
"""

from __future__ import annotations

from featurestore.datagen_events import (  # noqa: F401 (featurestore.datagen's names)
    ARROW_TYPES, CHANNELS, COLUMNS, COUNTRIES, CURRENCIES, DEFAULT_DAYS, DEFAULT_END, DEFAULT_EVENTS,
    DEFAULT_MAX_DELAY_MS, DEFAULT_MERCHANTS, DEFAULT_SEED, DEFAULT_USERS, MALFORMED_KINDS, NULLABLE_COLUMNS,
    PROGRESS_THRESHOLD, TIMESTAMP_COLUMN, generate_transactions, out_of_order)
from featurestore.datagen_records import (  # noqa: F401
    _is_null, iter_json_records, malformed_count, malformed_records, to_epoch_ms, to_json_record)
from featurestore.datagen_write import WriteResult, _resolve_stream, produce_kafka, write_parquet  # noqa: F401
