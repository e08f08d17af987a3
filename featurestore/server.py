"""HTTP feature server (``featurestore serve``): online lookups, optional logging, health, metrics.

FastAPI gives the OpenAPI schema (``/openapi.json``, docs at ``/docs``). Request bodies are validated
by pydantic (422 with the offending field), library errors become 400 with the one-line cause, a
body over ``max_body_bytes`` is refused with 413 before it is parsed (chunked bodies too: they are
counted as they arrive and never read past the limit), a logged lookup of more than
``max_logged_entities`` entity rows is refused with 413 (what one anonymous request can append to the
serving log is bounded), and Redis being down is 503. ``/metrics`` counts requests by route template;
every path that matches no route shares one label, so junk URLs cannot grow it; it also exports the
project's monitoring gauges (``featurestore.server_metrics``: freshness, stream lag, dead letters, skew,
drift). Limits come from
``featurestore.yaml`` ``server:`` (docs/config.md).

``featurestore serve --workers N`` runs N processes (:func:`app_from_env`); their metrics are summed
(Prometheus multiprocess mode).

    POST /get-online-features
    {"feature_service": "fraud_model_v1",            # or "features": ["view:feature", ...]
     "entities": {"user_id": ["u1", "u2"]},          # Feast style columns, or "entity_rows": [{...}]
     "request_time": "2026-11-01T00:00:00Z",         # optional: ISO time with zone, or epoch ms (integer)
     "request_data": {"amount": [12.5, 80.0]},       # request feature views: request columns per entity row
     "log": false, "full_feature_names": false}
    -> {"request_id": null, "feature_names": [...], "results": {"user_id": [...], "feature": [...]},  # NaN, +-inf: "NaN", "Infinity", "-Infinity"
        "statuses": {"feature": ["PRESENT", ...]}, "refusals": []}

The same path speaks Feast's protocol: a body carrying Feast's ``include_feature_view_version_metadata`` (its
clients always send it), or ``?format=feast``, is answered in Feast's shape (``{"metadata": {"feature_names"},
"results": [{"values", "statuses", "event_timestamps"}]}``); ``POST /push``, ``/write-to-online-store``,
``/materialize`` and ``/materialize-incremental`` are Feast's too (``featurestore.server_feast``). A request
may name its request id with the ``X-Request-Id`` header; a logged lookup returns it in that header.

``/health`` is 503 when Redis is unreachable, may evict keys (``maxmemory`` with a policy other than
``noeviction``, unless ``online_store.allow_eviction``) or an online view has no online state (never loaded, or
Redis lost its data): lookups of such a view are refused, never answered with defaults.
"""

# no "from __future__ import annotations": FastAPI resolves the request model from the annotation

import json
import math
import os
import time
from typing import Any, Dict, List, Literal, Optional, Union

from featurestore.config import ServerConfig
from featurestore.errors import FeatureStoreError, InfraError, NotImplementedYet, RequestError

MAX_BODY_BYTES = ServerConfig.max_body_bytes
MAX_ENTITIES = ServerConfig.max_entities
MAX_LOGGED_ENTITIES = ServerConfig.max_logged_entities
UNMATCHED = "<unmatched>"  # the metrics label of every path that matches no route
REPO_ENV = "FEATURESTORE_SERVE_REPO"  # the repo of `serve --workers N` (read by each worker's app_from_env)
# the workers' shared Prometheus folder of `serve --workers N`. Our own variable, not PROMETHEUS_MULTIPROC_DIR
# alone: other libraries set that one on import (feast.metrics does), which must not switch /metrics to
# reading another program's files.
METRICS_DIR_ENV = "FEATURESTORE_SERVE_METRICS_DIR"
# A join-key value: a string or an integer, as the key's type says; null is a key that matches nothing.
_KEY_VALUE = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}


def _json_safe(values: List[Any]) -> List[Any]:
    """Values as JSON. NaN and infinities are values (served, logged and trained as such) but not JSON
    numbers: they are sent as the strings "NaN", "Infinity" and "-Infinity", as Feast's shape sends them,
    never as null (which is a missing value)."""
    out = []
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            out.append("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
        elif hasattr(v, "isoformat"):
            out.append(v.isoformat())
        else:
            out.append(v)
    return out


class _Guard:
    """The outermost ASGI layer. Refuses a body over ``max_body_bytes`` with 413 whether or not it declares
    its length: the body is read (at most that far) before the app sees it, so a chunked upload cannot
    slip past a Content-Length check. Counts every response by route template (``count(label, status)``)."""

    def __init__(self, app, max_body_bytes: int, count):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.count = count

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body = await self._read(scope, receive, sending)
            if body is None:
                return
            done = [False]

            async def replay():
                if done[0]:
                    return await receive()  # after the body: wait for the client to disconnect
                done[0] = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, sending)
        finally:
            route = scope.get("route")
            self.count(getattr(route, "path", None) or UNMATCHED, str(status[0]))

    async def _read(self, scope, receive, send) -> Optional[bytes]:
        """The whole body, or None when refused (413 sent) or the client went away."""
        limit = self.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > limit:
            await _send_json(send, 413, f"request body of {length} bytes is over the {limit} byte limit")
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, f"request body is over the {limit} byte limit (it was still coming)")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _send_json(send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def create_app(store, max_body_bytes: Optional[int] = None, max_entities: Optional[int] = None,
               max_logged_entities: Optional[int] = None):
    """The ASGI app serving ``store`` (a FeatureStore). Limits default to ``store.config.server``."""
    from fastapi import FastAPI, Query, Request, Response
    from fastapi.responses import JSONResponse, PlainTextResponse

    from featurestore import access, server_admin, server_auth, server_feast, server_ui
    from featurestore.server_metrics import MonitorCollector
    from featurestore.sdk.refs import resolve_features
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    limits = store.config.server
    max_body_bytes = limits.max_body_bytes if max_body_bytes is None else max_body_bytes
    max_entities = limits.max_entities if max_entities is None else max_entities
    max_logged_entities = limits.max_logged_entities if max_logged_entities is None else max_logged_entities
    registry = CollectorRegistry()
    requests_total = Counter("featurestore_http_requests_total", "HTTP requests", ["path", "status"],
                             registry=registry)
    latency = Histogram("featurestore_lookup_seconds", "Online lookup latency (server side)",
                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0), registry=registry)
    entities_total = Counter("featurestore_entities_served_total", "Entity rows served", registry=registry)
    monitor = MonitorCollector(store)  # freshness, stream lag, dead letters, skew, drift: computed per scrape
    registry.register(monitor)
    from featurestore.server_offline_metrics import LiveCollector

    registry.register(LiveCollector(store.config.project))  # an offline server of this process (serve --offline-port): its calls

    class LookupRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
            {"oneOf": [{"required": ["features"]}, {"required": ["feature_service"]}]},
            {"oneOf": [{"required": ["entities"]}, {"required": ["entity_rows"]}]},
        ]})
        # features is not nullable: leave it out instead of sending null. feature_service may be null (absent),
        # and features may be [] beside a feature_service: Feast's request model sends its defaults so.
        features: List[str] = Field(None, description="Feature references 'view:feature' ([] beside a "
                                    "feature_service is ignored, as Feast does).")
        feature_service: Optional[str] = Field(None, description="A feature service name (null: none).")
        # Key values and request_time are checked by the library (featurestore.sdk.inputs, .timeutil), not
        # coerced by pydantic: a JSON true or 1.0 would silently become the key 1. The schema says what is
        # accepted; anything else is a 400 with the same one-line cause as the Python API.
        entities: Dict[str, List[Any]] = Field(
            None, description="Join-key columns of equal length (Feast style).",
            json_schema_extra={"additionalProperties": {"type": "array", "items": _KEY_VALUE}})
        entity_rows: List[Dict[str, Any]] = Field(
            None, description="One object per entity.",
            json_schema_extra={"items": {"type": "object", "additionalProperties": _KEY_VALUE}})
        request_time: Any = Field(
            None, description="ISO-8601 time with a zone, or epoch milliseconds (an integer); default: now.",
            json_schema_extra={"anyOf": [{"type": "string"}, {"type": "integer"}]})
        request_data: Any = Field(
            None, description="Request data of request feature views: {column: [value per entity row]} or one "
            "object per entity row (request columns may also be sent inside the entity rows, as Feast does).",
            json_schema_extra={"anyOf": [{"type": "object", "additionalProperties": {"type": "array"}},
                                         {"type": "array", "items": {"type": "object"}}]})
        log: bool = Field(False, description="Log the served vector (log-and-wait); returns its request_id.")
        full_feature_names: bool = False
        include_feature_view_version_metadata: bool = Field(
            None, description="Feast's field (its clients always send it): the response is in Feast's shape "
            "(featurestore.server_feast), with feature_view_metadata when true.")

        @model_validator(mode="before")
        @classmethod
        def _feast_defaults(cls, data):
            """Feast's GetOnlineFeaturesRequest as JSON: ``feature_service: null`` beside features, or
            ``features: []`` beside a feature service, mean the one that is given (as Feast's server reads them)."""
            if isinstance(data, dict):
                data = dict(data)
                if "feature_service" in data and data["feature_service"] is None:
                    del data["feature_service"]
                if data.get("feature_service") is not None and data.get("features") == []:
                    del data["features"]
            return data

        @model_validator(mode="after")
        def _one_of(self):
            if (self.features is None) == (self.feature_service is None):
                raise ValueError("give exactly one of 'features' or 'feature_service'")
            if (self.entities is None) == (self.entity_rows is None):
                raise ValueError("give exactly one of 'entities' or 'entity_rows'")
            return self

        def rows(self) -> List[Dict[str, Any]]:
            if self.entity_rows is not None:
                return self.entity_rows
            lengths = {k: len(v) for k, v in self.entities.items()}
            if len(set(lengths.values())) > 1:
                raise RequestError(f"entities: columns have different lengths {lengths}")
            n = next(iter(lengths.values()), 0)
            return [{k: v[i] for k, v in self.entities.items()} for i in range(n)]

    class LookupResponse(BaseModel):
        request_id: Optional[str]
        feature_names: List[str]
        results: Dict[str, List[Any]]
        statuses: Dict[str, List[str]] = Field(
            default_factory=dict, description="Per feature, the status of each value: PRESENT, NULL_VALUE, "
            "NOT_FOUND, OUTSIDE_MAX_AGE, or REFUSED (the online store cannot answer exactly; see refusals).")
        refusals: List[str] = Field(default_factory=list, description="Why values were refused, one line each.")

    app = FastAPI(title="featurestore", version=_version(),
                  description="Online feature lookups with point-in-time semantics equal to training.")
    gate = server_auth.Gate(store)
    app.state.gate = gate

    # Starlette wraps the last added middleware outermost: the body limit and the request count come first,
    # then authentication (so a 401 is counted, and an oversized body is refused before any token check).
    app.add_middleware(server_auth.AccessGuard, gate=gate, login_page=server_ui.login_page)
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes,
                       count=lambda path, status: requests_total.labels(path, status).inc())
    if gate.enabled:
        server_auth.declare_bearer(app)

    @app.get("/health", responses={503: {"description": "Redis unreachable"}})
    def health(request: Request):
        online = [n for n, v in store.repo.views.items() if v.online]
        seen = [n for n in store.repo.views if server_auth.can_read(request, access.view_obj(store.repo, n))]
        try:
            markers = store.online_store().markers(online)
            evicting = None if store.config.redis_allow_eviction else store.online_store().eviction()
        except Exception as exc:  # noqa: BLE001 - report any failure as unhealthy
            return JSONResponse({"status": "unhealthy", "redis": str(exc).splitlines()[0]}, status_code=503)
        if evicting:  # entities evicted under memory pressure would read as absent (docs/online-store.md)
            return JSONResponse({"status": "unhealthy", "project": store.config.project, "redis_eviction": evicting,
                                 "detail": "Redis may evict keys under memory pressure: set maxmemory-policy "
                                           "noeviction (or online_store.allow_eviction: true)"}, status_code=503)
        missing = sorted(n for n in online if markers.get(n) is None)
        if missing:  # lookups of these views are refused, never served as defaults
            hidden = len([n for n in missing if n not in seen])  # counted, not named, to who may not see them
            return JSONResponse({"status": "unhealthy", "project": store.config.project,
                                 "missing_online_state": [n for n in missing if n in seen],
                                 **({"missing_online_state_not_shown": hidden} if hidden else {}),
                                 "detail": "no online state for these views (never materialized or streamed, or "
                                           "Redis lost its data): run 'featurestore materialize' (a running stream "
                                           "re-seeds them when restarted)"}, status_code=503)
        return {"status": "ok", "project": store.config.project, "views": sorted(seen)}

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics(request: Request):
        server_auth.require_project(request, "read_metadata")
        if os.environ.get(METRICS_DIR_ENV):  # serve --workers N: every worker's counts, summed
            from prometheus_client import multiprocess

            summed = CollectorRegistry()
            multiprocess.MultiProcessCollector(summed, path=os.environ[METRICS_DIR_ENV])
            summed.register(monitor)
            return PlainTextResponse(generate_latest(summed), media_type=CONTENT_TYPE_LATEST)
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    error = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}

    FeastLookupResponse = server_feast.response_models()

    @app.post("/get-online-features", response_model=Union[LookupResponse, FeastLookupResponse],
              responses={400: {"description": "invalid request", **error},
                         413: {"description": "body too large, or too many entity rows to log", **error},
                         501: {"description": "not implemented", **error},
                         503: {"description": "online store unavailable", **error}})
    def get_online_features(body: LookupRequest, request: Request, response: Response,
                            format: Optional[Literal["feast", "featurestore"]] = Query(
                                None, description="The response's shape; default: Feast's for a body in Feast's "
                                "vocabulary only (or with include_feature_view_version_metadata), else ours.")):
        t0 = time.perf_counter()
        feast_shape = server_feast.wants_feast(body.model_fields_set, format)
        try:
            server_auth.require_lookup_refs(request, body.features, body.feature_service)
            rows = body.rows()
            if len(rows) > max_entities:
                raise RequestError(f"{len(rows)} entities in one request; the limit is {max_entities}")
            if not rows:
                raise RequestError("no entities given")
            if len(rows) > max_logged_entities and _logs(store, body.log, body.feature_service):
                return JSONResponse({"detail": f"a logged lookup of {len(rows)} entity rows is over the limit of "
                                               f"{max_logged_entities} (server.max_logged_entities): split the "
                                               "request"}, status_code=413)
            result = store.get_online_features(rows, features=body.features, feature_service=body.feature_service,
                                               request_time=body.request_time, log=body.log,
                                               full_feature_names=body.full_feature_names,
                                               request_id=request.headers.get("x-request-id"),
                                               request_data=body.request_data)
        except InfraError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except NotImplementedYet as exc:
            return JSONResponse({"detail": str(exc)}, status_code=501)
        except FeatureStoreError as exc:
            return JSONResponse({"detail": str(exc).replace("\n", " ")}, status_code=400)
        data = result.to_dict()
        latency.observe(time.perf_counter() - t0)
        entities_total.inc(len(rows))
        keys = set(rows[0])
        headers = {"X-Request-Id": result.request_id} if result.request_id else None
        if feast_shape:
            selection = resolve_features(store.repo, body.features, body.feature_service)
            key_columns = [k for k in data if k in keys]
            return JSONResponse(server_feast.lookup_body(result, store.repo, key_columns, selection,
                                                         bool(body.full_feature_names),
                                                         bool(body.include_feature_view_version_metadata)),
                                headers=headers)
        if headers:
            response.headers.update(headers)
        return {"request_id": getattr(result, "request_id", None),
                "feature_names": [c for c in data if c not in keys],
                "results": {k: _json_safe(v) for k, v in data.items()},
                "statuses": result.statuses(), "refusals": result.refusals}

    server_feast.add_routes(app, store, {400: {"description": "invalid request", **error},
                                         403: {"description": "the principal may not do this", **error},
                                         413: {"description": "body too large", **error},
                                         503: {"description": "a store is unavailable", **error}})
    server_admin.add_routes(app, store)
    server_ui.add_routes(app, store)
    return app


def _logs(store, log: bool, feature_service: Optional[str]) -> bool:
    """Whether a lookup may append to the serving log: asked to, or its feature service logs."""
    if log:
        return True
    service = store.repo.services.get(feature_service) if feature_service else None
    return bool(service is not None and service.logging.enabled)


def app_from_env():
    """The app of one ``serve --workers N`` worker process: the repo named by FEATURESTORE_SERVE_REPO
    (uvicorn starts workers from an import string, so they cannot be handed an app object)."""
    from featurestore.store import FeatureStore

    repo = os.environ.get(REPO_ENV)
    if not repo:
        raise RuntimeError(f"{REPO_ENV} is not set (app_from_env is for `featurestore serve --workers N`)")
    return create_app(FeatureStore(repo))


def _version() -> str:
    from featurestore import __version__

    return __version__


__all__ = ["create_app", "app_from_env", "MAX_BODY_BYTES", "MAX_ENTITIES", "MAX_LOGGED_ENTITIES", "Any"]
