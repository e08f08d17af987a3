"""Constructor checks: raised at once when you build an object yourself, recorded while a repo loads.

A constructor runs every check of its arguments and collects what fails. Outside the loader it raises
one :class:`~featurestore.errors.DefinitionError` listing them (``.messages``). While the loader
imports a definitions folder (:func:`recording`), the object is built anyway, with each bad argument
replaced by a harmless value, and its problems are recorded with the line of the call in the
definitions file; the loader then names the object and reports every problem of the repo in one pass.

>>> from featurestore.model import Aggregation
>>> Aggregation("amount", "median", "1 hour")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
featurestore.errors.DefinitionError: 2 problems: Aggregation function 'median' is not supported; ...
"""

from __future__ import annotations

import contextvars
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from featurestore.errors import DefinitionError


@dataclass
class Recorded:
    """The problems of one object, and where in the definitions it was constructed."""

    obj: Any  # kept alive so its id stays unique during the load
    messages: Tuple[str, ...]
    file: str  # absolute path of the definitions file, "" when not constructed by one
    line: int


class Recorder:
    """Collects constructor problems during one load."""

    def __init__(self, files: Iterable[Path]):
        self.files = {str(Path(f).resolve()) for f in files}
        self.recorded: List[Recorded] = []
        self._resolved: dict = {}

    def _in_definitions(self, filename: str) -> bool:
        hit = self._resolved.get(filename)
        if hit is None:
            hit = self._resolved[filename] = str(Path(filename).resolve()) in self.files
        return hit

    def where(self) -> Tuple[str, int]:
        """The innermost frame in a definitions file: the line that called the constructor."""
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith("<") and self._in_definitions(name):
                return str(Path(name).resolve()), frame.f_lineno
            frame = frame.f_back
        return "", 0

    def made(self, obj: Any, messages: Tuple[str, ...]) -> None:
        """Note where ``obj`` was constructed, and its problems if any."""
        file, line = self.where()
        if file:
            object.__setattr__(obj, "_made_at", (file, line))
        if messages:
            object.__setattr__(obj, "_problems", messages)
            self.recorded.append(Recorded(obj, messages, file, line))


_RECORDER: contextvars.ContextVar[Optional[Recorder]] = contextvars.ContextVar("featurestore_recorder", default=None)


@contextmanager
def recording(files: Iterable[Path]) -> Iterator[Recorder]:
    """While active, constructors record their problems instead of raising (the loader uses this)."""
    recorder = Recorder(files)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def problems_of(obj: Any) -> Tuple[str, ...]:
    """The recorded problems of ``obj`` itself (not of the objects it holds)."""
    return getattr(obj, "_problems", ())


def made_at(obj: Any) -> Optional[Tuple[str, int]]:
    """(absolute file, line) of the definitions-file call that constructed ``obj`` during a load."""
    return getattr(obj, "_made_at", None)


class Checks:
    """The problems one constructor call finds.

    ``attempt(fn, ...)`` runs a check that raises DefinitionError and returns ``fallback`` when it does;
    ``settle(obj)`` raises them all (outside the loader) or records them on ``obj``.
    """

    def __init__(self) -> None:
        self.messages: List[str] = []

    def __bool__(self) -> bool:
        return bool(self.messages)

    def add(self, message: str) -> None:
        self.messages.append(message)

    def attempt(self, fn: Callable[..., Any], *args: Any, fallback: Any = None, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DefinitionError as exc:
            self.messages.extend(getattr(exc, "messages", None) or [str(exc)])
            return fallback

    def settle(self, obj: Any) -> None:
        messages = tuple(self.messages)
        recorder = _RECORDER.get()
        if recorder is not None:
            recorder.made(obj, messages)
        elif messages:
            raise definition_error(messages)


def definition_error(messages: Tuple[str, ...]) -> DefinitionError:
    text = messages[0] if len(messages) == 1 else f"{len(messages)} problems: " + " | ".join(messages)
    return DefinitionError(text, messages)
