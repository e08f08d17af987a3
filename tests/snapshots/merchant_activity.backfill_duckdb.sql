SELECT "event_id", "user_id", "merchant_id", "amount", "currency", "country", "channel", "card_present", "ts"
FROM (
  SELECT
    CAST("event_id" AS VARCHAR) AS "event_id",
    CAST("user_id" AS VARCHAR) AS "user_id",
    CAST("merchant_id" AS VARCHAR) AS "merchant_id",
    CASE WHEN isnan(CAST("amount" AS DOUBLE)) THEN NULL ELSE CAST("amount" AS DOUBLE) END AS "amount",
    CAST("currency" AS VARCHAR) AS "currency",
    CAST("country" AS VARCHAR) AS "country",
    CAST("channel" AS VARCHAR) AS "channel",
    CAST("card_present" AS BOOLEAN) AS "card_present",
    CAST(date_trunc('millisecond', CAST("ts" AS TIMESTAMPTZ)) AS TIMESTAMPTZ) AS "ts"
  FROM <batch face>
) AS src
WHERE "ts" IS NOT NULL AND "merchant_id" IS NOT NULL
