"""Card transactions: history in Parquet, live events on Kafka (JSON)."""

from featurestore import KafkaTopic, ParquetFiles, Source

transactions = Source(
    schema={
        "event_id": "string",
        "user_id": "string",
        "merchant_id": "string",
        "amount": "float64",
        "currency": "string",
        "country": "string",
        "channel": "string",
        "card_present": "bool",
        "ts": "timestamp",
    },
    timestamp="ts",
    batch=ParquetFiles("data/transactions/*.parquet"),
    stream=KafkaTopic("transactions", format="json"),
    watermark_delay="5s",
    tiebreak=("event_id",),
    description="One row per authorised card transaction.",
    owner="payments-platform@example.com",
)
