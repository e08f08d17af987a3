"""The README demo, step by step, on the example repo and embedded defaults.

history -> apply -> backfill -> training set -> materialize -> (live events through Kafka and Flink)
-> lookups served with logging -> labels arrive late -> training set from logs -> verify -> summary.
"""

from __future__ import annotations

import random
import time

import pandas as pd
from rich.table import Table

SERVICE = "fraud_model_v1"


def run_demo(store, events: int, console, print_plan, stream: bool = True) -> dict:
    """Run every step; returns the consistency summary (also printed)."""
    from featurestore import datagen

    summary: dict = {}
    if SERVICE not in store.repo.services or "transactions" not in store.repo.sources:
        # before anything is written: the demo generates data/transactions, which would replace a repo's own
        from featurestore.errors import RequestError

        raise RequestError(f"the demo runs on the example repo (feature service '{SERVICE}', source "
                           f"'transactions'); {store.repo_path} is another repo: run it in the project's folder "
                           "(bash infra/run.sh demo) or a copy of its definitions/")

    def step(title):
        console.rule(f"[bold]{title}")

    step("1. generate seeded transactions (history)")
    history_end = pd.Timestamp(datagen.DEFAULT_END)
    out = datagen.write_parquet(store.repo_path / "data" / "transactions", events=events, seed=7)
    console.print(f"wrote {out.rows:,} events ending {history_end} to {out.path}")

    step("2. plan and apply the definitions")
    print_plan(store.plan())
    store.apply()

    step("3. backfill the offline store (DuckDB)")
    for r in store.backfill():
        console.print(f"{r.view}: {r.rows:,} events, version {r.version}, {r.seconds:.2f}s "
                      f"({r.events_per_second:,.0f} events/s)")

    step("4. point-in-time training set, saved and re-created")
    tx = pd.read_parquet(store.repo_path / "data" / "transactions", columns=["user_id", "merchant_id", "ts"])
    sample = tx.sample(n=min(5_000, len(tx)), random_state=1).rename(columns={"ts": "event_timestamp"})
    t0 = time.perf_counter()
    name = f"fraud_demo_{int(time.time())}"
    training = store.get_historical_features(sample, feature_service=SERVICE, save_as=name)
    console.print(f"{len(training):,} rows x {training.shape[1]} columns in {time.perf_counter() - t0:.2f}s, "
                  f"saved as training set '{name}'")
    same = store.recreate_training_set(name).to_arrow().equals(training.to_arrow())
    console.print(f"re-created from its manifest: {'identical' if same else 'DIFFERENT'}")
    summary["training set re-created bit for bit"] = same

    step("5. materialize Redis from the offline store")
    for r in store.materialize():
        console.print(f"{r.view}: {r.entities:,} entities, {r.events:,} events, {r.rows_per_second:,.0f} events/s")

    if stream:
        step("6. live events: Kafka -> Flink -> Redis + Parquet")
        summary.update(_stream_step(store, console, history_end))
    else:
        console.print("(streaming skipped)")

    step("7. serve lookups with logging (log-and-wait)")
    users = tx["user_id"].drop_duplicates().sample(n=min(200, tx["user_id"].nunique()), random_state=3).tolist()
    merchants = tx["merchant_id"].drop_duplicates().tolist()
    rng = random.Random(5)
    served = []
    t0 = time.perf_counter()
    for i, user in enumerate(users):
        when = history_end + pd.Timedelta(minutes=rng.randint(0, 120))
        res = store.get_online_features([{"user_id": user, "merchant_id": rng.choice(merchants)}],
                                        feature_service=SERVICE, request_time=when)
        served.append({"request_id": res.request_id, "user_id": user, "event_timestamp": when,
                       **{k: v[0] for k, v in res.to_dict().items()}})
    ms = (time.perf_counter() - t0) / max(1, len(users)) * 1000
    console.print(f"{len(served)} lookups served and logged ({ms:.2f} ms each, logging included)")

    step("8. labels arrive late; training set from the logs")
    labels = pd.DataFrame({"request_id": [s["request_id"] for s in served],
                           "user_id": [s["user_id"] for s in served],
                           "merchant_id": [s["merchant_id"] for s in served],
                           "event_timestamp": [s["event_timestamp"] for s in served],
                           "is_fraud": [int(rng.random() < 0.05) for _ in served]})
    labels.loc[:1, "request_id"] = ["never-logged-1", "never-logged-2"]  # their lookups were lost
    from_logs = store.training_set_from_logs(labels, SERVICE)
    logged = from_logs[from_logs["_from_log"]]
    exact = all(_same(row[c], served[i][c]) for i, row in logged.iterrows()
                for c in from_logs.columns if c in served[i] and c not in ("request_id", "event_timestamp"))
    console.print(f"{len(from_logs)} labelled rows: {len(logged)} from logs, "
                  f"{int((~from_logs['_from_log']).sum())} filled by the point-in-time join and flagged; "
                  f"logged values identical to what was served: {exact}")
    summary["training set from logs == served"] = exact

    step("9. verify: recompute the logged lookups offline")
    report = store.verify(SERVICE)
    table = Table(title=f"skew of '{SERVICE}' over {report.rows} logged rows")
    for col in ("feature", "mismatch", "missing", "extra"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for f, s in report.features.items():
        table.add_row(f, f"{s.rate('mismatch'):.2%}", f"{s.rate('missing'):.2%}", f"{s.rate('extra'):.2%}")
    console.print(table)
    summary["online == offline on every logged lookup"] = report.clean

    step("consistency summary")
    for claim, ok in summary.items():
        console.print(f"{'[green]ok  [/green]' if ok else '[red]FAIL[/red]'} {claim}")
    return summary


def _stream_step(store, console, history_end) -> dict:
    """Produce live events after the history to Kafka, run the Flink job over them, check online."""
    try:
        from featurestore.engines.flink import stream as streaming
    except ImportError:
        streaming = None
    if streaming is None or not hasattr(streaming, "run"):
        console.print("the streaming job is not part of this build yet")
        return {}
    return _run_stream(store, console, history_end, streaming)


def _run_stream(store, console, history_end, streaming) -> dict:
    """The stream in its own project (and topic), so the demo can run again: the last day of history
    plus two hours of live events (and a few malformed records) go through Kafka and the Flink job;
    then the stream's online values must equal the point-in-time values of the stream's offline tables,
    and its offline tables must hold exactly what a backfill of the same events holds."""
    import dataclasses
    import uuid

    from featurestore import datagen
    from featurestore.store import FeatureStore

    run = uuid.uuid4().hex[:6]
    topic = f"transactions_demo_{run}"
    live_root = store.repo_path / ".featurestore" / "demo_stream" / run
    (live_root / "definitions").mkdir(parents=True, exist_ok=True)
    for f in (store.config.definitions_path).glob("*.py"):
        text = f.read_text().replace('KafkaTopic("transactions"', f'KafkaTopic("{topic}"')
        (live_root / "definitions" / f.name).write_text(text)
    cfg = dataclasses.replace(store.config, repo_path=live_root, definitions=None,
                              project=f"{store.config.project}_stream_{run}")
    live = FeatureStore(live_root, config=cfg)
    recent = datagen.generate_transactions(events=20_000, users=500, merchants=50, days=1, seed=11,
                                           end=history_end + pd.Timedelta("2h"))
    sent = datagen.produce_kafka(live, live.repo.sources["transactions"], df=recent, include_malformed=True)
    console.print(f"produced {sent:,} records ({len(recent):,} events + malformed ones, some late) to '{topic}'")
    result = live.stream(bounded=True, timeout=600)
    console.print(f"Flink job read {result.records:,} records in {result.seconds:.1f}s "
                  f"({result.records_per_second:,.0f}/s)")
    for name, metrics in result.metrics.items():
        console.print(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in metrics.items()))
    # batch == stream: a backfill of the same events, in a third project, must hold the same rows
    datagen.write_parquet(live_root / "data" / "transactions", df=recent, events=len(recent), seed=11)
    batch = FeatureStore(live_root, config=dataclasses.replace(cfg, project=cfg.project + "_batch"))
    batch.backfill()
    same_offline = all(_sorted_rows(live, v) == _sorted_rows(batch, v) for v in live.repo.views)
    console.print(f"offline tables written by the stream == by the backfill: {same_offline}")
    # online (fed by the stream) == offline point in time, at request times after the last event
    users = recent["user_id"].drop_duplicates().head(50).tolist()
    when = history_end + pd.Timedelta("2h")
    rows = pd.DataFrame({"user_id": users, "merchant_id": recent["merchant_id"].iloc[0],
                         "event_timestamp": [when] * len(users)})
    offline = live.get_historical_features(rows, feature_service=SERVICE)
    online = live.get_online_features(rows[["user_id", "merchant_id"]], feature_service=SERVICE,
                                      request_time=when).to_dict()
    same_online = all(_same(online[c][i], offline[c].iloc[i]) for c in online for i in range(len(users)))
    console.print(f"online (streamed) == offline point-in-time for {len(users)} users: {same_online}")
    return {"stream offline tables == backfill": same_offline, "stream online == offline": same_online}


def _sorted_rows(store, view: str):
    table = store.offline.table(view, ts_column=store.compiled(view).ts_column).read()
    return sorted(map(tuple, (table.to_pandas().astype(str).itertuples(index=False))))


def _same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b) if not isinstance(a, (list, dict)) else False:
        return True
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return a == b
