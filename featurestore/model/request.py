"""Request-time features: values computed at request time from request data and looked-up features.

* :class:`RequestSource` -- the columns a request carries (``amount``, ``merchant_country``...), with
  types. Offline they are columns of the entity frame; online they come with the lookup
  (``request_data=``).
* :class:`RequestFeatureView` -- features computed from request sources and/or the features of other
  views (Feast calls this an on-demand feature view), either as SQL expressions (DuckDB, typed by its
  binder like projections) or by a Python function with a declared output ``schema``:

  - ``mode="row"``: ``fn(row: dict) -> dict``, once per row (Feast ``mode="python", singleton=True``);
  - ``mode="python"``: ``fn(columns: dict of lists) -> dict of lists``, once per batch (Feast
    ``mode="python"``);
  - ``mode="pandas"``: ``fn(df: DataFrame) -> DataFrame``, once per batch (Feast ``mode="pandas"``);
  - ``mode="arrow"``: ``fn(table: pyarrow.Table) -> pyarrow.Table``, once per batch.

  The same code runs offline (over the whole entity frame) and online (per request); see
  docs/request-features.md.

>>> from featurestore.model import RequestSource, RequestFeatureView
>>> tx = RequestSource(schema={"amount": "float64"})
>>> RequestFeatureView(sources=[tx], features={"amount_cents": "CAST(round(amount * 100) AS BIGINT)"}).feature_names
('amount_cents',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Tuple, Union

from featurestore.model.base import Definition, check_column_name
from featurestore.model.checks import Checks
from featurestore.model.functions import is_function
from featurestore.model.source import parse_schema
from featurestore.model.view import FeatureSelection, FeatureView

FUNCTION_MODES = ("row", "python", "pandas", "arrow")
SQL = "sql"


@dataclass(frozen=True, kw_only=True)
class RequestSource(Definition):
    """Columns that arrive with each request, with their types: ``RequestSource(schema={"amount": "float64"})``.

    Offline they are columns of the entity frame; online they are passed with the lookup
    (``get_online_features(..., request_data={"amount": [12.5]})``, or in the entity rows as Feast does).
    """

    schema: Tuple[Tuple[str, str], ...]

    KIND: ClassVar[str] = "request source"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("schema",)

    def _check(self, checks: Checks) -> None:
        pairs, _ = parse_schema(self.schema, checks, "request source")
        self._set(schema=pairs)

    @property
    def columns(self) -> dict:
        """Column name -> canonical type, in schema order."""
        return dict(self.schema)


RequestInput = Union[RequestSource, FeatureView, FeatureSelection]


@dataclass(frozen=True, kw_only=True)
class RequestFeatureView(Definition):
    """Features computed at request time from ``sources``: request sources, feature views (all their
    features) and ``view.select(...)`` (some of them).

    Either ``features={"name": "SQL expression"}`` over the inputs, or ``function=`` with ``mode``
    (``"row"``, ``"python"``, ``"pandas"`` or ``"arrow"``) and the ``schema`` of its outputs. The inputs are the
    request columns, the join keys of the views read, and each feature read as ``view__feature`` and, when
    no other input has that name, plain ``feature``.

    >>> from featurestore.model import RequestSource
    >>> tx = RequestSource(name="tx", schema={"amount": "float64"})
    >>> def cents(row):
    ...     return {"amount_cents": None if row["amount"] is None else round(row["amount"] * 100)}
    >>> RequestFeatureView(sources=[tx], function=cents, schema={"amount_cents": "int64"}).mode
    'row'
    """

    sources: Tuple[RequestInput, ...]
    features: Tuple[Tuple[str, str], ...] = ()
    function: Optional[Callable] = None
    mode: Optional[str] = None
    schema: Tuple[Tuple[str, str], ...] = ()

    KIND: ClassVar[str] = "request feature view"
    DATA_FIELDS: ClassVar[Tuple[str, ...]] = ("sources", "features", "function", "mode", "schema")

    def _check(self, checks: Checks) -> None:
        sources = self._check_sources(checks)
        features: Tuple[Tuple[str, str], ...] = ()
        schema: Tuple[Tuple[str, str], ...] = ()
        mode = self.mode.strip().lower() if isinstance(self.mode, str) else self.mode
        function = self.function
        given = bool(self.features) if not isinstance(self.features, str) else True
        if given and function is not None:
            checks.add("request feature view: give SQL features={...} or function=..., not both")
        if not given and function is None:
            checks.add("request feature view: give SQL features={'name': 'expression'} or function= with schema=")
        if given:
            features = self._check_sql(checks)
            if mode not in (None, SQL):
                checks.add(f"request feature view mode: {self.mode!r} applies to function=; SQL features need none")
            if self.schema:
                checks.add("request feature view schema: applies to function=; SQL features take their types "
                           "from DuckDB")
            mode = SQL
        elif function is not None:
            if not is_function(function):
                checks.add(f"request feature view function: expected a Python function (def or lambda), got "
                           f"{type(function).__name__}")
                function = None
            if mode is None:
                mode = "row"
            elif mode not in FUNCTION_MODES:
                checks.add(f"request feature view mode: {self.mode!r} is not one of {', '.join(FUNCTION_MODES)}")
                mode = "row"
            if self.schema is None or (not isinstance(self.schema, (Mapping, str)) and not self.schema):
                checks.add("request feature view schema: a function needs schema={'output': 'type', ...}")
            else:
                schema, _ = parse_schema(self.schema, checks, "request feature view")
        self._set(sources=sources, features=features, function=function, mode=mode, schema=schema)

    def _check_sources(self, checks: Checks) -> Tuple[RequestInput, ...]:
        value = self.sources
        if isinstance(value, (RequestSource, FeatureView, FeatureSelection, RequestFeatureView)):
            value = (value,)
        try:
            items = tuple(value or ())
        except TypeError:
            checks.add(f"request feature view sources: expected a list, got {type(value).__name__}")
            items = ()
        if not items:
            checks.add("request feature view sources: at least one RequestSource or FeatureView is required")
        out = []
        for s in items:
            if isinstance(s, RequestFeatureView) or (isinstance(s, FeatureSelection)
                                                      and isinstance(s.view, RequestFeatureView)):
                checks.add("request feature view sources: a request feature view cannot read another one; "
                           "read its sources (or write both features in one view)")
            elif isinstance(s, (RequestSource, FeatureView, FeatureSelection)):
                if any(s is o for o in out):
                    checks.add("request feature view sources: the same source is listed twice")
                    continue
                out.append(s)
            else:
                checks.add("request feature view sources: expected RequestSource, FeatureView or view.select(...), "
                           f"got {type(s).__name__}")
        return tuple(out)

    def _check_sql(self, checks: Checks) -> Tuple[Tuple[str, str], ...]:
        value = self.features
        if isinstance(value, Mapping):
            value = tuple(value.items())
        if isinstance(value, str):
            checks.add("request feature view features: expected a mapping of name to SQL expression, got a string")
            return ()
        out = []
        for item in value:
            try:
                key, expr = item
            except (TypeError, ValueError):
                checks.add(f"request feature view features: expected a mapping of name to SQL expression, got {item!r}")
                continue
            if not isinstance(expr, str) or not expr.strip():
                checks.add(f"request feature {key!r}: expected a SQL expression string, got {expr!r}")
                continue
            if checks.attempt(check_column_name, key, "request feature name") is not None:
                out.append((key, expr.strip()))
        names = [n for n, _ in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            checks.add(f"request feature view features: duplicate feature name(s) {', '.join(dupes)}")
        return tuple(out)

    # -- what it reads and gives ------------------------------------------------------------------
    @property
    def feature_names(self) -> Tuple[str, ...]:
        return tuple(n for n, _ in (self.features if self.mode == SQL else self.schema))

    @property
    def request_sources(self) -> Tuple[RequestSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RequestSource))

    @property
    def view_inputs(self) -> Tuple[Tuple[FeatureView, Tuple[str, ...]], ...]:
        """(view, the names of its features read) for every view source, in source order."""
        out = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                out.append((s, s.feature_names))
            elif isinstance(s, FeatureSelection):
                out.append((s.view, s.names or s.view.feature_names))
        return tuple(out)

    def data_dict(self) -> dict:
        data = super().data_dict()
        # A selection names the view's definition too: a change there changes these values.
        data["sources"] = [{"ref": s.view.name, "data": s.view.data_fingerprint, "names": list(s.names)}
                           if isinstance(s, FeatureSelection) else v for s, v in zip(self.sources, data["sources"])]
        return data

    def select(self, *names: str) -> FeatureSelection:
        """Some of this view's features, for a FeatureService: ``risk.select("amount_ratio")``."""
        if len(names) == 1 and not isinstance(names[0], str):
            names = tuple(names[0])
        return FeatureSelection(view=self, names=tuple(names))  # type: ignore[arg-type]

    def __getitem__(self, names: Union[str, Sequence[str]]) -> FeatureSelection:
        """Feast-style projection: ``view[["a", "b"]]``."""
        return self.select(*((names,) if isinstance(names, str) else names))


def request_feature_view(*, sources: Sequence[RequestInput], schema: Any, mode: str = "row",
                         name: Optional[str] = None, description: str = "", owner: str = "", tags: Any = None):
    """Decorator: a Python function as a :class:`RequestFeatureView` named after the function.

    >>> from featurestore.model import RequestSource
    >>> tx = RequestSource(name="tx", schema={"amount": "float64"})
    >>> @request_feature_view(sources=[tx], schema={"big": "bool"})
    ... def big_amount(row):
    ...     return {"big": row["amount"] is not None and row["amount"] > 1000}
    >>> big_amount.feature_names
    ('big',)
    """

    def wrap(fn: Callable) -> RequestFeatureView:
        return RequestFeatureView(name=name or getattr(fn, "__name__", None), sources=sources, function=fn,
                                  mode=mode, schema=schema, description=description or (fn.__doc__ or "").strip(),
                                  owner=owner, tags=tags)

    return wrap


__all__ = ["FUNCTION_MODES", "RequestFeatureView", "RequestSource", "SQL", "request_feature_view"]
