"""Training sets through the server: Feast's remote offline store protocol (Arrow Flight), under access control.

``featurestore serve --offline-port 8815`` (or ``server.offline_port``, or ``featurestore serve-offline``) answers
Feast's own client — a ``feast.FeatureStore`` whose ``feature_store.yaml`` says ``offline_store: {type: remote,
host: ..., port: 8815}`` — with our point-in-time engine: the values are those of
:meth:`featurestore.FeatureStore.get_historical_features` (SPEC §2, §6). What Feast's client sends:

- ``do_exchange`` (what Feast 0.67's client sends): a command descriptor, JSON ``{"api":
  "get_historical_features", "feature_view_names": [...], "feature_refs": ["view:feature", ...],
  "full_feature_names": bool, "project": ..., "name_aliases": [...]}``, then the entity DataFrame as an Arrow
  stream; the answer is the training set on the same stream. Our own client (:mod:`featurestore.offline_client`)
  may name a ``"feature_service"`` instead of refs.
- the older flow: ``do_put`` of the same command with the entity DataFrame, ``get_flight_info`` for a ticket,
  ``do_get`` of the result (kept for older clients: a bounded number of uploads wait for their ``do_get``).

With ``access_control.enabled`` every call authenticates the ``Authorization: Bearer`` header Feast sends (its
``auth:`` section: our token, or an OIDC JWT) with the HTTP server's :class:`featurestore.server_auth.Gate`, and a
training set needs ``read_offline`` on every view it reads (a request feature view: also on the views it reads).
Without a valid credential the call fails *unauthenticated*, without the right *unauthorized* naming the principal,
the action and the views (Feast's client raises them as ``pyarrow.flight.FlightUnauthenticatedError`` /
``FlightUnauthorizedError`` carrying our message). Feast's other offline APIs (``persist``,
``pull_all_from_table_or_query``, ``write_logged_features``, ``offline_write_batch``, ...) are refused with a
one-line error saying what to use instead; one call's entity DataFrame is bounded by ``server.max_training_rows``.
Tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.flight as fl

from featurestore import access
from featurestore.auth import bearer
from featurestore.errors import AccessError, FeatureStoreError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8815  # Feast's `feast serve_offline` default
HISTORICAL = "get_historical_features"
MAX_PENDING = 16  # uploads of the older do_put/do_get flow waiting for their do_get (oldest dropped first; their
# rows together at most server.max_training_rows)
_INSTEAD = {
    "persist": "build the training set with featurestore's SDK and save_as=NAME (a reproducible training set), "
               "or write the DataFrame Feast's client returns yourself",
    # what a Feast client's materialize asks of its offline store (0.67: pull_all; before: pull_latest)
    "pull_all_from_table_or_query": "materialize with featurestore (featurestore materialize, POST /materialize)",
    "pull_latest_from_table_or_query": "materialize with featurestore (featurestore materialize, POST /materialize)",
    "write_logged_features": "log served vectors with featurestore (log: true on POST /get-online-features)",
    "offline_write_batch": "push events with featurestore (POST /push with to: offline or online_and_offline)",
    "validate_data_source": "validate definitions with featurestore apply",
    "get_table_column_names_and_types_from_data_source": "see sources in featurestore's catalog (GET /catalog)",
}


class _Caller(fl.ServerMiddleware):
    """The principal of one call (None with access control off)."""

    def __init__(self, principal):
        super().__init__()
        self.principal = principal


class _Authenticate(fl.ServerMiddlewareFactory):
    """Every call: the bearer credential checked as the HTTP server checks it (fails closed)."""

    def __init__(self, gate, metrics=None):
        super().__init__()
        self.gate, self.metrics = gate, metrics

    def start_call(self, info, headers):
        if not self.gate.enabled:
            return _Caller(None)
        flat = {k.lower(): (v[0].decode("latin-1") if isinstance(v[0], bytes) else v[0])
                for k, v in headers.items() if v}
        credential = bearer(flat)
        try:
            principal = self.gate.principal(credential)
        except AccessError as exc:  # a broken token file: refuse everyone, say why
            if self.metrics is not None:
                self.metrics.call(_api_of(info), "unavailable")
            raise fl.FlightUnavailableError(f"access control unavailable: {exc}")
        if principal is None:
            if self.metrics is not None:
                self.metrics.call(_api_of(info), "unauthenticated")
            raise fl.FlightUnauthenticatedError(
                "the bearer token is not valid (unknown, revoked or expired)" if credential else
                "a valid bearer token is required (Feast's auth: section, e.g. {type: oidc, token: <token>}; "
                "see featurestore auth create)")
        return _Caller(principal)


def _api_of(info) -> str:
    """The Flight method of a call refused before its command is read (``do_exchange``, ...)."""
    method = getattr(info, "method", None)
    return str(getattr(method, "name", method) or "unknown").lower()


def _command(descriptor: fl.FlightDescriptor) -> dict:
    try:
        command = json.loads(descriptor.command)
    except (TypeError, ValueError):
        command = None
    if not isinstance(command, dict) or not isinstance(command.get("api"), str):
        raise fl.FlightServerError("not a command of Feast's remote offline store (a JSON object with 'api')")
    return command


class _Refused(fl.FlightServerError):
    """An API the offline server does not answer (counted as ``refused``)."""


def _api_name(descriptor) -> str:
    """The ``api`` of a call's command, for the metrics."""
    try:
        api = json.loads(descriptor.command).get("api")
    except (TypeError, ValueError, AttributeError):
        api = None
    return _known_api(api)


def _known_api(api) -> str:
    """``api`` as a metrics label: one of Feast's offline APIs, else ``other`` (a caller's made-up names must not
    grow the label set)."""
    return api if api == HISTORICAL or api in _INSTEAD else "other"


def _refuse(api: str):
    instead = _INSTEAD.get(api)
    if instead is None:
        raise _Refused(f"unknown offline API '{api}' (featurestore's offline server answers "
                       f"{HISTORICAL})")
    raise _Refused(f"'{api}' is not supported by featurestore's offline server, which answers "
                               f"{HISTORICAL} only: {instead}")


class OfflineServer(fl.FlightServerBase):
    """Feast's remote offline store protocol over ``store`` (see the module docstring)."""

    def __init__(self, store, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None):
        from featurestore.server_auth import Gate
        from featurestore.server_offline_metrics import OfflineMetrics

        self.store = store
        self.gate = Gate(store)
        self.metrics = OfflineMetrics(store.config.project)
        self.scheme = "grpc+tls" if tls_cert else "grpc+tcp"
        certs = [fl.CertKeyPair(Path(tls_cert).read_bytes(), Path(tls_key).read_bytes())] if tls_cert else []
        super().__init__(location=f"{self.scheme}://{host}:{port}", tls_certificates=certs,
                         middleware={"auth": _Authenticate(self.gate, self.metrics)})
        self._pending: "OrderedDict[bytes, pa.Table]" = OrderedDict()
        self._lock = threading.Lock()

    def shutdown(self):
        self.metrics.close()
        super().shutdown()

    # -- Feast 0.67's client: one bidirectional stream -------------------------------------------------------
    def _read(self, reader) -> pa.Table:
        """The uploaded entity DataFrame, refused past ``server.max_training_rows`` before it is all in memory."""
        limit = self.store.config.server.max_training_rows
        batches, rows = [], 0
        for chunk in reader:
            rows += chunk.data.num_rows
            if rows > limit:
                raise fl.FlightServerError(f"the entity DataFrame has over {limit:,} rows (server.max_training_rows): "
                                           "build the training set in parts")
            batches.append(chunk.data)
        return pa.Table.from_batches(batches, schema=reader.schema)

    def _counted(self, api: str, call):
        """``call()``, counted by ``api`` and outcome on the server's metrics."""
        try:
            out = call()
        except fl.FlightUnauthorizedError:
            self.metrics.call(api, "unauthorized")
            raise
        except fl.FlightInternalError:
            self.metrics.call(api, "error")
            raise
        except _Refused:
            self.metrics.call(api, "refused")
            raise
        except fl.FlightError:
            self.metrics.call(api, "invalid")
            raise
        except Exception:
            self.metrics.call(api, "error")
            raise
        self.metrics.call(api, "ok")
        return out

    def do_exchange(self, context, descriptor, reader, writer):
        def call():
            command = _command(descriptor)
            if command["api"] != HISTORICAL:
                _refuse(command["api"])
            entities = self._read(reader)
            table = self._training_set(context, command, entities)
            writer.begin(table.schema)
            writer.write_table(table)

        self._counted(_api_name(descriptor), call)

    # -- older clients: do_put, get_flight_info, do_get -----------------------------------------------------------
    def do_put(self, context, descriptor, reader, writer):
        self._counted(_api_name(descriptor), lambda: self._do_put(descriptor, reader))

    def _do_put(self, descriptor, reader):
        command = _command(descriptor)
        if command["api"] != HISTORICAL:
            _refuse(command["api"])
        entities = self._read(reader)
        limit = self.store.config.server.max_training_rows
        with self._lock:
            self._pending[descriptor.command] = entities
            # bounded: the oldest uploads whose do_get never came are dropped first
            while len(self._pending) > 1 and (len(self._pending) > MAX_PENDING or
                                              sum(t.num_rows for t in self._pending.values()) > limit):
                self._pending.popitem(last=False)

    def get_flight_info(self, context, descriptor):
        with self._lock:
            known = descriptor.command in self._pending
        if not known:
            raise fl.FlightServerError("no entity DataFrame was uploaded for this command (do_put it first)")
        # no location: the ticket is redeemed on this same connection (whatever address the client used)
        return fl.FlightInfo(pa.schema([]), descriptor, [fl.FlightEndpoint(descriptor.command, [])], -1, -1)

    def do_get(self, context, ticket):
        return self._counted(_api_name(fl.FlightDescriptor.for_command(ticket.ticket)),
                             lambda: self._do_get(context, ticket))

    def _do_get(self, context, ticket):
        with self._lock:
            entities = self._pending.pop(ticket.ticket, None)
        if entities is None:
            raise fl.FlightServerError("unknown or already answered ticket (do_put the command again)")
        table = self._training_set(context, _command(fl.FlightDescriptor.for_command(ticket.ticket)), entities)
        return fl.RecordBatchStream(table)

    def list_actions(self, context):
        return []

    def do_action(self, context, action):
        self._counted(_known_api(action.type), lambda: _refuse(action.type))

    # -- the training set --------------------------------------------------------------------------------------
    def _training_set(self, context, command: dict, entities: pa.Table) -> pa.Table:
        import time

        started = time.perf_counter()
        table = self._build(context, command, entities)
        self.metrics.served(entities.num_rows, table.num_rows, started)
        return table

    def _build(self, context, command: dict, entities: pa.Table) -> pa.Table:
        caller = context.get_middleware("auth")
        principal = caller.principal if caller is not None else None
        store = self.store
        try:
            entity_df = self._entity_df(command, entities)
            refs, service = command.get("feature_refs"), command.get("feature_service")
            if service is not None:  # featurestore's own client may name a service (Feast's sends its refs)
                if not isinstance(service, str) or refs:
                    raise FeatureStoreError("give feature_refs or a feature_service name, not both")
                refs = None
            elif not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
                raise FeatureStoreError("feature_refs must be a non-empty list of 'view:feature' references")
            repo = store.repo
            # the refs say what is read (a view renamed in a service, Feast's name_alias, is the derived view its
            # refs name); feature_view_names and name_aliases only repeat them
            policy = self.gate.policy
            # an error names no view, service or feature the caller may not see, nor tells a hidden one exists
            selection = access.resolve_for(repo, policy, principal, "read_offline", refs, service)
            denied = access.denied_views(repo, policy, principal, "read_offline", selection)
            if denied and service is not None and service in repo.services and \
                    policy.allows(principal, "read_offline", access.service_obj(repo, service)):
                denied = []  # a grant on the service covers what it reads, as for online lookups
            if denied:
                raise fl.FlightUnauthorizedError(f"principal '{principal.name}' may not read_offline "
                                                 + access.refused_views_text(repo, policy, principal, selection,
                                                                             denied))
            frame = store.get_historical_features(entity_df, features=refs, feature_service=service,
                                                  full_feature_names=bool(command.get("full_feature_names")))
        except fl.FlightError:
            raise
        except FeatureStoreError as exc:  # the caller's mistake: the SDK's one line
            raise fl.FlightServerError(str(exc).split("\n")[0])
        except Exception as exc:  # noqa: BLE001 - a defect of ours: the traceback in the server log, one line out
            log.exception("offline server: get_historical_features failed")
            first = (str(exc).splitlines() or [""])[0]
            raise fl.FlightInternalError(f"internal error ({type(exc).__name__}: {first}); the server log has the "
                                         "details")
        log.info("training set of %d rows, views %s, for %s", len(frame), sorted(selection),
                 principal.name if principal is not None else "anyone (access control off)")
        table = frame.to_arrow() if hasattr(frame, "to_arrow") else pa.Table.from_pandas(frame, preserve_index=False)
        if command.get("feature_view_names"):  # Feast's client (ours sends none): Feast's column order
            from featurestore.sdk.refs import feast_column_order

            table = table.select(feast_column_order(repo, selection, bool(command.get("full_feature_names")),
                                                    table.column_names))
        return table

    def _entity_df(self, command: dict, entities: pa.Table):
        project = command.get("project")
        if project not in (None, self.store.config.project):
            raise FeatureStoreError(f"this server serves project '{self.store.config.project}', not '{project}' "
                                    "(the project of the client's feature_store.yaml)")
        if command.get("start_date") is not None or command.get("end_date") is not None:
            raise FeatureStoreError("get_historical_features with start_date/end_date (no entity_df) is not "
                                    "supported: send an entity DataFrame with an event_timestamp column")
        if command.get("entity_df_sql") is not None:
            raise FeatureStoreError("an entity_df given as SQL is not supported by featurestore's offline server: "
                                    "send a pandas DataFrame")
        if entities.column_names == ["key"]:  # Feast's placeholder table: no entity DataFrame was sent
            raise FeatureStoreError("get_historical_features needs an entity DataFrame")
        return entities.to_pandas()


def _bind_problem(host: str, port: int) -> Optional[str]:
    """Why the OS will not let us listen there (gRPC only says the server "did not start properly")."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def start(store, host: str, port: int, tls_cert: Optional[str] = None, tls_key: Optional[str] = None) -> OfflineServer:
    """An :class:`OfflineServer` listening (it accepts calls from here on), served by a daemon thread."""
    try:
        server = OfflineServer(store, host, port, tls_cert, tls_key)
    except (OSError, pa.ArrowException) as exc:
        reason = _bind_problem(host, port) or str(exc).splitlines()[0]
        raise FeatureStoreError(f"offline server: cannot listen on {host}:{port} ({reason})") from None
    threading.Thread(target=server.serve, name="featurestore-offline-server", daemon=True).start()
    return server


__all__ = ["OfflineServer", "start", "DEFAULT_PORT"]
