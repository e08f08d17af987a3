"""Entities: the things features describe, keyed by one or more join-key columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Tuple

from featurestore.errors import DefinitionError
from featurestore.model.base import Definition, check_name


@dataclass(frozen=True, kw_only=True)
class Entity(Definition):
    """A named key, e.g. ``Entity(join_keys=["user_id"])``.

    Key types (string or int64) come from the source schema each view reads.
    """

    join_keys: Tuple[str, ...]

    KIND: ClassVar[str] = "entity"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("join_keys",)

    def __post_init__(self) -> None:
        super().__post_init__()
        keys = self.join_keys
        if isinstance(keys, str):
            keys = (keys,)
        try:
            keys = tuple(keys)
        except TypeError:
            raise DefinitionError(f"entity join_keys: expected a list of column names, got {keys!r}") from None
        if not keys:
            raise DefinitionError("entity join_keys: at least one join key is required")
        for key in keys:
            check_name(key, "entity join key")
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"entity join_keys: duplicate key in {list(keys)}")
        self._set(join_keys=keys)
