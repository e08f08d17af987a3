"""moto's standalone S3 server, serving one request at a time (started by infra/s3.sh).

``moto_server`` serves requests on threads, and its ``PutObject`` checks ``If-None-Match: *`` and then
stores the object without a lock between the two: two conditional puts racing for one key can, rarely,
both succeed there. Real object stores (AWS S3, MinIO, ...) make the check and the write one
atomic step, and the offline store's commits rely on that (docs/offline-store.md). Handled one at a
time, each request runs whole, so moto's check-then-store is atomic too. (A single-threaded werkzeug
server speaks HTTP/1.0, closing each connection, so one client cannot hold the server.)

    python infra/tools/moto_s3.py HOST PORT
"""

import os
import signal
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, processes=1, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
