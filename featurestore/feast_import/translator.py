"""The Feast translation: classify the objects of a repo, then translate entities, sources, views and
services in dependency order, collecting every problem."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from featurestore.errors import DefinitionError, TranslationError
from featurestore.feast_import.common import Fail, FeastProblem, Skip, ViewPlan, is_feast_object, kind
from featurestore.feast_import.on_demand import OnDemandMixin
from featurestore.feast_import.projections import derived_view
from featurestore.feast_import.sources import SourcesMixin
from featurestore.feast_import.views import ViewsMixin, _attempt
from featurestore.model import (Definition, Entity, FeatureService, FeatureView, LoggingConfig, RequestFeatureView,
                                RequestSource, Source)
from featurestore.model.base import NAME_RE, freeze_tags


class Translator(SourcesMixin, ViewsMixin, OnDemandMixin):
    repo_root: Optional[str] = None
    feast_root: Optional[str] = None  # the Feast repo's repo_path (relative FileSource paths are relative to it)

    def __init__(self, objects: Dict[str, Any]):
        import feast
        from feast.base_feature_view import BaseFeatureView
        from feast.data_format import AvroFormat, JsonFormat
        from feast.data_source import DataSource, KafkaSource, PushSource, RequestSource
        from feast.infra.offline_stores.file_source import FileSource
        from feast.labeling.label_view import LabelView
        from feast.on_demand_feature_view import OnDemandFeatureView

        self.F = feast
        self.BaseFeatureView, self.OnDemandFeatureView = BaseFeatureView, OnDemandFeatureView
        self.DataSource, self.FileSource, self.KafkaSource = DataSource, FileSource, KafkaSource
        self.PushSource, self.RequestSource = PushSource, RequestSource
        self.LabelView = LabelView
        self.JsonFormat, self.AvroFormat = JsonFormat, AvroFormat

        self.objects = {var: obj for var, obj in objects.items() if is_feast_object(obj)}
        self.var_of: Dict[int, str] = {}
        for var, obj in self.objects.items():
            self.var_of.setdefault(id(obj), var)
        self.problems: List[FeastProblem] = []
        self.out: Dict[str, Definition] = {}
        self.entities: Dict[str, Entity] = {}
        self.failed_entities: set = set()
        self.views: Dict[str, FeatureView] = {}
        self.view_plans: Dict[str, ViewPlan] = {}
        self.failed_views: set = set()
        self.sources: Dict[str, Source] = {}
        self.failed_sources: set = set()
        self.request_sources: Dict[str, RequestSource] = {}
        self.failed_request_sources: set = set()
        self.request_views: Dict[str, RequestFeatureView] = {}
        self.odfv_names: set = set()

    # -- bookkeeping --------------------------------------------------------------------------
    def problem(self, obj: Any, message: str, name: Optional[str] = None, var: Optional[str] = None) -> None:
        name = name if name is not None else str(getattr(obj, "name", "") or "")
        var = var if var is not None else self.var_of.get(id(obj))
        self.problems.append(FeastProblem(var, kind(obj), name, message))

    def check_name(self, obj: Any, name: Optional[str] = None) -> str:
        name = name if name is not None else getattr(obj, "name", "")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise Fail(f"name {name!r} is not a valid identifier (letters, digits, _; not starting with a digit)")
        return name

    def emit(self, key: str, definition: Definition) -> None:
        while key in self.out:
            key += "_"
        self.out[key] = definition

    # -- classification -----------------------------------------------------------------------
    def run(self) -> Dict[str, Definition]:
        entities: List[Any] = []
        views: List[Any] = []
        sources: List[Any] = []
        services: List[Any] = []
        on_demand: List[Any] = []
        requests: List[Any] = []
        seen: Dict[Tuple[str, str], Any] = {}
        for var, obj in self.objects.items():
            if isinstance(obj, self.F.Entity):
                bucket, family = entities, "entity"
            elif isinstance(obj, self.OnDemandFeatureView):
                if self._is_projection_copy(obj):
                    continue  # odfv[["a"]] bound to a variable: a reference
                bucket, family = on_demand, "view"
            elif isinstance(obj, self.RequestSource):
                bucket, family = requests, "request source"
            elif isinstance(obj, (self.F.FeatureView, self.LabelView)):
                if self._is_projection_copy(obj):
                    continue  # fv[["a"]] / fv.with_name(...) bound to a variable: a reference, not a definition
                bucket, family = views, "view"
            elif isinstance(obj, self.BaseFeatureView):
                self.problem(obj, f"{kind(obj)} is not supported (supported views: FeatureView, "
                                  "StreamFeatureView, BatchFeatureView, LabelView, OnDemandFeatureView)")
                self.failed_views.add(obj.name)
                continue
            elif isinstance(obj, self.DataSource):
                bucket, family = sources, "source"
            elif isinstance(obj, self.F.FeatureService):
                bucket, family = services, "service"
            else:
                continue  # Project, Field, types, formats, Permission...: not definitions
            identity = (family, str(obj.name))
            first = seen.get(identity)
            if first is not None:
                if first is obj or first == obj:
                    continue
                self.problem(obj, f"another {kind(first)} is also named {obj.name!r} "
                                  f"(variable {self.var_of.get(id(first))}); Feast names must be unique")
                continue
            seen[identity] = obj
            bucket.append(obj)

        for obj in entities:
            self.entity(obj)
        groups = self.plan_sources(views, sources)
        for group in groups.values():
            self.prepare(group)
        for obj in views:
            self.plan_view(obj, groups)
        for key, group in groups.items():
            self.source(key, group)
        for plan in self.view_plans.values():
            self.view(plan)
        for obj in requests:
            self.request_source(obj)
        self.odfv_names = {str(o.name) for o in on_demand}
        for obj in on_demand:
            self.on_demand_view(obj)
        for obj in services:
            self.service(obj)
        if self.problems:
            err = TranslationError("\n".join(str(p) for p in self.problems))
            setattr(err, "problems", tuple(self.problems))
            raise err
        return self.out

    def _is_projection_copy(self, view: Any) -> bool:
        projection = getattr(view, "projection", None)
        if projection is None:
            return False
        if projection.name_alias or projection.join_key_map:
            return True
        selected = {f.name for f in projection.features} or set(projection.desired_features or ())
        return bool(selected) and selected != {f.name for f in view.features}

    # -- entities -----------------------------------------------------------------------------
    def entity(self, obj: Any) -> None:
        try:
            name = self.check_name(obj)
            ent = Entity(name=name, join_keys=(obj.join_key,), description=obj.description or "",
                         owner=obj.owner or "", tags=freeze_tags(obj.tags))
        except (Fail, DefinitionError) as exc:
            self.problem(obj, str(exc))
            self.failed_entities.add(obj.name)
            return
        self.entities[name] = ent
        self.emit(self.var_of[id(obj)], ent)

    # -- services -----------------------------------------------------------------------------
    def service(self, obj: Any) -> None:
        """Every reference of a Feast service is checked; each that cannot be translated is a problem."""
        fails: List[str] = []
        blocked = False  # a referenced view failed and was reported
        name = _attempt(fails, self.check_name, obj) or str(obj.name)
        items = getattr(obj, "_features", None)
        if items is None:  # pragma: no cover - older/newer Feast without the raw list
            items = list(obj.feature_view_projections) + list(getattr(obj, "_pending_feature_refs", []))
        refs = []
        self._service_var = self.var_of[id(obj)]
        for item in items:
            try:
                refs.append(self.service_ref(item))
            except Skip:
                blocked = True
            except Fail as exc:
                fails.append(str(exc))
        config = getattr(obj, "logging_config", None)
        logging = (LoggingConfig(enabled=True, sample_rate=float(config.sample_rate))
                   if config is not None else LoggingConfig(enabled=False))
        translated = None
        if not fails and not blocked:
            translated = _attempt(fails, FeatureService, name=name, features=tuple(refs), logging=logging,
                                  description=obj.description or "", owner=obj.owner or "",
                                  tags=_attempt(fails, freeze_tags, obj.tags, fallback=()))
        for message in fails:
            self.problem(obj, message)
        if translated is not None and not fails:
            self.emit(self.var_of[id(obj)], translated)

    def _view_named(self, view_name: str) -> Tuple[FeatureView, ViewPlan]:
        if view_name in self.failed_views:
            raise Skip()
        if view_name not in self.views:
            raise Fail(f"feature view {view_name!r} is not defined in this repo")
        return self.views[view_name], self.view_plans[view_name]

    def _select(self, view: FeatureView, plan: ViewPlan, names: List[str]):
        for n in names:
            if n not in view.feature_names:
                if n in plan.feast_features and view.aggregations:
                    raise Fail(f"{n!r} of {kind(plan.obj)} {view.name!r} is an input column of its aggregations, "
                               f"not a feature; select among {', '.join(view.feature_names)}")
                raise Fail(f"feature view {view.name!r} has no feature {n!r}")
        return view.select(*names)

    def service_ref(self, item: Any):
        if isinstance(item, str):
            view_part, _, feature = item.partition(":")
            if "@" in view_part:
                raise Fail(f"feature reference {item!r} pins a Feast registry version; there is no Feast registry "
                           "here (definitions are versioned by git)")
            if view_part in self.request_views or view_part in self.odfv_names:
                if view_part in self.failed_views:
                    raise Skip()
                rv = self.request_views[view_part]
                if feature and feature not in rv.feature_names:
                    raise Fail(f"on-demand feature view {view_part!r} has no feature {feature!r}")
                return rv.select(feature) if feature else rv
            view, plan = self._view_named(view_part)
            return self._select(view, plan, [feature]) if feature else view
        if isinstance(item, self.OnDemandFeatureView):
            return self.on_demand_ref(item)
        projection = item.projection
        view, plan = self._view_named(projection.name)
        if projection.version_tag is not None:
            raise Fail(f"feature view {projection.name!r} is pinned to version {projection.version_tag}; "
                       "there is no Feast registry here")
        if projection.name_alias or projection.join_key_map:  # with_name / with_join_key_map: a derived view
            view, plan = derived_view(self, view, plan, projection, self._service_var)
        names = [f.name for f in projection.features] or list(projection.desired_features or ())
        if not names or set(names) == set(plan.feast_features):
            return view
        return self._select(view, plan, names)
