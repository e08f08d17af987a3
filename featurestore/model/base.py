"""What every definition object shares: a name the loader gives, metadata, and two fingerprints.

Each class lists its fields explicitly as *data* (a change alters feature values, so a backfill is
due) or *metadata* (descriptions, owners, tags). A test fails when a field is in neither list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional, Tuple

from featurestore.errors import DefinitionError
from featurestore.model.checks import Checks
from featurestore.model.functions import function_canonical, is_function

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise DefinitionError(f"{what}: {value!r} is not a valid name (letters, digits, _; not starting with a digit)")
    return value


INTERNAL_PREFIX = "__"  # the store's own columns in its SQL and tables (row ids, event ranks, push sequences ...)
PLACEHOLDER_KEY = "__dummy_id"  # the join key of Feast's entityless views, which the store itself makes


def check_column_name(value: str, what: str, placeholder_ok: bool = False) -> str:
    """A name that becomes a column (source column, join key, projection, feature): a valid name that is not
    one of the store's internal ones, which start with ``__`` (``placeholder_ok``: Feast's entityless key)."""
    check_name(value, what)
    if value.startswith(INTERNAL_PREFIX) and not (placeholder_ok and value == PLACEHOLDER_KEY):
        raise DefinitionError(f"{what}: {value!r} starts with '{INTERNAL_PREFIX}', which is reserved for the "
                              "store's internal columns; rename it")
    return value


def freeze_tags(tags: Any) -> Tuple[Tuple[str, str], ...]:
    if tags is None:
        return ()
    if isinstance(tags, Mapping):
        items = tags.items()
    else:
        items = tags
    try:
        return tuple(sorted((str(k), str(v)) for k, v in items))
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"tags: expected a mapping of str to str ({exc})") from None


@dataclass(frozen=True, kw_only=True)
class Definition:
    """Base of Entity, Source, FeatureView, FeatureService, RequestSource, RequestFeatureView."""

    name: Optional[str] = None
    description: str = ""
    owner: str = ""
    tags: Tuple[Tuple[str, str], ...] = field(default=())

    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ()
    META_FIELDS: ClassVar[Tuple[str, ...]] = ("description", "owner", "tags")
    KIND: ClassVar[str] = "definition"

    def __post_init__(self) -> None:
        checks = Checks()
        if self.name is not None and checks.attempt(check_name, self.name, f"{self.KIND} name") is None:
            self._set(name=None)  # recorded; the loader names it after its variable
        self._set(tags=checks.attempt(freeze_tags, self.tags, fallback=()))
        self._check(checks)
        checks.settle(self)

    def _check(self, checks: Checks) -> None:
        """Check and normalize the fields of a subclass; record each problem in ``checks``."""

    def _set(self, **values: Any) -> None:
        """Normalize fields inside __post_init__ of a frozen dataclass."""
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def named(self, name: str):
        """A copy carrying ``name`` (the loader names objects after their variable)."""
        return dataclasses.replace(self, name=name)

    @property
    def tag_dict(self) -> dict:
        return dict(self.tags)

    # -- fingerprints -----------------------------------------------------------------------
    def data_dict(self) -> dict:
        return {f: canonical(getattr(self, f)) for f in self.DATA_FIELDS}

    def meta_dict(self) -> dict:
        return {f: canonical(getattr(self, f)) for f in self.META_FIELDS}

    @property
    def data_fingerprint(self) -> str:
        return digest({"kind": self.KIND, **self.data_dict()})

    @property
    def meta_fingerprint(self) -> str:
        return digest(self.meta_dict())

    @property
    def fingerprint(self) -> str:
        """Both halves together: any change at all."""
        return digest([self.data_fingerprint, self.meta_fingerprint])


def canonical(value: Any) -> Any:
    """A JSON-able canonical form; referenced definitions appear as their name + data fingerprint."""
    if isinstance(value, Definition):
        return {"ref": value.name, "data": value.data_fingerprint}
    if is_function(value):  # a request-time function: its code, never its address
        return function_canonical(value)
    if hasattr(value, "canonical"):
        return value.canonical()
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
