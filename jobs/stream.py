#!/usr/bin/env python
"""The streaming job as a runnable script.

    python jobs/stream.py --repo . [--bounded] [--checkpoint-dir DIR] [--views a,b]

runs the job on PyFlink's local mini-cluster in this process (and commits its Parquet files into the
offline tables while it runs). The same script can be handed to a Flink cluster:

    flink run -m host:8081 -py jobs/stream.py --repo /path/to/repo --submit-only

(``--submit-only``: submit and exit, without the committer loop; run ``featurestore stream
--flink-address host:8081`` to submit and commit in one command). See docs/streaming.md.

    python jobs/stream.py --repo /path/to/repo --commit-only [--commit-every 2]

runs only the committer loop, next to a job that runs elsewhere (e.g. in the job manager's pod on
Kubernetes, where the cluster runs the job in application mode: docs/deploy-kubernetes.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `featurestore` when run by the flink CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="featurestore streaming job (Kafka -> Redis + Parquet)")
    parser.add_argument("--repo", default=".", help="the feature repo")
    parser.add_argument("--bounded", action="store_true",
                        help="stop (with a savepoint) once the topics' end offsets at start are consumed")
    parser.add_argument("--checkpoint-dir", default=None, help="default: <repo>/.featurestore/checkpoints")
    parser.add_argument("--checkpoint-interval-ms", type=int, default=None)
    parser.add_argument("--views", default=None, help="comma-separated view names (default: every streamed view)")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--no-restore", action="store_true", help="do not restore the latest checkpoint")
    parser.add_argument("--flush-ms", type=int, default=None,
                        help="online mini-batch window: events reach Redis this much later (default 200, bounded 5000)")
    parser.add_argument("--slack-ms", type=int, default=0,
                        help="keep online events this much longer than the views' retention")
    parser.add_argument("--timeout", type=float, default=None, help="bounded: give up after this many seconds")
    parser.add_argument("--submit-only", action="store_true", help="submit the job and exit (remote clusters)")
    parser.add_argument("--run-id", default=None, help="names the run's progress reports in Redis")
    parser.add_argument("--partial-history", action="store_true",
                        help="start fresh even if the topic lost its first records and no offline table covers them "
                             "(see featurestore.engines.flink.handoff)")
    parser.add_argument("--commit-only", action="store_true",
                        help="only commit the job's staged files into the offline tables, every --commit-every s")
    parser.add_argument("--commit-every", type=float, default=2.0, help="seconds between commits (--commit-only)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from featurestore.engines.flink import stream as streaming
    from featurestore.errors import FeatureStoreError
    from featurestore.store import FeatureStore

    try:
        store = FeatureStore(args.repo)
        views = args.views.split(",") if args.views else None
        if args.commit_only:
            return _commit_loop(store, views, args.commit_every)
        handle = streaming.start(store, views, bounded=args.bounded, checkpoint_dir=args.checkpoint_dir,
                                 checkpoint_interval_ms=args.checkpoint_interval_ms, restore=not args.no_restore,
                                 parallelism=args.parallelism, flush_ms=args.flush_ms, slack_ms=args.slack_ms,
                                 commit=not args.submit_only, run_id=args.run_id,
                                 partial_history=args.partial_history,
                                 rest_port=None if args.submit_only else 0)
        print(json.dumps({"job": handle.job_name, "job_id": handle.job_id, "restored_from": handle.restored_from}),
              flush=True)
        if args.submit_only:
            print(f"JobID {handle.job_id}", flush=True)
            return 0
        result = handle.run_until_done(args.timeout)
    except FeatureStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"job": result.job_name, "seconds": round(result.seconds, 3), "records": result.records,
                      "savepoint": result.savepoint, "metrics": result.metrics}), flush=True)
    return 0


def _commit_loop(store, views, every_s: float) -> int:
    """Commit passes until SIGTERM/SIGINT, then a last one (files the job finished are never left behind)."""
    import signal
    import threading

    from featurestore.engines.flink import stream as streaming

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while True:
        metrics = streaming.commit(store, views)
        if stop.is_set():
            print(json.dumps({"committer": "stopped", "metrics": metrics}), flush=True)
            return 0
        stop.wait(every_s)


if __name__ == "__main__":
    sys.exit(main())
