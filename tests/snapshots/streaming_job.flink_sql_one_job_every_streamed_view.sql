CREATE TEMPORARY TABLE `fs_kafka_transactions` (
  `__payload` STRING,
  `__kafka_partition` INT METADATA FROM 'partition' VIRTUAL,
  `__kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `__kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `__rowtime` AS TO_TIMESTAMP_LTZ(TRY_CAST(JSON_VALUE(`__payload`, '$.ts') AS BIGINT), 3),
  WATERMARK FOR `__rowtime` AS `__rowtime` - INTERVAL '5.000' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'transactions',
  'properties.bootstrap.servers' = '<kafka bootstrap>',
  'properties.group.id' = 'featurestore-payments-cf6663e4e1df',
  'scan.startup.mode' = 'earliest-offset',
  'value.format' = 'raw',
  'value.raw.charset' = 'UTF-8'
);

CREATE TEMPORARY TABLE `fs_events_user_spend` (
  `event_id` STRING,
  `user_id` STRING,
  `merchant_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `country` STRING,
  `channel` STRING,
  `card_present` BOOLEAN,
  `ts` TIMESTAMP(3),
  `amount_usd` DOUBLE,
  `__kafka_partition` INT,
  `__kafka_offset` BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '<repo>/.featurestore/offline/payments/_stream_staging/user_spend/4fe6deb5f4cb',
  'format' = 'parquet',
  'parquet.write.int64.timestamp' = 'true',
  'parquet.timestamp.time.unit' = 'millis',
  'parquet.utc-timezone' = 'true'
);

CREATE TEMPORARY TABLE `fs_events_user_profile` (
  `event_id` STRING,
  `user_id` STRING,
  `merchant_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `country` STRING,
  `channel` STRING,
  `card_present` BOOLEAN,
  `ts` TIMESTAMP(3),
  `__kafka_partition` INT,
  `__kafka_offset` BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '<repo>/.featurestore/offline/payments/_stream_staging/user_profile/e15865afc077',
  'format' = 'parquet',
  'parquet.write.int64.timestamp' = 'true',
  'parquet.timestamp.time.unit' = 'millis',
  'parquet.utc-timezone' = 'true'
);

CREATE TEMPORARY TABLE `fs_events_merchant_activity` (
  `event_id` STRING,
  `user_id` STRING,
  `merchant_id` STRING,
  `amount` DOUBLE,
  `currency` STRING,
  `country` STRING,
  `channel` STRING,
  `card_present` BOOLEAN,
  `ts` TIMESTAMP(3),
  `__kafka_partition` INT,
  `__kafka_offset` BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '<repo>/.featurestore/offline/payments/_stream_staging/merchant_activity/be9793a67ab5',
  'format' = 'parquet',
  'parquet.write.int64.timestamp' = 'true',
  'parquet.timestamp.time.unit' = 'millis',
  'parquet.utc-timezone' = 'true'
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
  'parquet.utc-timezone' = 'true'
);

-- evaluated once per record (DataStream barrier), then shared
CREATE TEMPORARY VIEW `fs_parsed_transactions` AS
SELECT `__payload`, `__kafka_partition`, `__kafka_offset`, CAST(`__kafka_ts` AS TIMESTAMP(3)) AS `__kafka_ts`,
  COALESCE(`__payload` IS JSON OBJECT, FALSE) AS `__is_object`,
  JSON_VALUE(`__payload`, '$.event_id') AS `event_id__raw`,
  JSON_VALUE(`__payload`, '$.user_id') AS `user_id__raw`,
  JSON_VALUE(`__payload`, '$.merchant_id') AS `merchant_id__raw`,
  JSON_VALUE(`__payload`, '$.amount') AS `amount__raw`,
  JSON_VALUE(`__payload`, '$.currency') AS `currency__raw`,
  JSON_VALUE(`__payload`, '$.country') AS `country__raw`,
  JSON_VALUE(`__payload`, '$.channel') AS `channel__raw`,
  JSON_VALUE(`__payload`, '$.card_present') AS `card_present__raw`,
  JSON_VALUE(`__payload`, '$.ts') AS `ts__raw`
FROM `fs_kafka_transactions`;

-- evaluated once per record (DataStream barrier), then shared
CREATE TEMPORARY VIEW `fs_typed_transactions` AS
SELECT `__payload`, `__kafka_partition`, `__kafka_offset`, `__kafka_ts`,
  CASE WHEN REGEXP(`ts__raw`, '^-?[0-9]+$') THEN TRY_CAST(`ts__raw` AS BIGINT) END AS `__ts_ms`,
  CAST(TO_TIMESTAMP_LTZ(CASE WHEN REGEXP(`ts__raw`, '^-?[0-9]+$') THEN TRY_CAST(`ts__raw` AS BIGINT) END, 3) AS TIMESTAMP(3)) AS `ts`,
  `event_id__raw` AS `event_id`,
  `user_id__raw` AS `user_id`,
  `merchant_id__raw` AS `merchant_id`,
  CASE WHEN TRY_CAST(`amount__raw` AS DOUBLE) = TRY_CAST(`amount__raw` AS DOUBLE) THEN TRY_CAST(`amount__raw` AS DOUBLE) END AS `amount`,
  `currency__raw` AS `currency`,
  `country__raw` AS `country`,
  `channel__raw` AS `channel`,
  CASE `card_present__raw` WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END AS `card_present`,
  CASE WHEN `__payload` IS NULL THEN 'empty record (null value)' WHEN NOT `__is_object` THEN 'not a JSON object' WHEN `ts__raw` IS NULL THEN 'missing event time ''ts''' WHEN (CASE WHEN REGEXP(`ts__raw`, '^-?[0-9]+$') THEN TRY_CAST(`ts__raw` AS BIGINT) END) IS NULL THEN 'event time ''ts'': not an integer (epoch milliseconds)' WHEN `amount__raw` IS NOT NULL AND (CASE WHEN TRY_CAST(`amount__raw` AS DOUBLE) = TRY_CAST(`amount__raw` AS DOUBLE) THEN TRY_CAST(`amount__raw` AS DOUBLE) END) IS NULL THEN 'column ''amount'': not a float64' WHEN `card_present__raw` IS NOT NULL AND (CASE `card_present__raw` WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END) IS NULL THEN 'column ''card_present'': not a bool' END AS `__reason`
FROM `fs_parsed_transactions`;

INSERT INTO fs_events_user_spend
SELECT `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, `ts`, (CASE WHEN (`currency` = 'EUR') THEN (`amount` * CAST(1.08 AS DOUBLE)) ELSE `amount` END) AS `amount_usd`, `__kafka_partition`, `__kafka_offset`
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `user_id` IS NOT NULL AND ((`amount` > CAST(0 AS DOUBLE))) IS TRUE;

INSERT INTO fs_events_user_profile
SELECT `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, `ts`, `__kafka_partition`, `__kafka_offset`
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `user_id` IS NOT NULL;

INSERT INTO fs_events_merchant_activity
SELECT `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, `ts`, `__kafka_partition`, `__kafka_offset`
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `merchant_id` IS NOT NULL;

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

-- online group 0 (user_spend, user_profile) -> per-entity mini-batches (ARRAY_AGG over a processing-time TUMBLE) -> kernel state (Python) -> Redis writer
SELECT JSON_ARRAY(`user_id` NULL ON NULL) AS k,
  JSON_ARRAY(CAST(`__kafka_partition` AS BIGINT) * 1099511627776 + `__kafka_offset`, `__ts_ms`, `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, COALESCE(((`amount` > CAST(0 AS DOUBLE))) IS TRUE, FALSE), TRUE, ((CASE WHEN (`currency` = 'EUR') THEN (`amount` * CAST(1.08 AS DOUBLE)) ELSE `amount` END)), `merchant_id`, `country`, `channel`, `amount` NULL ON NULL) AS v
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `user_id` IS NOT NULL;

-- online group 1 (merchant_activity) -> per-entity mini-batches (ARRAY_AGG over a processing-time TUMBLE) -> kernel state (Python) -> Redis writer
SELECT JSON_ARRAY(`merchant_id` NULL ON NULL) AS k,
  JSON_ARRAY(CAST(`__kafka_partition` AS BIGINT) * 1099511627776 + `__kafka_offset`, `__ts_ms`, `event_id`, `user_id`, `merchant_id`, `amount`, `currency`, `country`, `channel`, `card_present`, TRUE, `amount`, `user_id`, `country` NULL ON NULL) AS v
FROM `fs_typed_transactions`
WHERE `__reason` IS NULL AND `merchant_id` IS NOT NULL;
