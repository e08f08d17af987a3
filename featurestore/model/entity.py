"""Entities: the things features describe, keyed by one or more join-key columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Tuple

from featurestore.model.base import Definition, check_column_name
from featurestore.model.checks import Checks


@dataclass(frozen=True, kw_only=True)
class Entity(Definition):
    """A named key, e.g. ``Entity(join_keys=["user_id"])``.

    Key types (string, int64 or int32) come from the source schema each view reads.
    """

    join_keys: Tuple[str, ...]

    KIND: ClassVar[str] = "entity"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("join_keys",)

    def _check(self, checks: Checks) -> None:
        keys = self.join_keys
        if isinstance(keys, str):
            keys = (keys,)
        try:
            keys = tuple(keys)
        except TypeError:
            checks.add(f"entity join_keys: expected a list of column names, got {keys!r}")
            keys = None
        if keys == ():
            checks.add("entity join_keys: at least one join key is required")
        keys = keys or ()
        keys = tuple(k for k in keys if checks.attempt(check_column_name, k, "entity join key", True) is not None)
        if len(set(keys)) != len(keys):
            checks.add(f"entity join_keys: duplicate key in {list(keys)}")
            keys = tuple(dict.fromkeys(keys))
        self._set(join_keys=keys)
