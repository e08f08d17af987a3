"""What the fraud model reads, online and in training."""

from featurestore import FeatureService, LoggingConfig

from definitions.payments import merchant_activity, user_profile, user_spend
from definitions.requests import transaction_risk

fraud_model_v1 = FeatureService(
    features=[
        user_spend,
        user_profile.select("home_country", "last_amount"),
        "merchant_activity:merchant_tx_count_1h",
        merchant_activity.select("merchant_volume_1d", "merchant_distinct_users_1h"),
    ],
    logging=LoggingConfig(enabled=True, sample_rate=1.0, durable=True, destination="redis"),
    description="Features of the card-fraud model, logged for log-and-wait training.",
    owner="risk-team@example.com",
    tags={"team": "risk", "model": "fraud"},
)

fraud_model_v2 = FeatureService(
    features=[*fraud_model_v1.features, transaction_risk],
    logging=LoggingConfig(enabled=True, sample_rate=1.0, durable=True, destination="redis"),
    version=2,
    description="v1 plus request-time features of the transaction being scored (pass its amount_usd and "
                "merchant_country with each lookup).",
    owner="risk-team@example.com",
    tags={"team": "risk", "model": "fraud"},
)
