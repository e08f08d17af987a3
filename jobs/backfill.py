"""Batch backfill job: recompute the offline store from the batch faces with DuckDB.

    python jobs/backfill.py [--repo .] [--start 2026-01-01T00:00:00Z] [--end ...] [--view user_spend ...]

A thin runnable wrapper over ``FeatureStore.backfill`` (the same thing as ``featurestore backfill``).
"""

import argparse
import sys

from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureStore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="repo root (featurestore.yaml, definitions/)")
    parser.add_argument("--start", help="range start, ISO time with zone; default: all history")
    parser.add_argument("--end", help="range end (exclusive); default: all history")
    parser.add_argument("--view", action="append", help="only this view (repeatable)")
    args = parser.parse_args(argv)
    try:
        results = FeatureStore(args.repo).backfill(start=args.start, end=args.end, views=args.view)
        for r in results:
            print(f"{r.view}: {r.rows} rows, version {r.version}, {r.seconds:.2f}s, "
                  f"{r.dead_letters} dead letters / {r.rejected_null_key} null key")
        for line in results.summary():
            print(line)
    except FeatureStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
