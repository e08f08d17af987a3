"""Feast ``RequestSource`` and ``OnDemandFeatureView`` -> ``RequestSource`` and ``RequestFeatureView``.

* ``RequestSource(name, schema=[Field...])`` -> ``RequestSource(name=name, schema={field: type})``.
* ``OnDemandFeatureView`` (or ``@on_demand_feature_view``) -> ``RequestFeatureView`` with the same
  function, unchanged: ``mode="pandas"`` -> ``"pandas"`` (DataFrame in, DataFrame out),
  ``mode="python"`` -> ``"python"`` (dict of lists), ``mode="python", singleton=True`` -> ``"row"`` (one
  dict per row). Its ``schema`` Fields are the outputs (types as for views). Its ``sources``: Feast
  ``FeatureView``s (all their features) and projections ``fv[["a", "b"]]`` (those), and
  ``RequestSource``s; ``input_schema=`` becomes a request source named ``<odfv>__input``. The function
  sees what Feast gives it: the request columns, the join keys, each feature read as ``feature`` and
  ``view__feature``.
* Errors, every one of an ODFV at once: ``mode="substrait"``, ``write_to_online_store=True`` (Feast then
  computes the values when rows are written, not per request), ``aggregations=``, a source view that is
  not defined or not translated, a projection with an alias or a join-key map, unsupported types.
"""

from __future__ import annotations

from typing import Any, List, Optional

from featurestore.errors import DefinitionError
from featurestore.feast_import.columns import SUPPORTED_TYPES, dtype_of, type_label
from featurestore.feast_import.common import Fail, Skip
from featurestore.model import RequestFeatureView, RequestSource
from featurestore.model.base import freeze_tags

INPUT_SCHEMA_PREFIX = "__input_schema__"  # Feast's name for the request source it makes of input_schema=


class OnDemandMixin:
    """The on-demand half of :class:`~featurestore.feast_import.translator.Translator`."""

    def _fields(self, fields: List[Any], what: str, fails: List[str]) -> dict:
        out = {}
        for f in fields:
            dtype = dtype_of(f.dtype)
            if dtype is None:
                fails.append(f"{what} {f.name!r} has type {type_label(f.dtype)}, which is not supported "
                             f"(supported: {SUPPORTED_TYPES})")
            else:
                out[f.name] = dtype
        return out

    def request_source(self, obj: Any, name: Optional[str] = None,
                       var: Optional[str] = None) -> Optional[RequestSource]:
        """The translated request source of ``obj`` (translated once per Feast name), or None if it failed."""
        name = name or str(obj.name)
        if name in self.request_sources:
            return self.request_sources[name]
        if name in self.failed_request_sources:
            return None
        fails: List[str] = []
        try:
            self.check_name(obj, name)
        except Fail as exc:
            fails.append(str(exc))
        schema = self._fields(list(obj.schema or []), "field", fails)
        if not obj.schema:
            fails.append("schema is empty: list the request fields")
        translated = None
        if not fails:
            try:
                translated = RequestSource(name=name, schema=schema, description=obj.description or "",
                                           owner=obj.owner or "", tags=freeze_tags(obj.tags))
            except DefinitionError as exc:
                fails.extend(exc.messages)
        if fails:
            for message in fails:
                self.problem(obj, message, name=name, var=var)
            self.failed_request_sources.add(name)
            return None
        self.request_sources[name] = translated
        self.emit(var or self.var_of.get(id(obj)) or name, translated)
        return translated

    def on_demand_view(self, obj: Any) -> None:
        """Translate one ODFV; every problem of it is reported."""
        fails: List[str] = []
        blocked = False
        var = self.var_of.get(id(obj))
        try:
            name = self.check_name(obj)
        except Fail as exc:
            fails.append(str(exc))
            name = str(obj.name)
        mode = (getattr(obj, "mode", "pandas") or "pandas").lower()
        if mode == "python":
            mode = "row" if getattr(obj, "singleton", False) else "python"
        elif mode != "pandas":
            fails.append(f"mode {mode!r} is not supported (supported: 'pandas', 'python', 'python' with "
                         "singleton=True)")
        if getattr(obj, "write_to_online_store", False):
            fails.append("write_to_online_store=True computes the values when rows are written, which is not "
                         "supported; without it they are computed at request time from the same inputs")
        if getattr(obj, "aggregations", None):
            fails.append("aggregations= on an on-demand feature view are not supported; aggregate in a "
                         "StreamFeatureView and read it")
        transformation = getattr(obj, "feature_transformation", None)
        udf = getattr(transformation, "udf", None) or getattr(obj, "udf", None)
        if udf is None:
            fails.append("no transformation function (udf)")
        schema = self._fields(list(obj.features), "schema field", fails)
        if not obj.features:
            fails.append("schema is empty: list the output Fields")
        sources: List[Any] = []
        for projection in obj.source_feature_view_projections.values():
            try:
                sources.append(self._odfv_view_source(projection))
            except Skip:
                blocked = True
            except Fail as exc:
                fails.append(str(exc))
        for source_name, request in obj.source_request_sources.items():
            own = f"{name}__input" if source_name.startswith(INPUT_SCHEMA_PREFIX) else None
            translated = self.request_source(request, name=own, var=None if own is None else f"{var}.input_schema")
            if translated is None:
                blocked = True
            else:
                sources.append(translated)
        translated_view = None
        if not fails and not blocked:
            try:
                translated_view = RequestFeatureView(
                    name=name, sources=tuple(sources), function=udf, mode=mode, schema=schema,
                    description=obj.description or "", owner=obj.owner or "", tags=freeze_tags(obj.tags))
            except DefinitionError as exc:
                fails.extend(exc.messages)
        if fails or translated_view is None:
            for message in fails:
                self.problem(obj, message)
            self.failed_views.add(obj.name)
            return
        self.request_views[name] = translated_view
        self.emit(var or name, translated_view)

    def _odfv_view_source(self, projection: Any):
        if projection.name_alias:
            raise Fail(f"source {projection.name!r} with alias {projection.name_alias!r} (with_name) is not supported")
        if projection.join_key_map:
            raise Fail(f"source {projection.name!r} with a join key map is not supported")
        if projection.name in self.odfv_names:
            raise Fail(f"source {projection.name!r} is an on-demand feature view; read its sources instead")
        view, plan = self._view_named(projection.name)
        names = [f.name for f in projection.features] or list(projection.desired_features or ())
        if not names or set(names) == set(plan.feast_features):
            return view
        return self._select(view, plan, names)

    def on_demand_ref(self, item: Any):
        """A feature service's reference to an ODFV (the view, or some of its features)."""
        name = item.projection.name if getattr(item, "projection", None) is not None else item.name
        if name in self.failed_views:
            raise Skip()
        rv = self.request_views.get(name)
        if rv is None:
            raise Fail(f"on-demand feature view {name!r} is not defined in this repo")
        projection = item.projection
        if projection.name_alias:
            raise Fail(f"alias {projection.name_alias!r} of on-demand feature view {name!r} is not supported")
        names = [f.name for f in projection.features] or list(projection.desired_features or ())
        if not names or set(names) == set(rv.feature_names):
            return rv
        missing = [n for n in names if n not in rv.feature_names]
        if missing:
            raise Fail(f"on-demand feature view {name!r} has no feature {missing[0]!r}")
        return rv.select(*names)


__all__ = ["OnDemandMixin"]
