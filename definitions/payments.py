"""Spend and velocity features for the fraud model."""

from featurestore import Aggregation, FeatureView, Latest

from definitions.entities import merchant, user
from definitions.sources import transactions

user_spend = FeatureView(
    entities=[user],
    source=transactions,
    filter="amount > 0",
    projections={"amount_usd": "CASE WHEN currency = 'EUR' THEN amount * 1.08 ELSE amount END"},
    features=[
        Aggregation("*", "count", "10m", name="tx_count_10m"),
        Aggregation("*", "count", "1h", name="tx_count_1h"),
        Aggregation("amount_usd", "sum", "1h", name="spend_usd_1h"),
        Aggregation("amount_usd", "sum", "1d", name="spend_usd_1d"),
        Aggregation("amount_usd", "mean", "7d", name="avg_spend_usd_7d"),
        Aggregation("amount_usd", "max", "1d", name="max_spend_usd_1d"),
        Aggregation("amount_usd", "stddev", "7d", name="stddev_spend_usd_7d", default=0.0),
        Aggregation("merchant_id", "count_distinct", "1d", name="distinct_merchants_1d"),
        Aggregation("country", "last", "7d", name="last_country_7d"),
        Aggregation("*", "count", None, name="tx_count_lifetime"),
    ],
    description="How much and how fast a user spends.",
    owner="risk-team@example.com",
    tags={"team": "risk", "domain": "payments"},
)

user_profile = FeatureView(
    entities=[user],
    source=transactions,
    features=[
        Latest("country", name="home_country"),
        Latest("channel", name="last_channel"),
        Latest("amount", name="last_amount"),
    ],
    ttl="30d",
    description="The user's most recent transaction attributes (null after 30 days of silence).",
    owner="risk-team@example.com",
    tags={"team": "risk", "domain": "payments", "pii": "country"},
)

merchant_activity = FeatureView(
    entities=[merchant],
    source=transactions,
    features=[
        Aggregation("*", "count", "1h", name="merchant_tx_count_1h"),
        Aggregation("amount", "sum", "1d", name="merchant_volume_1d"),
        Aggregation("user_id", "count_distinct", "1h", name="merchant_distinct_users_1h"),
        Aggregation("amount", "variance", "7d", name="merchant_amount_var_7d"),
        Aggregation("amount", "min", "1d", name="merchant_min_amount_1d"),
        Aggregation("country", "first", "1d", name="merchant_first_country_1d"),
    ],
    description="Merchant-side velocity.",
    owner="risk-team@example.com",
    tags={"team": "merchant-risk", "domain": "payments"},
)
