"""The aggregation kernel: mergeable partial states of every aggregation (SPEC §2), engine-free.

* :mod:`~featurestore.kernel.exact` — exact sums of doubles (float ``sum``/``mean``/``variance``).
"""
