"""Optional parts of the install (``pip install 'featurestore[<extra>]'``) and the one-line error when one
is missing.

The core (definitions, DuckDB backfill, offline store, training sets, Redis online store, server, CLI)
never imports these modules at import time; a command that needs one imports it through :func:`require`
(or its ModuleNotFoundError is turned into :class:`MissingExtra` by :func:`missing_extra`), so a core
install says which extra to add instead of a traceback.

>>> str(MissingExtra("feast", "Feast definitions"))
"Feast definitions need the 'feast' extra: pip install 'featurestore[feast]'"
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from featurestore.errors import FeatureStoreError

# top-level module -> the extra that installs it
EXTRA_OF = {
    "pyflink": "stream",
    "apache_beam": "stream",
    "confluent_kafka": "stream",
    "fastavro": "stream",
    "tqdm": "stream",
    "feast": "feast",
    "boto3": "s3",
    "botocore": "s3",
    "ibis": "test",
}


class MissingExtra(FeatureStoreError):
    """A command needs a part of the install that is not there."""

    def __init__(self, extra: str, what: str):
        self.extra = extra
        super().__init__(f"{what} need{'s' if not what.endswith('s') else ''} the '{extra}' extra: "
                         f"pip install 'featurestore[{extra}]'")


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        translated = missing_extra(exc, what)
        if translated is None:
            raise
        raise translated from None


def missing_extra(exc: BaseException, what: str = "this command") -> Optional[MissingExtra]:
    """The :class:`MissingExtra` for a ModuleNotFoundError of an optional module, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    extra = EXTRA_OF.get(exc.name.split(".")[0])
    return MissingExtra(extra, what) if extra else None


__all__ = ["EXTRA_OF", "MissingExtra", "require", "missing_extra"]
