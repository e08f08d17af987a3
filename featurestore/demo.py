"""The README demo, step by step, on the example repo and embedded defaults."""

from __future__ import annotations

import time

import pandas as pd
from rich.table import Table


def run_demo(store, events: int, console, print_plan) -> None:
    from featurestore import datagen

    def step(title):
        console.rule(f"[bold]{title}")

    step("1. generate seeded transactions")
    out = datagen.write_parquet(store.repo_path / "data" / "transactions", events=events, seed=7)
    console.print(f"wrote {out.rows:,} events to {out.path}")

    step("2. plan and apply the definitions")
    print_plan(store.plan())
    store.apply()

    step("3. backfill the offline store (DuckDB)")
    for r in store.backfill():
        console.print(f"{r.view}: {r.rows:,} events, version {r.version}, {r.seconds:.2f}s "
                      f"({r.events_per_second:,.0f} events/s)")

    step("4. point-in-time training set")
    tx = pd.read_parquet(store.repo_path / "data" / "transactions", columns=["user_id", "merchant_id", "ts"])
    sample = tx.sample(n=min(5_000, len(tx)), random_state=1).rename(columns={"ts": "event_timestamp"})
    sample["label"] = (sample.index % 97 == 0).astype(int)  # stand-in fraud label
    t0 = time.perf_counter()
    name = f"fraud_demo_{int(time.time())}"
    training = store.get_historical_features(sample, feature_service="fraud_model_v1", save_as=name)
    console.print(f"{len(training):,} rows x {training.shape[1]} columns in {time.perf_counter() - t0:.2f}s, "
                  f"saved as training set '{name}'")
    console.print(training.head(5).to_string(max_cols=8))
    again = store.recreate_training_set(name)
    same = again.to_arrow().equals(training.to_arrow())
    console.print(f"re-created from its manifest: {'identical' if same else 'DIFFERENT'}")

    step("5. materialize Redis and look features up online")
    for r in store.materialize():
        console.print(f"{r.view}: {r.entities:,} entities, {r.events:,} events, {r.rows_per_second:,.0f} events/s")
    row = sample.iloc[0]
    when = row["event_timestamp"]
    online = store.get_online_features([{"user_id": row["user_id"], "merchant_id": row["merchant_id"]}],
                                       feature_service="fraud_model_v1", request_time=when).to_dict()
    offline = training.iloc[0]
    table = Table(title=f"user {row['user_id']} at {when}: online vs offline")
    for col in ("feature", "online", "offline"):
        table.add_column(col)
    for feature, values in online.items():
        if feature in ("user_id", "merchant_id"):
            continue
        table.add_row(feature, repr(values[0]), repr(offline[feature]))
    console.print(table)
    mismatches = [f for f, v in online.items() if f not in ("user_id", "merchant_id")
                  and not _same(v[0], offline[f])]
    console.print("online == offline for every feature" if not mismatches else f"MISMATCH: {mismatches}")
    step("done")


def _same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    return a == b
