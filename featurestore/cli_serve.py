"""``featurestore serve`` (the HTTP server; with ``--offline-port`` also Feast's remote offline store),
``featurestore serve-offline`` (that one alone) and ``featurestore ui`` (the web catalog in a browser)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import typer

from featurestore import cli_support
from featurestore.cli_common import RepoOpt, _run, _store, console
from featurestore.errors import FeatureStoreError


def serve(
    repo: Optional[Path] = RepoOpt,
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: server.host, 127.0.0.1: this machine "
                                                  "only)."),
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="Port to listen on (default: server.port, 6566)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: server.workers, 1); "
                                                            "/metrics sums them."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this PEM certificate "
                                                                     "(chain) (default: server.tls_cert)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="The certificate's PEM private key "
                                                                   "(default: server.tls_key)."),
    offline_port: Optional[int] = typer.Option(None, "--offline-port", min=1, max=65535,
                                               help="Also serve training sets to Feast's remote offline store "
                                                    "(Arrow Flight) on this port (default: server.offline_port; "
                                                    "off)."),
):
    """Serve online lookups over HTTP: POST /get-online-features, GET /health, GET /metrics,
    OpenAPI at /openapi.json and /docs, the web catalog at /ui/; with --offline-port, training sets to Feast's
    remote offline store. Limits and defaults: featurestore.yaml server: (docs/config.md); tokens and roles:
    access_control: (docs/access-control.md)."""
    _serve(repo, host, port, workers, tls_cert, tls_key, offline_port=offline_port)


def serve_offline(
    repo: Optional[Path] = RepoOpt,
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: server.host, 127.0.0.1: this machine "
                                                  "only)."),
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="Port to listen on (default: "
                                                                    "server.offline_port, else 8815)."),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="Serve gRPC over TLS with this PEM "
                                                                     "certificate (default: server.tls_cert)."),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="The certificate's PEM private key "
                                                                   "(default: server.tls_key)."),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", min=1, max=65535,
                                               help="Also serve GET /metrics (Prometheus: calls by API and outcome, "
                                                    "rows, time) over HTTP(S) on this port, under access_control."),
):
    """Serve training sets to Feast's remote offline store (Arrow Flight; feature_store.yaml offline_store:
    {type: remote, host, port}) with featurestore's point-in-time engine, under access_control: (read_offline)."""

    def go():
        from featurestore import server_offline

        store = _store(repo)
        store.repo
        cfg = store.config.server
        cert, key = _tls_files(store, tls_cert, tls_key)
        where_host, where_port = host or cfg.host, port or cfg.offline_port or server_offline.DEFAULT_PORT
        if metrics_port:
            cli_support.check_port_free(where_host, metrics_port)
        server = server_offline.start(store, where_host, where_port, cert, key)
        console.print(f"serving training sets of project '{store.config.project}' to Feast's remote offline store "
                      f"on {server.scheme}://{where_host}:{where_port}")
        web = None
        try:
            if metrics_port:
                from featurestore.server_offline_metrics import serve_metrics

                web = serve_metrics(store, server.gate, server.metrics, where_host, metrics_port, cert, key)
                console.print(f"metrics on {'https' if cert else 'http'}://{where_host}:{metrics_port}/metrics")
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            if web is not None:
                web.should_exit = True
            server.shutdown()

    _run(go, repo)


def ui(
    repo: Optional[Path] = RepoOpt,
    host: Optional[str] = typer.Option(None, help="Interface to bind (default: server.host, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, min=1, max=65535, help="Port to listen on (default: server.port, 6566)."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the catalog in a web browser."),
):
    """Serve the web catalog (and the whole HTTP API, as serve does) and open /ui/ in a browser."""
    _serve(repo, host, port, None, None, None, open_ui=browser)


def _tls_files(store, tls_cert, tls_key):
    """The server's PEM certificate and key (options, else server.tls_cert/tls_key), both or neither, existing."""
    cfg = store.config.server
    cert = str(tls_cert) if tls_cert else (str(store.config.path(cfg.tls_cert)) if cfg.tls_cert else None)
    key = str(tls_key) if tls_key else (str(store.config.path(cfg.tls_key)) if cfg.tls_key else None)
    if bool(cert) != bool(key):
        raise FeatureStoreError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    for f in (cert, key):
        if f and not Path(f).is_file():
            raise FeatureStoreError(f"TLS file {f} does not exist")
    return cert, key


def _serve(repo, host, port, workers, tls_cert, tls_key, open_ui: bool = False, offline_port=None):
    def go():
        store = _store(repo)
        store.repo  # load and validate before binding the port: errors come out here, not per request
        cfg = store.config.server
        where_host, where_port = host or cfg.host, port or cfg.port
        n = workers or cfg.workers
        cert, key = _tls_files(store, tls_cert, tls_key)
        tls = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
        cli_support.check_port_free(where_host, where_port)  # one line, not uvicorn's log and exit code 3
        scheme = "https" if cert else "http"
        console.print(f"serving project '{store.config.project}' on {scheme}://{where_host}:{where_port} "
                      f"(docs at /docs, catalog at /ui/){f', {n} workers' if n > 1 else ''}")
        offline = None
        if offline_port or cfg.offline_port:
            from featurestore import server_offline

            offline = server_offline.start(store, where_host, offline_port or cfg.offline_port, cert, key)
            console.print(f"serving training sets to Feast's remote offline store on "
                          f"{offline.scheme}://{where_host}:{offline_port or cfg.offline_port}")
        try:
            _run_http(store, where_host, where_port, n, tls, open_ui, scheme)
        finally:
            if offline is not None:
                offline.shutdown()

    _run(go, repo)


def _run_http(store, where_host, where_port, n, tls, open_ui, scheme):
    """uvicorn: one process serving ``store``, or ``n`` worker processes each loading the repo."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from featurestore.server import METRICS_DIR_ENV, REPO_ENV, create_app

    if open_ui:
        local = "127.0.0.1" if where_host in ("0.0.0.0", "::") else where_host
        _open_when_up(f"{scheme}://{local}:{where_port}/ui/")
    if n == 1:
        uvicorn.run(create_app(store), host=where_host, port=where_port, log_level="warning", **tls)
        return
    # Workers are started from an import string (uvicorn cannot hand an app object to other processes);
    # each loads the repo itself. Metrics: Prometheus multiprocess mode, summed over the workers.
    metrics_dir = tempfile.mkdtemp(prefix="featurestore-serve-metrics-")
    os.environ[REPO_ENV] = str(store.repo_path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[METRICS_DIR_ENV] = metrics_dir
    try:
        uvicorn.run("featurestore.server:app_from_env", factory=True, host=where_host, port=where_port,
                    workers=n, log_level="warning", **tls)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _open_when_up(url: str) -> None:
    """Open ``url`` in the user's browser once the server accepts connections (a background thread)."""
    import socket
    import threading
    import webbrowser
    from urllib.parse import urlsplit

    parts = urlsplit(url)

    def wait_and_open():
        for _ in range(600):
            try:
                with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        if not webbrowser.open(url):
            console.print(f"open {url} in a browser", markup=False)

    threading.Thread(target=wait_and_open, daemon=True).start()
