"""The aggregation kernel: mergeable partial states of every aggregation (SPEC §2), engine-free.

* :mod:`~featurestore.kernel.exact` — exact sums of doubles (float ``sum``/``mean``/``variance``).
* :mod:`~featurestore.kernel.prefix` — exact variances of many windows over sorted events (prefix
  sums of scaled integers), for the offline point-in-time join's hot keys.
"""
