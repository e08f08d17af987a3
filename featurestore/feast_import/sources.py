"""Feast sources -> ``Source``: one per Feast source name, its schema derived from the views reading it."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from featurestore import dtypes as t
from featurestore.errors import DefinitionError
from featurestore.feast_import.columns import batch_path, feast_path, ms, parquet_types, schema_json_types
from featurestore.feast_import.common import Fail, SourceGroup, ViewPlan, kind
from featurestore.model import KafkaTopic, ParquetFiles, Source
from featurestore.model.base import NAME_RE, freeze_tags


_PATH_SOURCES = ("SparkSource", "RaySource")


def batch_format(batch: Any) -> Any:
    """The file format of a batch source: FileSource ``file_format``, SparkSource ``file_format`` (a string),
    RaySource ``reader_type``; None means Parquet."""
    fmt = getattr(batch, "file_format", None) if kind(batch) != "RaySource" else getattr(batch, "reader_type", None)
    return str(fmt).lower() if isinstance(fmt, str) else fmt


def _check_path_source(obj: Any) -> None:
    """A SparkSource / RaySource is read here from its ``path``; one defined by a query or a table can only be
    read by its engine."""
    if kind(obj) not in _PATH_SOURCES or getattr(obj, "path", None):
        return
    what = next((f"{attr}={getattr(obj, attr)!r}" for attr in ("query", "table") if getattr(obj, attr, None)),
                "no path")
    raise Fail(f"{what}: only {kind(obj)}(path=...) pointing at Parquet files can be read here (a query or a "
               f"table needs {'Spark' if kind(obj) == 'SparkSource' else 'Ray'}); export it to Parquet and give path=")


class SourcesMixin:
    """The source half of :class:`~featurestore.feast_import.translator.Translator`."""

    def root_source(self, view: Any) -> Any:
        return getattr(view, "stream_source", None) or view.batch_source

    def plan_sources(self, views: List[Any], sources: List[Any]) -> Dict[str, SourceGroup]:
        """Group views by the Feast source they read (by Feast name, i.e. Feast's identity)."""
        groups: Dict[str, SourceGroup] = {}
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

    def _group(self, groups: Dict[str, SourceGroup], obj: Any, parent) -> None:
        key = str(obj.name)
        group = groups.get(key)
        if group is None:
            group = groups[key] = SourceGroup(obj, self.var_of.get(id(obj)), inline_parent=parent)
        elif group.obj is not obj and group.obj != obj and parent is not None:
            self.problem(obj, f"another {kind(group.obj)} is also named {obj.name!r}; Feast names must be unique",
                         var=parent[0])
        if parent is not None:
            group.readers.append(parent[1])

    def source_name(self, group: SourceGroup) -> str:
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

    def is_path_source(self, obj: Any) -> bool:
        """A Feast source read from files at ``path`` by another engine: SparkSource, RaySource."""
        return kind(obj) in _PATH_SOURCES

    def faces(self, obj: Any) -> Tuple[Any, Any]:
        """(Feast batch source or None, Feast KafkaSource or None) of a root source. The batch source is a
        FileSource, or a SparkSource / RaySource with a ``path`` (read here as Parquet files)."""
        if isinstance(obj, self.FileSource) or self.is_path_source(obj):
            _check_path_source(obj)
            return obj, None
        if isinstance(obj, self.KafkaSource):
            batch = obj.batch_source
            stream = obj
        elif isinstance(obj, self.PushSource):
            batch, stream = obj.batch_source, None
            if batch is None:
                raise Fail("a PushSource needs a batch_source (FileSource) to read history from")
        elif isinstance(obj, self.RequestSource):
            raise Fail("a RequestSource feeds on-demand feature views; a FeatureView reads a FileSource, "
                       "KafkaSource or PushSource")
        else:
            raise Fail(f"{kind(obj)} is not supported (supported sources: FileSource, SparkSource(path=...), "
                       "RaySource(path=...), KafkaSource(batch_source=...), PushSource(batch_source=...))")
        if batch is not None and not (isinstance(batch, self.FileSource) or self.is_path_source(batch)):
            raise Fail(f"batch_source {kind(batch)} {batch.name!r} is not supported; use a FileSource")
        if batch is not None:
            _check_path_source(batch)
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
                    raise Fail(f"{attr} {current!r} of the stream differs from {value!r} of batch_source "
                               f"{batch.name!r}; both faces must use one column")
            ts = ts or face.timestamp_field or ""
            created = created or face.created_timestamp_column or ""
        if stream is not None and batch is not None and (stream.field_mapping or {}) != (batch.field_mapping or {}):
            raise Fail(f"field_mapping {stream.field_mapping!r} differs from batch_source {batch.name!r}'s "
                       f"{batch.field_mapping!r}; both faces need the same columns")
        mapping = dict((batch.field_mapping if batch is not None else stream.field_mapping) or {})
        if not ts:
            raise Fail("timestamp_field is required (Feast infers it from the data at apply; "
                       "this importer does not read data)")
        for raw, mapped in mapping.items():
            if {raw, mapped} & {ts, created}:
                raise Fail(f"field_mapping {raw!r} -> {mapped!r} maps a timestamp column, which is not supported")
        return ts, created, mapping

    def prepare(self, group: SourceGroup) -> None:
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
                fmt = batch_format(batch)
                if fmt is not None and str(fmt) != "parquet":
                    raise Fail(f"batch_source {batch.name!r}: file format {str(fmt)!r} is not supported; "
                               "use Parquet")
                if (getattr(batch, "timestamp_field_type", "") or "TIMESTAMP").upper() != "TIMESTAMP":
                    raise Fail(f"timestamp_field_type {batch.timestamp_field_type!r} is not supported; "
                               "event times must be timestamps")
            if stream is not None:
                options = stream.kafka_options
                if not isinstance(options.message_format, (self.JsonFormat, self.AvroFormat)):
                    raise Fail(f"message_format {kind(options.message_format)} is not supported; "
                               "use JsonFormat or AvroFormat")
                if not options.topic:
                    raise Fail("topic is required")
                group.fallback = schema_json_types(options.message_format)
            if batch is not None and getattr(batch, "path", None):
                # Feast infers undeclared column types from the file; so do we (the file wins).
                in_file = parquet_types(feast_path(batch.path, self.feast_root, self.repo_root), self.repo_root)
                group.fallback = {**group.fallback, **{c: d for c, d in in_file.items() if d is not None}}
                group.file_columns = set(in_file) or None
        except (Fail, DefinitionError) as exc:
            self.problem(obj, str(exc), var=group.key)
            group.failed = True

    def source(self, key: str, group: SourceGroup) -> None:
        obj = group.obj
        if group.failed:
            self.failed_sources.add(key)
            return
        if group.readers and not group.views and group.var is None:
            self.failed_sources.add(key)
            return  # inline, and every view reading it failed (and was reported)
        try:
            batch, stream = group.batch, group.stream
            schema = self.schema(obj, group.views, group.ts, group.created, group.fallback, group.file_columns)
            topic = None
            delay = 0
            if stream is not None:
                options = stream.kafka_options
                if isinstance(options.message_format, self.JsonFormat):
                    topic = KafkaTopic(options.topic, "json", options.kafka_bootstrap_servers or None)
                else:  # AvroFormat(schema_json): plain Avro binary written with that schema
                    topic = KafkaTopic(options.topic, "avro", options.kafka_bootstrap_servers or None,
                                       avro_schema=options.message_format.schema_json or None)
                delay = ms(options.watermark_delay_threshold, "watermark_delay_threshold", span=False) or 0
            translated = Source(
                name=group.name,
                schema=schema,
                timestamp=group.ts,
                batch=ParquetFiles(batch_path(feast_path(batch.path, self.feast_root, self.repo_root), self.repo_root)) if batch is not None else None,
                stream=topic,
                watermark_delay=delay,
                tiebreak=(group.created,) if group.created else (),
                description=obj.description or "",
                owner=obj.owner or "",
                tags=freeze_tags(obj.tags),
            )
        except (Fail, DefinitionError) as exc:
            self.problem(obj, str(exc), var=group.key)
            self.failed_sources.add(key)
            return
        self.sources[key] = translated
        self.emit(group.key or group.name, translated)

    def schema(self, obj: Any, plans: List[ViewPlan], ts: str, created: str,
               fallback: Dict[str, str], file_columns=None) -> Tuple[Tuple[str, str], ...]:
        """The source's columns and types. A column whose type nothing declares is typed from the file; one the
        file does not have at all (Feast's spark template keys its views on entity names that are no column)
        is declared a string: the definitions load, and the job reading the file names the missing column."""
        cols: Dict[str, Tuple[Optional[str], str]] = {ts: (t.TIMESTAMP, "event time")}
        if created:
            cols[created] = (t.TIMESTAMP, "created timestamp")
        for plan in sorted(plans, key=lambda p: p.name):
            for col, dtype, why in plan.columns:
                if col in (ts, created):
                    if dtype not in (None, t.TIMESTAMP):
                        raise Fail(f"column {col!r} is a timestamp, but {why} declares it {dtype}")
                    continue
                have = cols.get(col)
                if have is None or have[0] is None:
                    cols[col] = (dtype, why) if have is None or dtype is not None else have
                elif dtype is not None and dtype != have[0]:
                    raise Fail(f"column {col!r} is {have[0]} in {have[1]} but {dtype} in {why}")
        out = []
        for col, (dtype, why) in cols.items():
            if dtype is None:
                dtype = fallback.get(col)
            if dtype is None and file_columns is not None and col not in file_columns:
                dtype = t.STRING
            if dtype is None:
                raise Fail(f"type of column {col!r} ({why}) is unknown: declare it as a Field in the view's "
                           "schema or give the Entity a value_type")
            out.append((col, dtype))
        return tuple(out)
