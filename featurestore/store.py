"""``FeatureStore``: the thin facade users script against (SPEC §6). Work happens in the modules."""

from __future__ import annotations

import dataclasses

import os
from functools import partial
from pathlib import Path
from typing import Optional

from featurestore.config import ProjectConfig, load_config
from featurestore.errors import NotImplementedYet
from featurestore.loader import Repo, load_repo
from featurestore.plan import Plan, apply_plan, build_plan
from featurestore.registry import read_registry, write_registry
from featurestore.stores.offline_reads import retry_moved


STREAM_JOB = "streaming job"  # the key of the Flink job in FeatureStore.explain()


class FeatureStore:
    """A feature repo: its definitions, config, registry and stores.

    >>> fs = FeatureStore(".")          # doctest: +SKIP
    >>> fs.plan().has_changes           # doctest: +SKIP
    True
    """

    def __init__(self, repo_path: str | os.PathLike = ".", config: Optional[ProjectConfig] = None):
        self.config = config or load_config(repo_path)
        self.repo_path = self.config.repo_path
        self._repo: Optional[Repo] = None

    # -- definitions ------------------------------------------------------------------------
    @property
    def repo(self) -> Repo:
        """The loaded, validated definitions (loaded once; ``reload()`` re-reads the files)."""
        if self._repo is None:
            self._repo = load_repo(self.config.definitions_path, self.repo_path)
        return self._repo

    def reload(self) -> Repo:
        self._repo = None
        return self.repo

    def plan(self) -> Plan:
        """What ``apply`` would record and which jobs the changes call for. Fails, naming the feature,
        when a view with a stream face uses SQL the Flink job cannot run."""
        registry = read_registry(self.config.registry_path, self.config.project)
        repo = self._checked_repo()
        from featurestore.engines.flink.handoff import seedable

        states = self._stream_states()
        return build_plan(repo, registry, states, seedable(self, states))

    def _stream_states(self):
        from featurestore.engines.flink.commit import stream_states

        return stream_states(self)

    def _checked_repo(self) -> Repo:
        """Reloaded definitions, also checked against what the streaming job can run (one pass: every
        problem of the repo in one error)."""
        self._repo = None
        self._repo = load_repo(self.config.definitions_path, self.repo_path, streaming=True)
        return self._repo

    def apply(self) -> Plan:
        """Record the current definitions in the registry; returns the plan that was applied."""
        registry = read_registry(self.config.registry_path, self.config.project)
        repo = self._checked_repo()
        plan = build_plan(repo, registry, self._stream_states())
        if plan.has_changes:
            write_registry(self.config.registry_path, apply_plan(plan, registry))
        return plan

    # -- not built yet: never pretend -------------------------------------------------------
    def _later(self, what: str):
        raise NotImplementedYet(f"{what} is not implemented yet in featurestore {_version()}")

    def _served(self, selection, full_feature_names: bool) -> tuple:
        """What an online lookup of a resolved ``selection`` needs besides its values, per selection object
        and loaded repo (a lookup's fixed cost: ~40 us when computed every time): ``(request plan or None,
        whether it reads an entityless view, its output columns of JSON type, the join keys a log record
        names)``. (``feature_dtype`` hashes each view's definition: ~1 ms per 100-entity lookup.)"""
        from featurestore import dtypes, serving_log
        from featurestore.sdk import entityless, request_features
        from featurestore.sdk.refs import output_names

        cache = self.__dict__.setdefault("_served_cache", {})
        hit = cache.get((id(selection), full_feature_names))
        if hit is None or hit[0] is not selection or hit[1] is not self.repo:
            if len(cache) > 256:
                cache.clear()
            rplan = request_features.plan(self, selection)
            names = output_names(selection, full_feature_names)
            json_columns = frozenset(col for (v, f), col in names.items()
                                     if serving_log.feature_dtype(self, v, f) == dtypes.JSON)
            views = rplan.base if rplan is not None else selection
            log_keys = frozenset(jk for v in views for jk in self.repo.views[v].join_keys)
            hit = cache[(id(selection), full_feature_names)] = (
                selection, self.repo, rplan, entityless.needed(self, selection, rplan), json_columns, log_keys)
        return hit[2:]

    def _column_types(self, selection, full_feature_names: bool) -> dict:
        """The declared type of every column a lookup of ``selection`` returns (join keys and features)."""
        from featurestore import serving_log

        return {**serving_log.key_types(self, selection),
                **serving_log.column_dtypes(self, selection, full_feature_names)}

    # -- batch path -------------------------------------------------------------------------
    def compiled(self, view_name: str):
        from featurestore.compiler.ir import compile_view

        cache = self.__dict__.setdefault("_compiled", {})
        view = self.repo.views[view_name]
        bound = self.config.max_future_ms  # which rows are events: part of the rows fingerprint
        key = (view_name, view.data_fingerprint, bound)
        if key not in cache:
            cache[key] = dataclasses.replace(compile_view(view), max_future_ms=bound)
        return cache[key]

    @property
    def offline(self):
        from featurestore.push.offline import follower
        from featurestore.stores.offline import OfflineStore

        # a table of a view whose batch face has pushed events holds them once (featurestore.push.offline)
        return OfflineStore(self.config.offline_path / self.config.project, follower=follower(self))

    def _connect(self, deterministic: bool = False):
        """A DuckDB connection. ``deterministic`` runs one thread, so float sums are added in the
        same order on every run: saved training sets re-create bit for bit."""
        from featurestore.engines.duckdb_engine import connect

        return connect(temp_dir=self.repo_path / ".featurestore" / "tmp", threads=1 if deterministic else None)

    def _checked_relation(self, con, view_name: str) -> str:
        """SQL of the view's source rows read from its batch face, typed and checked (each row's dead-letter
        reason): see ``duckdb_batch`` and ``duckdb_sql.checked_sql``."""
        from featurestore.engines.duckdb_batch import batch_relation, column_types, source_keys
        from featurestore.engines.duckdb_sql import checked_sql
        from featurestore.errors import FeatureStoreError

        view = self.repo.views[view_name]
        if view.source.batch is None:
            raise FeatureStoreError(f"view '{view_name}': source '{view.source.name}' has no batch face to read")
        relation = batch_relation(con, view.source, self.repo_path, source_keys(self.repo, view.source))
        return checked_sql(view.source.schema, view.source.timestamp, relation, self.config.max_future_ms,
                           column_types(con, relation))

    def backfill(self, start=None, end=None, views=None, progress=None, engine="duckdb"):
        """Recompute the offline events of ``views`` (default: all) for ``[start, end)`` from the batch
        faces, replacing that range atomically (a new table version), whoever wrote it; the range then
        belongs to the batch face (the stream adds no event inside it). No ``end``: up to the batch face's
        last event, so later events stay the stream's. Returns one result per view (a list whose
        ``summary()`` gives one line per source that had dead letters). Source rows that cannot be events
        (missing or unreadable event time, outside the supported range, too far in the future, a value not
        of its column's type) are dead letters: counted in the results and kept in the source's table
        ``_backfill_dead_letters/<source>`` (docs/offline-store.md).
        ``engine="flink"`` runs the same compiled semantics as a Flink batch job."""
        from featurestore.errors import RequestError
        from featurestore.sdk.timeutil import to_epoch_ms

        if engine not in ("duckdb", "flink"):
            from featurestore.errors import NotImplementedYet

            raise NotImplementedYet(f"backfill --engine {engine} is not implemented yet (use duckdb or flink)")
        # one name or several, each once (a name twice would rewrite its table twice)
        names = list(self.repo.views) if views is None else list(dict.fromkeys([views] if isinstance(views, str)
                                                                              else views))
        for n in names:
            if n not in self.repo.views:
                raise RequestError(f"unknown feature view '{n}'")
        start_ms, end_ms = to_epoch_ms(start, "start"), to_epoch_ms(end, "end")
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise RequestError(f"backfill range is empty: start {start} is not before end {end}")
        if engine == "flink":
            from featurestore.extras import require

            require("pyflink", "backfill --engine flink")
            from featurestore.engines.flink.backfill import run_backfill
            from featurestore.errors import FeatureStoreError
            from featurestore.failures import job_error
            from featurestore.logs import start_jvm

            try:
                start_jvm(self.config.state_path)
                return run_backfill(self, names, start_ms, end_ms)
            except FeatureStoreError:
                raise
            except Exception as exc:  # a Java failure of the Flink job: its root cause, the trace in a file
                raise job_error(self.config.state_path, "backfill --engine flink failed", exc) from None
        from featurestore.engines.duckdb_engine import backfill

        return backfill(self, names, start_ms, end_ms, progress)

    def explain(self, views=None) -> dict:
        """The compiled jobs, as text: per view, the backfill SQL and the point-in-time SQL (when no key is
        hot, and with hot keys: docs/offline-store.md, Performance); per request feature view, its
        request-time query (or function); and, when a view has a stream face, the
        streaming job (every statement of its Flink SQL) under ``STREAM_JOB``."""
        from featurestore.engines.flink import stream as streaming
        from featurestore.engines import duckdb_pit
        from featurestore.engines import duckdb_sql as dsql
        from featurestore.engines.flink.sqltypes import StreamCompileError

        names = views or list(self.repo.views)
        out = {}
        for name in names:
            cv = self.compiled(name)
            view = self.repo.views[name]
            group = [n for n in names if self.repo.views[n].source.name == view.source.name
                     and tuple(self.repo.views[n].join_keys) == tuple(view.join_keys)]
            checked = dsql.checked_sql(cv.source_columns, cv.ts_column, "<batch face>", self.config.max_future_ms)
            out[name] = {
                "backfill (DuckDB)": dsql.backfill_sql(cv, checked, group, None, None),
                "point-in-time (DuckDB)": duckdb_pit.pit_sql(cv, "<offline events>", "<requests>"),
            }
            if cv.aggregations:
                out[name]["point-in-time, hot keys (DuckDB)"] = duckdb_pit.pit_sql(
                    cv, "<offline events>", "<requests>", hot="<hot keys>", exact="<exact variances>")
        if views is None:
            from featurestore.sdk import request_features

            out.update({name: request_features.explain(self, name) for name in self.repo.request_views})
        streamed = [n for n in names if self.repo.views[n].source.stream is not None]
        if streamed:
            try:
                text = streaming.explain(self, streamed)
            except StreamCompileError as exc:
                text = f"-- cannot be compiled to the streaming job:\n-- {exc}"
            out[STREAM_JOB] = {"Flink SQL (one job, every streamed view)": text}
        return out

    def get_historical_features(self, entity_df, features=None, feature_service=None, full_feature_names=False,
                                timestamp_column=None, save_as=None, filter_by_created_timestamp=False):
        """Point-in-time-correct feature values for every row of ``entity_df`` (SPEC §2).

        Returns a pandas DataFrame (with ``.to_arrow()`` and Feast-style ``.to_df()``): every input
        row in input order, extra columns kept, one column per feature. ``save_as="name"`` also saves
        it as a reproducible training set (see :meth:`recreate_training_set`).

        >>> fs.get_historical_features(entity_df, features=["user_spend:tx_count_1h"])  # doctest: +SKIP
        """
        from featurestore.sdk import entityless
        from featurestore.sdk import historical as h
        from featurestore.sdk import request_features, training_sets
        from featurestore.sdk.refs import output_names, resolve_features, service_as_features

        features, feature_service = service_as_features(features, feature_service)
        if filter_by_created_timestamp and save_as is not None:
            raise h.RequestError("filter_by_created_timestamp=True cannot be saved as a training set yet (the "
                                 "manifest does not record it); save it without, or build it without save_as")
        selection = resolve_features(self.repo, features, feature_service)
        columns = output_names(selection, full_feature_names)
        h.check_unique_columns(entity_df, "entity_df")
        if self.repo.feast:  # Feast's rule: naive times are UTC (a warning); a native repo refuses them
            entity_df = h.naive_as_utc(entity_df, timestamp_column)
        dummy = entityless.needed(self, selection)
        if dummy:  # Feast's entityless views: every row reads the one global entity
            entity_df = entityless.add_to_frame(entity_df)
        if request_features.plan(self, selection) is not None:  # the PIT join, then the request views
            frame = request_features.historical(self, entity_df, selection, columns, timestamp_column, save_as,
                                                filter_by_created_timestamp)
            if dummy:
                entityless.drop_from_frame(frame)
            return frame
        compiled = [self._restricted(v, names) for v, names in selection.items()]
        if not isinstance(entity_df, __import__("pandas").DataFrame):
            raise h.RequestError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
        ts_col = h.pick_timestamp_column(entity_df, timestamp_column)
        h.check_entity_df(entity_df, compiled, ts_col)

        def read():  # list the tables' files and read them (again, when a concurrent commit moved one)
            con = self._connect(deterministic=save_as is not None)
            inputs = [self._view_input(con, cv) for cv in compiled]
            if save_as is not None:
                unversioned = [vi.compiled.name for vi in inputs if vi.version is None]
                if unversioned:
                    raise h.RequestError(
                        f"cannot save training set '{save_as}': view(s) {unversioned} have no offline table "
                        "version to pin; run backfill first"
                    )
            if all(vi.version is not None for vi in inputs):
                return inputs, h.retrieve(con, entity_df, inputs, columns, ts_col,
                                          created_filter=bool(filter_by_created_timestamp))
            from featurestore.engines import duckdb_sql as dsql
            from featurestore.engines.duckdb_engine import without_optimizer

            with without_optimizer(con, dsql.NO_CSE):  # pushed events are routed under try (view_events_sql)
                return inputs, h.retrieve(con, entity_df, inputs, columns, ts_col,
                                          created_filter=bool(filter_by_created_timestamp))

        inputs, frame = retry_moved(read, self._offline_root, "get_historical_features", latest=True)
        if save_as is not None:
            frame.manifest = training_sets.save(self._offline_root, save_as, entity_df, frame,
                                                [(vi.compiled, vi.version) for vi in inputs], columns, ts_col)
        if dummy:
            entityless.drop_from_frame(frame)
        return frame

    @property
    def _offline_root(self):
        return self.config.offline_path / self.config.project

    def recreate_training_set(self, name: str):
        """Re-run a saved training set on the table versions and definitions its manifest pinned:
        identical values (and Parquet bytes) whatever changed since."""
        from featurestore.sdk import training_sets

        manifest, entity_df = training_sets.load(self._offline_root, name)
        if manifest.get("kind") == "request":  # request features: the base set, then the request views
            from featurestore.sdk import request_sets

            return request_sets.recreate(self, name, manifest, entity_df)
        return retry_moved(lambda: self._recreate(manifest, entity_df), self._offline_root,
                           f"training set '{name}'")

    def _recreate(self, manifest, entity_df):
        from featurestore.engines.duckdb_engine import parquet_relation
        from featurestore.sdk import historical as h
        from featurestore.sdk import training_sets

        con = self._connect(deterministic=True)
        inputs = []
        for meta in manifest["views"]:
            view = meta["view"]
            cv = training_sets.compiled_from_json(meta["compiled"])
            table = self.offline.table(view, ts_column=cv.ts_column)
            files = table.files(meta["table_version"])
            if files:
                relation = parquet_relation(con, files, table.filesystem,
                                            schema=table.schema(meta["table_version"]) if table.remote else None)
            else:
                from featurestore.engines.duckdb_engine import arrow_schema

                con.register(f"__empty_{view}", arrow_schema(cv).empty_table())
                relation = f"__empty_{view}"
            unique = table.manifest(meta["table_version"]).get("unique_on") == list(cv.join_keys)
            inputs.append(h.ViewInput(cv, relation, meta["table_version"], unique))
        columns = {(v, f): c for v, f, c in manifest["columns"]}
        frame = h.retrieve(con, entity_df, inputs, columns, manifest["timestamp_column"],
                           request_order=manifest.get("format", 1) >= 2)
        frame.manifest = manifest
        return frame

    def _restricted(self, view_name, names):
        import dataclasses

        cv = self.compiled(view_name)
        return dataclasses.replace(
            cv,
            latest=tuple(s for s in cv.latest if s.name in names),
            aggregations=tuple(a for a in cv.aggregations if a.name in names),
        )

    def _view_input(self, con, cv):
        """Read the offline table when it exists; else compute the same events from the batch face (and
        the events pushed to it)."""
        from featurestore.engines import duckdb_sql as dsql
        from featurestore.engines.backfill import stale_rows
        from featurestore.engines.duckdb_engine import arrow_schema, parquet_relation
        from featurestore.errors import OfflineStoreError
        from featurestore.push.offline import events_relation
        from featurestore.sdk.historical import ViewInput

        table = self.offline.table(cv.name, ts_column=cv.ts_column)
        version = table.version
        if version is None:
            checked = self._checked_relation(con, cv.name)
            events = f"({dsql.events_sql(cv, checked)})"
            pushed = events_relation(self, con, cv)
            if pushed is not None:
                events = f"({events} UNION ALL BY NAME {pushed})"
            return ViewInput(cv, events, None, checked=checked)
        manifest = table.manifest(version)
        stale = stale_rows(manifest, cv)
        if stale is not None:  # never read other rows as this definition's
            raise OfflineStoreError(stale)
        files = table.files(version)
        if not files:
            empty = arrow_schema(cv).empty_table()
            con.register(f"__empty_{cv.name}", empty)
            return ViewInput(cv, f"__empty_{cv.name}", version)
        unique = manifest.get("unique_on") == list(cv.join_keys)  # recorded by the backfill
        schema = table.schema(version) if table.remote else None
        return ViewInput(cv, parquet_relation(con, files, table.filesystem, schema=schema), version, unique)

    def materialize(self, views=None, end=None, progress=None):
        """Load the online store (Redis) from the offline store (or the batch face when a view has no
        offline table yet), e.g. after Redis lost its data. ``end`` (tz-aware time or epoch ms): the
        state must answer every request time ``>= end`` exactly, so events older than ``end`` minus the
        view's retention are left out; ``None`` keeps every event. ``progress(view)`` may return a
        callable that receives row counts. Returns one result per view (entities, events, seconds).

        A Feast-style call ``materialize(start_date, end_date)`` is accepted too; it loads every
        event, so the online store answers any request time exactly (a superset of Feast's range).

        >>> fs.materialize(end=pd.Timestamp.now(tz="UTC"))  # doctest: +SKIP
        """
        from featurestore.stores import online_redis

        if _is_time(views):  # Feast: materialize(start_date, end_date[, feature_views])
            views, end = (progress if isinstance(progress, (list, tuple)) else None), None
            progress = None
        return online_redis.materialize(self, views=views, end=end, progress=progress)

    def materialize_incremental(self, end_date=None, feature_views=None):
        """Feast-compatible spelling: loads every event of ``feature_views`` (default: all)."""
        return self.materialize(views=feature_views)

    # -- the catalog (SPEC 6; Feast's list_*/get_* names) ------------------------------------
    def list_entities(self, tags=None):
        """Catalog records of the entities (``tags``: a dict every returned object carries)."""
        return self._list("entities", tags)

    def list_data_sources(self, tags=None):
        return self._list("sources", tags)

    def list_feature_views(self, tags=None):
        return self._list("views", tags)

    def list_features(self, tags=None):
        return self._list("features", tags)

    def list_feature_services(self, tags=None):
        return self._list("services", tags)

    def search(self, query: str, tag: Optional[str] = None, owner: Optional[str] = None):
        """Catalog records of every kind whose name, description, owner or tags contain every word (as
        ``featurestore search``: ``tag`` ``"k=v"`` or ``"k"``, ``owner`` the whole owner, case-insensitive)."""
        from featurestore import catalog

        return catalog.search(self.repo, query, catalog.parse_tag(tag) if tag else None, owner)

    def describe(self, name: str) -> dict:
        """The catalog record of one object (``view:feature`` for a feature)."""
        from featurestore import catalog

        return catalog.describe(self.repo, name)

    def get_entity(self, name: str):
        return self._get("entities", name)

    def get_data_source(self, name: str):
        return self._get("sources", name)

    def get_feature_view(self, name: str):
        return self._get("views", name)

    def get_feature_service(self, name: str):
        return self._get("services", name)

    def _list(self, kind: str, tags):
        from featurestore import catalog

        return [r for r in catalog.records(self.repo, kind)
                if all(r["tags"].get(k) == str(v) for k, v in (tags or {}).items())]

    def _get(self, kind: str, name: str):
        """The definition object (as loaded from the repo), or a RequestError naming close names."""
        from featurestore.errors import RequestError

        pool = {"entities": self.repo.entities, "sources": self.repo.sources, "views": self.repo.views,
                "services": self.repo.services}[kind]
        if name not in pool:
            import difflib

            close = difflib.get_close_matches(name, list(pool), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise RequestError(f"no {kind[:-1] if kind != 'entities' else 'entity'} called '{name}'{hint}")
        return pool[name]

    def online_store(self):
        """The Redis online store of this project (a client is created on first use)."""
        from featurestore.stores import online_redis

        return online_redis.for_store(self)

    def stream(self, views=None, *, bounded=False, flink_address=None, checkpoint_dir=None, timeout=None,
               on_status=None, status_every_s=2.0, **options):
        """Run the streaming job: every view whose source has a stream face, from Kafka into Redis (online
        views) and the offline tables, checkpointed (a restart resumes from the last checkpoint).
        ``bounded=True`` stops once the topics are consumed (as of the start) and returns a
        ``StreamResult``; otherwise runs until Ctrl-C (stops with a savepoint). ``flink_address="host:8081"``
        submits the same job to a remote cluster (and commits its files from here). ``on_status`` is
        called with a ``StreamStatus`` (lag, events/s, dead letters, ...) every ``status_every_s``
        seconds while it runs. Details: ``featurestore.engines.flink.stream``, docs/streaming.md.

        >>> fs.stream(bounded=True).metrics  # doctest: +SKIP
        """
        from featurestore.extras import require

        require("pyflink", "the streaming job")
        require("confluent_kafka", "the streaming job")
        from featurestore.engines.flink import stream as streaming
        from featurestore.engines.flink import remote as flink_remote

        watch = {"on_status": on_status, "status_every_s": status_every_s}
        if views is not None:  # one name or several, each once
            views = list(dict.fromkeys([views] if isinstance(views, str) else views))
        if flink_address is not None:
            handle = flink_remote.submit_remote(self, flink_address, views, bounded=bounded, checkpoint_dir=checkpoint_dir,
                                             **options)
            return handle.run_until_done(timeout, **watch)
        return streaming.run(self, views, bounded=bounded, checkpoint_dir=checkpoint_dir, timeout=timeout, **watch,
                             **options)

    def get_online_features(self, entity_rows, features=None, feature_service=None, request_time=None, log=False,
                            full_feature_names=False, request_id=None, request_data=None):
        """Feature values for each entity row at ``request_time`` (default now, UTC; tz-aware datetime,
        pandas Timestamp, ISO string with a zone or int epoch ms; see docs/semantics.md, "What a request may
        pass", for join-key types and the epoch-unit check), from the online store in one Redis round trip (SPEC §3.2: equal
        to ``get_historical_features`` at that time). ``.to_dict()`` / ``.to_df()`` on the result;
        ``.statuses()`` gives each value's status (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE, or
        REFUSED when the online store cannot answer exactly: ``.refusals`` says why).

        Request feature views (docs/request-features.md) are computed after the lookup from
        ``request_data`` (``{"column": [value per entity row]}``, a list of row dicts, or a DataFrame; or,
        as Feast passes them, columns of the entity rows) and the features they read.

        Logged (log-and-wait, SPEC §7) when ``log=True`` or the feature service's logging is on: the
        served vector (and the request data) is in Redis before this returns, and ``.request_id`` names
        it (``request_id=`` to choose it).

        >>> fs.get_online_features([{"user_id": "u1"}], feature_service="fraud").to_dict()  # doctest: +SKIP
        """
        from featurestore import serving_log, serving_log_kafka
        from featurestore.sdk import entityless, request_features
        from featurestore.sdk.online_lookup import lookup
        from featurestore.sdk.refs import output_names, resolve_features, service_as_features

        features, feature_service = service_as_features(features, feature_service)
        selection = resolve_features(self.repo, features, feature_service)
        rplan, dummy, json_columns, log_keys = self._served(selection, full_feature_names)
        if dummy:  # Feast's entityless views: every row reads the one global entity
            entity_rows = entityless.add_to_rows(entity_rows)
        served_request = None
        if rplan is None:
            response = lookup(self, entity_rows, features=features, feature_service=feature_service,
                              request_time=request_time, full_feature_names=full_feature_names)
        else:
            response, served_request = request_features.online(
                self, selection, entity_rows, request_data, request_time, output_names(selection, full_feature_names))
        if dummy:
            entityless.drop_from_response(response)
        response.json_columns = json_columns
        response.column_types = partial(self._column_types, selection, full_feature_names)  # computed if asked
        if serving_log.should_log(self, feature_service, log):
            raw = response.raw_dict()  # JSON values logged as their stored text
            keys = [k for k in raw if k in log_keys]
            record = serving_log.build_record(self, raw, keys, selection, feature_service,
                                              response.request_time_ms, request_id, served_request)
            if serving_log_kafka.uses_kafka(self, feature_service):  # LoggingConfig(destination="kafka")
                serving_log_kafka.write(self, record)
            else:
                online = self.online_store()
                try:
                    serving_log.write(online.client, self.config.project, record)
                except Exception as exc:  # the caller asked for a durable log: do not return unlogged
                    raise online.infra_error(exc) from None
            response.request_id = record.request_id
        return response

    def push(self, source, rows, to: str = "online_and_offline"):
        """Rows become events of ``source`` (a name or a Source) in the chosen stores — ``"online"``,
        ``"offline"`` or ``"online_and_offline"`` — through the same typing, filters and projections as any
        event, so online == offline holds after an ``online_and_offline`` push. ``rows``: a DataFrame, a list
        of dicts or a dict of columns (Feast's ``df``). A source with a stream face takes them through its
        Kafka topic (``to="online_and_offline"`` only). Rows that cannot be events are dead letters, counted
        in the returned ``PushResult``. Details: docs/push.md.

        >>> fs.push("transactions_push", df, to="online_and_offline").events  # doctest: +SKIP
        """
        from featurestore.push import push

        return push(self, source, rows, to)

    def ship_logs(self):
        """Move logged lookups from Redis Streams and Kafka to the offline log tables (idempotent)."""
        from featurestore import serving_log

        return serving_log.ship(self)

    def training_set_from_logs(self, labels_df, feature_service, timestamp_column=None, ship_first=True,
                               full_feature_names=False):
        """Labels joined to the values that were served for them (the rule: :mod:`featurestore.sdk.from_logs`);
        feature columns named as ``get_historical_features`` names them (``full_feature_names``)."""
        from featurestore.sdk.from_logs import training_set_from_logs

        return training_set_from_logs(self, labels_df, feature_service, timestamp_column, ship_first,
                                      full_feature_names)

    def verify(self, feature_service, limit=None):
        """Recompute logged lookups offline; per-feature mismatch/missing/extra rates (a VerifyReport)."""
        from featurestore.verify import verify

        return verify(self, feature_service, limit=limit)


def _is_time(value) -> bool:
    from datetime import date, datetime

    if isinstance(value, (datetime, date)):
        return True
    return type(value).__name__ == "Timestamp"


def _version() -> str:
    from featurestore import __version__

    return __version__


__all__ = ["FeatureStore", "Path"]
