"""Feast feature views (FeatureView, StreamFeatureView, BatchFeatureView) -> ``FeatureView``."""

from __future__ import annotations

import dis
from typing import Any, Dict, List, Optional, Tuple

from featurestore import dtypes as t
from featurestore.errors import DefinitionError
from featurestore.feast_import.columns import FEAST_AGG_ALIASES, SUPPORTED_TYPES, dtype_of, ms, type_label
from featurestore.feast_import.common import Fail, SourceGroup, ViewPlan, kind
from featurestore.model import Aggregation, Entity, FeatureView, Latest
from featurestore.sdk.entityless import DUMMY_ENTITY, DUMMY_KEY, DUMMY_VALUE
from featurestore.model.base import NAME_RE, freeze_tags
from featurestore.semantics import AGG_FUNCTIONS

_NOISE_OPS = {"RESUME", "NOP", "CACHE", "EXTENDED_ARG", "PRECALL"}


def _is_identity(fn: Any) -> bool:
    """True for ``lambda df: df`` / ``def f(df): return df`` (bytecode: return the first argument)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount < 1:
        return False
    ops = [i for i in dis.get_instructions(code) if i.opname not in _NOISE_OPS]
    return (
        len(ops) == 2
        and ops[0].opname == "LOAD_FAST"
        and ops[0].argval == code.co_varnames[0]
        and ops[1].opname == "RETURN_VALUE"
    )


def _opaque_udf(view: Any) -> Optional[Any]:
    """The view's non-identity transformation function, or None."""
    udf = getattr(view, "udf", None)
    transformation = getattr(view, "feature_transformation", None)
    candidates = [udf]
    if transformation is not None:
        candidates.append(getattr(transformation, "udf", transformation))
    for fn in candidates:
        if fn is not None and not _is_identity(fn):
            return fn
    return None


class ViewsMixin:
    """The view half of :class:`~featurestore.feast_import.translator.Translator`."""

    def dummy_entity(self) -> Entity:
        """The entity of Feast's entityless views (Feast's own ``__dummy`` / ``__dummy_id``), made once."""
        if DUMMY_ENTITY not in self.entities:
            self.entities[DUMMY_ENTITY] = Entity(name=DUMMY_ENTITY, join_keys=(DUMMY_KEY,),
                                                 description="Feast's entityless views: one global row")
            self.emit(DUMMY_ENTITY, self.entities[DUMMY_ENTITY])
        return self.entities[DUMMY_ENTITY]

    def plan_view(self, obj: Any, groups: Dict[str, SourceGroup]) -> None:
        """Check a Feast view and plan its translation; every problem of the view is reported, not the first."""
        var = self.var_of.get(id(obj))
        fails: List[str] = []
        blocked = False  # a dependency failed and was reported: nothing more to say about it here
        name = _attempt(fails, self.check_name, obj) or str(obj.name)
        version = getattr(obj, "version", "latest") or "latest"
        if str(version).lower() != "latest":
            fails.append(f"version {version!r} pins a Feast registry snapshot; there is no Feast registry "
                         "here (definitions are versioned by git), remove version=")
        if getattr(obj, "source_views", None):
            fails.append("a view reading other feature views is not supported; read their source instead")
        src = self.root_source(obj)
        group = groups[str(src.name)] if src is not None else None
        if src is None:
            fails.append("a source is required")
        elif group.failed:
            blocked = True  # reported as the source's problem
        fn = _opaque_udf(obj)
        if fn is not None:
            mode = getattr(obj, "mode", None)
            mode = getattr(mode, "value", mode)
            fails.append(f"udf {getattr(fn, '__name__', '?')!r} (mode {mode!r}): an opaque Python udf cannot "
                         "be compiled to SQL; express it as projections")
        policy = getattr(obj, "conflict_policy", None)
        if policy is not None and str(getattr(policy, "value", policy)) != "last_write_wins":
            fails.append(f"conflict_policy {getattr(policy, 'value', policy)!r} is not supported: a label is the "
                         "latest one written before the request time (ConflictPolicy.LAST_WRITE_WINS)")
        entity_names = tuple(obj.entities)
        entities = []
        if entity_names == (DUMMY_ENTITY,):  # Feast's entityless view: one global row (sdk/entityless.py)
            entities.append((self.dummy_entity(), DUMMY_ENTITY))
            entity_names = ()
        for en in entity_names:
            if en in self.failed_entities:
                blocked = True
            elif en not in self.entities:
                fails.append(f"entity {en!r} is not defined in this repo (Feast views keep only entity names, "
                             "so the Entity must be a module-level object)")
            else:
                entities.append((self.entities[en], en))
        features: List[Any] = []
        columns: List[Tuple[str, Optional[str], str]] = []
        ttl = None
        key_projections: List[Tuple[str, str]] = []
        if group is not None and not group.failed:
            features, columns, ttl = self._plan_features(obj, name, group, entities, fails, key_projections)
        if fails:
            for message in fails:
                self.problem(obj, message)
            self.failed_views.add(obj.name)
            return
        if blocked:
            self.failed_views.add(obj.name)
            return
        plan = ViewPlan(obj, var, name, tuple(e for e, _ in entities), entity_names, str(src.name), features,
                        columns, tuple(f.name for f in obj.features), ttl, tuple(key_projections))
        self.view_plans[name] = plan
        group.views.append(plan)

    def _plan_features(self, obj: Any, name: str, group: SourceGroup, entities, fails: List[str],
                       key_projections: List[Tuple[str, str]]):
        """(features, needed source columns, ttl) of a view whose source is usable; problems go to ``fails``;
        a join key read from a field_mapping'd source column is added to ``key_projections``."""
        ts, created, mapping = group.ts, group.created, group.mapping
        view_ts = getattr(obj, "timestamp_field", "") or ""
        if view_ts and view_ts != ts:
            fails.append(f"timestamp_field {view_ts!r} differs from source {group.obj.name!r}'s {ts!r}; "
                         "one event-time column per source")
        raw_of = {mapped: raw for raw, mapped in mapping.items()}
        columns: List[Tuple[str, Optional[str], str]] = []

        def typed(f: Any, what: str) -> Optional[str]:
            dtype = dtype_of(f.dtype)
            if dtype is None:
                fails.append(f"{what} {f.name!r} has type {type_label(f.dtype)}, which is not supported "
                             f"(supported: {SUPPORTED_TYPES})")
            return dtype

        key_fields = {f.name: f for f in obj.entity_columns}
        if isinstance(obj, self.LabelView):  # it adds a String Field for a key whose entity has no value_type
            declared = {e.join_key for e in self.objects.values()
                        if isinstance(e, self.F.Entity) and e.name in obj.entities
                        and str(e.value_type.name) != "UNKNOWN"}
            key_fields = {k: f for k, f in key_fields.items() if k in declared}
        for ent, en in entities:
            key = ent.join_keys[0]
            if en == DUMMY_ENTITY:  # its key is the constant Feast gives it, not a source column
                key_projections.append((DUMMY_KEY, f"'{DUMMY_VALUE}'"))
                continue
            if key in mapping and key not in raw_of:  # Feast renames the key column away: no key column left
                fails.append(f"field_mapping renames join key column {key!r} to {mapping[key]!r}, so the view has "
                             f"no {key!r} column; map the source column to the join key instead")
            dtype: Optional[str]
            if key in key_fields:
                dtype = typed(key_fields[key], "join key")
            else:
                feast_ent = next(e for e in self.objects.values() if isinstance(e, self.F.Entity) and e.name == en)
                dtype = dtype_of(feast_ent.value_type)
            raw_key = raw_of.get(key, key)
            if raw_key != key:  # Feast reads the source column under the key's name: a projection here
                key_projections.append((key, _quoted(raw_key)))
            columns.append((raw_key, dtype, f"join key of entity '{en}' in {kind(obj)} '{name}'"))

        aggregations = list(getattr(obj, "aggregations", None) or [])
        outputs = {a.resolved_name(a.time_window) for a in aggregations}
        fields = [f for f in obj.features if f.name not in (ts, created)]
        for f in obj.features:
            if f.name in (ts, created):
                columns.append((f.name, typed(f, "field"), f"{kind(obj)} '{name}'"))
        input_fields = [f for f in fields if f.name not in outputs]
        for f in input_fields:
            columns.append((raw_of.get(f.name, f.name), typed(f, "field"), f"{kind(obj)} '{name}'"))

        features: List[Any] = []
        if not aggregations:
            # The event-time and created columns listed in the schema are features too, as Feast serves them
            # (the event time as stored here: truncated to the millisecond).
            fields = list(obj.features)
            for f in fields:
                raw = raw_of.get(f.name, f.name)
                feature = _attempt(fails, Latest, raw) if raw == f.name else _attempt(fails, Latest, raw, name=f.name)
                if feature is not None:
                    features.append(feature)
            if not fields:
                fails.append("the schema has no feature fields (Feast infers them from the data at apply; "
                             "list them as Fields in schema=)")
        else:
            known = {f.name for f in input_fields} | {ent.join_keys[0] for ent, _ in entities} | {ts, created}
            for agg in aggregations:
                feature = self.aggregation(obj, name, agg, raw_of, known, group.fallback, columns, fails)
                if feature is not None:
                    features.append(feature)
        ttl = None if aggregations else _attempt(fails, ms, obj.ttl, "ttl")
        return features, columns, ttl

    def aggregation(self, obj, view_name, agg, raw_of, known, fallback, columns,
                    fails: List[str]) -> Optional[Aggregation]:
        """Our Aggregation for a Feast one, or None with every problem of it added to ``fails``."""
        before = len(fails)
        fn = (agg.function or "").strip().lower()
        ours = FEAST_AGG_ALIASES.get(fn, fn)
        if ours not in AGG_FUNCTIONS:
            fails.append(f"aggregation function {agg.function!r} is not supported (supported: "
                         f"{', '.join(AGG_FUNCTIONS)}; aliases: {', '.join(sorted(FEAST_AGG_ALIASES))})")
        column = agg.column or None
        if column is None and ours in AGG_FUNCTIONS and AGG_FUNCTIONS[ours].needs_column:
            fails.append(f"aggregation {agg.function!r} needs a column")
        out_name = agg.resolved_name(agg.time_window)
        if not NAME_RE.match(out_name):
            fails.append(f"aggregation output name {out_name!r} is not a valid identifier; give Aggregation(name=...)")
        raw = None
        if column is not None:
            raw = raw_of.get(column, column)
            if column not in known:
                if raw not in fallback:
                    fails.append(f"aggregation column {column!r} is not in the schema; add Field(name={column!r}, "
                                 "dtype=...) to schema=")
                else:
                    columns.append((raw, fallback[raw], f"schema_json of the source of {kind(obj)} '{view_name}'"))
            declared = next((dtype for col, dtype, _ in columns if col == raw and dtype is not None), None)
            if declared is not None and ours in AGG_FUNCTIONS and AGG_FUNCTIONS[ours].numeric_only \
                    and declared not in t.NUMERIC:
                fails.append(f"aggregation {out_name!r}: {ours} needs a numeric column; {raw!r} is {declared}")
        try:
            window = ms(agg.time_window, "time_window")
        except DefinitionError as exc:
            fails.append(f"aggregation {out_name!r}: {exc}")
        if len(fails) > before:
            return None
        return _attempt(fails, Aggregation, raw, ours, window, name=out_name)

    def view(self, plan: ViewPlan) -> None:
        obj = plan.obj
        source = self.sources.get(plan.source_key)
        if source is None:
            self.failed_views.add(plan.name)
            return  # the source failed and was reported
        fails: List[str] = []
        types = source.columns
        for f in plan.features:
            if isinstance(f, Aggregation) and f.column is not None:
                in_type = types.get(f.column)
                if AGG_FUNCTIONS[f.function].numeric_only and in_type not in t.NUMERIC:
                    fails.append(f"aggregation {f.name!r}: {f.function} needs a numeric column; "
                                 f"{f.column!r} is {in_type}")
        translated = None
        if not fails:
            translated = _attempt(fails, FeatureView, name=plan.name, entities=plan.entities, source=source,
                                  features=tuple(plan.features), ttl=plan.ttl_ms, projections=plan.projections,
                                  online=bool(getattr(obj, "online", True)), description=obj.description or "",
                                  owner=obj.owner or "", tags=_attempt(fails, freeze_tags, obj.tags, fallback=()))
        if fails:
            for message in fails:
                self.problem(obj, message)
            self.failed_views.add(plan.name)
            return
        self.views[plan.name] = translated
        self.emit(plan.var or plan.name, translated)


def _quoted(column: str) -> str:
    """A source column as a SQL expression (a double-quoted identifier)."""
    return '"' + column.replace('"', '""') + '"'


def _attempt(fails: List[str], fn, *args, fallback=None, **kwargs):
    """``fn(...)``, or ``fallback`` with its problems (Fail, DefinitionError) added to ``fails``."""
    try:
        return fn(*args, **kwargs)
    except Fail as exc:
        fails.append(str(exc))
    except DefinitionError as exc:
        fails.extend(exc.messages)
    return fallback
