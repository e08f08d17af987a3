"""JSON values (``dtypes.JSON``: Feast's Map, Json, Struct, Array) as Python objects at the API's edge.

Inside, a JSON value is its JSON text everywhere (offline Parquet, Redis, the serving log, the Arrow tables
of ``to_arrow()``, the inputs of request features), so both paths carry one identical value. What a user
reads is the Python value of that text, as Feast returns it: ``dict`` for a map or struct, ``list`` for an
array, and for a Json document whatever it holds. The pandas frame of ``get_historical_features`` (and of
``recreate_training_set``, ``training_set_from_logs``), ``OnlineResponse.to_dict()`` / ``to_df()`` and both
HTTP response shapes decode here, with one function, so a served value equals the trained one.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, List, Optional

from featurestore import dtypes as t


def decode(text: Optional[str]) -> Any:
    """The Python value of one stored JSON text (None stays None; ``NaN``/``Infinity`` tokens are read)."""
    if text is None:
        return None
    if not isinstance(text, str):  # already decoded (or a pandas NA)
        return None if _is_na(text) else text
    return json.loads(text)


def _is_na(v: Any) -> bool:
    try:
        import pandas as pd

        return v is pd.NA or (isinstance(v, float) and v != v)
    except ImportError:  # pragma: no cover - pandas is a core dependency
        return False


def decode_list(values: Iterable[Any]) -> List[Any]:
    return [decode(v) for v in values]


def decode_frame(frame, columns: Iterable[str]) -> None:
    """Replace each JSON column of a pandas frame by its decoded values (in place: a TrainingFrame keeps its
    Arrow table, where the column stays text)."""
    import pandas as pd

    for c in columns:
        if c in frame.columns:
            frame[c] = pd.Series(decode_list(frame[c].tolist()), index=frame.index, dtype=object)


def json_columns(dtypes_by_column: dict) -> List[str]:
    """The columns of ``{column: dtype}`` that hold JSON values."""
    return [c for c, d in dtypes_by_column.items() if d == t.JSON]


__all__ = ["decode", "decode_list", "decode_frame", "json_columns"]
