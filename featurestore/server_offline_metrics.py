"""Metrics of the offline server (:mod:`featurestore.server_offline`), in Prometheus' text format.

Every call is counted by API and outcome (``ok``, ``unauthenticated``, ``unauthorized``, ``invalid``: the
caller's mistake, ``refused``: an API the server does not answer, ``error``: ours), with the entity rows
received, the training-set rows sent and the time a training set took. Where they are scraped:

- ``featurestore serve --offline-port``: on the HTTP server's ``GET /metrics``, next to its own (the offline
  server runs in the same process; with ``--workers N`` it runs in the parent process: use
  ``serve-offline --metrics-port`` to scrape it).
- ``featurestore serve-offline --metrics-port P``: ``GET /metrics`` on port P, under the same access control as
  the HTTP server's (a bearer token with ``read_metadata`` on the project when ``access_control.enabled``).
"""

# no "from __future__ import annotations": FastAPI resolves the route's parameter types from the annotations

import threading
import time
import weakref
from typing import Optional

OUTCOMES = ("ok", "unauthenticated", "unauthorized", "invalid", "refused", "error", "unavailable")
_LIVE: "weakref.WeakSet" = weakref.WeakSet()  # the OfflineMetrics of the offline servers of this process


BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)  # seconds per training set


class OfflineMetrics:
    """The counts of one offline server, kept here and exported by :meth:`collect` (not prometheus_client's
    Counter objects: in a process where another library switched Prometheus to multiprocess mode, e.g.
    ``feast.metrics`` on import, those share their values by name across every registry of the process)."""

    def __init__(self, project: str):
        self.project = project
        self._lock = threading.Lock()
        self._calls: dict = {}  # (api, outcome) -> calls
        self._entity_rows = self._rows = 0
        self._buckets = [0] * len(BUCKETS)
        self._count, self._sum = 0, 0.0
        _LIVE.add(self)

    def close(self) -> None:
        """The server stopped: no longer on the HTTP server's /metrics."""
        _LIVE.discard(self)

    def call(self, api: str, outcome: str) -> None:
        with self._lock:
            self._calls[(api, outcome)] = self._calls.get((api, outcome), 0) + 1

    def served(self, entity_rows: int, rows: int, started: float) -> None:
        took = time.perf_counter() - started
        with self._lock:
            self._entity_rows += entity_rows
            self._rows += rows
            self._count += 1
            self._sum += took
            for i, bound in enumerate(BUCKETS):
                if took <= bound:
                    self._buckets[i] += 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        with self._lock:
            calls = CounterMetricFamily("featurestore_offline_calls", "Calls to the offline server by API and "
                                        "outcome", labels=["api", "outcome"])
            for (api, outcome), n in sorted(self._calls.items()):
                calls.add_metric([api, outcome], n)
            entity_rows = CounterMetricFamily("featurestore_offline_entity_rows", "Entity DataFrame rows of the "
                                              "training sets served", value=self._entity_rows)
            rows = CounterMetricFamily("featurestore_offline_training_set_rows", "Rows of the training sets served",
                                       value=self._rows)
            seconds = HistogramMetricFamily(
                "featurestore_offline_training_set_seconds", "Time to build and send a training set",
                buckets=[(str(b), n) for b, n in zip(BUCKETS, self._buckets)] + [("+Inf", self._count)],
                sum_value=self._sum)
        return [calls, entity_rows, rows, seconds]


class LiveCollector:
    """What the running offline server of ``project`` in this process counted (registered on the HTTP server's
    /metrics)."""

    def __init__(self, project: str):
        self.project = project

    def describe(self):
        return []

    def collect(self):
        for metrics in [m for m in list(_LIVE) if m.project == self.project][:1]:  # one server per project
            yield from metrics.collect()


def metrics_app(store, gate, metrics: OfflineMetrics):
    """An HTTP app answering ``GET /metrics`` (and nothing else but 404) under ``gate``'s access control."""
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from featurestore import server_auth

    app = FastAPI(title="featurestore offline server metrics", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gate = gate
    app.add_middleware(server_auth.AccessGuard, gate=gate, login_page=lambda path: "")

    @app.get("/metrics", response_class=PlainTextResponse)
    def scrape(request: Request):
        server_auth.require_project(request, "read_metadata")
        return PlainTextResponse(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_metrics(store, gate, metrics: OfflineMetrics, host: str, port: int, tls_cert: Optional[str] = None,
                  tls_key: Optional[str] = None):
    """Serve :func:`metrics_app` on ``host:port`` from a daemon thread; returns the uvicorn server (``should_exit``
    stops it). The port is checked first: a taken port is one line, not uvicorn's exit."""
    import uvicorn

    from featurestore import cli_support

    cli_support.check_port_free(host, port)
    tls = {"ssl_certfile": tls_cert, "ssl_keyfile": tls_key} if tls_cert else {}
    server = uvicorn.Server(uvicorn.Config(metrics_app(store, gate, metrics), host=host, port=port,
                                           log_level="warning", **tls))
    threading.Thread(target=server.run, name="featurestore-offline-metrics", daemon=True).start()
    return server


__all__ = ["OfflineMetrics", "LiveCollector", "metrics_app", "serve_metrics", "OUTCOMES"]
