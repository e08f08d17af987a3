"""What the parts of the Feast translation share: problems, failure signals and planning records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from featurestore.model import Entity


def is_feast_object(obj: Any) -> bool:
    """True for an instance of a class defined in the ``feast`` package (never imports feast)."""
    module = getattr(type(obj), "__module__", "") or ""
    return module == "feast" or module.startswith("feast.")


class FeastProblem(NamedTuple):
    """One Feast object that cannot be translated; ``variable`` is None for inline objects."""

    variable: Optional[str]
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}': {self.message}"


class Skip(Exception):
    """A dependency failed and was already reported."""


class Fail(Exception):
    """One problem with the object being translated."""


@dataclass
class ViewPlan:
    """What a Feast view needs from its source and what it will become."""

    obj: Any
    var: Optional[str]
    name: str
    entities: Tuple[Entity, ...]
    entity_names: Tuple[str, ...]
    source_key: str
    features: List[Any]
    columns: List[Tuple[str, Optional[str], str]]  # (source column, dtype or None, why needed)
    feast_features: Tuple[str, ...] = ()
    ttl_ms: Optional[int] = None
    projections: Tuple[Tuple[str, str], ...] = ()  # (join key, source column) of a field_mapping'd join key


@dataclass
class SourceGroup:
    obj: Any
    var: Optional[str]  # its own module-level variable, if any
    views: List[ViewPlan] = field(default_factory=list)  # plans of views that translated
    readers: List[str] = field(default_factory=list)  # names of every Feast view reading it
    inline_parent: Optional[Tuple[Optional[str], str]] = None  # (view variable, view name)
    # Filled by prepare():
    name: str = ""
    key: Optional[str] = None  # key in the result
    batch: Any = None
    stream: Any = None
    ts: str = ""
    created: str = ""
    mapping: Dict[str, str] = field(default_factory=dict)
    fallback: Dict[str, str] = field(default_factory=dict)
    file_columns: Optional[set] = None  # the batch file's columns, when it could be read
    failed: bool = False


def kind(obj: Any) -> str:
    return type(obj).__name__
