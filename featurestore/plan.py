"""A plan is data: the diff between definitions and the applied registry, and the stages it implies.

``plan`` builds it, the CLI prints it, ``apply`` records it; the printed plan and the applied one are
the same object, so "what will apply do?" and "do it" never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from featurestore.loader import Repo
from featurestore.registry import Registry, now_iso, object_key, snapshot

ADDED, REMOVED, CHANGED_DATA, CHANGED_META, UNCHANGED = "added", "removed", "changed", "metadata", "unchanged"


@dataclass(frozen=True)
class Change:
    """One definition's difference from the registry."""

    kind: str
    name: str
    action: str  # ADDED, REMOVED, CHANGED_DATA (values change: backfill due), CHANGED_META, UNCHANGED
    fields: Tuple[str, ...] = ()  # which fields differ
    file: str = ""
    line: int = 0

    @property
    def alters_values(self) -> bool:
        return self.action in (ADDED, CHANGED_DATA)


@dataclass(frozen=True)
class Stage:
    """One step the plan implies, e.g. a backfill of a view whose values changed."""

    kind: str  # "backfill", "materialize", "drop", "record"
    target: str
    reason: str


@dataclass
class Plan:
    changes: List[Change]
    stages: List[Stage]
    snapshots: Dict[str, dict] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return any(c.action != UNCHANGED for c in self.changes)

    def by_action(self, action: str) -> List[Change]:
        return [c for c in self.changes if c.action == action]


def _differing(old: dict, new: dict) -> Tuple[str, ...]:
    return tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def build_plan(repo: Repo, registry: Registry, streamed: Optional[Dict[str, str]] = None,
               seedable: Optional[Dict[str, str]] = None) -> Plan:
    """Compare the loaded repo with the registry and list the stages apply and the jobs would run.
    ``streamed``: per view with a stream face, what its offline table holds from the stream (``new``:
    nothing; ``continue``: rows of the current definition; ``rebuild``: rows of another definition).
    ``seedable``: per online view a fresh stream start would seed from its offline table if its topic lost
    its first records, the end of the table's last batch range (``engines.flink.handoff.seedable``)."""
    changes: List[Change] = []
    snapshots: Dict[str, dict] = {}
    for obj in repo.all():
        origin = repo.origin(obj)
        snap = snapshot(obj, origin.file, origin.line)
        key = object_key(obj.KIND, obj.name)
        snapshots[key] = snap
        old = registry.objects.get(key)
        if old is None:
            changes.append(Change(obj.KIND, obj.name, ADDED, (), origin.file, origin.line))
        elif old["data_fingerprint"] != snap["data_fingerprint"]:
            changes.append(Change(obj.KIND, obj.name, CHANGED_DATA, _differing(old["data"], snap["data"]),
                                  origin.file, origin.line))
        elif old["meta_fingerprint"] != snap["meta_fingerprint"]:
            changes.append(Change(obj.KIND, obj.name, CHANGED_META, _differing(old["meta"], snap["meta"]),
                                  origin.file, origin.line))
        else:
            changes.append(Change(obj.KIND, obj.name, UNCHANGED, (), origin.file, origin.line))
    for key, old in registry.objects.items():
        if key not in snapshots:
            changes.append(Change(old["kind"], old["name"], REMOVED, (), old.get("file", ""), old.get("line", 0)))
    return Plan(changes=changes, stages=_stages(changes, repo, streamed or {}, seedable or {}), snapshots=snapshots)


STREAM_NEW = "the stream adds its events after the backfilled ranges (a backfill owns the events up to its end)"
STREAM_REBUILD = ("the next stream run rebuilds the streamed rows under the new definition: it reads the topic "
                  "from its first record, keeps the old rows until it has read past them, then replaces every "
                  "row outside the backfilled ranges in one commit")
STREAM_CONTINUE = ("unchanged: the stream goes on where it stopped (a new job reads the topic from its first "
                   "record again; events already in the table are not added twice)")


STREAM_HANDOFF = ("hand-off: the next stream start seeds the online values from this offline table (up to {end}) if "
                  "topic '{topic}' no longer holds its records before then (docs/streaming.md)")


def _stages(changes: List[Change], repo: Repo, streamed: Dict[str, str], seedable: Dict[str, str]) -> List[Stage]:
    stages: List[Stage] = []
    views = [c for c in changes if c.kind == "feature view"]
    for c in views:
        if c.alters_values:
            why = "new view" if c.action == ADDED else f"changed: {', '.join(c.fields)}"
            stages.append(Stage("backfill", c.name, f"{why}; replaces its events up to the batch face's last one"))
            if repo.views[c.name].online:
                stages.append(Stage("materialize", c.name, "online values follow the backfill"))
        elif c.action == REMOVED:
            stages.append(Stage("drop", c.name, "view removed from definitions (data kept until expired)"))
    # The streaming job is one job for every streamed view: when one changes, say what happens to each.
    if any(c.alters_values and c.name in streamed for c in views) or "rebuild" in streamed.values():
        texts = {"new": STREAM_NEW, "rebuild": STREAM_REBUILD, "continue": STREAM_CONTINUE}
        stages += [Stage("stream", c.name, texts[streamed[c.name]]) for c in views if c.name in streamed]
    done = {s.target for s in stages if s.kind == "stream"}
    for c in views:
        if c.name in seedable and c.name not in done and c.action != REMOVED:
            topic = repo.views[c.name].source.stream.topic
            stages.append(Stage("stream", c.name, STREAM_HANDOFF.format(end=seedable[c.name], topic=topic)))
    if any(c.action != UNCHANGED for c in changes):
        stages.append(Stage("record", "registry", "apply records the new definitions"))
    return stages


def apply_plan(plan: Plan, registry: Registry) -> Registry:
    """The registry after ``plan``: the new snapshots plus one history entry."""
    summary = []
    for c in plan.changes:
        if c.action == UNCHANGED:
            continue
        entry = {"kind": c.kind, "name": c.name, "action": c.action, "fields": list(c.fields)}
        snap = plan.snapshots.get(object_key(c.kind, c.name))
        if snap is not None:  # the fingerprints from then on (the catalog shows their history)
            entry.update(data_fingerprint=snap["data_fingerprint"], meta_fingerprint=snap["meta_fingerprint"])
        summary.append(entry)
    history = registry.history + ([{"applied_at": now_iso(), "changes": summary}] if summary else [])
    return Registry(project=registry.project, objects=dict(plan.snapshots), history=history)
