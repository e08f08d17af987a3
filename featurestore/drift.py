"""Drift of served values against a training set (SPEC §8): per feature, the population stability index
(PSI) of the values a service served (its serving log) against the values of a saved training set
(``get_historical_features(..., save_as=NAME)``), with summary statistics of both.

- Numeric features: 10 bins cut at the finite training values' deciles (distinct edges only; the outer
  bins are open), plus a bin each for -inf, +inf, NaN and nulls.
- Other features (strings, booleans): one bin per training category (the 20 most frequent), one for every
  other value, one for nulls.
- ``PSI = sum((served% - train%) * ln(served% / train%))`` over the bins, each share floored at 1e-4 so an
  empty bin counts instead of dividing by zero. Rules of thumb: < 0.1 stable, 0.1-0.2 a shift worth a look,
  > 0.2 a significant shift (``monitor.max_psi``, default 0.2).

Each computed report is recorded (``.featurestore/drift/<project>.<service>.jsonl``): ``/metrics`` exports
the last one's PSI per feature, the catalog shows it with its histograms.

>>> report = drift(fs, "fraud_model_v1", "fraud_v1_oct")   # doctest: +SKIP
>>> {f: round(d.psi, 3) for f, d in report.features.items()}  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

BINS = 10
TOP_CATEGORIES = 20
FLOOR = 1e-4
NULL = "(null)"
OTHER = "(other)"
NEG_INF, POS_INF, NAN = "-inf", "+inf", "NaN"
HISTORY_DIR = "drift"


@dataclass
class Summary:
    count: int
    nulls: int
    mean: Optional[float] = None
    std: Optional[float] = None
    min: Optional[float] = None
    p50: Optional[float] = None
    max: Optional[float] = None
    distinct: Optional[int] = None
    non_finite: int = 0  # inf, -inf and NaN values: left out of mean, std and median (inf counts in min/max)


@dataclass
class FeatureDrift:
    feature: str
    psi: Optional[float]  # None: no served or no training values to compare
    training: Summary
    served: Summary
    bins: List[Tuple[str, float, float]] = field(default_factory=list)  # (label, training share, served share)


@dataclass
class DriftReport:
    feature_service: str
    training_set: str
    served_rows: int
    training_rows: int
    features: Dict[str, FeatureDrift]
    at: int = 0  # epoch ms when computed
    since_ms: Optional[int] = None  # only lookups at or after this request time (None: every logged lookup)

    def to_json(self) -> dict:
        return {"feature_service": self.feature_service, "training_set": self.training_set, "at": self.at,
                "since_ms": self.since_ms,
                "served_rows": self.served_rows, "training_rows": self.training_rows,
                "features": {f: asdict(d) for f, d in self.features.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "DriftReport":
        feats = {f: FeatureDrift(f, d["psi"], Summary(**d["training"]), Summary(**d["served"]),
                                 [tuple(b) for b in d["bins"]]) for f, d in data["features"].items()}
        return cls(data["feature_service"], data["training_set"], data["served_rows"], data["training_rows"], feats,
                   data.get("at", 0), data.get("since_ms"))


# -- the statistics ---------------------------------------------------------------------------------------------
def _numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)


def summary(values: Sequence) -> Summary:
    import numpy as np

    present = [v for v in values if v is not None]
    s = Summary(count=len(values), nulls=len(values) - len(present))
    if present and _numeric(present):
        arr = np.asarray(present, dtype="float64")
        finite = arr[np.isfinite(arr)]
        s.non_finite = int(len(arr) - len(finite))
        ordered = arr[~np.isnan(arr)]
        if len(ordered):
            s.min, s.max = float(ordered.min()), float(ordered.max())
        if len(finite):
            with np.errstate(over="ignore", invalid="ignore"):  # values near the float limits: inf, as computed
                s.mean, s.p50 = float(finite.mean()), float(np.median(finite))
                s.std = float(finite.std(ddof=1)) if len(finite) > 1 else None
    elif present:
        s.distinct = len({str(v) for v in present})
    return s


def _shares(labels: List[str], counts: Dict[str, int], n: int) -> List[float]:
    return [counts.get(label, 0) / n if n else 0.0 for label in labels]


def _numeric_bins(train: List, served: List) -> Tuple[List[str], Dict[str, int], Dict[str, int]]:
    import numpy as np

    present = np.asarray([v for v in train if v is not None], dtype="float64")
    present = present[np.isfinite(present)]  # edges between finite values; +-inf fall in the outer bins
    edges = sorted(set(np.quantile(present, [i / BINS for i in range(1, BINS)]).tolist())) if len(present) else []
    finite = [f"< {edges[0]:.4g}"] if edges else ["all"]
    finite += [f"[{a:.4g}, {b:.4g})" for a, b in zip(edges, edges[1:])]
    if edges:
        finite.append(f">= {edges[-1]:.4g}")
    labels = [NEG_INF, *finite, POS_INF, NAN, NULL]

    def count(values):
        out: Dict[str, int] = {}
        for v in values:
            if v is None:
                key = NULL
            elif not math.isfinite(v):  # its own bin: never hidden among the finite extremes
                key = NAN if math.isnan(v) else NEG_INF if v < 0 else POS_INF
            else:
                key = finite[int(np.searchsorted(edges, float(v), side="right"))] if edges else "all"
            out[key] = out.get(key, 0) + 1
        return out

    return labels, count(train), count(served)


def _category_bins(train: List, served: List) -> Tuple[List[str], Dict[str, int], Dict[str, int]]:
    from collections import Counter

    top = [str(k) for k, _ in Counter(str(v) for v in train if v is not None).most_common(TOP_CATEGORIES)]
    labels = top + [OTHER, NULL]
    known = set(top)

    def count(values):
        out: Dict[str, int] = {}
        for v in values:
            key = NULL if v is None else (str(v) if str(v) in known else OTHER)
            out[key] = out.get(key, 0) + 1
        return out

    return labels, count(train), count(served)


def compare(feature: str, train: Sequence, served: Sequence) -> FeatureDrift:
    """PSI and summaries of one feature's training and served values."""
    train, served = list(train), list(served)
    numeric = _numeric(train) and _numeric(served)
    labels, tc, sc = (_numeric_bins if numeric else _category_bins)(train, served)
    ts, ss = _shares(labels, tc, len(train)), _shares(labels, sc, len(served))
    psi = None
    if train and served:
        psi = float(sum((max(s, FLOOR) - max(t, FLOOR)) * math.log(max(s, FLOOR) / max(t, FLOOR))
                        for t, s in zip(ts, ss)))
    bins = [(label, t, s) for label, t, s in zip(labels, ts, ss) if t or s]
    return FeatureDrift(feature, psi, summary(train), summary(served), bins)


# -- the inputs -------------------------------------------------------------------------------------------------
def drift(store, feature_service: str, training_set: str, record: bool = True, since=None) -> DriftReport:
    """Served values of ``feature_service`` (its shipped serving log; with ``since``, a time, only lookups
    whose request time is at or after it) against the saved ``training_set``, feature by feature (features
    the training set does not hold are left out)."""
    import pyarrow.parquet as pq

    from featurestore import serving_log
    from featurestore.errors import RequestError
    from featurestore.sdk import training_sets
    from featurestore.sdk.refs import output_names, resolve_features

    selection = resolve_features(store.repo, feature_service=feature_service)
    # (view, feature) -> column (view__feature when two views' features share a name)
    served_columns = output_names(selection, serving_log.names_clash(selection))
    folder = training_sets.training_set_dir(store._offline_root, training_set)
    if not (folder / "manifest.json").exists():
        raise RequestError(f"no training set called '{training_set}' (save one with get_historical_features("
                           "..., save_as=NAME))")
    manifest = json.loads((folder / "manifest.json").read_text())
    trained = {(v, f): c for v, f, c in manifest["columns"]}
    pairs = [(vf, col) for vf, col in served_columns.items() if vf in trained]
    if not pairs:
        raise RequestError(f"training set '{training_set}' holds none of the features of service "
                           f"'{feature_service}'")
    result = pq.read_table(folder / "result.parquet", columns=[trained[vf] for vf, _ in pairs])
    store.ship_logs()
    from featurestore.sdk.timeutil import to_epoch_ms

    since_ms = to_epoch_ms(since, "since")
    logs = serving_log.read_logs(store, feature_service)
    if since_ms is not None and len(logs):
        import pandas as pd

        logs = logs[pd.to_datetime(logs["request_time"], utc=True) >= pd.Timestamp(since_ms, unit="ms", tz="UTC")]
    by_column = serving_log.served_columns(store, selection, serving_log.names_clash(selection))
    served_rows = [serving_log.decode_served(f, by_column) for f in logs["features"]] if len(logs) else []
    feats = {}
    for vf, col in pairs:  # rows logged before the service held the feature did not serve it: not nulls
        feats[col] = compare(col, result.column(trained[vf]).to_pylist(), [r[col] for r in served_rows if col in r])
    report = DriftReport(feature_service, training_set, len(served_rows), result.num_rows, feats,
                         int(time.time() * 1000), since_ms)
    if record and served_rows:
        _save(store, report)
    return report


def _path(store, service: str):
    return store.config.state_path / HISTORY_DIR / f"{store.config.project}.{service}.jsonl"


def _save(store, report: DriftReport) -> None:
    path = _path(store, report.feature_service)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(report.to_json()) + "\n")


def last_report(store, service: str) -> Optional[DriftReport]:
    """The last recorded drift report of ``service``, or None."""
    path = _path(store, service)
    if not path.exists():
        return None
    from featurestore.monitoring import lines_backwards

    for line in lines_backwards(path):
        try:
            return DriftReport.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):  # not a report: a crash mid-write, a hand edit
            continue
    return None


__all__ = ["drift", "compare", "summary", "last_report", "DriftReport", "FeatureDrift", "Summary"]
