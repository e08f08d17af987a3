"""Feature views: entities + a source + optional filter and projections + features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional, Sequence, Tuple, Union

from featurestore.model.base import Definition, check_column_name
from featurestore.model.checks import Checks
from featurestore.model.durations import DurationLike, parse_optional_duration, parse_span
from featurestore.model.entity import Entity
from featurestore.model.features import Aggregation, Feature, Latest
from featurestore.model.source import Source


@dataclass(frozen=True, kw_only=True)
class FeatureView(Definition):
    """Features of one or more entities computed from one source.

    ``filter`` is a SQL boolean expression over source columns (rows where it is not true are
    dropped); ``projections`` maps new column names to SQL expressions over source columns, usable by
    features. ``ttl`` bounds how old a *latest* value may be. ``expected_freshness`` (metadata, for
    ``featurestore monitor``) says how old the newest event of the view may be before it is a breach.

    >>> from featurestore.model import Entity, Source, ParquetFiles
    >>> user = Entity(name="user", join_keys=["user_id"])
    >>> tx = Source(name="tx", schema={"user_id": "string", "amount": "double", "ts": "timestamp"},
    ...             timestamp="ts", batch=ParquetFiles("tx.parquet"))
    >>> v = FeatureView(entities=[user], source=tx, features=[Aggregation("amount", "sum", "1h")])
    >>> v.join_keys
    ('user_id',)
    """

    entities: Tuple[Entity, ...]
    source: Source
    features: Tuple[Feature, ...]
    filter: Optional[str] = None
    projections: Tuple[Tuple[str, str], ...] = ()
    ttl: Optional[Union[int, DurationLike]] = None
    online: bool = True
    # Monitoring only (featurestore monitor): the newest event should be at most this old. Metadata: changing
    # it never calls for a backfill.
    expected_freshness: Optional[Union[int, DurationLike]] = None

    KIND: ClassVar[str] = "feature view"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("entities", "source", "features", "filter", "projections", "ttl")
    META_FIELDS: ClassVar[Tuple[str, ...]] = ("description", "owner", "tags", "online", "expected_freshness")

    def meta_dict(self) -> dict:
        out = super().meta_dict()
        if out.get("expected_freshness") is None:  # unset: the fingerprint of a view from before the field
            out.pop("expected_freshness", None)
        return out

    def _check(self, checks: Checks) -> None:
        entities = (self.entities,) if isinstance(self.entities, Entity) else _as_tuple(self.entities, checks,
                                                                                        "feature view entities")
        if entities == ():
            checks.add("feature view entities: at least one entity is required")
        entities = entities or ()
        for e in entities:
            if not isinstance(e, Entity):
                checks.add(f"feature view entities: expected Entity objects, got {type(e).__name__}")
        entities = tuple(e for e in entities if isinstance(e, Entity))
        source = self.source
        if not isinstance(source, Source):
            checks.add(f"feature view source: expected a Source, got {type(source).__name__}")
            source = None
        features = _as_tuple(self.features, checks, "feature view features")
        if features == ():
            checks.add("feature view features: at least one feature is required")
        features = features or ()
        for f in features:
            if not isinstance(f, (Latest, Aggregation)):
                checks.add(f"feature view features: expected Latest(...) or Aggregation(...), got {type(f).__name__}")
        features = tuple(f for f in features if isinstance(f, (Latest, Aggregation)))
        names = [f.name for f in features if f.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            checks.add(f"feature view features: duplicate feature name(s) {', '.join(dupes)}")
        projections = self.projections
        if isinstance(projections, Mapping):
            projections = tuple(projections.items())
        pairs = []
        for item in _as_tuple(projections, checks, "feature view projections") or ():
            try:
                key, expr = item
            except (TypeError, ValueError):
                checks.add(f"feature view projections: expected a mapping of name to SQL expression, got {item!r}")
                continue
            if not isinstance(expr, str) or not expr.strip():
                checks.add(f"feature view projection {key!r}: expected a SQL expression string, got {expr!r}")
                continue
            if checks.attempt(check_column_name, str(key), "projection name", True) is not None:
                pairs.append((str(key), expr))
        filter_ = self.filter
        if filter_ is not None and (not isinstance(filter_, str) or not filter_.strip()):
            checks.add(f"feature view filter: expected a SQL boolean expression, got {filter_!r}")
            filter_ = None
        ttl = None if self.ttl is None else checks.attempt(parse_span, self.ttl, "feature view ttl")
        fresh = checks.attempt(parse_optional_duration, self.expected_freshness, "feature view expected_freshness")
        self._set(entities=entities, source=source, features=features, projections=tuple(pairs), filter=filter_,
                  ttl=ttl, expected_freshness=fresh)

    @property
    def join_keys(self) -> Tuple[str, ...]:
        keys: list = []
        for e in self.entities:
            keys.extend(k for k in e.join_keys if k not in keys)
        return tuple(keys)

    @property
    def feature_names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.features if f.name is not None)

    @property
    def latest_features(self) -> Tuple[Latest, ...]:
        return tuple(f for f in self.features if isinstance(f, Latest))

    @property
    def aggregations(self) -> Tuple[Aggregation, ...]:
        return tuple(f for f in self.features if isinstance(f, Aggregation))

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def select(self, *names: str) -> "FeatureSelection":
        """Some of this view's features, for a FeatureService: ``user_spend.select("amount_sum_1h")``."""
        if len(names) == 1 and not isinstance(names[0], str):
            names = tuple(names[0])
        return FeatureSelection(view=self, names=tuple(names))

    def __getitem__(self, names: Union[str, Sequence[str]]) -> "FeatureSelection":
        """Feast-style projection: ``view[["a", "b"]]``."""
        return self.select(*((names,) if isinstance(names, str) else names))


def _as_tuple(value, checks: Checks, what: str) -> tuple:
    """``value`` as a tuple; None when it is not a list (recorded); None itself is empty."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        checks.add(f"{what}: expected a list, got {value!r}")
        return None
    try:
        return tuple(value)
    except TypeError:
        checks.add(f"{what}: expected a list, got {type(value).__name__}")
        return None


@dataclass(frozen=True)
class FeatureSelection:
    """Some features of one view (all of them when ``names`` is empty)."""

    view: FeatureView
    names: Tuple[str, ...] = ()

    def canonical(self) -> dict:
        return {"view": self.view.name, "names": list(self.names)}
