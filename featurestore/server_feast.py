"""Feast's feature-server protocol (feast 0.67's ``feature_server.py``) on ``featurestore serve``.

A Feast client — ``feast.FeatureStore`` with ``online_store: {type: remote, path: http://host:port}`` — or
a script written against Feast's server works unchanged:

``POST /get-online-features``
    Feast's request (``features`` or ``feature_service``, ``entities`` as columns, ``full_feature_names``,
    ``include_feature_view_version_metadata``; request data as extra ``entities`` columns) is answered in
    Feast's shape (which shape a body gets: below)::

        {"metadata": {"feature_names": ["driver_id", "conv_rate"]},
         "results": [{"values": [1001], "statuses": ["PRESENT"], "event_timestamps": ["1970-01-01T00:00:00Z"]},
                     {"values": [0.5], "statuses": ["PRESENT"], "event_timestamps": ["2026-11-01T10:00:00Z"]}]}

    One result per column (the join keys first), one value per entity, as Feast's own server writes them
    (checked against it: tests/test_feast_server_oracle.py). Statuses are Feast's: ``PRESENT`` (a null
    value that was found is ``PRESENT``, as Feast's server says: our ``NULL_VALUE`` is in our own shape
    only), ``NOT_FOUND``, ``OUTSIDE_MAX_AGE``; a value this store refuses to answer (no online state,
    another definition, before the retention horizon) is ``INVALID``, with the reasons in ``refusals``.
    ``feature_view_metadata`` entries are ``{"name": view}`` (Feast leaves out a version of 0).
    ``event_timestamps``: for a latest feature the time of the event it comes from, for an
    aggregation the request time (its window ends there), ``1970-01-01T00:00:00Z`` for join keys and for
    values without one (Feast's zero time). Our own fields stay available: ``log`` / ``request_time`` in
    the body, the request id of a logged lookup in ``request_id`` and the ``X-Request-Id`` header (a
    request may choose it with that header).
    Which shape: ``?format=feast`` or ``?format=featurestore`` decides when given; else a body with Feast's
    ``include_feature_view_version_metadata`` gets Feast's shape, a body with any of this server's own
    fields (``entity_rows``, ``log``, ``request_time``, ``request_data``) gets this server's shape
    (``featurestore.server``), and a body in Feast's vocabulary only (``features`` or ``feature_service``,
    ``entities``, ``full_feature_names``: Feast's documented curl request, what Feast's remote online
    store's ``online_read`` sends) gets Feast's shape.

``POST /push``
    Feast's ``{"push_source_name", "df": {col: [values]}, "to": "online" | "offline" | "online_and_offline"}``
    (``to`` defaults to ``online``, as in Feast), or ours with ``source`` and ``rows`` (a list of objects):
    :func:`featurestore.push.push`. Returns the push's summary (Feast's clients ignore the body).
``POST /write-to-online-store``
    Feast's ``{"feature_view_name", "df"}`` (what a Feast client with a remote online store sends when it
    pushes or materializes): the rows are events of that view only, online; an event identical to one the
    entity already holds is not added again (Feast writes rows as upserts).
``POST /materialize``, ``POST /materialize-incremental``
    Feast's bodies (``start_ts``/``end_ts``, ``feature_views``): every event of the views is loaded, as
    ``FeatureStore.materialize(start, end)`` does (a superset of Feast's range, so any request time is exact);
    a time Feast could not read (naive ones are UTC, as in Feast) is a 400 naming the field.
"""

# no "from __future__ import annotations": FastAPI resolves the request models from the annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from featurestore.errors import FeatureStoreError, InfraError, NotImplementedYet, RequestError

ZERO_TIME = "1970-01-01T00:00:00Z"
FEAST_STATUSES = {"PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"}


OWN_FIELDS = frozenset({"entity_rows", "log", "request_time", "request_data"})


def wants_feast(body_fields: set, query_format: Optional[str]) -> bool:
    """Whether a lookup is answered in Feast's shape (see the module docstring): ``?format=`` decides when
    given; else Feast's field asks for Feast's shape, any of our own fields for ours, and a body in Feast's
    vocabulary only (Feast's documented curl request, its remote store's ``online_read``) gets Feast's."""
    if query_format in ("feast", "featurestore"):
        return query_format == "feast"
    if "include_feature_view_version_metadata" in body_fields:
        return True
    return not (body_fields & OWN_FIELDS)


def _time(ms: Optional[int]) -> str:
    if ms is None:
        return ZERO_TIME
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def _value(v: Any) -> Any:
    """Feast's JSON form of a value: non-finite floats as "NaN"/"Infinity"/"-Infinity", a timestamp as Feast's
    server sends a ``UnixTimestamp`` (whole epoch seconds, truncated toward zero: Feast's ``int(ts.timestamp())``,
    here without its float rounding)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, datetime):
        return epoch_seconds(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_seconds(v: datetime) -> int:
    """Whole seconds since the epoch, truncated toward zero (a naive time is UTC, as in Feast)."""
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    us = (v - _EPOCH) // timedelta(microseconds=1)
    whole = abs(us) // 1_000_000
    return whole if us >= 0 else -whole


def lookup_body(result, repo, key_columns: List[str], selection: Dict[str, List[str]], full_feature_names: bool,
                with_view_metadata: bool) -> dict:
    """Feast's ``GetOnlineFeaturesResponse`` JSON of an :class:`~featurestore.online.OnlineResponse`: the join
    keys, then the features in Feast's order (:func:`featurestore.sdk.refs.feast_column_order`)."""
    from featurestore.sdk.refs import feast_column_order

    data = result.to_dict()
    statuses = result.statuses()
    times = getattr(result, "event_times", {}) or {}
    names, results = [], []
    for k in key_columns:
        names.append(k)
        values = data[k]
        results.append({"values": [_value(v) for v in values], "statuses": ["PRESENT"] * len(values),
                        "event_timestamps": [ZERO_TIME] * len(values)})
    order = feast_column_order(repo, selection, full_feature_names, list(data))
    for col in [c for c in order if c not in key_columns]:
        values = data[col]
        sts = statuses.get(col, ["PRESENT"] * len(values))
        when = times.get(col, [None] * len(values))
        names.append(col)
        results.append({"values": [None if s not in FEAST_STATUSES else _value(v) for v, s in zip(values, sts)],
                        "statuses": [_feast_status(s) for s in sts],
                        "event_timestamps": [_time(w) for w in when]})
    metadata: Dict[str, Any] = {"feature_names": names}
    if with_view_metadata:
        metadata["feature_view_metadata"] = [{"name": v} for v in _views_read(repo, selection)]  # no version 0
    body: Dict[str, Any] = {"metadata": metadata, "results": results}  # Feast's server sends no "status"
    if result.request_id is not None:
        body["request_id"] = result.request_id
    if result.refusals:
        body["refusals"] = list(result.refusals)
    return body


def _views_read(repo, selection: Dict[str, List[str]]) -> List[str]:
    """The views Feast's answer lists in ``feature_view_metadata``: the feature views read, in the order of their
    first reference, an on-demand (request) view standing for the views it reads (Feast lists those, not it)."""
    out: List[str] = []
    for v in selection:
        names = [inp.name for inp, _ in repo.request_views[v].view_inputs] if v in repo.request_views else [v]
        out += [n for n in names if n not in out]
    return out


def _feast_status(status: str) -> str:
    """Feast's status of a value: its server says PRESENT for a null it found (it never sends NULL_VALUE)."""
    if status == "NULL_VALUE":
        return "PRESENT"
    return status if status in FEAST_STATUSES else "INVALID"


def response_models():
    """Feast's ``/get-online-features`` answer as pydantic models (for the OpenAPI schema; the body itself is
    built by :func:`lookup_body`)."""
    from pydantic import BaseModel, Field

    class FeastViewMetadata(BaseModel):
        name: str

    class FeastMetadata(BaseModel):
        feature_names: List[str] = Field(description="The join keys, then the features, one per result.")
        feature_view_metadata: Optional[List[FeastViewMetadata]] = Field(
            None, description="With include_feature_view_version_metadata: true.")

    class FeastResult(BaseModel):
        values: List[Any] = Field(description="One value per entity (null when not found, refused or null).")
        statuses: List[str] = Field(description="PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE, or INVALID (refused).",
                                    json_schema_extra={"items": {"enum": sorted(FEAST_STATUSES - {"NULL_VALUE"})
                                                                 + ["INVALID"]}})
        event_timestamps: List[str] = Field(description="RFC 3339 UTC; 1970-01-01T00:00:00Z when none.")

    class FeastLookupResponse(BaseModel):
        """Feast's shape (a body with include_feature_view_version_metadata, or ?format=feast)."""
        metadata: FeastMetadata
        results: List[FeastResult]
        request_id: Optional[str] = Field(None, description="Ours: the request id of a logged lookup.")
        refusals: Optional[List[str]] = Field(None, description="Ours: why values are INVALID, one line each.")

    return FeastLookupResponse


def _is_timestamp(value: str) -> bool:
    """Whether Feast reads ``value`` as a time (a materialize request's ``start_ts``/``end_ts``)."""
    import pandas as pd

    try:
        return not pd.isna(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return False


def _error(exc: Exception):
    from fastapi.responses import JSONResponse

    if isinstance(exc, InfraError):
        return JSONResponse({"detail": str(exc)}, status_code=503)
    if isinstance(exc, NotImplementedYet):
        return JSONResponse({"detail": str(exc)}, status_code=501)
    return JSONResponse({"detail": str(exc).replace("\n", " ")}, status_code=400)


def add_routes(app, store, error_responses: dict) -> None:
    """Feast's write and materialize endpoints (see the module docstring) on ``app``."""
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    from fastapi import Request

    from featurestore import server_auth
    from featurestore.push import MODES

    class PushRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        push_source_name: str = Field(None, description="Feast: the PushSource (any source with a batch face).")
        source: str = Field(None, description="Ours: the source name (same as push_source_name).")
        df: Dict[str, List[Any]] = Field(None, description="Feast: columns of equal length.")
        rows: List[Dict[str, Any]] = Field(None, description="Ours: one object per row.")
        to: str = Field("online", description="online (Feast's default), offline or online_and_offline.",
                        json_schema_extra={"enum": list(MODES)})
        allow_registry_cache: bool = Field(True, description="Feast's; definitions are always current here.")
        transform_on_write: bool = Field(True, description="Feast's; filters and projections always apply.")

        @model_validator(mode="after")
        def _one_of(self):
            if (self.push_source_name is None) == (self.source is None):
                raise ValueError("give exactly one of 'push_source_name' or 'source'")
            if (self.df is None) == (self.rows is None):
                raise ValueError("give exactly one of 'df' or 'rows'")
            return self

    class WriteRequest(BaseModel):
        feature_view_name: str
        df: Dict[str, List[Any]]
        allow_registry_cache: bool = True
        transform_on_write: bool = True

    class MaterializeRequest(BaseModel):
        start_ts: Optional[str] = None
        end_ts: Optional[str] = None
        feature_views: Optional[List[str]] = None
        disable_event_timestamp: bool = False
        full_feature_names: bool = False
        version: Optional[str] = None

    class MaterializeIncrementalRequest(BaseModel):
        end_ts: str
        feature_views: Optional[List[str]] = None
        full_feature_names: bool = False
        version: Optional[str] = None

    @app.post("/push", responses=error_responses)
    def push(body: PushRequest, request: Request):
        try:
            server_auth.require_push(request, body.push_source_name or body.source)
            result = store.push(body.push_source_name or body.source, body.df if body.df is not None else body.rows,
                                to=body.to)
        except FeatureStoreError as exc:
            return _error(exc)
        return _as_seen(request, result.to_dict())

    @app.post("/write-to-online-store", responses=error_responses)
    def write_to_online_store(body: WriteRequest, request: Request):
        from featurestore.push import push as do_push

        try:
            view = store.repo.views.get(body.feature_view_name)
            if view is None:  # the answer of a view the caller may not know exists too (require_push)
                raise RequestError(f"no feature view called '{body.feature_view_name}'")
            server_auth.require_push(request, view.source.name, views=[view.name])
            df = _feast_rows(view, dict(body.df))
            result = do_push(store, view.source, df, to="online", views=[view.name], upsert=True)
        except FeatureStoreError as exc:
            return _error(exc)
        return result.to_dict()

    def _materialize(request, views: Optional[List[str]], times: Dict[str, Optional[str]]):
        try:
            server_auth.require_views(request, "materialize", views)
            for name, value in times.items():  # read as Feast reads them (naive = UTC); every event is loaded
                if value is not None and not _is_timestamp(value):
                    raise RequestError(f"{name}: {value!r} is not a timestamp")
            results = store.materialize(views=views)
        except FeatureStoreError as exc:
            return _error(exc)
        return {"views": [{"view": r.view, "entities": r.entities, "events": r.events} for r in results]}

    @app.post("/materialize", responses=error_responses)
    def materialize(body: MaterializeRequest, request: Request):
        return _materialize(request, body.feature_views, {"start_ts": body.start_ts, "end_ts": body.end_ts})

    @app.post("/materialize-incremental", responses=error_responses)
    def materialize_incremental(body: MaterializeIncrementalRequest, request: Request):
        return _materialize(request, body.feature_views, {"end_ts": body.end_ts})


def _as_seen(request, out: dict) -> dict:
    """A push result without the views over the source the caller may not see (neither their metadata nor a
    push grant of their own): their counts are left out, a refusal naming one is counted, not shown."""
    from featurestore import access, server_auth

    principal = server_auth.principal_of(request)
    if principal is None:
        return out
    gate = server_auth.gate_of(request)
    repo = gate.store.repo
    hidden = [v for v in repo.views
              if not access.visible_names(repo, gate.policy, principal, "push", "view", [v])]
    if not hidden:
        return out
    out = dict(out, online={v: n for v, n in out["online"].items() if v not in hidden},
               offline={v: n for v, n in out["offline"].items() if v not in hidden})
    kept = [r for r in out["refusals"] if not any(f"'{v}'" in r or v in r.split() for v in hidden)]
    if len(kept) < len(out["refusals"]):
        kept.append(f"{len(out['refusals']) - len(kept)} refusal(s) of views the principal may not see")
    out["refusals"] = kept
    return out


def _feast_rows(view, df: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
    """Feast's online-write columns (``event_timestamp``, ``created``: its fixed names) as the source's."""
    source = view.source
    out = dict(df)
    if "event_timestamp" in out and source.timestamp not in out:
        out[source.timestamp] = out.pop("event_timestamp")
    created = out.pop("created", None)
    if created is not None and source.tiebreak and source.tiebreak[0] not in out:
        out[source.tiebreak[0]] = created
    return out


__all__ = ["wants_feast", "lookup_body", "add_routes", "response_models", "ZERO_TIME"]
