"""Who may do what (SPEC §8): roles, their grants, and who holds them, read from the project's policy file.

``access.yaml`` (``access_control.policy``) at the repo root::

    roles:
      admin:
        - actions: all                          # every action, on everything of the project
      risk-analyst:
        - actions: [read_metadata, read_online, read_offline]
          tags: {team: risk}                    # objects tagged team=risk (a feature: its view's tags)
      fraud-online:
        - actions: [read_metadata, read_online]
          services: [fraud_model_v1]            # this service and nothing else
    principals:                                 # a token's principal (featurestore auth create NAME)
      alice: [admin]
      growth-svc: [fraud-online]
    groups:                                     # values of a JWT's roles claim (OIDC)
      risk-analysts: [risk-analyst]

Actions: ``read_metadata`` (see it in the catalog), ``read_online`` (online lookups), ``read_offline``
(offline data: training sets, value statistics), ``push`` (write events), ``apply`` (record definitions),
``materialize`` (load the online store). A grant names objects by ``views``, ``services``, ``sources``,
``entities`` (names or globs like ``user_*``; any of the lists matches) and/or ``tags`` (the object
carries every one; with name lists, both must hold). A grant without any of them covers the whole
project, including project-wide actions (``apply``, ``/metrics``). Everything not granted is denied.

>>> policy = load_policy(repo, Path("access.yaml"))         # doctest: +SKIP
>>> policy.allows(principal, "read_online", service_obj(repo, "fraud_model_v1"))  # doctest: +SKIP
True
"""

from __future__ import annotations

import difflib
import fnmatch
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from featurestore.errors import AccessError, RequestError

ACTIONS = ("read_metadata", "read_online", "read_offline", "push", "apply", "materialize")
SELECTORS = {"views": "view", "services": "service", "sources": "source", "entities": "entity"}
GRANT_KEYS = ("actions", "tags", *SELECTORS)


@dataclass(frozen=True)
class Obj:
    """Something a right is about: a project, entity, source, view or service, with its tags."""

    kind: str  # "project", "entity", "source", "view", "service"
    name: str
    tags: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Grant:
    actions: FrozenSet[str]
    names: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # object kind -> name globs
    tags: Tuple[Tuple[str, str], ...] = ()

    @property
    def project_wide(self) -> bool:
        return not self.names and not self.tags

    def covers(self, action: str, obj: Obj) -> bool:
        if action not in self.actions:
            return False
        if self.project_wide:
            return True
        if obj.kind == "project":
            return False
        if self.names:
            patterns = self.names.get(obj.kind, ())
            if not any(fnmatch.fnmatchcase(obj.name, p) for p in patterns):
                return False
        have = dict(obj.tags)
        return all(have.get(k) == v for k, v in self.tags)


@dataclass(frozen=True)
class Policy:
    roles: Mapping[str, Tuple[Grant, ...]]
    principals: Mapping[str, Tuple[str, ...]]
    groups: Mapping[str, Tuple[str, ...]]

    def roles_of(self, principal) -> List[str]:
        out = list(self.principals.get(principal.name, ()))
        for g in getattr(principal, "groups", ()):
            out.extend(r for r in self.groups.get(g, ()) if r not in out)
        return out

    def allows(self, principal, action: str, obj: Obj) -> bool:
        """Whether ``principal`` may do ``action`` on ``obj``; ``principal`` None = access control off."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if principal is None:
            return True
        return any(g.covers(action, obj) for r in self.roles_of(principal) for g in self.roles.get(r, ()))


OPEN = Policy(roles={}, principals={}, groups={})  # with access control off nobody is asked


# -- objects of a repo ---------------------------------------------------------------------------------------
def project_obj(repo, project: str) -> Obj:
    return Obj("project", project)


def view_obj(repo, name: str) -> Obj:
    """A feature view or a request feature view (both are granted as ``views:``)."""
    v = repo.views[name] if name in repo.views else repo.request_views[name]
    return Obj("view", name, tuple(v.tags))


def service_obj(repo, name: str) -> Obj:
    return Obj("service", name, tuple(repo.services[name].tags))


def source_obj(repo, name: str) -> Obj:
    s = repo.sources[name] if name in repo.sources else repo.request_sources[name]  # request sources too
    return Obj("source", name, tuple(s.tags))


def entity_obj(repo, name: str) -> Obj:
    return Obj("entity", name, tuple(repo.entities[name].tags))


def obj_of_record(repo, rec: dict) -> Obj:
    """The object a catalog record is about (a feature's is its view)."""
    kind = {"entity": "entity", "source": "source", "feature view": "view", "feature service": "service",
            "feature": "view", "request source": "source", "request feature view": "view"}[rec["kind"]]
    name = rec.get("view", rec["name"]) if rec["kind"] == "feature" else rec["name"]
    return {"entity": entity_obj, "source": source_obj, "view": view_obj, "service": service_obj}[kind](repo, name)


# -- reading the policy file ------------------------------------------------------------------------------------
def _names(value, where: str, problems: List[str]) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: expected a list of names, got {value!r}")
        return ()
    return tuple(value)


def _grant(raw, where: str, repo, problems: List[str]) -> Optional[Grant]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a grant is a mapping with 'actions' (and optionally {', '.join(GRANT_KEYS[1:])})")
        return None
    for k in raw:
        if k not in GRANT_KEYS:
            near = difflib.get_close_matches(str(k), GRANT_KEYS, n=1)
            problems.append(f"{where}: unknown key '{k}'" + (f" (did you mean '{near[0]}'?)" if near else
                                                             f" (valid: {', '.join(GRANT_KEYS)})"))
    actions = raw.get("actions")
    if actions == "all" or actions == ["all"]:
        actions = list(ACTIONS)
    if isinstance(actions, str):
        actions = [actions]
    if not isinstance(actions, list) or not actions:
        problems.append(f"{where}: 'actions' must list some of {', '.join(ACTIONS)} (or be 'all')")
        actions = []
    for a in actions:
        if a not in ACTIONS:
            near = difflib.get_close_matches(str(a), ACTIONS, n=1)
            problems.append(f"{where}: unknown action {a!r}" + (f" (did you mean '{near[0]}'?)" if near else
                                                                f" (valid: {', '.join(ACTIONS)})"))
    names: Dict[str, Tuple[str, ...]] = {}
    for key, kind in SELECTORS.items():
        if key in raw:
            names[kind] = _names(raw[key], f"{where}.{key}", problems)
            if repo is not None:
                pool = {"view": [*repo.views, *repo.request_views], "service": repo.services,
                        "source": [*repo.sources, *repo.request_sources], "entity": repo.entities}[kind]
                for n in names[kind]:
                    if not any(fnmatch.fnmatchcase(x, n) for x in pool):
                        near = difflib.get_close_matches(n, list(pool), n=1)
                        hint = f" (did you mean '{near[0]}'?)" if near else ""
                        problems.append(f"{where}.{key}: no {kind} matches '{n}'{hint}")
    tags = raw.get("tags", {})
    if not isinstance(tags, dict):
        problems.append(f"{where}.tags: expected a mapping of tag to value, got {tags!r}")
        tags = {}
    return Grant(frozenset(a for a in actions if a in ACTIONS), names,
                 tuple(sorted((str(k), str(v)) for k, v in tags.items())))


def parse_policy(data, repo=None, where: str = "access policy") -> Policy:
    """A Policy from the parsed YAML; every problem in one AccessError. With ``repo``, names in grants
    must match some object of the repo (a typo would silently grant nothing)."""
    problems: List[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AccessError(f"{where}: expected a mapping with roles, principals and groups")
    for k in data:
        if k not in ("roles", "principals", "groups"):
            near = difflib.get_close_matches(str(k), ["roles", "principals", "groups"], n=1)
            problems.append(f"unknown key '{k}'" + (f" (did you mean '{near[0]}'?)" if near else
                                                     " (valid: roles, principals, groups)"))
    roles: Dict[str, Tuple[Grant, ...]] = {}
    raw_roles = data.get("roles") or {}
    if not isinstance(raw_roles, dict):
        problems.append("roles: expected a mapping of role name to a list of grants")
        raw_roles = {}
    for role, grants in raw_roles.items():
        if isinstance(grants, dict):
            grants = [grants]
        if not isinstance(grants, list):
            problems.append(f"roles.{role}: expected a list of grants")
            continue
        parsed = [_grant(g, f"roles.{role}[{i}]", repo, problems) for i, g in enumerate(grants)]
        roles[str(role)] = tuple(g for g in parsed if g is not None)
    holders: Dict[str, Dict[str, Tuple[str, ...]]] = {}
    for section in ("principals", "groups"):
        raw = data.get(section) or {}
        if not isinstance(raw, dict):
            problems.append(f"{section}: expected a mapping of name to a list of roles")
            raw = {}
        out = {}
        for who, names in raw.items():
            names = _names(names, f"{section}.{who}", problems)
            for r in names:
                if r not in roles:
                    near = difflib.get_close_matches(r, list(roles), n=1)
                    problems.append(f"{section}.{who}: no role '{r}'" + (f" (did you mean '{near[0]}'?)" if near
                                                                         else ""))
            out[str(who)] = names
        holders[section] = out
    if problems:
        raise AccessError(f"{where}: " + "; ".join(problems))
    return Policy(roles, holders["principals"], holders["groups"])


def load_policy(path: Path, repo=None) -> Policy:
    import yaml

    if not path.exists():
        raise AccessError(f"access control is on but the policy file {path} does not exist (see "
                          "docs/access-control.md; access_control.policy names it)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AccessError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_policy(data, repo, str(path))


class PolicyFile:
    """The policy of a running server: re-read when the file changes, so an edit applies without a
    restart. A broken edit keeps the last good policy (and ``problem`` says why) rather than opening or
    closing everything."""

    def __init__(self, path: Path, repo):
        self.path, self.repo = path, repo
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self.policy = load_policy(path, repo)
        self.problem: Optional[str] = None

    def _stat(self):
        try:
            st = self.path.stat()
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return None

    def current(self) -> Policy:
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self.policy, self.problem = load_policy(self.path, self.repo), None
                    except AccessError as exc:
                        self.problem = str(exc)
                    self._stamp = stamp
        return self.policy


# -- what a principal may see -------------------------------------------------------------------------------------
def visible(repo, policy: Policy, principal, rec: dict) -> bool:
    return policy.allows(principal, "read_metadata", obj_of_record(repo, rec))


def filter_records(repo, policy: Policy, principal, records: Iterable[dict]) -> List[dict]:
    """The records ``principal`` may read, with their references to objects it may not read removed (a
    view's services, source and entities, a source's views, a service's features and views: a service readable
    does not make the views it reads readable; a hidden source's field is None)."""
    if principal is None:
        return list(records)
    can = {}

    def ok(kind: str, name: str) -> bool:
        key = (kind, name)
        if key not in can:
            pool = {"view": ({**repo.views, **repo.request_views}, view_obj),
                    "service": (repo.services, service_obj),
                    "source": ({**repo.sources, **repo.request_sources}, source_obj),
                    "entity": (repo.entities, entity_obj)}[kind]
            can[key] = name in pool[0] and policy.allows(principal, "read_metadata", pool[1](repo, name))
        return can[key]

    out = []
    for rec in records:
        if not visible(repo, policy, principal, rec):
            continue
        rec = dict(rec)
        if "services" in rec:
            rec["services"] = [s for s in rec["services"] if ok("service", s)]
        if "views" in rec:
            rec["views"] = [v for v in rec["views"] if ok("view", v)]
        if rec["kind"] == "feature service" and "features" in rec:
            rec["features"] = [f for f in rec["features"] if ok("view", f.split(":", 1)[0])]
        if "entities" in rec and rec["kind"] != "entity":
            rec["entities"] = [e for e in rec["entities"] if ok("entity", e)]
        if "sources" in rec:  # a request view's inputs: request sources and views
            rec["sources"] = [n for n in rec["sources"] if ok("source", n) or ok("view", n)]
        if isinstance(rec.get("source"), str):  # a view's or feature's source (a request view's: its inputs)
            rec["source"] = ", ".join(n for n in rec["source"].split(", ") if ok("source", n) or ok("view", n)) or None
        out.append(rec)
    return out


def actions_on(policy: Policy, principal, obj: Obj) -> List[str]:
    return [a for a in ACTIONS if policy.allows(principal, a, obj)]


def views_read(repo, selection: Iterable[str]) -> List[str]:
    """The views a read of ``selection`` (view names) reads, sorted: a request feature view's values are computed
    from the views it reads, so those are read too (a derived value must not leak an input the caller may not
    read)."""
    needed = set(selection)
    for v in selection:
        if v in repo.request_views:
            needed.update(inp.name for inp, _ in repo.request_views[v].view_inputs)
    return sorted(needed)


def denied_views(repo, policy: Policy, principal, action: str, selection: Iterable[str]) -> List[str]:
    """The views of a read of ``selection`` (see :func:`views_read`) ``principal`` may not ``action``."""
    if principal is None:
        return []
    return [v for v in views_read(repo, selection) if not policy.allows(principal, action, view_obj(repo, v))]


class Denied(AccessError):
    """``principal`` may not do ``action`` on ``what`` (the server's 403, Flight's *unauthorized*)."""

    def __init__(self, principal, action: str, what: str):
        super().__init__(f"principal '{principal.name}' may not {action} {what}")


def _sees(repo, policy: Policy, principal, action: str, obj: Obj) -> bool:
    """Whether ``principal`` may know ``obj`` exists: it may read its metadata, or do ``action`` on it."""
    return policy.allows(principal, "read_metadata", obj) or policy.allows(principal, action, obj)


def resolve_for(repo, policy: Policy, principal, action: str, features=None, feature_service=None):
    """The references of a read (``resolve_features``) as ``principal`` may learn about them: an error never
    names an object it may not see (no "did you mean" of a hidden view, service or feature, no feature list of
    a hidden view), and a view or service that exists but that it may neither read the metadata of nor
    ``action`` answers exactly as a name that does not exist (:func:`unknown`: whatever the feature named,
    ``v:typo`` and ``v:real`` alike), so no answer tells which hidden names exist; the suggestions are names
    it may see. Access control off (``principal`` None): ``resolve_features`` itself."""
    from featurestore.sdk.refs import resolve_features

    if principal is None:
        return resolve_features(repo, features, feature_service)
    if feature_service is not None and isinstance(feature_service, str):
        if feature_service not in repo.services or (
                not _sees(repo, policy, principal, action, service_obj(repo, feature_service))
                and denied_views(repo, policy, principal, action, resolve_features(repo, None, feature_service))):
            # unknown, or neither the service nor every view it reads (which also allows the read) is its to know
            raise unknown(repo, policy, principal, action, "service", feature_service)
    elif features is not None:
        refs = [features] if isinstance(features, str) else features
        for ref in refs if isinstance(refs, (list, tuple)) else ():
            if not isinstance(ref, str) or ":" not in ref:
                continue  # resolve_features names the malformed reference itself
            view = ref.split(":", 1)[0]
            if (view not in repo.views and view not in repo.request_views) or \
                    not _sees(repo, policy, principal, action, view_obj(repo, view)):
                raise unknown(repo, policy, principal, action, "view", view, f" in '{ref}'")
    return resolve_features(repo, features, feature_service)


KIND_WORDS = {"view": "feature view", "service": "feature service", "source": "source"}


def unknown(repo, policy: Policy, principal, action: str, kind: str, name: str, where: str = "") -> RequestError:
    """The answer to a name of ``kind`` that does not exist, or that ``principal`` may not know exists (the
    same words for both: no existence probe): ``unknown feature view 'x'`` with a suggestion among the names
    it may see."""
    from featurestore.sdk.refs import _suggest

    pool = {"view": [*repo.views, *repo.request_views], "service": list(repo.services),
            "source": [*repo.sources, *repo.request_sources]}[kind]
    seen = visible_names(repo, policy, principal, action, kind, pool)
    return RequestError(f"unknown {KIND_WORDS[kind]} '{name}'{where}{_suggest(name, seen)}")


def visible_names(repo, policy: Policy, principal, action: str, kind: str, names: Iterable[str]) -> List[str]:
    """Of ``names`` (objects of ``kind``: view, service, source, entity), those ``principal`` may know exist
    (metadata or ``action``): what an error may suggest to it."""
    make = {"view": view_obj, "service": service_obj, "source": source_obj, "entity": entity_obj}[kind]
    return [n for n in names if principal is None or _sees(repo, policy, principal, action, make(repo, n))]


def refused_views_text(repo, policy: Policy, principal, selection: Iterable[str], denied: Sequence[str]) -> str:
    """``feature view(s) 'a', 'b'`` for a refusal of ``denied`` (:func:`denied_views` of ``selection``), naming
    only views the principal named or may see: a request view whose hidden input is refused is named
    instead of that input."""
    selection = list(selection)
    shown = [v for v in denied if v in selection or policy.allows(principal, "read_metadata", view_obj(repo, v))]
    unseen = set(denied) - set(shown)
    suffix = ""
    if unseen:
        shown += [v for v in selection if v not in shown and unseen & set(views_read(repo, [v]))]
        suffix = " (it reads feature views the principal may not see)"
    return "feature view(s) " + ", ".join(f"'{v}'" for v in shown) + suffix


def lookup_allowed(repo, policy: Policy, principal, selection: Mapping[str, Sequence[str]],
                   feature_service: Optional[str]) -> bool:
    """An online lookup: through a service, ``read_online`` on the service or on every view it reads; by
    feature references, ``read_online`` on every view named and every view a request feature view reads."""
    if principal is None:
        return True
    if feature_service is not None and policy.allows(principal, "read_online", service_obj(repo, feature_service)):
        return True
    return not denied_views(repo, policy, principal, "read_online", selection)


__all__ = ["ACTIONS", "Obj", "Grant", "Policy", "OPEN", "PolicyFile", "load_policy", "parse_policy", "project_obj",
           "view_obj", "service_obj", "source_obj", "entity_obj", "obj_of_record", "filter_records", "visible",
           "actions_on", "lookup_allowed", "views_read", "denied_views", "Denied", "resolve_for", "unknown",
           "visible_names",
           "refused_views_text"]
