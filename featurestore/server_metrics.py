"""Monitoring gauges on ``/metrics`` (Prometheus), computed at scrape time by :mod:`featurestore.monitoring`:
freshness per view, stream lag per topic and dead letters per source (the stream's, pushes', backfills'),
skew per service and feature (the last ``verify`` run), drift per service and feature (the last recorded drift
report)."""

from __future__ import annotations

import logging
import time


def gauge(name: str, doc: str, labels):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(f"featurestore_{name}", doc, labels=labels)


log = logging.getLogger("featurestore.server")


class MonitorCollector:
    """A Prometheus collector of the project's monitoring numbers (registered once per app)."""

    def __init__(self, store):
        self.store = store

    def describe(self):
        return []  # computed at scrape time; no fixed series to announce

    def collect(self):
        """Each section on its own: one that cannot be read (a corrupt file, a store down) is left out and
        counted in ``featurestore_monitor_read_error{section}``; the scrape itself never fails."""
        from featurestore import monitoring

        errors = gauge("monitor_read_error", "1 when a section of the monitoring gauges could not be computed",
                       ["section"])
        for section in (self._freshness, self._stream, self._ingest, self._services):
            try:
                families = list(section(time.time()))
            except Exception as exc:  # noqa: BLE001 - reported as a gauge and in the server log
                log.warning("/metrics: %s: %s", section.__name__.lstrip("_"), monitoring._short(exc))
                errors.add_metric([section.__name__.lstrip("_")], 1.0)
                continue
            yield from families
        yield errors

    def _freshness(self, now: float):
        from featurestore import monitoring

        store = self.store

        last = gauge("view_last_event_timestamp_seconds", "Newest event time in the view's offline table", ["view"])
        age = gauge("view_freshness_seconds", "Age of the newest offline event of the view", ["view"])
        expected = gauge("view_expected_freshness_seconds", "The view's expected_freshness", ["view"])
        stale = gauge("view_stale", "1 when the view's newest event is older than its expected_freshness", ["view"])
        loaded = gauge("view_online_loaded_timestamp_seconds", "When the view's online state was last loaded",
                       ["view", "by"])
        for name, f in monitoring.freshness(store).items():
            if f.last_event_ms is not None:
                last.add_metric([name], f.last_event_ms / 1000)
                age.add_metric([name], now - f.last_event_ms / 1000)
            if f.expected_ms is not None:
                expected.add_metric([name], f.expected_ms / 1000)
                stale.add_metric([name], float(f.stale(int(now * 1000))))
            if f.online_loaded_ms is not None:
                loaded.add_metric([name, f.online_by or ""], f.online_loaded_ms / 1000)
        yield from (last, age, expected, stale, loaded)

    def _stream(self, now: float):
        from featurestore import monitoring

        lag = gauge("stream_lag_records", "Records of the topic the streaming job has not consumed", ["topic"])
        dead = gauge("stream_dead_letters", "Dead letters the streaming job counted for the source", ["source"])
        events = gauge("stream_events", "Events the streaming job stored for the source", ["source"])
        rate = gauge("stream_dead_letter_rate", "Dead letters over records (dead + stored) the streaming job committed "
                     "in the last monitor.dead_letter_window, per source", ["source"])
        stream = monitoring.stream_state(self.store)
        if stream is not None:
            for topic, n in stream.lag.items():
                if n is not None:
                    lag.add_metric([topic], n)
            for source, m in stream.sources.items():
                dead.add_metric([source], m.get("dead_letters", 0))
                events.add_metric([source], m.get("events", 0))
                rate.add_metric([source], stream.dead_letter_rate(source))
        yield from (lag, dead, events, rate)

    def _ingest(self, now: float):
        """Pushes to batch faces (totals since the first push, and the share of dead letters over the window
        monitor checks) and each source's last backfill: the dead-letter numbers besides the stream's."""
        from prometheus_client.core import CounterMetricFamily

        from featurestore.engines.backfill import last_ingest, pushed

        store = self.store
        records = CounterMetricFamily("featurestore_push_records", "Rows pushed to the source's batch face",
                                      labels=["source"])
        dead = CounterMetricFamily("featurestore_push_dead_letters", "Pushed rows of the source that were dead "
                                   "letters", labels=["source"])
        window = store.config.monitor.dead_letter_window_ms
        rate = gauge("push_dead_letter_rate", "Dead letters over rows pushed to the source in the last "
                     "monitor.dead_letter_window", ["source"])
        backfill_dead = gauge("backfill_dead_letters", "Dead letters of the source's last backfill", ["source"])
        backfill_records = gauge("backfill_records", "Rows the source's last backfill read", ["source"])
        for source in store.repo.sources:
            total = pushed(store, source)
            if total is not None:
                records.add_metric([source], total["records"])
                dead.add_metric([source], total["dead_letters"])
                recent = pushed(store, source, since_ms=int(now * 1000) - window)
                rate.add_metric([source], recent["dead_letters"] / recent["records"] if recent["records"] else 0.0)
            run = last_ingest(store, source)
            if run is not None:
                backfill_dead.add_metric([source], run["dead_letters"])
                backfill_records.add_metric([source], run["records"])
        yield from (records, dead, rate, backfill_dead, backfill_records)

    def _services(self, now: float):
        from featurestore import drift, verify
        from featurestore.sdk.refs import output_names, resolve_features

        store = self.store
        skew = gauge("skew_rate", "Skewed values over values checked in the service's last verify run",
                     ["service", "feature"])
        skew_at = gauge("skew_last_run_timestamp_seconds", "When the service's last verify run was", ["service"])
        psi = gauge("drift_psi", "PSI of served values against the training set (last drift report)",
                    ["service", "feature", "training_set"])
        by_view = gauge("view_skew_rate", "Skewed values over values checked of the view's features in the "
                        "service's last verify run", ["view", "service"])
        for service in store.repo.services:
            runs = verify.runs(store, service, last=1)
            if runs:
                skew_at.add_metric([service], runs[0]["at"] / 1000)
                for feature in runs[0]["features"]:
                    skew.add_metric([service, feature], verify.skew_rate(runs[0], feature))
                views: dict = {}
                for (view, _), column in output_names(resolve_features(store.repo, feature_service=service),
                                                      False).items():
                    if column in runs[0]["features"]:
                        views.setdefault(view, []).append(column)
                for view, columns in views.items():
                    by_view.add_metric([view, service], verify.skew_rate(runs[0], columns))
            report = drift.last_report(store, service)
            for feature, d in (report.features.items() if report else ()):
                if d.psi is not None:
                    psi.add_metric([service, feature, report.training_set], d.psi)
        yield from (skew, skew_at, by_view, psi)


__all__ = ["MonitorCollector"]
