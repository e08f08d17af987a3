"""Skew verification: recompute what was served, offline, and compare feature by feature (SPEC §7).

For every logged row (entity, request time, served values) the offline point-in-time value is
recomputed with ``get_historical_features`` and compared: **mismatch** (both present, different;
floats beyond 1e-9 relative; a latest value and first/last bit for bit, min/max as numbers), **missing** (served null, offline has a value), **extra** (served a
value, offline null). Rates are per feature over the rows checked. A value that cannot be computed
exactly offline (an integer sum outside int64, :func:`featurestore.semantics.int64_overflow_reason`) is
**refused**, as online refuses it: served null there agrees (counted in ``refused``, with the reason); a
served number there is a mismatch. Every other feature and row is still checked. A row that did not serve a
feature (the feature joined the service after it was logged) is **stale** for it: counted apart, not in the
rates (it served no value to compare). A row served under another definition of a view is compared like any
other (a serving process running old definitions is skew to see). The report prints as a table,
renders as a self-contained HTML page with plots (skew over time per feature), and ``exceeds(t)`` gates CI.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pandas as pd
import pyarrow as pa

REL_TOL = 1e-9
TIME_COLUMN = "_request_time"  # the logged request time, as the recomputation's timestamp column


def _null(v) -> bool:
    """No value (NaN is a value: a float feature can serve it, and the offline side keeps it apart from null)."""
    return v is None or v is pd.NA or v is pd.NaT


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


# How a float feature's served and offline values must agree (SPEC §3; docs/semantics.md): first/last and latest
# return a stored value as it is (bit for bit: -0.0 is not 0.0); min/max are identical numbers (-0.0 and 0.0
# compare equal, either may be returned); sums, means and variances within 1e-9 relative, request features too.
BITS, EQUAL = "bits", "equal"
EXACT_FUNCTIONS = {"first": BITS, "last": BITS, "min": EQUAL, "max": EQUAL}


def _same_float(a: float, b: float) -> bool:
    """Bit for bit, as far as Python floats tell: equal and, for zeros, the same sign."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def classify(served, offline, exact: Optional[str] = None) -> Optional[str]:
    """None when equal, else 'mismatch', 'missing' (served null, a value offline) or 'extra' (served a value,
    null offline). NaN equals NaN and differs from null and from any number. Floats agree within 1e-9
    relative, or as equal numbers when ``exact`` is EQUAL, or bit for bit (-0.0 is not 0.0) when BITS."""
    if hasattr(offline, "item") and not isinstance(offline, str):
        offline = offline.item()
    if (_null(served) and _null(offline)) or (_nan(served) and _nan(offline)):
        return None
    if _null(served):
        return "missing"
    if _null(offline):
        return "extra"
    if isinstance(served, bool) or isinstance(offline, bool):
        return None if bool(served) == bool(offline) else "mismatch"
    if isinstance(served, (int, float)) and isinstance(offline, (int, float)):
        if isinstance(served, int) and isinstance(offline, int):
            return None if served == offline else "mismatch"
        if exact == BITS:
            return None if _same_float(float(served), float(offline)) else "mismatch"
        if exact == EQUAL:
            return None if served == offline else "mismatch"
        return None if math.isclose(served, offline, rel_tol=REL_TOL, abs_tol=1e-12) else "mismatch"
    return None if served == offline else "mismatch"


def _exactness(view, feature: str) -> Optional[str]:
    """How a feature's served float must equal its offline one (``EXACT_FUNCTIONS``): BITS for a latest value
    and first/last, EQUAL for min/max, None (within 1e-9) for the rest and for request features."""
    from featurestore.model.features import Aggregation, Latest
    from featurestore.model.view import FeatureView

    if not isinstance(view, FeatureView):
        return None
    f = view.feature(feature)
    if isinstance(f, Latest):
        return BITS
    return EXACT_FUNCTIONS.get(f.function) if isinstance(f, Aggregation) else None


@dataclass
class FeatureSkew:
    feature: str
    rows: int = 0
    mismatch: int = 0
    missing: int = 0
    extra: int = 0
    refused: int = 0  # rows whose value is refused offline too (not skew); ``refused_reason`` says why
    stale: int = 0  # rows that did not serve the feature (it joined the service later): not checked, not in rows
    refused_reason: Optional[str] = None
    examples: List[dict] = field(default_factory=list)

    @property
    def skew_rate(self) -> float:
        return (self.mismatch + self.missing + self.extra) / self.rows if self.rows else 0.0

    def rate(self, kind: str) -> float:
        return getattr(self, kind) / self.rows if self.rows else 0.0


@dataclass
class VerifyReport:
    feature_service: str
    rows: int
    features: Dict[str, FeatureSkew]
    timeline: List[Tuple[int, int, Dict[str, int]]]  # (bucket start ms, rows, skewed rows per feature)

    def exceeds(self, threshold: float) -> List[str]:
        """Features whose skew rate is above ``threshold``."""
        return [f for f, s in self.features.items() if s.skew_rate > threshold]

    @property
    def clean(self) -> bool:
        return all(s.skew_rate == 0 for s in self.features.values())

    def to_html(self) -> str:
        return render_html(self)


def verify(store, feature_service: str, limit: Optional[int] = None, examples: int = 5) -> VerifyReport:
    """Recompute the logged lookups of ``feature_service`` offline and report skew per feature."""
    from featurestore import serving_log
    from featurestore.engines.duckdb_pit import refusing_overflow
    from featurestore.errors import RequestError
    from featurestore.sdk.json_values import decode_list, json_columns
    from featurestore.sdk.refs import output_names, resolve_features
    from featurestore.semantics import int64_overflow_reason

    name = getattr(feature_service, "name", feature_service)
    selection = resolve_features(store.repo, feature_service=name)
    full = serving_log.names_clash(selection)  # two views' features of one name: report view__feature
    served_columns = serving_log.served_columns(store, selection, full)
    by_column = {c: dtype for c, (_, _, dtype) in served_columns.items()}
    columns = list(by_column)
    store.ship_logs()
    logs = serving_log.read_logs(store, name)
    if limit is not None and len(logs) > limit:
        logs = logs.sample(n=limit, random_state=0)
    logs = logs.sort_values("request_time", kind="stable").reset_index(drop=True)
    report = VerifyReport(name, len(logs), {c: FeatureSkew(c) for c in columns}, [])
    if logs.empty:
        return report
    entities = [json.loads(e) for e in logs["entity"]]
    # The keys as declared (int64 stays int64, nulls included): never through pandas' float64.
    keys = serving_log.typed_keys(entities, serving_log.key_types(store, selection), f"verify '{name}'")
    # Request features are recomputed from the request data that was served with each row.
    request = serving_log.decode_request_data(logs, serving_log.request_types(store, selection), f"verify '{name}'")
    columns_in = {**{c: keys.column(c) for c in keys.column_names},
                  **{c: request.column(c) for c in request.column_names}}
    entity_df = serving_log.exact_pandas(pa.table(columns_in)) if columns_in else pd.DataFrame(index=range(len(logs)))
    entity_df[TIME_COLUMN] = pd.to_datetime(logs["request_time"], utc=True)
    try:
        with refusing_overflow() as refused:  # a refused value is a cell of the report, not the run's end
            offline = store.get_historical_features(entity_df, feature_service=name, timestamp_column=TIME_COLUMN,
                                                    full_feature_names=full)
    except RequestError as exc:
        raise RequestError(f"verify '{name}': cannot recompute logged rows offline: {exc}") from None
    recomputed = offline.to_arrow()  # exact values (pandas would turn an int column with a null into float)
    offline_values = {c: recomputed.column(c).to_pylist() for c in columns}
    for c in json_columns(by_column):  # served JSON values are decoded (decode_served): compare values
        offline_values[c] = decode_list(offline_values[c])
    served = [serving_log.decode_served(f, served_columns) for f in logs["features"]]
    refused_rows: Dict[str, set] = {}
    names = output_names(selection, full)
    exact = {column: _exactness(store.repo.feature_view(view), feat) for (view, feat), column in names.items()}
    for (view, feat), rows in refused.items():
        column = names.get((view, feat))
        if column is not None:
            refused_rows[column] = rows
            report.features[column].refused_reason = int64_overflow_reason(view, feat)
    times = (entity_df[TIME_COLUMN].astype("datetime64[ns, UTC]").astype("int64") // 1_000_000).tolist()
    buckets = _buckets(times)
    per_bucket: Dict[int, Dict[str, int]] = {b: {c: 0 for c in columns} for b in set(buckets)}
    rows_in_bucket: Dict[int, int] = {}
    for i, row in enumerate(served):
        rows_in_bucket[buckets[i]] = rows_in_bucket.get(buckets[i], 0) + 1
        for c in columns:
            s = report.features[c]
            if c not in row:  # not served by this row: the feature joined the service later
                s.stale += 1
                continue
            s.rows += 1
            if i in refused_rows.get(c, ()):  # online refuses it too: served null agrees
                kind = None if _null(row.get(c)) else "mismatch"
                s.refused += kind is None
            else:
                kind = classify(row.get(c), offline_values[c][i], exact[c])
            if kind is None:
                continue
            setattr(s, kind, getattr(s, kind) + 1)
            per_bucket[buckets[i]][c] += 1
            if len(s.examples) < examples:
                s.examples.append({"request_id": logs["request_id"].iloc[i], "entity": entities[i],
                                   "request_time": str(entity_df[TIME_COLUMN].iloc[i]), "kind": kind,
                                   "served": row.get(c), "offline": offline_values[c][i],
                                   **({"reason": s.refused_reason} if i in refused_rows.get(c, ()) else {})})
    report.timeline = [(b, rows_in_bucket[b], per_bucket[b]) for b in sorted(per_bucket)]
    save_run(store, report)
    return report


HISTORY_DIR = "verify"  # under the repo's state folder: one JSON line per verify run, per service


def _history_path(store, service: str):
    return store.config.state_path / HISTORY_DIR / f"{store.config.project}.{service}.jsonl"


def save_run(store, report: VerifyReport) -> None:
    """Append the report's summary to the service's skew history (the catalog and ``monitor`` read it). A
    run that checked no rows is not history."""
    import time

    if report.rows == 0:
        return
    path = _history_path(store, report.feature_service)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": int(time.time() * 1000), "rows": report.rows,
                       "features": {f: {"rows": s.rows, "mismatch": s.mismatch, "missing": s.missing,
                                        "extra": s.extra, "refused": s.refused, "stale": s.stale}
                                    for f, s in report.features.items()},
                       "timeline": report.timeline}, default=str)
    with open(path, "a") as fh:  # one write of one line: concurrent runs never interleave within a line
        fh.write(line + "\n")


def runs(store, service: str, last: Optional[int] = None) -> List[dict]:
    """The recorded verify runs of ``service``, oldest first (each: at, rows, per-feature counts, timeline);
    a line that is not a run (a crash mid-write, a hand edit) is skipped."""
    from featurestore.monitoring import lines_backwards

    path = _history_path(store, service)
    if not path.exists():
        return []
    out = []
    for line in lines_backwards(path):  # newest first: stop once the last N runs are found
        if last and len(out) == last:
            break
        try:
            run = json.loads(line)
            skew_rate(run)  # holds what every reader of a run uses
            if not isinstance(run.get("at"), (int, float)) or not isinstance(run.get("rows"), int):
                continue
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        out.append(run)
    return out[::-1]


def skew_rate(run: dict, feature=None) -> float:
    """Skewed values over values checked in one recorded run (of one feature, of a list of them, or of all)."""
    if feature is None:
        feats = list(run["features"].values())
    else:
        feats = [run["features"][f] for f in ([feature] if isinstance(feature, str) else feature)]
    rows = sum(f["rows"] for f in feats)
    return sum(f["mismatch"] + f["missing"] + f["extra"] for f in feats) / rows if rows else 0.0


def _buckets(times: List[int], n: int = 20) -> List[int]:
    lo, hi = min(times), max(times)
    width = max(1, (hi - lo + n) // n)
    return [lo + ((t - lo) // width) * width for t in times]


def render_html(report: VerifyReport) -> str:
    """A self-contained page: summary table, worst examples, and an SVG plot of skew over time."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(f)}</td><td>{s.rows}</td><td>{s.rate('mismatch'):.4%}</td><td>{s.rate('missing'):.4%}</td>"
        f"<td>{s.rate('extra'):.4%}</td><td class='{'bad' if s.skew_rate else 'ok'}'>{s.skew_rate:.4%}</td></tr>"
        for f, s in report.features.items())
    examples = "".join(
        f"<tr><td>{esc(f)}</td><td>{esc(e['kind'])}</td><td>{esc(str(e['entity']))}</td><td>{esc(e['request_time'])}"
        f"</td><td>{esc(repr(e['served']))}</td><td>{esc(repr(e['offline']))}</td><td>{esc(str(e['request_id']))}</td></tr>"
        for f, s in report.features.items() for e in s.examples)
    status = "no skew" if report.clean else f"skew in {sum(1 for s in report.features.values() if s.skew_rate)} feature(s)"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>verify {esc(report.feature_service)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}.bad{{color:#b00;font-weight:bold}}.ok{{color:#070}}
</style></head><body><h1>Online/offline skew: {esc(report.feature_service)}</h1>
<p>{report.rows} logged rows recomputed offline: <b>{esc(status)}</b>.</p>
<h2>Per feature</h2><table><tr><th>feature</th><th>rows</th><th>mismatch</th><th>missing</th><th>extra</th>
<th>skew</th></tr>{rows}</table>
{"".join(f"<p>{esc(f)}: {s.refused} value(s) refused offline as online: {esc(s.refused_reason)}</p>"
         for f, s in report.features.items() if s.refused_reason)}
{"".join(f"<p>{esc(f)}: {s.stale} logged row(s) did not serve it (it joined the service later), not checked</p>"
         for f, s in report.features.items() if s.stale)}
<h2>Skew over time</h2>{_svg_timeline(report)}
<h2>Worst examples</h2><table><tr><th>feature</th><th>kind</th><th>entity</th><th>request time</th><th>served</th>
<th>offline</th><th>request id</th></tr>{examples or '<tr><td colspan=7>none</td></tr>'}</table></body></html>"""


def _svg_timeline(report: VerifyReport, width: int = 720, height: int = 240) -> str:
    if not report.timeline:
        return "<p>no rows</p>"
    pad = 40
    xs = [b for b, _, _ in report.timeline]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    skewed = [f for f, s in report.features.items() if s.skew_rate] or list(report.features)[:1]
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    lines = []
    for i, f in enumerate(skewed[:8]):
        pts = []
        for b, n, counts in report.timeline:
            x = pad + (b - x0) / (x1 - x0) * (width - 2 * pad)
            y = height - pad - (counts[f] / n if n else 0) * (height - 2 * pad)
            pts.append(f"{x:.1f},{y:.1f}")
        lines.append(f'<polyline fill="none" stroke="{colors[i]}" stroke-width="2" points="{" ".join(pts)}"/>'
                      f'<text x="{width - pad + 4}" y="{pad + 14 * i}" fill="{colors[i]}" font-size="11">'
                      f'{html.escape(f)}</text>')
    axes = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>'
            f'<text x="4" y="{pad}" font-size="11">100%</text><text x="4" y="{height - pad}" font-size="11">0%</text>'
            f'<text x="{pad}" y="{height - 12}" font-size="11">{pd.Timestamp(x0, unit="ms", tz="UTC")}</text>'
            f'<text x="{width - pad - 160}" y="{height - 12}" font-size="11">{pd.Timestamp(x1, unit="ms", tz="UTC")}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 160}" height="{height}">{axes}{"".join(lines)}</svg>'
