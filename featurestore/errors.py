"""One error hierarchy for everything a user can get wrong or the system can hit.

Every message is one line a person can act on; definition errors start with
``file:line object:`` so an editor can jump to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


class FeatureStoreError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(FeatureStoreError):
    """The project config (featurestore.yaml or an env override) is invalid."""


class DefinitionError(FeatureStoreError):
    """A definition object was constructed with invalid arguments (``messages``: each problem)."""

    def __init__(self, message: str, messages: Sequence[str] = ()):
        super().__init__(message)
        self.messages: Sequence[str] = tuple(messages) or (message,)


@dataclass(frozen=True)
class Problem:
    """One problem found while loading or validating definitions."""

    file: str
    line: int
    obj: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.obj}: {self.message}" if self.obj else f"{where}: {self.message}"


class ValidationError(FeatureStoreError):
    """Every problem in a definitions repo, reported in one pass."""

    def __init__(self, problems: Iterable[Problem], hint: str = ""):
        self.problems: Sequence[Problem] = tuple(problems)
        self.hint = hint  # one line after the problems (e.g. where a Feast user reads what maps to what)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in definitions"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems) + (f"\n{hint}" if hint else ""))


class LoadError(FeatureStoreError):
    """A definitions file could not be imported; the load is aborted."""


class TranslationError(FeatureStoreError):
    """A Feast object cannot be translated to this feature store's model."""


class RegistryError(FeatureStoreError):
    """The applied registry is missing, unreadable or inconsistent."""


class NotImplementedYet(FeatureStoreError):
    """A command exists in the surface but is not built yet; it never pretends to work."""


class InfraError(FeatureStoreError):
    """A service the project needs (Redis, Kafka, Java, Flink jars) is missing or unhealthy."""


class AccessError(FeatureStoreError):
    """The access-control policy or token file is invalid, or a token operation cannot be done."""


class RequestError(FeatureStoreError):
    """A request (entity frame, feature refs, entity rows) is invalid."""


class OfflineStoreError(FeatureStoreError):
    """An offline table write or read is invalid, conflicts too often, or its files are gone."""


class JobError(FeatureStoreError):
    """A job (Flink) failed. The message is one line with its root cause and where the full trace was
    written (``log_path``)."""

    def __init__(self, message: str, log_path=None):
        super().__init__(message)
        self.log_path = log_path
