"""Who and what the payments features describe."""

from featurestore import Entity

user = Entity(join_keys=["user_id"], description="A card holder.", owner="risk-team@example.com")
merchant = Entity(join_keys=["merchant_id"], description="A card acceptor.", owner="risk-team@example.com")
