"""Load a definitions folder: import every Python file, name objects, record file and line.

Objects are named after the module-level variable they are assigned to (an explicit ``name=`` wins),
never from the call stack. Only assignments in a module's own source count, so an entity imported
into another file is not defined twice. Feast objects are collected too and translated.

Every problem of the repo is reported in one pass (one :class:`ValidationError`, a line each,
``file:line object: message``, sorted by file and line): files that fail to import, constructor
mistakes (recorded while the files import, see :mod:`featurestore.model.checks`), name clashes, Feast
objects that cannot be translated, and what validation finds (with ``streaming=True``, also what the
streaming job cannot run).
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from featurestore.errors import LoadError, Problem, ValidationError
from featurestore.model import (Definition, Entity, FeatureSelection, FeatureService, FeatureView, RequestFeatureView,
                                RequestSource, Source)
from featurestore.model.checks import Recorder, made_at, recording
from featurestore.model.service import ADHOC_STREAM
from featurestore.repo_files import assignments, import_files, python_files, rel_path


@dataclass(frozen=True)
class Origin:
    """Where a definition was written."""

    file: str  # relative to the repo root when possible
    line: int
    qualname: str  # module.variable
    end_line: int = 0
    path: str = ""  # absolute

    def line_of(self, *needles: str) -> int:
        """Line of the first quoted ``needle`` inside this definition (e.g. a feature's name)."""
        try:
            lines = Path(self.path or self.file).read_text().splitlines()
        except OSError:
            return self.line
        for needle in needles:
            if not needle:
                continue
            for i in range(self.line, max(self.end_line, self.line) + 1):
                text = lines[i - 1] if 0 < i <= len(lines) else ""
                if f'"{needle}"' in text or f"'{needle}'" in text:
                    return i
        return self.line


@dataclass
class Repo:
    """Every named definition of a project, by kind, with origins."""

    entities: Dict[str, Entity]
    sources: Dict[str, Source]
    views: Dict[str, FeatureView]
    services: Dict[str, FeatureService]
    origins: Dict[Tuple[str, str], Origin]
    # definitions that lost a duplicate-name clash: still validated, so every problem shows at once
    shadowed: List[Tuple[Definition, Origin]] = dataclasses.field(default_factory=list)
    root: Optional[Path] = None  # the repo root file names are relative to
    request_sources: Dict[str, RequestSource] = dataclasses.field(default_factory=dict)
    request_views: Dict[str, RequestFeatureView] = dataclasses.field(default_factory=dict)
    # definitions written with the feast package: the Feast-compatible entry points behave as Feast's do
    # where the difference is only a convenience (naive entity-frame times are UTC, with a warning)
    feast: bool = False

    def all(self) -> Iterator[Definition]:
        yield from self.entities.values()
        yield from self.sources.values()
        yield from self.request_sources.values()
        yield from self.views.values()
        yield from self.request_views.values()
        yield from self.services.values()

    def feature_view(self, name: str):
        """The feature view or request feature view called ``name`` (they share one namespace), or None."""
        return self.views.get(name) or self.request_views.get(name)

    def origin(self, obj: Definition) -> Origin:
        return self.origins.get((obj.KIND, obj.name), Origin("<unknown>", 0, obj.name or "?"))

    def where(self, obj: Definition) -> Tuple[str, int]:
        o = self.origin(obj)
        return o.file, o.line

    def made_at(self, part) -> Optional[Tuple[str, int]]:
        """(file, line) of the constructor call of a part (e.g. a feature) while the repo loaded."""
        where = made_at(part)
        if where is None:
            return None
        return (rel_path(Path(where[0]), self.root) if self.root else where[0]), where[1]


_KINDS = (Entity, Source, RequestSource, FeatureView, RequestFeatureView, FeatureService)


@dataclass
class _Found:
    obj: object
    var: str
    origin: Origin


def collect(folder: Path, repo_root: Path) -> Tuple[List[_Found], List[Problem]]:
    """Every definition object assigned at module level, with its origin."""
    from featurestore.feast_import import is_feast_object

    found: List[_Found] = []
    seen: Dict[int, _Found] = {}
    modules, problems = import_files(folder, repo_root)
    for path, module in modules:
        for var, (line, end_line) in assignments(path).items():
            obj = getattr(module, var, None)
            if not (isinstance(obj, _KINDS) or is_feast_object(obj)):
                continue
            origin = Origin(rel_path(path, repo_root), line, f"{module.__name__}.{var}", end_line, str(path))
            if id(obj) in seen:
                first = seen[id(obj)]
                problems.append(Problem(origin.file, line, var,
                                        f"same object as {first.var} ({first.origin.file}:{first.origin.line}); "
                                        "define it once and import it"))
                continue
            item = _Found(obj, var, origin)
            seen[id(obj)] = item
            found.append(item)
    return found, problems


def _parts(obj) -> Iterator[Tuple[object, Optional[str]]]:
    """Objects held by a definition that are not definitions themselves, with a feature name if any."""
    if isinstance(obj, FeatureView):
        for f in obj.features:
            yield f, f.name or ""
    elif isinstance(obj, Source):
        yield from ((face, None) for face in (obj.batch, obj.stream) if face is not None)
    elif isinstance(obj, FeatureService):
        yield obj.logging, None


class _Namer:
    """Names definitions (explicit name, else variable, else derived from the parent) and registers them."""

    def __init__(self, repo: Repo, top_level: Iterable[object], problems: List[Problem]):
        self.repo = repo
        self.top_level = {id(o) for o in top_level}
        self.problems = problems
        self.named: Dict[int, Definition] = {}
        # id of every object built by the definitions -> (label, origin of its definition, is that definition)
        self.owners: Dict[int, Tuple[str, Origin, bool]] = {}
        self.buckets = {Entity: repo.entities, Source: repo.sources, FeatureView: repo.views,
                        FeatureService: repo.services, RequestSource: repo.request_sources,
                        RequestFeatureView: repo.request_views}

    def register(self, obj: Definition, origin: Origin) -> None:
        bucket = self.buckets[type(obj)]
        key = (obj.KIND, obj.name)
        if isinstance(obj, FeatureService) and obj.name == ADHOC_STREAM:
            self.problems.append(Problem(origin.file, origin.line, obj.name, f"feature service name '{ADHOC_STREAM}' "
                                         "is reserved (the serving log of lookups by feature list): choose another"))
            return
        if obj.name in bucket:
            first = self.repo.origins[key]
            self.problems.append(Problem(origin.file, origin.line, obj.name,
                                         f"duplicate {obj.KIND} name (first defined at {first.file}:{first.line})"))
            self.repo.shadowed.append((obj, origin))
            return
        bucket[obj.name] = obj
        self.repo.origins[key] = origin

    def rename(self, obj: Definition, fallback: str, origin: Origin) -> Definition:
        """Name ``obj`` (explicit name wins) and rewrite its references to named copies.

        A shallow copy, not ``dataclasses.replace``: the constructor already checked the object (a
        second run would report its problems twice)."""
        if id(obj) in self.named:
            return self.named[id(obj)]
        name = obj.name or fallback
        changes: dict = {"name": name}
        if isinstance(obj, FeatureView):
            changes["entities"] = tuple(self.rename(e, f"{name}__entity{i}", origin)
                                        for i, e in enumerate(obj.entities))
            if obj.source is not None:
                changes["source"] = self.rename(obj.source, f"{name}__source", origin)
        elif isinstance(obj, FeatureService):
            changes["features"] = tuple(self._rename_ref(r, name, i, origin) for i, r in enumerate(obj.features))
        elif isinstance(obj, RequestFeatureView):
            changes["sources"] = tuple(self._rename_input(s, name, i, origin) for i, s in enumerate(obj.sources))
        named = copy_module.copy(obj)
        for key, value in changes.items():
            object.__setattr__(named, key, value)
        self.named[id(obj)] = named
        top = id(obj) in self.top_level
        self.owners[id(obj)] = (name, origin, top)
        for part, feature in _parts(obj):
            self.owners.setdefault(id(part), (f"{name}.{feature}" if feature else name, origin, False))
        if not top:  # inline object: registered under its parent's origin
            self.register(named, origin)
        return named

    def _rename_ref(self, ref, service: str, i: int, origin: Origin):
        # A view written inline in a service is named after its place there: stable across loads.
        if isinstance(ref, (FeatureView, RequestFeatureView)):
            return self.rename(ref, f"{service}__view{i}", origin)
        if isinstance(ref, FeatureSelection):
            return FeatureSelection(self.rename(ref.view, f"{service}__view{i}", origin), ref.names)
        return ref

    def _rename_input(self, source, view: str, i: int, origin: Origin):
        """A source of a request feature view, named (inline ones after their place: ``<view>__source<i>``)."""
        if isinstance(source, FeatureSelection):
            return FeatureSelection(self.rename(source.view, f"{view}__source{i}", origin), source.names)
        return self.rename(source, f"{view}__source{i}", origin)

    def recorded_problems(self, recorder: Recorder, repo_root: Path) -> List[Problem]:
        """Constructor problems, each at the definition it belongs to (or the line that built it)."""
        out = []
        for rec in recorder.recorded:
            owner = self.owners.get(id(rec.obj))
            file = rel_path(Path(rec.file), repo_root) if rec.file else "<unknown>"
            for message in rec.messages:
                if owner is None:  # built but never part of a definition (e.g. in a file that failed)
                    out.append(Problem(file, rec.line, "", message))
                elif owner[2]:
                    out.append(Problem(owner[1].file, owner[1].line, owner[0], message))
                else:
                    out.append(Problem(file if rec.file else owner[1].file, rec.line or owner[1].line, owner[0],
                                       message))
        return out


FEAST_HINT = "Feast definitions: what maps to what and what is not supported is in docs/coming-from-feast.md"


_LOADING = threading.RLock()  # definition files are imported as modules (sys.modules): one load at a time


def feast_repo_path(folder: Path, repo_root: Path) -> Path:
    """Feast's ``repo_path`` of the definitions ``folder``: the nearest folder at or above it holding a
    ``feature_store.yaml`` (not above the project root when the folder is inside it); else the project root."""
    inside = folder == repo_root or repo_root in folder.parents
    for candidate in (folder, *folder.parents):
        if (candidate / "feature_store.yaml").is_file():
            return candidate
        if inside and candidate == repo_root:
            break
    return repo_root


def load_repo(folder: Path, repo_root: Optional[Path] = None, streaming: bool = False) -> Repo:
    """Load, name and resolve every definition under ``folder``; raise all problems at once.

    ``streaming=True`` also reports what the streaming job cannot run and declared columns that none of a
    batch face's files holds (``plan`` and ``apply`` do). Safe to
    call from several threads (stores of one process loading at once: the loads take turns)."""
    with _LOADING:
        return _load_repo(folder, repo_root, streaming)


def _load_repo(folder: Path, repo_root: Optional[Path], streaming: bool) -> Repo:
    from featurestore import feast_import
    from featurestore.validation import batch_face_problems, validate

    folder = Path(folder).resolve()
    repo_root = Path(repo_root or folder).resolve()
    if not folder.is_dir():
        raise LoadError(f"definitions folder {folder} does not exist")
    with recording(python_files(folder)) as recorder:
        found, problems = collect(folder, repo_root)

    feast_items = [f for f in found if feast_import.is_feast_object(f.obj)]
    native = [f for f in found if not feast_import.is_feast_object(f.obj)]
    repo = Repo({}, {}, {}, {}, {}, root=repo_root)
    namer = _Namer(repo, [f.obj for f in native], problems)
    # Entities and sources first, so views share the named copies.
    order = {Entity: 0, Source: 1, RequestSource: 1, FeatureView: 2, RequestFeatureView: 3, FeatureService: 4}
    for item in sorted(native, key=lambda f: order[type(f.obj)]):
        namer.register(namer.rename(item.obj, item.var, item.origin), item.origin)
    problems.extend(namer.recorded_problems(recorder, repo_root))

    feast_failed = False
    if feast_items:
        repo.feast = True
        by_var = {f.var: f for f in feast_items}

        def feast_origin(var: str) -> Origin:
            var = var or ""
            item = by_var.get(var) or by_var.get(var.split(".")[0])
            return item.origin if item else feast_items[0].origin

        try:
            translated = feast_import.translate({f.var: f.obj for f in feast_items}, repo_root,
                                                feast_repo_path(folder, repo_root))
        except Exception as exc:  # TranslationError: one Problem per object, at its file and line
            feast_failed = True
            for fp in getattr(exc, "problems", ()) or ():
                o = feast_origin(fp.variable)
                problems.append(Problem(o.file, o.line, fp.name or fp.variable, f"{fp.kind}: {fp.message}"))
            if not getattr(exc, "problems", None):
                problems.append(Problem(feast_items[0].origin.file, 0, "", str(exc)))
            translated = {}
        for var, obj in translated.items():
            namer.register(obj, feast_origin(var))

    problems.extend(validate(repo, streaming=streaming))
    if streaming:
        problems.extend(batch_face_problems(repo, repo_root))
    if problems:
        feast_hint = FEAST_HINT if feast_failed else ""
        raise ValidationError(sorted(set(problems), key=lambda p: (p.file, p.line, p.obj, p.message)), hint=feast_hint)
    return repo
