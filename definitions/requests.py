"""Request-time features of the fraud model: the transaction being scored, against the user's history."""

from featurestore import RequestFeatureView, RequestSource

from definitions.payments import user_spend

transaction_request = RequestSource(
    schema={"amount_usd": "float64", "merchant_country": "string"},
    description="Fields of the transaction being scored, sent with each lookup (columns of the entity frame "
                "in training).",
    owner="risk-team@example.com",
    tags={"team": "risk", "domain": "payments"},
)

transaction_risk = RequestFeatureView(
    sources=[transaction_request, user_spend.select("avg_spend_usd_7d", "max_spend_usd_1d", "last_country_7d")],
    features={
        "amount_vs_avg_7d": "amount_usd / nullif(avg_spend_usd_7d, 0)",
        "above_max_1d": "amount_usd > coalesce(max_spend_usd_1d, 0)",
        "foreign_merchant": "merchant_country IS DISTINCT FROM last_country_7d",
    },
    description="How the transaction being scored compares with the user's recent behaviour.",
    owner="risk-team@example.com",
    tags={"team": "risk", "domain": "payments"},
)
