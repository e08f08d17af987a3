"""Feast's view projections in a service: ``fv.with_name("alias")`` and ``fv.with_join_key_map({...})``.

Feast reads the same view under another name (feature references ``alias:feature``, output columns
``alias__feature`` with full feature names) and/or joins it on other entity-frame columns (``{"location_id":
"origin_id"}``: the view's ``location_id`` is matched with the request's ``origin_id``), typically to read one
view twice, e.g. for the origin and the destination of a trip. Here such a projection becomes a **derived
feature view**: the same source, filter, features and TTL under the alias, keyed on the mapped columns, which
are projections of the original key columns (``origin_id = "location_id"``) of entities named
``<alias>__<entity>``. Being a view of its own, it is computed, stored, looked up, logged and verified like
any other (its offline table and online state are a copy of the original's, keyed differently). A join-key map
without an alias is named ``<view>__by__<mapped keys>``. The same alias defined twice differently is an error.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from featurestore.feast_import.common import Fail, ViewPlan
from featurestore.model import Entity, FeatureView


def derived_name(projection: Any) -> str:
    if projection.name_alias:
        return str(projection.name_alias)
    return f"{projection.name}__by__{'_'.join(str(v) for v in projection.join_key_map.values())}"


def derived_view(translator: Any, view: FeatureView, plan: ViewPlan, projection: Any,
                 service_var: str) -> Tuple[FeatureView, ViewPlan]:
    """The derived view of ``projection`` (a Feast ``FeatureViewProjection`` of ``view``), made once per name."""
    name = derived_name(projection)
    key_map: Dict[str, str] = {str(k): str(v) for k, v in (projection.join_key_map or {}).items()}
    unknown = sorted(set(key_map) - set(view.join_keys))
    if unknown:
        raise Fail(f"join key map {key_map!r} of feature view {view.name!r} maps {unknown}, which are not its join "
                   f"keys ({', '.join(view.join_keys)})")
    made = translator.__dict__.setdefault("derived_views", {})
    spec = (view.name, tuple(sorted(key_map.items())))
    if name in made:
        if made[name][0] != spec:
            raise Fail(f"alias {name!r} names two different projections ({made[name][0]} and {spec})")
        return made[name][1], plan
    if name in translator.views or name in translator.request_views or name in translator.odfv_names:
        raise Fail(f"alias {name!r} of feature view {view.name!r} is the name of another view")
    key_exprs = dict(view.projections)
    projections = list(view.projections)
    entities = []
    for ent in view.entities:
        if not any(k in key_map for k in ent.join_keys):
            entities.append(ent)
            continue
        keys = tuple(key_map.get(k, k) for k in ent.join_keys)
        for original, mapped in zip(ent.join_keys, keys):
            if mapped != original:
                expr = key_exprs.get(original) or '"' + original.replace('"', '""') + '"'
                projections.append((mapped, expr))
        derived_entity = Entity(name=f"{name}__{ent.name}", join_keys=keys, description=ent.description)
        translator.emit(f"{service_var}.{derived_entity.name}", derived_entity)
        entities.append(derived_entity)
    try:
        derived = FeatureView(name=name, entities=tuple(entities), source=view.source, features=view.features,
                              filter=view.filter, projections=tuple(projections), ttl=view.ttl, online=view.online,
                              description=view.description, owner=view.owner, tags=view.tags)
    except Exception as exc:  # DefinitionError: a mapped key clashing with a column, say
        raise Fail(f"projection {name!r} of feature view {view.name!r}: {exc}") from None
    made[name] = (spec, derived)
    translator.emit(f"{service_var}.{name}", derived)
    return derived, plan


__all__ = ["derived_name", "derived_view"]
