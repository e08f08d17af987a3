"""Translate Feast definition objects (written with the ``feast`` package itself) to this model.

SPEC §1: ``Entity``, ``FileSource``, ``KafkaSource(batch_source=...)``, ``PushSource``,
``FeatureView``, ``StreamFeatureView`` with ``Aggregation`` and ``FeatureService`` are accepted as
definitions. Feast declares stream aggregations but never computes them; here both jobs do. What
cannot be translated is a :class:`~featurestore.errors.TranslationError` naming the Feast object
kind and name (``StreamFeatureView 'user_tx_stats': ...``), never a silent skip.

Public surface:

* :func:`is_feast_object` -- cheap check that never imports feast, so a plain repo never pays the
  ~4 s ``import feast``.
* :func:`translate` -- ``{variable: feast object}`` of one repo (all modules together) ->
  ``{variable: Definition}``. Keys are the variables the loader passed (so it can find file and
  line); an object with no variable of its own (a source written inline in a view) is keyed
  ``"<view variable>.source"``. Every translated object is *named* by the Feast object's own
  ``.name``. References are shared: every view reading one Feast source gets the same ``Source``
  instance, and views get the translated ``Entity`` objects.

Mapping (decisions marked *):

* ``Entity(name, join_keys=[k], value_type=T)`` -> ``Entity(name=name, join_keys=(k,))``; no
  join_keys -> the name is the key (Feast's rule). ``value_type`` only types the key column when
  no view declares it in its ``schema``.
* Sources. One Feast source becomes one ``Source``; its batch face is ``ParquetFiles(path)``.
  - ``FileSource(path, timestamp_field, created_timestamp_column)`` -> batch face only;
    ``tiebreak=(created_timestamp_column,)`` when set (Feast breaks equal event times by the
    greatest created timestamp; our event order picks the greatest tiebreak value the same way).
    An unnamed FileSource (Feast names it after its path) takes its variable's name, or
    ``"<view>_source"`` when written inline.
  - ``KafkaSource(topic, message_format, timestamp_field, batch_source=FileSource,
    watermark_delay_threshold)`` -> batch face from ``batch_source`` and
    ``stream=KafkaTopic(topic, "json"|"avro", bootstrap_servers)``,
    ``watermark_delay=watermark_delay_threshold``. The two faces must agree on the event-time
    column, the created-timestamp column and the field mapping (ours have one schema).
    ``ProtoFormat`` is an error.
  - ``PushSource(batch_source=FileSource)`` -> batch face only. *Rows pushed through Feast's
    push API are not a stream face here: to serve them fresh, produce the same rows to a Kafka
    topic and declare a KafkaSource (or a native ``Source(stream=KafkaTopic(...))``); until then
    the view is computed by ``backfill`` from the batch files.
  - Schema: Feast sources carry none (Feast reads it from the data at ``feast apply``), so it is
    derived from the views reading the source: the event-time column (timestamp), the created
    column (timestamp), each view's join keys and ``schema`` Fields, and aggregation input
    columns. A column's type comes from the views' Fields, then the Entity ``value_type``, then the
    source's ``schema_json`` (a Spark DDL string for JsonFormat, an Avro record for AvroFormat) --
    *that schema is only a type fallback, never a column list, because the Parquet batch face
    need not hold every column of the topic. A source no view reads keeps only its time columns.
  - Types: String, Int32, Int64, Float32, Float64, Bool, UnixTimestamp (and the same ValueTypes).
    Arrays, sets, maps, structs, bytes, JSON, UUID, decimals and zoned timestamps are errors.
  - *``field_mapping`` ({source column: feature name}) is translated, not rejected: the source
    schema holds the source column and the feature reads it, ``Latest("raw", name="feature")``
    (aggregations likewise). Mapping a join-key or timestamp column is an error (Feast itself
    disagrees with itself on whether those are mapped).
  - Other Feast sources (BigQuery, Spark, Kinesis, Request, ...) and other file formats (Delta)
    are errors.
* ``FeatureView(name, entities, ttl, schema, source, online)`` -> ``FeatureView`` with
  ``Latest(field)`` for each non-key schema Field, in schema order; ``ttl`` 0/None -> unbounded
  (None). A view without a schema (Feast infers it at apply), without entities, or reading other
  views is an error. *Feast's point-in-time join is inclusive (``ts <= q``, TTL lower bound
  inclusive); ours is exclusive (``ts < q``, SPEC §2). That difference is the product's contract
  and is NOT translated: a Feast view imported here serves the event strictly before ``q``.
* ``StreamFeatureView(..., aggregations=[Aggregation(column, function, time_window)])`` ->
  ``FeatureView`` whose features are the aggregations only, named as Feast names them
  (``Aggregation.resolved_name``: ``name=`` if given, else ``{function}_{column}_{seconds}s``, or
  ``{function}_{column}`` without a window). Its schema Fields are source columns (the inputs); a
  Field named like an aggregation output just declares that output and is not a column.
  *A StreamFeatureView without aggregations translates like a FeatureView. *With aggregations its
  ``ttl`` is dropped: a window already decays by request time, and our ``ttl`` bounds only
  *latest* features. Functions: ours (``featurestore.semantics.AGG_FUNCTIONS`` + ``AGG_ALIASES``)
  and Feast's ``nunique``; others are errors. ``time_window`` None/0 -> unbounded.
  *``slide_interval``, ``enable_tiling`` and ``tiling_hop_size`` are ignored: our windows are
  exact sliding windows evaluated at request time, which is what a hop would approximate.
  A ``udf``/``feature_transformation`` that is not the identity (``lambda df: df``) is an error:
  opaque Python cannot be compiled to SQL (express it as projections); ``mode`` only matters with
  a udf. ``BatchFeatureView`` follows the same rules.
* ``OnDemandFeatureView`` (and ``RequestSource``) -> error: opaque Python at request time.
* ``FeatureService(name, features=[fv, fv[["a", "b"]], "fv:a"], logging_config=...)`` ->
  ``FeatureService`` with the view (all features) or ``view.select(...)``; ``logging_config``
  present -> ``LoggingConfig(enabled=True, sample_rate=its sample_rate)`` (*its destination is
  not translated: ours come from the project config). Aliases (``with_name``), join-key maps and
  version pins (``"fv@v2"``, ``FeatureView(version="v2")``) are errors: there is no Feast
  registry here; git versions definitions.
  *A selection of every Feast feature of a view (``fv[[all of them]]``) is the whole view; for a
  StreamFeatureView with aggregations, selecting an input Field is an error naming the outputs.
* Other Feast objects (``Project``, ``Field``, types, formats, ``Permission``...) are not
  definitions and are ignored, and so is a projection bound to a variable (``x = fv[["a"]]``:
  a reference). Two different Feast objects of one kind with one name are an error (equal
  copies are one object). Descriptions, owners and tags are carried over; ``offline`` and
  ``precompute_online`` are not (every view is written offline here).

Errors: every problem in the repo is collected; one :class:`TranslationError` is raised whose
message has one line per problem and whose ``problems`` attribute lists
:class:`FeastProblem` ``(variable, kind, name, message)`` so a loader can point at file and line.
An object whose dependency failed (a view of a failed source) is skipped without a second error.
"""

from __future__ import annotations

import dis
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from featurestore import dtypes as t
from featurestore.errors import DefinitionError, TranslationError
from featurestore.model import (
    Aggregation,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    KafkaTopic,
    Latest,
    LoggingConfig,
    ParquetFiles,
    Source,
)
from featurestore.model.base import NAME_RE, freeze_tags
from featurestore.model.durations import parse_duration
from featurestore.semantics import AGG_ALIASES, AGG_FUNCTIONS

__all__ = ["FeastProblem", "is_feast_object", "translate"]


def is_feast_object(obj: Any) -> bool:
    """True for an instance of a class defined in the ``feast`` package (never imports feast)."""
    module = getattr(type(obj), "__module__", "") or ""
    return module == "feast" or module.startswith("feast.")


class FeastProblem(NamedTuple):
    """One Feast object that cannot be translated; ``variable`` is None for inline objects."""

    variable: Optional[str]
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}': {self.message}"


# -- types ------------------------------------------------------------------------------------

_FEAST_TYPES = {  # feast.types.PrimitiveFeastType names
    "STRING": t.STRING,
    "INT32": t.INT32,
    "INT64": t.INT64,
    "FLOAT32": t.FLOAT32,
    "FLOAT64": t.FLOAT64,
    "BOOL": t.BOOL,
    "UNIX_TIMESTAMP": t.TIMESTAMP,
}
_VALUE_TYPES = {  # feast.ValueType names
    "STRING": t.STRING,
    "INT32": t.INT32,
    "INT64": t.INT64,
    "FLOAT": t.FLOAT32,
    "DOUBLE": t.FLOAT64,
    "BOOL": t.BOOL,
    "UNIX_TIMESTAMP": t.TIMESTAMP,
}
_SUPPORTED_TYPES = "String, Int32, Int64, Float32, Float64, Bool, UnixTimestamp"
_SPARK_DDL_TYPES = {
    "string": t.STRING, "varchar": t.STRING, "char": t.STRING,
    "int": t.INT32, "integer": t.INT32, "smallint": t.INT32, "tinyint": t.INT32, "short": t.INT32,
    "byte": t.INT32, "bigint": t.INT64, "long": t.INT64,
    "float": t.FLOAT32, "real": t.FLOAT32, "double": t.FLOAT64,
    "boolean": t.BOOL, "bool": t.BOOL, "timestamp": t.TIMESTAMP, "timestamp_ltz": t.TIMESTAMP,
}
_AVRO_TYPES = {"string": t.STRING, "int": t.INT32, "long": t.INT64, "float": t.FLOAT32,
               "double": t.FLOAT64, "boolean": t.BOOL}
_AVRO_TIMESTAMPS = {"timestamp-millis", "timestamp-micros", "timestamp-nanos"}

# Feast spellings beyond ours: Feast's own engines alias count_distinct as pandas' "nunique".
_FEAST_AGG_ALIASES = {**AGG_ALIASES, "nunique": "count_distinct"}


def _dtype_of(dtype: Any) -> Optional[str]:
    """Our dtype for a feast.types type or ValueType, or None when unsupported."""
    kind = type(dtype).__name__
    name = str(getattr(dtype, "name", ""))
    if kind == "PrimitiveFeastType":
        return _FEAST_TYPES.get(name)
    if kind == "ValueType":
        return _VALUE_TYPES.get(name)
    return None


def _type_label(dtype: Any) -> str:
    try:
        return str(dtype)
    except Exception:  # pragma: no cover - defensive: str() of a foreign object
        return type(dtype).__name__


def _split_top_level(text: str) -> List[str]:
    parts: List[str] = []
    current: List[str] = []
    depth = 0
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _schema_json_types(fmt: Any) -> Dict[str, str]:
    """Column types from a stream format's ``schema_json`` (Spark DDL or Avro); {} when unreadable."""
    text = (getattr(fmt, "schema_json", "") or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return {}
        out = {}
        for f in record.get("fields", []) if isinstance(record, dict) else []:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                continue
            typ = f.get("type")
            if isinstance(typ, list):
                rest = [x for x in typ if x != "null"]
                typ = rest[0] if len(rest) == 1 else None
            if isinstance(typ, dict):
                typ = t.TIMESTAMP if typ.get("logicalType") in _AVRO_TIMESTAMPS else typ.get("type")
            dtype = typ if typ == t.TIMESTAMP else _AVRO_TYPES.get(typ) if isinstance(typ, str) else None
            if dtype:
                out[f["name"]] = dtype
        return out
    out = {}
    for part in _split_top_level(text):
        tokens = part.replace(":", " ", 1).split() if ":" in part.split()[0] else part.split()
        if len(tokens) < 2:
            return {}  # not a DDL string
        name = tokens[0].strip("`")
        dtype = _SPARK_DDL_TYPES.get(re.sub(r"\(.*", "", tokens[1].lower()))
        if dtype:
            out[name] = dtype
    return out


# -- udfs -------------------------------------------------------------------------------------

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


# -- the translator ---------------------------------------------------------------------------


class _Skip(Exception):
    """A dependency failed and was already reported."""


class _Fail(Exception):
    """One problem with the object being translated."""


@dataclass
class _ViewPlan:
    """What a Feast view needs from its source and what it will become."""

    obj: Any
    var: Optional[str]
    name: str
    entities: Tuple[Entity, ...]
    entity_names: Tuple[str, ...]
    source_key: str
    features: List[Any]
    columns: List[Tuple[str, Optional[str], str]]  # (source column, dtype or None, why needed)
    feast_features: Tuple[str, ...] = ()
    ttl_ms: Optional[int] = None


@dataclass
class _SourceGroup:
    obj: Any
    var: Optional[str]  # its own module-level variable, if any
    views: List[_ViewPlan] = field(default_factory=list)  # plans of views that translated
    readers: List[str] = field(default_factory=list)  # names of every Feast view reading it
    inline_parent: Optional[Tuple[Optional[str], str]] = None  # (view variable, view name)
    # Filled by prepare():
    name: str = ""
    key: Optional[str] = None  # key in the result
    batch: Any = None
    stream: Any = None
    ts: str = ""
    created: str = ""
    mapping: Dict[str, str] = field(default_factory=dict)
    fallback: Dict[str, str] = field(default_factory=dict)
    failed: bool = False


def _kind(obj: Any) -> str:
    return type(obj).__name__


def _ms(value: Any) -> Optional[int]:
    """Milliseconds of a timedelta; None for None or zero (Feast: 0 means unbounded)."""
    if value is None or value == timedelta(0):
        return None
    return parse_duration(value, "duration")


def _parquet_types(path: str, repo_root: Optional[str]) -> Dict[str, str]:
    """Column types of a FileSource's Parquet file(s), as Feast itself infers them; {} when unreadable."""
    import glob
    import os

    if repo_root and not os.path.isabs(path):
        path = os.path.join(repo_root, path)
    files = sorted(glob.glob(path)) if any(ch in path for ch in "*?[") else [path]
    if files and os.path.isdir(files[0]):
        files = sorted(glob.glob(os.path.join(files[0], "**", "*.parquet"), recursive=True))
    if not files or not os.path.exists(files[0]):
        return {}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(files[0])
    except Exception:  # noqa: BLE001 - an unreadable file just gives no hints
        return {}
    out = {}
    for field in schema:
        ty = field.type
        if pa.types.is_string(ty) or pa.types.is_large_string(ty):
            out[field.name] = t.STRING
        elif pa.types.is_int64(ty) or pa.types.is_uint32(ty):
            out[field.name] = t.INT64
        elif pa.types.is_int32(ty) or pa.types.is_int16(ty) or pa.types.is_int8(ty):
            out[field.name] = t.INT32
        elif pa.types.is_float64(ty):
            out[field.name] = t.FLOAT64
        elif pa.types.is_float32(ty):
            out[field.name] = t.FLOAT32
        elif pa.types.is_boolean(ty):
            out[field.name] = t.BOOL
        elif pa.types.is_timestamp(ty):
            out[field.name] = t.TIMESTAMP
    return out


class _Translator:
    repo_root: Optional[str] = None

    def __init__(self, objects: Dict[str, Any]):
        import feast
        from feast.base_feature_view import BaseFeatureView
        from feast.data_format import AvroFormat, JsonFormat
        from feast.data_source import DataSource, KafkaSource, PushSource, RequestSource
        from feast.infra.offline_stores.file_source import FileSource
        from feast.on_demand_feature_view import OnDemandFeatureView

        self.F = feast
        self.BaseFeatureView, self.OnDemandFeatureView = BaseFeatureView, OnDemandFeatureView
        self.DataSource, self.FileSource, self.KafkaSource = DataSource, FileSource, KafkaSource
        self.PushSource, self.RequestSource = PushSource, RequestSource
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
        self.view_plans: Dict[str, _ViewPlan] = {}
        self.failed_views: set = set()
        self.sources: Dict[str, Source] = {}
        self.failed_sources: set = set()

    # -- bookkeeping --------------------------------------------------------------------------
    def problem(self, obj: Any, message: str, name: Optional[str] = None, var: Optional[str] = None) -> None:
        name = name if name is not None else str(getattr(obj, "name", "") or "")
        var = var if var is not None else self.var_of.get(id(obj))
        self.problems.append(FeastProblem(var, _kind(obj), name, message))

    def check_name(self, obj: Any, name: Optional[str] = None) -> str:
        name = name if name is not None else getattr(obj, "name", "")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _Fail(f"name {name!r} is not a valid identifier (letters, digits, _; not starting with a digit)")
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
        seen: Dict[Tuple[str, str], Any] = {}
        for var, obj in self.objects.items():
            if isinstance(obj, self.F.Entity):
                bucket, family = entities, "entity"
            elif isinstance(obj, self.OnDemandFeatureView):
                self.problem(obj, "on-demand feature views run opaque Python at request time, which cannot "
                                  "be compiled to SQL; compute the value in a FeatureView with projections")
                self.failed_views.add(obj.name)
                continue
            elif isinstance(obj, self.F.FeatureView):
                if self._is_projection_copy(obj):
                    continue  # fv[["a"]] / fv.with_name(...) bound to a variable: a reference, not a definition
                bucket, family = views, "view"
            elif isinstance(obj, self.BaseFeatureView):
                self.problem(obj, f"{_kind(obj)} is not supported (supported views: FeatureView, "
                                  "StreamFeatureView, BatchFeatureView)")
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
                self.problem(obj, f"another {_kind(first)} is also named {obj.name!r} "
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
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc))
            self.failed_entities.add(obj.name)
            return
        self.entities[name] = ent
        self.emit(self.var_of[id(obj)], ent)

    # -- sources ------------------------------------------------------------------------------
    def root_source(self, view: Any) -> Any:
        return getattr(view, "stream_source", None) or view.batch_source

    def plan_sources(self, views: List[Any], sources: List[Any]) -> Dict[str, _SourceGroup]:
        """Group views by the Feast source they read (by Feast name, i.e. Feast's identity)."""
        groups: Dict[str, _SourceGroup] = {}
        # FileSources that are the batch face of a Kafka/Push source (module-level or read by a view).
        absorbed = set()
        for src in [*sources, *(self.root_source(v) for v in views)]:
            batch = getattr(src, "batch_source", None)
            if batch is not None:
                absorbed.add(id(batch))
        for obj in sources:
            if isinstance(obj, self.FileSource) and id(obj) in absorbed and not any(
                self.root_source(v) is obj for v in views
            ):
                continue  # only the batch face of a Kafka/Push source
            self._group(groups, obj, None)
        for v in views:
            src = self.root_source(v)
            if src is not None:
                self._group(groups, src, (self.var_of.get(id(v)), v.name))
        return groups

    def _group(self, groups: Dict[str, _SourceGroup], obj: Any, parent) -> None:
        key = str(obj.name)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _SourceGroup(obj, self.var_of.get(id(obj)), inline_parent=parent)
        elif group.obj is not obj and group.obj != obj and parent is not None:
            self.problem(obj, f"another {_kind(group.obj)} is also named {obj.name!r}; Feast names must be unique",
                         var=parent[0])
        if parent is not None:
            group.readers.append(parent[1])

    def source_name(self, group: _SourceGroup) -> str:
        obj = group.obj
        name = obj.name
        if NAME_RE.match(name or ""):
            return name
        if isinstance(obj, self.FileSource) and name == obj.path:  # unnamed: Feast used the path
            if group.var and NAME_RE.match(group.var):
                return group.var
            if group.inline_parent and NAME_RE.match(group.inline_parent[1] or ""):
                return f"{group.inline_parent[1]}_source"
        return self.check_name(obj)

    def faces(self, obj: Any) -> Tuple[Any, Any]:
        """(Feast batch FileSource or None, Feast KafkaSource or None) of a root source."""
        if isinstance(obj, self.FileSource):
            return obj, None
        if isinstance(obj, self.KafkaSource):
            batch = obj.batch_source
            stream = obj
        elif isinstance(obj, self.PushSource):
            batch, stream = obj.batch_source, None
            if batch is None:
                raise _Fail("a PushSource needs a batch_source (FileSource) to read history from")
        elif isinstance(obj, self.RequestSource):
            raise _Fail("request sources feed on-demand feature views, which are not supported")
        else:
            raise _Fail(f"{_kind(obj)} is not supported (supported sources: FileSource, "
                        "KafkaSource(batch_source=FileSource), PushSource(batch_source=FileSource))")
        if batch is not None and not isinstance(batch, self.FileSource):
            raise _Fail(f"batch_source {_kind(batch)} {batch.name!r} is not supported; use a FileSource")
        return batch, stream

    def time_columns(self, obj: Any) -> Tuple[str, str, Dict[str, str]]:
        """(event-time column, created column, field_mapping) of a root source, faces reconciled."""
        batch, stream = self.faces(obj)
        ts, created, mapping = "", "", {}
        for face in (stream, batch):
            if face is None:
                continue
            for attr, current in (("timestamp_field", ts), ("created_timestamp_column", created)):
                value = getattr(face, attr, "") or ""
                if value and current and value != current:
                    raise _Fail(f"{attr} {current!r} of the stream differs from {value!r} of batch_source "
                                f"{batch.name!r}; both faces must use one column")
            ts = ts or face.timestamp_field or ""
            created = created or face.created_timestamp_column or ""
        if stream is not None and batch is not None and (stream.field_mapping or {}) != (batch.field_mapping or {}):
            raise _Fail(f"field_mapping {stream.field_mapping!r} differs from batch_source {batch.name!r}'s "
                        f"{batch.field_mapping!r}; both faces need the same columns")
        mapping = dict((batch.field_mapping if batch is not None else stream.field_mapping) or {})
        if not ts:
            raise _Fail("timestamp_field is required (Feast infers it from the data at apply; "
                        "this importer does not read data)")
        for raw, mapped in mapping.items():
            if {raw, mapped} & {ts, created}:
                raise _Fail(f"field_mapping {raw!r} -> {mapped!r} maps a timestamp column, which is not supported")
        return ts, created, mapping

    def prepare(self, group: _SourceGroup) -> None:
        """Check a source on its own (name, faces, time columns, formats); report it once if broken."""
        obj = group.obj
        parent_var = group.inline_parent[0] if group.inline_parent else None
        group.key = group.var or (f"{parent_var}.source" if parent_var else None)
        try:
            group.name = self.source_name(group)
            group.batch, group.stream = self.faces(obj)
            group.ts, group.created, group.mapping = self.time_columns(obj)
            batch, stream = group.batch, group.stream
            if batch is not None:
                fmt = batch.file_format
                if fmt is not None and str(fmt) != "parquet":
                    raise _Fail(f"batch_source {batch.name!r}: file format {str(fmt)!r} is not supported; "
                                "use Parquet")
                if (getattr(batch, "timestamp_field_type", "") or "TIMESTAMP").upper() != "TIMESTAMP":
                    raise _Fail(f"timestamp_field_type {batch.timestamp_field_type!r} is not supported; "
                                "event times must be timestamps")
            if stream is not None:
                options = stream.kafka_options
                if not isinstance(options.message_format, (self.JsonFormat, self.AvroFormat)):
                    raise _Fail(f"message_format {_kind(options.message_format)} is not supported; "
                                "use JsonFormat or AvroFormat")
                if not options.topic:
                    raise _Fail("topic is required")
                group.fallback = _schema_json_types(options.message_format)
            if batch is not None and getattr(batch, "path", None):
                # Feast infers undeclared column types from the file; so do we (the file wins).
                group.fallback = {**group.fallback, **_parquet_types(batch.path, self.repo_root)}
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc), var=group.key)
            group.failed = True

    def source(self, key: str, group: _SourceGroup) -> None:
        obj = group.obj
        if group.failed:
            self.failed_sources.add(key)
            return
        if group.readers and not group.views and group.var is None:
            self.failed_sources.add(key)
            return  # inline, and every view reading it failed (and was reported)
        try:
            batch, stream = group.batch, group.stream
            schema = self.schema(obj, group.views, group.ts, group.created, group.fallback)
            topic = None
            delay = 0
            if stream is not None:
                options = stream.kafka_options
                fmt = "json" if isinstance(options.message_format, self.JsonFormat) else "avro"
                topic = KafkaTopic(options.topic, fmt, options.kafka_bootstrap_servers or None)
                delay = _ms(options.watermark_delay_threshold) or 0
            translated = Source(
                name=group.name,
                schema=schema,
                timestamp=group.ts,
                batch=ParquetFiles(batch.path) if batch is not None else None,
                stream=topic,
                watermark_delay=delay,
                tiebreak=(group.created,) if group.created else (),
                description=obj.description or "",
                owner=obj.owner or "",
                tags=freeze_tags(obj.tags),
            )
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc), var=group.key)
            self.failed_sources.add(key)
            return
        self.sources[key] = translated
        self.emit(group.key or group.name, translated)

    def schema(self, obj: Any, plans: List[_ViewPlan], ts: str, created: str,
               fallback: Dict[str, str]) -> Tuple[Tuple[str, str], ...]:
        cols: Dict[str, Tuple[Optional[str], str]] = {ts: (t.TIMESTAMP, "event time")}
        if created:
            cols[created] = (t.TIMESTAMP, "created timestamp")
        for plan in sorted(plans, key=lambda p: p.name):
            for col, dtype, why in plan.columns:
                if col in (ts, created):
                    if dtype not in (None, t.TIMESTAMP):
                        raise _Fail(f"column {col!r} is a timestamp, but {why} declares it {dtype}")
                    continue
                have = cols.get(col)
                if have is None or have[0] is None:
                    cols[col] = (dtype, why) if have is None or dtype is not None else have
                elif dtype is not None and dtype != have[0]:
                    raise _Fail(f"column {col!r} is {have[0]} in {have[1]} but {dtype} in {why}")
        out = []
        for col, (dtype, why) in cols.items():
            if dtype is None:
                dtype = fallback.get(col)
            if dtype is None:
                raise _Fail(f"type of column {col!r} ({why}) is unknown: declare it as a Field in the view's "
                            "schema or give the Entity a value_type")
            out.append((col, dtype))
        return tuple(out)

    # -- views --------------------------------------------------------------------------------
    def plan_view(self, obj: Any, groups: Dict[str, _SourceGroup]) -> None:
        var = self.var_of.get(id(obj))
        try:
            name = self.check_name(obj)
            version = getattr(obj, "version", "latest") or "latest"
            if str(version).lower() != "latest":
                raise _Fail(f"version {version!r} pins a Feast registry snapshot; there is no Feast registry "
                            "here (definitions are versioned by git), remove version=")
            if getattr(obj, "source_views", None):
                raise _Fail("a view reading other feature views is not supported; read their source instead")
            src = self.root_source(obj)
            if src is None:
                raise _Fail("a source is required")
            group = groups[str(src.name)]
            if group.failed:
                raise _Skip()  # reported as the source's problem
            fn = _opaque_udf(obj)
            if fn is not None:
                mode = getattr(obj, "mode", None)
                mode = getattr(mode, "value", mode)
                raise _Fail(f"udf {getattr(fn, '__name__', '?')!r} (mode {mode!r}): an opaque Python udf cannot "
                            "be compiled to SQL; express it as projections")
            entity_names = tuple(obj.entities)
            if entity_names == ("__dummy",):
                raise _Fail("a feature view without entities is not supported")
            entities = []
            for en in entity_names:
                if en in self.failed_entities:
                    raise _Skip()
                if en not in self.entities:
                    raise _Fail(f"entity {en!r} is not defined in this repo (Feast views keep only entity names, "
                                "so the Entity must be a module-level object)")
                entities.append(self.entities[en])
            ts, created, mapping = group.ts, group.created, group.mapping
            view_ts = getattr(obj, "timestamp_field", "") or ""
            if view_ts and view_ts != ts:
                raise _Fail(f"timestamp_field {view_ts!r} differs from source {src.name!r}'s {ts!r}; "
                            "one event-time column per source")
            raw_of = {mapped: raw for raw, mapped in mapping.items()}
            columns: List[Tuple[str, Optional[str], str]] = []

            def typed(f: Any, what: str) -> str:
                dtype = _dtype_of(f.dtype)
                if dtype is None:
                    raise _Fail(f"{what} {f.name!r} has type {_type_label(f.dtype)}, which is not supported "
                                f"(supported: {_SUPPORTED_TYPES})")
                return dtype

            key_fields = {f.name: f for f in obj.entity_columns}
            for ent, en in zip(entities, entity_names):
                key = ent.join_keys[0]
                if key in raw_of or key in mapping:
                    raise _Fail(f"field_mapping of join key {key!r} is not supported")
                dtype: Optional[str]
                if key in key_fields:
                    dtype = typed(key_fields[key], "join key")
                else:
                    feast_ent = next(e for e in self.objects.values()
                                     if isinstance(e, self.F.Entity) and e.name == en)
                    dtype = _dtype_of(feast_ent.value_type)
                columns.append((key, dtype, f"join key of entity '{en}' in {_kind(obj)} '{name}'"))

            aggregations = list(getattr(obj, "aggregations", None) or [])
            outputs = {a.resolved_name(a.time_window) for a in aggregations}
            fields = [f for f in obj.features if f.name not in (ts, created)]
            for f in obj.features:
                if f.name in (ts, created):
                    columns.append((f.name, typed(f, "field"), f"{_kind(obj)} '{name}'"))
            input_fields = [f for f in fields if f.name not in outputs]
            for f in input_fields:
                columns.append((raw_of.get(f.name, f.name), typed(f, "field"), f"{_kind(obj)} '{name}'"))

            features: List[Any] = []
            if not aggregations:
                for f in fields:
                    raw = raw_of.get(f.name, f.name)
                    features.append(Latest(raw) if raw == f.name else Latest(raw, name=f.name))
                if not features:
                    raise _Fail("the schema has no feature fields (Feast infers them from the data at apply; "
                                "list them as Fields in schema=)")
            else:
                known = {f.name for f in input_fields} | {ent.join_keys[0] for ent in entities} | {ts, created}
                for agg in aggregations:
                    features.append(self.aggregation(obj, name, agg, raw_of, known, group.fallback, columns))
            ttl = None if aggregations else _ms(obj.ttl)
        except _Skip:
            self.failed_views.add(obj.name)
            return
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc))
            self.failed_views.add(obj.name)
            return
        plan = _ViewPlan(obj, var, name, tuple(entities), entity_names, str(src.name), features, columns,
                         tuple(f.name for f in obj.features), ttl)
        self.view_plans[name] = plan
        group.views.append(plan)

    def aggregation(self, obj, view_name, agg, raw_of, known, fallback, columns) -> Aggregation:
        fn = (agg.function or "").strip().lower()
        ours = _FEAST_AGG_ALIASES.get(fn, fn)
        if ours not in AGG_FUNCTIONS:
            raise _Fail(f"aggregation function {agg.function!r} is not supported (supported: "
                        f"{', '.join(AGG_FUNCTIONS)}; aliases: {', '.join(sorted(_FEAST_AGG_ALIASES))})")
        column = agg.column or None
        if column is None and AGG_FUNCTIONS[ours].needs_column:
            raise _Fail(f"aggregation {agg.function!r} needs a column")
        out_name = agg.resolved_name(agg.time_window)
        if not NAME_RE.match(out_name):
            raise _Fail(f"aggregation output name {out_name!r} is not a valid identifier; give Aggregation(name=...)")
        raw = None
        if column is not None:
            raw = raw_of.get(column, column)
            if column not in known:
                if raw not in fallback:
                    raise _Fail(f"aggregation column {column!r} is not in the schema; add Field(name={column!r}, "
                                "dtype=...) to schema=")
                columns.append((raw, fallback[raw], f"schema_json of the source of {_kind(obj)} '{view_name}'"))
        try:
            window = _ms(agg.time_window)
        except DefinitionError as exc:
            raise _Fail(f"aggregation {out_name!r}: {exc}") from None
        return Aggregation(raw, ours, window, name=out_name)

    def view(self, plan: _ViewPlan) -> None:
        obj = plan.obj
        source = self.sources.get(plan.source_key)
        if source is None:
            self.failed_views.add(plan.name)
            return  # the source failed and was reported
        try:
            types = source.columns
            for f in plan.features:
                if isinstance(f, Aggregation) and f.column is not None:
                    in_type = types.get(f.column)
                    if AGG_FUNCTIONS[f.function].numeric_only and in_type not in t.NUMERIC:
                        raise _Fail(f"aggregation {f.name!r}: {f.function} needs a numeric column; "
                                    f"{f.column!r} is {in_type}")
            translated = FeatureView(
                name=plan.name,
                entities=plan.entities,
                source=source,
                features=tuple(plan.features),
                ttl=plan.ttl_ms,
                online=bool(getattr(obj, "online", True)),
                description=obj.description or "",
                owner=obj.owner or "",
                tags=freeze_tags(obj.tags),
            )
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc))
            self.failed_views.add(plan.name)
            return
        self.views[plan.name] = translated
        self.emit(plan.var or plan.name, translated)

    # -- services -----------------------------------------------------------------------------
    def service(self, obj: Any) -> None:
        try:
            name = self.check_name(obj)
            items = getattr(obj, "_features", None)
            if items is None:  # pragma: no cover - older/newer Feast without the raw list
                items = list(obj.feature_view_projections) + list(getattr(obj, "_pending_feature_refs", []))
            refs = [self.service_ref(item) for item in items]
            config = getattr(obj, "logging_config", None)
            logging = (LoggingConfig(enabled=True, sample_rate=float(config.sample_rate))
                       if config is not None else LoggingConfig(enabled=False))
            translated = FeatureService(name=name, features=tuple(refs), logging=logging,
                                        description=obj.description or "", owner=obj.owner or "",
                                        tags=freeze_tags(obj.tags))
        except _Skip:
            return
        except (_Fail, DefinitionError) as exc:
            self.problem(obj, str(exc))
            return
        self.emit(self.var_of[id(obj)], translated)

    def _view_named(self, view_name: str) -> Tuple[FeatureView, _ViewPlan]:
        if view_name in self.failed_views:
            raise _Skip()
        if view_name not in self.views:
            raise _Fail(f"feature view {view_name!r} is not defined in this repo")
        return self.views[view_name], self.view_plans[view_name]

    def _select(self, view: FeatureView, plan: _ViewPlan, names: List[str]):
        for n in names:
            if n not in view.feature_names:
                if n in plan.feast_features and view.aggregations:
                    raise _Fail(f"{n!r} of {_kind(plan.obj)} {view.name!r} is an input column of its aggregations, "
                                f"not a feature; select among {', '.join(view.feature_names)}")
                raise _Fail(f"feature view {view.name!r} has no feature {n!r}")
        return view.select(*names)

    def service_ref(self, item: Any):
        if isinstance(item, str):
            view_part, _, feature = item.partition(":")
            if "@" in view_part:
                raise _Fail(f"feature reference {item!r} pins a Feast registry version; there is no Feast registry "
                            "here (definitions are versioned by git)")
            view, plan = self._view_named(view_part)
            return self._select(view, plan, [feature]) if feature else view
        if isinstance(item, self.OnDemandFeatureView):
            if item.name in self.failed_views:
                raise _Skip()
            raise _Fail(f"OnDemandFeatureView {item.name!r} is not supported")
        projection = item.projection
        view, plan = self._view_named(projection.name)
        if projection.name_alias:
            raise _Fail(f"alias {projection.name_alias!r} of feature view {projection.name!r} (with_name) "
                        "is not supported")
        if projection.join_key_map:
            raise _Fail(f"join key map {projection.join_key_map!r} of feature view {projection.name!r} "
                        "is not supported")
        if projection.version_tag is not None:
            raise _Fail(f"feature view {projection.name!r} is pinned to version {projection.version_tag}; "
                        "there is no Feast registry here")
        names = [f.name for f in projection.features] or list(projection.desired_features or ())
        if not names or set(names) == set(plan.feast_features):
            return view
        return self._select(view, plan, names)


def translate(objects: Dict[str, Any], repo_root: Optional[str] = None) -> Dict[str, Definition]:
    """Translate the Feast objects of one repo, ``{variable: object}``, to named definitions.

    Non-Feast values and Feast objects that are not definitions are ignored. Returns
    ``{variable: definition}`` (see the module docstring for keys, names and the mapping); raises
    one :class:`TranslationError` listing every problem (``.problems``: :class:`FeastProblem`).
    """
    if not any(is_feast_object(o) for o in objects.values()):
        return {}
    translator = _Translator(objects)
    translator.repo_root = None if repo_root is None else str(repo_root)
    return translator.run()
