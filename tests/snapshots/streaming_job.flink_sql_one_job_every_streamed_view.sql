CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS fs_parse_json_record AS 'featurestore.flink.ParseJsonRecord' LANGUAGE JAVA;

CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS fs_json_array AS 'featurestore.flink.JsonArrayText' LANGUAGE JAVA;

CREATE TEMPORARY TABLE `fs_kafka_transactions` (
  `__value` BYTES,
  `__kafka_partition` INT METADATA FROM 'partition' VIRTUAL,
  `__kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `__kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) WITH (
  'connector' = 'kafka',
  'topic' = 'transactions',
  'properties.bootstrap.servers' = '<kafka bootstrap>',
  'properties.group.id' = 'featurestore-payments-d04e8c084745',
  'scan.startup.mode' = 'earliest-offset',
  'value.format' = 'raw'
);

CREATE TEMPORARY TABLE `fs_staged_transactions` (
  `event_id` STRING,
  `user_id` STRING,
  `merchant_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `country` STRING,
  `channel` STRING,
  `card_present` BOOLEAN,
  `ts` TIMESTAMP(3),
  `__v0` BOOLEAN,
  `__v0_p0` DOUBLE,
  `__v1` BOOLEAN,
  `__v2` BOOLEAN,
  `__kafka_partition` INT,
  `__kafka_offset` BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '<repo>/.featurestore/offline/payments/_stream_staging/_staged/transactions/f4bc376415fc',
  'format' = 'parquet',
  'parquet.write.int64.timestamp' = 'true',
  'parquet.timestamp.time.unit' = 'millis',
  'parquet.utc-timezone' = 'true',
  'parquet.enable.dictionary' = 'false',
  'parquet.compression' = 'UNCOMPRESSED'
);

CREATE TEMPORARY TABLE `fs_dead_letters_transactions` (
  payload STRING,
  reason STRING,
  kafka_partition INT,
  kafka_offset BIGINT,
  kafka_timestamp TIMESTAMP(3),
  ingest_time TIMESTAMP(3)
) WITH (
  'connector' = 'filesystem',
  'path' = '<repo>/.featurestore/offline/payments/_stream_staging/_dead_letters/transactions',
  'format' = 'parquet',
  'parquet.write.int64.timestamp' = 'true',
  'parquet.timestamp.time.unit' = 'millis',
  'parquet.utc-timezone' = 'true',
  'parquet.enable.dictionary' = 'false',
  'parquet.compression' = 'UNCOMPRESSED'
);

-- evaluated once per record (DataStream barrier), then shared
CREATE TEMPORARY VIEW `fs_parsed_transactions` AS
SELECT fs_parse_json_record(`__value`, '{"time":"ts","columns":[["event_id","string","column ''event_id'': not a string"],["user_id","string","column ''user_id'': not a string"],["merchant_id","string","column ''merchant_id'': not a string"],["amount","float64","column ''amount'': not a float64"],["currency","string","column ''currency'': not a string"],["country","string","column ''country'': not a string"],["channel","string","column ''channel'': not a string"],["card_present","bool","column ''card_present'': not a bool"],["ts","timestamp","column ''ts'': not a timestamp"]],"reasons":{"empty_record":"empty record (null value)","not_utf8":"not valid UTF-8","not_object":"not a JSON object","trailing_data":"trailing data after the JSON object","duplicate_key":"duplicate key ''{}''","missing_time":"missing event time ''ts''","time_not_integer":"event time ''ts'': not an integer (epoch milliseconds)"}}') AS `__p`,
  `__kafka_partition`, `__kafka_offset`, CAST(`__kafka_ts` AS TIMESTAMP(3)) AS `__kafka_ts`
FROM `fs_kafka_transactions`;

-- evaluated once per record (DataStream barrier), then shared
CREATE TEMPORARY VIEW `fs_typed_transactions` AS
SELECT `__p`[1] AS `__payload`,
  `__kafka_partition`,
  `__kafka_offset`,
  `__kafka_ts`,
  TRY_CAST(`__p`[14] AS BIGINT) AS `__ts_ms`,
  CASE WHEN (TRY_CAST(`__p`[14] AS BIGINT) >= CAST(-2208988800000 AS BIGINT) AND TRY_CAST(`__p`[14] AS BIGINT) < CAST(7258118400000 AS BIGINT)) THEN CAST(TO_TIMESTAMP_LTZ(TRY_CAST(`__p`[14] AS BIGINT), 3) AS TIMESTAMP(3)) END AS `ts`,
  TRY_CAST(`__p`[6] AS STRING) AS `event_id`,
  TRY_CAST(`__p`[7] AS STRING) AS `user_id`,
  TRY_CAST(`__p`[8] AS STRING) AS `merchant_id`,
  TRY_CAST(`__p`[9] AS DOUBLE) AS `amount`,
  TRY_CAST(`__p`[10] AS STRING) AS `currency`,
  TRY_CAST(`__p`[11] AS STRING) AS `country`,
  TRY_CAST(`__p`[12] AS STRING) AS `channel`,
  TRY_CAST(`__p`[13] AS BOOLEAN) AS `card_present`,
  COALESCE(`__p`[2], COALESCE(`__p`[3], CASE WHEN NOT (TRY_CAST(`__p`[14] AS BIGINT) >= CAST(-2208988800000 AS BIGINT) AND TRY_CAST(`__p`[14] AS BIGINT) < CAST(7258118400000 AS BIGINT)) THEN 'event time ''ts'' out of range (supported: 1900-01-01 to 2199-12-31 UTC)' WHEN TRY_CAST(`__p`[14] AS BIGINT) > TRY_CAST(`__p`[5] AS BIGINT) + CAST(3600000 AS BIGINT) THEN 'event time ''ts'' too far in the future (more than 1h after ingestion)' END, `__p`[4])) AS `__reason`
FROM `fs_parsed_transactions`;

-- each event once; the committer splits the files of fs_staged_transactions into the views' offline tables:
--   view user_spend: rows where `__v0`; `amount_usd` = `__v0_p0`
--   view user_profile: rows where `__v1`
--   view merchant_activity: rows where `__v2`
INSERT INTO fs_staged_transactions
SELECT `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, `ts`, (`user_id` IS NOT NULL AND (((CASE WHEN `amount` = 0 THEN CAST(0 AS DOUBLE) ELSE `amount` END) > CAST(0 AS DOUBLE))) IS TRUE) AS `__v0`, CASE WHEN (`user_id` IS NOT NULL AND (((CASE WHEN `amount` = 0 THEN CAST(0 AS DOUBLE) ELSE `amount` END) > CAST(0 AS DOUBLE))) IS TRUE) THEN (CASE WHEN (`currency` = 'EUR') THEN (`amount` * CAST(1.08 AS DOUBLE)) ELSE `amount` END) END AS `__v0_p0`, (`user_id` IS NOT NULL) AS `__v1`, (`merchant_id` IS NOT NULL) AS `__v2`, `__kafka_partition`, `__kafka_offset`
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND ((`user_id` IS NOT NULL AND (((CASE WHEN `amount` = 0 THEN CAST(0 AS DOUBLE) ELSE `amount` END) > CAST(0 AS DOUBLE))) IS TRUE) OR (`user_id` IS NOT NULL) OR (`merchant_id` IS NOT NULL));

INSERT INTO fs_dead_letters_transactions
SELECT `__payload` AS payload, `__reason` AS reason, `__kafka_partition` AS kafka_partition, `__kafka_offset` AS kafka_offset, `__kafka_ts` AS kafka_timestamp, CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)) AS ingest_time
FROM `fs_typed_transactions`
WHERE `__reason` IS NOT NULL
UNION ALL
SELECT `__payload` AS payload, 'null join key ' || CASE WHEN `user_id` IS NULL THEN 'user_id' END || ' (views user_spend, user_profile)' AS reason, `__kafka_partition` AS kafka_partition, `__kafka_offset` AS kafka_offset, `__kafka_ts` AS kafka_timestamp, CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)) AS ingest_time
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND (`user_id` IS NULL)
UNION ALL
SELECT `__payload` AS payload, 'null join key ' || CASE WHEN `merchant_id` IS NULL THEN 'merchant_id' END || ' (views merchant_activity)' AS reason, `__kafka_partition` AS kafka_partition, `__kafka_offset` AS kafka_offset, `__kafka_ts` AS kafka_timestamp, CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)) AS ingest_time
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND (`merchant_id` IS NULL);

-- online group 0 (user_spend, user_profile) -> per-entity mini-batches (Java OnlineBatches: the events of each entity joined per processing-time interval) -> kernel state (Python) -> Redis writer
SELECT fs_json_array(`user_id`) AS k,
  fs_json_array(CAST(`__kafka_partition` AS BIGINT) * 1099511627776 + `__kafka_offset`, `__ts_ms`, `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, COALESCE((((CASE WHEN `amount` = 0 THEN CAST(0 AS DOUBLE) ELSE `amount` END) > CAST(0 AS DOUBLE))) IS TRUE, FALSE), TRUE, ((CASE WHEN (`currency` = 'EUR') THEN (`amount` * CAST(1.08 AS DOUBLE)) ELSE `amount` END)), `merchant_id`, `country`, `channel`, `amount`) AS v
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `user_id` IS NOT NULL;

-- online group 1 (merchant_activity) -> per-entity mini-batches (Java OnlineBatches: the events of each entity joined per processing-time interval) -> kernel state (Python) -> Redis writer
SELECT fs_json_array(`merchant_id`) AS k,
  fs_json_array(CAST(`__kafka_partition` AS BIGINT) * 1099511627776 + `__kafka_offset`, `__ts_ms`, `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, TRUE, `amount`, `user_id`, `country`) AS v
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `merchant_id` IS NOT NULL;
