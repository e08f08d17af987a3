"""Feast's entityless feature views: one global row, whatever the entity keys of a request.

Feast gives such a view its placeholder entity ``__dummy`` keyed on ``__dummy_id``, whose value is always
``""``; the translation does the same (the view's join key ``__dummy_id`` is the projection ``''``), so every
event belongs to the one global entity and both jobs and both stores need nothing special. A request does not
carry that key: ``get_historical_features`` and ``get_online_features`` add the column (value ``""``) to the
entity frame / rows when the selection reads such a view, and drop it from what they return, as Feast does.
"""

from __future__ import annotations

from typing import Any

from featurestore.model.base import PLACEHOLDER_KEY

DUMMY_ENTITY, DUMMY_KEY, DUMMY_VALUE = "__dummy", PLACEHOLDER_KEY, ""


def needed(store, selection, rplan=False) -> bool:
    """Whether the resolved ``selection`` reads an entityless view (itself or through a request view);
    ``rplan``: its request plan when the caller has it (None: no request views)."""
    from featurestore.sdk.request_features import plan

    if rplan is False:
        rplan = plan(store, selection)
    views = rplan.base if rplan is not None else selection
    return any(DUMMY_KEY in store.repo.views[v].join_keys for v in views if v in store.repo.views)


def add_to_frame(entity_df):
    import pandas as pd

    if not isinstance(entity_df, pd.DataFrame) or DUMMY_KEY in entity_df.columns:
        return entity_df
    return entity_df.assign(**{DUMMY_KEY: DUMMY_VALUE})


def add_to_rows(entity_rows: Any) -> Any:
    """The entity rows (a list of dicts, a dict of columns or a DataFrame) with the dummy key."""
    import pandas as pd

    if isinstance(entity_rows, pd.DataFrame):
        return add_to_frame(entity_rows)
    if isinstance(entity_rows, dict):
        n = len(next(iter(entity_rows.values()), []))
        return {**entity_rows, DUMMY_KEY: [DUMMY_VALUE] * n}
    if isinstance(entity_rows, (list, tuple)):
        return [{**r, DUMMY_KEY: DUMMY_VALUE} if isinstance(r, dict) else r for r in entity_rows]
    return entity_rows


def drop_from_frame(frame) -> None:
    """Remove the dummy key column (in place: a TrainingFrame keeps its Arrow table, minus the column)."""
    if DUMMY_KEY in frame.columns:
        frame.drop(columns=[DUMMY_KEY], inplace=True)
        arrow = getattr(frame, "_arrow", None)
        if arrow is not None and DUMMY_KEY in arrow.column_names:
            frame._arrow = arrow.drop_columns([DUMMY_KEY])


def drop_from_response(response) -> None:
    response._columns.pop(DUMMY_KEY, None)
    response._statuses.pop(DUMMY_KEY, None)


__all__ = ["DUMMY_ENTITY", "DUMMY_KEY", "DUMMY_VALUE", "needed", "add_to_frame", "add_to_rows", "drop_from_frame",
           "drop_from_response"]
