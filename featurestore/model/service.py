"""Feature services: the named, versioned list of features a model uses, with its logging setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Tuple, Union

from featurestore.model.base import Definition
from featurestore.model.checks import Checks
from featurestore.model.request import RequestFeatureView
from featurestore.model.view import FeatureSelection, FeatureView

FeatureRefLike = Union[str, FeatureView, RequestFeatureView, FeatureSelection]
_REFS = (str, FeatureView, RequestFeatureView, FeatureSelection)
LOG_DESTINATIONS = ("redis", "kafka")
ADHOC_STREAM = "_adhoc"  # the serving-log stream of lookups by feature list (serving_log.ADHOC): no service's name


@dataclass(frozen=True)
class LoggingConfig:
    """Log-and-wait: record served feature vectors (SPEC §7).

    ``sample_rate`` is the fraction of requests logged; ``durable`` makes a lookup wait until its log
    record is stored, and is the only mode (``durable=False``, a lookup that returns before its record is
    stored, is refused: it was accepted and ignored); ``destination`` is ``"redis"`` (a Redis Stream) or
    ``"kafka"``.
    """

    enabled: bool = True
    sample_rate: float = 1.0
    durable: bool = True
    destination: str = "redis"

    def __post_init__(self) -> None:
        checks = Checks()
        if not isinstance(self.sample_rate, (int, float)) or not 0.0 <= float(self.sample_rate) <= 1.0:
            checks.add(f"logging sample_rate: expected a number in [0, 1], got {self.sample_rate!r}")
        if self.durable is not True:
            checks.add(f"logging durable={self.durable!r} is not supported: a logged lookup always waits until its "
                       "record is stored (a record lost after the answer would break served = trained); leave durable "
                       "at True")
        if self.destination not in LOG_DESTINATIONS:
            checks.add(f"logging destination: {self.destination!r} is not one of {', '.join(LOG_DESTINATIONS)}")
        checks.settle(self)

    def canonical(self) -> dict:
        return {"enabled": self.enabled, "sample_rate": float(self.sample_rate), "durable": self.durable,
                "destination": self.destination}


@dataclass(frozen=True, kw_only=True)
class FeatureService(Definition):
    """Features a model uses: views and request feature views (all their features), ``view.select(...)`` or
    ``"view:feature"``.

    >>> FeatureService(features=["user_spend:amount_sum_1h"], logging=LoggingConfig()).version
    1
    """

    features: Tuple[FeatureRefLike, ...]
    logging: LoggingConfig = LoggingConfig(enabled=False)
    version: int = 1

    KIND: ClassVar[str] = "feature service"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("features", "version")
    META_FIELDS: ClassVar[Tuple[str, ...]] = ("description", "owner", "tags", "logging")

    def _check(self, checks: Checks) -> None:
        if isinstance(self.features, _REFS):
            features = (self.features,)
        else:
            try:
                features = tuple(self.features or ())
            except TypeError:
                features = (self.features,)
        if not features:
            checks.add("feature service features: at least one feature reference is required")
        for ref in features:
            if not isinstance(ref, _REFS):
                checks.add("feature service features: expected 'view:feature' strings, feature views, request "
                           f"feature views or view.select(...), got {type(ref).__name__}")
        features = tuple(r for r in features if isinstance(r, _REFS))
        logging = self.logging
        if isinstance(logging, bool):
            logging = LoggingConfig(enabled=logging)
        if not isinstance(logging, LoggingConfig):
            checks.add(f"feature service logging: expected LoggingConfig or bool, got {logging!r}")
            logging = LoggingConfig(enabled=False)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            checks.add(f"feature service version: expected a positive int, got {self.version!r}")
        self._set(features=features, logging=logging)
