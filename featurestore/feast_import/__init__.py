"""Translate Feast definition objects (written with the ``feast`` package itself) to this model.

SPEC §1: ``Entity``, ``FileSource``, ``SparkSource`` / ``RaySource`` with a path,
``KafkaSource(batch_source=...)``, ``PushSource``, ``FeatureView``, ``StreamFeatureView`` with
``Aggregation``, ``LabelView``, ``RequestSource``, ``OnDemandFeatureView`` and ``FeatureService`` are accepted as
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
    ``stream=KafkaTopic(topic, "json"|"avro", bootstrap_servers)`` (``AvroFormat(schema_json)``: that schema
    is the writer schema, ``avro_schema=schema_json``),
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
  - Types: String, Int32, Int64, Float32, Float64, Bool, UnixTimestamp (and the same ValueTypes);
    Map, Json, Struct and Array (of those, of maps, of structs) are ``json`` (a JSON value held as its
    JSON text; only latest features read one). Sets, bytes, UUID, decimals and zoned timestamps are
    errors. A column no view types is typed from the batch file; one the file does not have (Feast's
    spark template keys views on entity names that are no column) is a string, and the backfill
    reports its rows as without a join key.
  - *``field_mapping`` ({source column: feature name}) is translated, not rejected: the source
    schema holds the source column and the feature reads it, ``Latest("raw", name="feature")``
    (aggregations likewise). A source column mapped to a join key (``{"driver": "driver_id"}``) is
    read as Feast's offline store reads it, under the key's name: the view gets the projection
    ``driver_id = "driver"`` and the source schema holds ``driver``. Renaming a join-key column away, or
    mapping a timestamp column, is an error.
  - ``SparkSource(path=..., file_format="parquet")`` and ``RaySource(path=..., reader_type="parquet")``
    are batch faces like a FileSource (and may be a push source's ``batch_source``); one given by a
    ``query`` or ``table`` is an error saying only a path can be read here.
  - Other Feast sources (BigQuery, Kinesis, Request, ...) and other file formats (Delta, CSV)
    are errors.
* ``FeatureView(name, entities, ttl, schema, source, online)`` -> ``FeatureView`` with
  ``Latest(field)`` for each non-key schema Field, in schema order; ``ttl`` 0/None -> unbounded
  (None). A view without entities is keyed on Feast's own placeholder ``__dummy_id`` (the
  projection ``''``: one global row, ``featurestore.sdk.entityless``). A view without a schema (Feast
  infers it at apply) or reading other views is an error. *Feast's point-in-time join is inclusive (``ts <= q``, TTL lower bound
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
* ``LabelView(conflict_policy=LAST_WRITE_WINS)`` -> a ``FeatureView`` of ``Latest`` labels (the
  labeler field is a feature too); other conflict policies are errors. Feast gives a LabelView
  String entity columns when the Entity has no ``value_type``; those are typed from the file instead.
* ``RequestSource`` and ``OnDemandFeatureView`` (``@on_demand_feature_view``) -> ``RequestSource`` and
  ``RequestFeatureView`` with the same function, run the same way offline and online (modes ``pandas``,
  ``python``, ``python`` + ``singleton``); see ``on_demand`` for the mapping and what is refused.
* ``FeatureService(name, features=[fv, fv[["a", "b"]], "fv:a"], logging_config=...)`` ->
  ``FeatureService`` with the view (all features) or ``view.select(...)``; ``logging_config``
  present -> ``LoggingConfig(enabled=True, sample_rate=its sample_rate)`` (*its destination is
  not translated: ours come from the project config). Aliases (``with_name``) and join-key maps
  (``with_join_key_map``) become derived feature views (``projections``). Version pins (``"fv@v2"``,
  ``FeatureView(version="v2")``) are errors: there is no Feast registry here; git versions definitions.
  *A selection of every Feast feature of a view (``fv[[all of them]]``) is the whole view; for a
  StreamFeatureView with aggregations, selecting an input Field is an error naming the outputs.
* Other Feast objects (``Project``, ``Field``, types, formats, ``Permission``...) are not
  definitions and are ignored, and so is a projection bound to a variable (``x = fv[["a"]]``:
  a reference). Two different Feast objects of one kind with one name are an error (equal
  copies are one object). Descriptions, owners and tags are carried over; ``offline`` and
  ``precompute_online`` are not (every view is written offline here).

Errors: every problem in the repo is collected, every problem of one object too (a view with a bad
type, an unknown function and a missing column gets three); one :class:`TranslationError` is raised
whose message has one line per problem and whose ``problems`` attribute lists :class:`FeastProblem`
``(variable, kind, name, message)`` so a loader can point at file and line. An object whose
dependency failed (a view of a failed source) is skipped without a second error.

Modules: ``columns`` (types, schema hints, durations), ``sources``, ``views``, ``projections`` (with_name,
with_join_key_map), ``on_demand`` (request sources, on-demand views) and ``translator`` (classification, entities, services), sharing the records in
``common``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from featurestore.feast_import.common import FeastProblem, is_feast_object
from featurestore.model import Definition

__all__ = ["FeastProblem", "is_feast_object", "translate"]


def translate(objects: Dict[str, Any], repo_root: Optional[str] = None,
              feast_root: Optional[str] = None) -> Dict[str, Definition]:
    """Translate the Feast objects of one repo, ``{variable: object}``, to named definitions.

    Non-Feast values and Feast objects that are not definitions are ignored. Returns
    ``{variable: definition}`` (see the module docstring for keys, names and the mapping); raises
    one :class:`TranslationError` listing every problem (``.problems``: :class:`FeastProblem`).
    ``feast_root``: the Feast repo's folder (Feast's ``repo_path``) when not the project root ``repo_root``.
    """
    if not any(is_feast_object(o) for o in objects.values()):
        return {}
    from featurestore.feast_import.translator import Translator

    translator = Translator(objects)
    translator.repo_root = None if repo_root is None else str(repo_root)
    translator.feast_root = None if feast_root is None else str(feast_root)
    return translator.run()
