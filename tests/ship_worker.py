"""A serving-log shipper in its own process, for the shipping fault tests (tests/test_log_shipping.py).

    python -m tests.ship_worker REPO loop STOP_FILE [BATCH]   ship until STOP_FILE exists; print the
                                                              number of entries this process shipped
    python -m tests.ship_worker REPO crash POINT [BATCH]      ship, and SIGKILL this process at POINT:
        after_read     the first XRANGE that returned entries has returned
        before_commit  the batch's Parquet files are written, its manifest is not
        after_commit   the batch's manifest is committed, nothing trimmed yet
        after_trim     the first batch is committed and trimmed from the stream
      exit code 3: the point was never reached (a test bug).
    python -m tests.ship_worker REPO ship - [BATCH]           ship once (to be killed from outside)

Each prints "ready" once loaded, before it starts shipping.

The kill is a real SIGKILL (no cleanup, no finally, no atexit): what a crashed host or OOM kill does.
"""

import os
import signal
import sys
from pathlib import Path

from featurestore import serving_log
from featurestore.store import FeatureStore
from featurestore.stores.offline import OfflineTable


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(client, point: str) -> None:
    committed = []
    if point == "after_read":
        real_xrange = client.xrange

        def xrange(*a, **k):
            got = real_xrange(*a, **k)
            if got:
                die()
            return got

        client.xrange = xrange
    elif point in ("before_commit", "after_commit"):
        real_write = OfflineTable._write_manifest

        def write_manifest(self, version, manifest):
            if point == "before_commit":
                die()
            real_write(self, version, manifest)
            die()

        OfflineTable._write_manifest = write_manifest
    elif point == "after_trim":
        real_write, real_xtrim = OfflineTable._write_manifest, client.xtrim

        def write_manifest(self, version, manifest):
            real_write(self, version, manifest)
            committed.append(version)

        def xtrim(*a, **k):
            out = real_xtrim(*a, **k)
            if committed:
                die()
            return out

        OfflineTable._write_manifest = write_manifest
        client.xtrim = xtrim
    else:
        raise SystemExit(f"unknown crash point {point}")


def main(argv) -> int:
    repo, mode, arg = argv[:3]
    batch = int(argv[3]) if len(argv) > 3 else 10_000
    fs = FeatureStore(repo)
    fs.online_store().client.ping()
    print("ready", flush=True)  # the parent starts its traffic or its kill timer from here
    if mode == "loop":
        stop, shipped = Path(arg), 0
        while not stop.exists():
            shipped += sum(r.entries for r in serving_log.ship(fs, batch=batch))
        print(shipped, flush=True)
        return 0
    if mode == "crash":
        arm(fs.online_store().client, arg)
        serving_log.ship(fs, batch=batch)
        return 3
    serving_log.ship(fs, batch=batch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
