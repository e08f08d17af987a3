"""Read plans of the example's online views, made afresh per request against kept per minute
(``online.read_plan``), by CPU per plan (with its script arguments), in one process, alternated.

Request times uniform in ``bench/online_hot.py``'s last hour. Usage: ``python -m bench.online_plans
[--requests 20000] [--rounds 3]``; prints one line per round.
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    from bench import online_hot as oh
    from bench.common import ROOT
    from featurestore import online as ol
    from featurestore.store import FeatureStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fs = FeatureStore(ROOT)
    windows = [sorted(ol.view_windows(fs.compiled(n)), key=lambda w: (w is None, w or 0))
               for n, v in fs.repo.views.items() if v.online]
    rng = random.Random(1)
    qs = [oh.MATERIALIZE_END_MS + rng.randrange(oh.HOUR_MS) for _ in range(args.requests)]

    def per_plan(make) -> float:
        t = time.process_time()
        for q in qs:
            for w in windows:
                make(w, q).script_args()
        return 1e6 * (time.process_time() - t) / (len(qs) * len(windows))

    print(f"windows per view: {windows}")
    for r in range(args.rounds):
        fresh = per_plan(lambda w, q: ol._read_plan(w, q, ol.TOP_LEVEL, False))
        kept = per_plan(ol.read_plan)
        print(f"round {r + 1}: afresh {fresh:.1f} us per plan, kept per minute {kept:.1f} us per plan")


if __name__ == "__main__":
    main()
