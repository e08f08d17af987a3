"""Load a definitions folder: import every Python file, name objects, record file and line.

Objects are named after the module-level variable they are assigned to (an explicit ``name=`` wins),
never from the call stack. Only assignments in a module's own source count, so an entity imported
into another file is not defined twice. Feast objects are collected too and translated.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.abc
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from featurestore.errors import LoadError, Problem, ValidationError
from featurestore.model import Definition, Entity, FeatureSelection, FeatureService, FeatureView, Source


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

    def all(self) -> Iterator[Definition]:
        yield from self.entities.values()
        yield from self.sources.values()
        yield from self.views.values()
        yield from self.services.values()

    def origin(self, obj: Definition) -> Origin:
        return self.origins.get((obj.KIND, obj.name), Origin("<unknown>", 0, obj.name or "?"))

    def where(self, obj: Definition) -> Tuple[str, int]:
        o = self.origin(obj)
        return o.file, o.line


_KINDS = (Entity, Source, FeatureView, FeatureService)


def python_files(folder: Path) -> List[Path]:
    """Definition files: every ``*.py`` below ``folder`` except private, test and hidden ones."""
    skip_dirs = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".featurestore", "tests", "data"}
    out = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if any(part in skip_dirs or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if path.name.startswith(("_", "test_", ".")) or path.name in ("conftest.py", "setup.py"):
            continue
        out.append(path)
    return out


def _assignments(path: Path) -> Dict[str, Tuple[int, int]]:
    """Module-level ``name = ...`` targets in a file -> (first line, last line)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: Dict[str, Tuple[int, int]] = {}
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                out.setdefault(target.id, (node.lineno, node.end_lineno or node.lineno))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
            # Feast's @stream_feature_view / @batch_feature_view turn a function into a definition.
            out.setdefault(node.name, (node.decorator_list[0].lineno, node.end_lineno or node.lineno))
    return out


def _module_name(folder: Path, path: Path) -> Tuple[str, Path]:
    """Import name and the sys.path entry it needs: package-style if the folder has __init__.py."""
    rel = path.relative_to(folder).with_suffix("")
    if (folder / "__init__.py").exists():
        return ".".join((folder.name, *rel.parts)), folder.parent
    return ".".join(rel.parts), folder


def _other_name(folder: Path, path: Path) -> str:
    """The second name a file can be imported by: ``views`` in a package, ``definitions.views`` in a flat
    folder (both folder and its parent are on sys.path, so ``from definitions.views import x`` works)."""
    rel = path.relative_to(folder).with_suffix("")
    if (folder / "__init__.py").exists():
        return ".".join(rel.parts)
    return ".".join((folder.name, *rel.parts))


class _AliasLoader(importlib.abc.Loader):
    """Loads a module as the already-imported module of the same file, under its other name."""

    def __init__(self, canonical: str):
        self.canonical = canonical
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.canonical)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec  # the import system stamped the alias spec on it; keep the real one


class _AliasFinder(importlib.abc.MetaPathFinder):
    """One module per definitions file, whichever name a file imports it by.

    Without it, ``from definitions.views import v`` in a flat folder (or ``from views import v`` in a
    package) imports the file a second time: its objects are copies the loader never named, and they
    turned up as phantom ``view_<id>`` definitions whose names changed on every load."""

    def __init__(self, aliases: Dict[str, str]):
        self.aliases = aliases

    def find_spec(self, name, path=None, target=None):
        canonical = self.aliases.get(name)
        if canonical is None:
            return None
        return importlib.util.spec_from_loader(name, _AliasLoader(canonical))


def import_files(folder: Path, repo_root: Path) -> List[Tuple[Path, object]]:
    """Import each definitions file; the first that fails aborts the load, naming its path."""
    modules = []
    added = []
    for entry in {folder.parent, folder}:
        if str(entry) not in sys.path:
            sys.path.insert(0, str(entry))
            added.append(str(entry))
    files = python_files(folder)
    aliases = {_other_name(folder, path): _module_name(folder, path)[0] for path in files}
    # Forget earlier imports of these files so a reload sees edits; within this load each file is
    # imported once, so objects imported across files keep their identity.
    for path in files:
        sys.modules.pop(_module_name(folder, path)[0], None)
    for alias in aliases:
        sys.modules.pop(alias, None)
    if (folder / "__init__.py").exists():
        sys.modules.pop(folder.name, None)
    finder = _AliasFinder(aliases)
    sys.meta_path.insert(0, finder)
    try:
        for path in files:
            name, _ = _module_name(folder, path)
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                rel = _rel(path, repo_root)
                tb = traceback.extract_tb(exc.__traceback__)
                frame = next((f for f in reversed(tb) if Path(f.filename).resolve() == path.resolve()), None)
                where = f"{rel}:{frame.lineno}" if frame else rel
                raise LoadError(f"{where}: cannot import definitions file: {type(exc).__name__}: {exc}") from exc
            modules.append((path, module))
    finally:
        sys.meta_path.remove(finder)
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
    return modules


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


@dataclass
class _Found:
    obj: object
    var: str
    origin: Origin


def collect(folder: Path, repo_root: Path) -> Tuple[List[_Found], List[Problem]]:
    """Every definition object assigned at module level, with its origin."""
    from featurestore.feast_import import is_feast_object

    found: List[_Found] = []
    problems: List[Problem] = []
    seen: Dict[int, _Found] = {}
    for path, module in import_files(folder, repo_root):
        lines = _assignments(path)
        for var, (line, end_line) in lines.items():
            obj = getattr(module, var, None)
            if not (isinstance(obj, _KINDS) or is_feast_object(obj)):
                continue
            origin = Origin(_rel(path, repo_root), line, f"{module.__name__}.{var}", end_line, str(path))
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


def load_repo(folder: Path, repo_root: Optional[Path] = None) -> Repo:
    """Load, name and resolve every definition under ``folder``; raise all problems at once."""
    from featurestore import feast_import
    from featurestore.validation import validate

    folder = Path(folder).resolve()
    repo_root = Path(repo_root or folder).resolve()
    if not folder.is_dir():
        raise LoadError(f"definitions folder {folder} does not exist")
    found, problems = collect(folder, repo_root)

    feast_items = [f for f in found if feast_import.is_feast_object(f.obj)]
    native = [f for f in found if not feast_import.is_feast_object(f.obj)]
    named: Dict[int, Definition] = {}
    origins: Dict[Tuple[str, str], Origin] = {}
    repo = Repo({}, {}, {}, {}, origins)
    buckets = {Entity: repo.entities, Source: repo.sources, FeatureView: repo.views, FeatureService: repo.services}

    def register(obj: Definition, origin: Origin) -> None:
        bucket = buckets[type(obj)]
        key = (obj.KIND, obj.name)
        if obj.name in bucket:
            first = origins[key]
            problems.append(Problem(origin.file, origin.line, obj.name,
                                    f"duplicate {obj.KIND} name (first defined at {first.file}:{first.line})"))
            repo.shadowed.append((obj, origin))
            return
        bucket[obj.name] = obj
        origins[key] = origin

    def rename(obj: Definition, fallback: str, origin: Origin) -> Definition:
        """Name ``obj`` (explicit name wins) and rewrite its references to named copies."""
        if id(obj) in named:
            return named[id(obj)]
        name = obj.name or fallback
        changes: dict = {"name": name}
        if isinstance(obj, FeatureView):
            changes["entities"] = tuple(rename(e, f"{name}__entity{i}", origin) for i, e in enumerate(obj.entities))
            changes["source"] = rename(obj.source, f"{name}__source", origin)
        elif isinstance(obj, FeatureService):
            changes["features"] = tuple(_rename_ref(r, name, i, origin) for i, r in enumerate(obj.features))
        copy = dataclasses.replace(obj, **changes)
        named[id(obj)] = copy
        if not any(f.obj is obj for f in native):  # inline object: registered under its parent's origin
            register(copy, origin)
        return copy

    def _rename_ref(ref, service: str, i: int, origin: Origin):
        # A view written inline in a service is named after its place there: stable across loads.
        if isinstance(ref, FeatureView):
            return rename(ref, f"{service}__view{i}", origin)
        if isinstance(ref, FeatureSelection):
            return FeatureSelection(rename(ref.view, f"{service}__view{i}", origin), ref.names)
        return ref

    # Entities and sources first, so views share the named copies.
    order = {Entity: 0, Source: 1, FeatureView: 2, FeatureService: 3}
    for item in sorted(native, key=lambda f: order[type(f.obj)]):
        copy = rename(item.obj, item.var, item.origin)
        register(copy, item.origin)

    if feast_items:
        by_var = {f.var: f for f in feast_items}

        def feast_origin(var: str) -> Origin:
            var = var or ""
            item = by_var.get(var) or by_var.get(var.split(".")[0])
            return item.origin if item else feast_items[0].origin

        try:
            translated = feast_import.translate({f.var: f.obj for f in feast_items}, repo_root)
        except Exception as exc:  # TranslationError: one Problem per object, at its file and line
            for fp in getattr(exc, "problems", ()) or ():
                o = feast_origin(fp.variable)
                problems.append(Problem(o.file, o.line, fp.name or fp.variable, f"{fp.kind}: {fp.message}"))
            if not getattr(exc, "problems", None):
                problems.append(Problem(feast_items[0].origin.file, 0, "", str(exc)))
            translated = {}
        for var, obj in translated.items():
            register(obj, feast_origin(var))

    problems.extend(validate(repo))
    if problems:
        raise ValidationError(sorted(problems, key=lambda p: (p.file, p.line, p.obj, p.message)))
    return repo
