"""Find and import the Python files of a definitions folder.

Each file is imported once per load, under one module name whichever name other files import it by,
and a file that fails to import is reported as a problem at its line while the other files load.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Dict, List, Tuple

from featurestore.errors import Problem


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


def assignments(path: Path) -> Dict[str, Tuple[int, int]]:
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


def import_files(folder: Path, repo_root: Path) -> Tuple[List[Tuple[Path, object]], List[Problem]]:
    """Import every definitions file; a file that fails is a problem at its line, and the rest still load."""
    modules: List[Tuple[Path, object]] = []
    problems: List[Problem] = []
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
            except Exception as exc:  # noqa: BLE001 - any error in a user's file is reported, not raised
                problems.append(_import_problem(exc, path, files, repo_root))
                continue
            modules.append((path, module))
    finally:
        sys.meta_path.remove(finder)
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
    return modules, problems


def _import_problem(exc: Exception, path: Path, files: List[Path], repo_root: Path) -> Problem:
    """Where a file's import failed: the error in the file itself, or the import of another file that fails
    (that file reports its own error)."""
    ours = {str(f.resolve()) for f in files}
    me = str(path.resolve())
    trace = [(str(Path(f.filename).resolve()), f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        trace.append((str(Path(exc.filename).resolve()), exc.lineno or 0))
    inside = [(f, line) for f, line in trace if f in ours]
    rel = rel_path(path, repo_root)
    my_line = next((line for f, line in reversed(inside) if f == me), 0)
    culprit = inside[-1][0] if inside else me
    if culprit != me:
        return Problem(rel, my_line, "", f"imports {rel_path(Path(culprit), repo_root)}, which cannot be imported")
    from featurestore.extras import missing_extra

    extra = missing_extra(exc, "definitions written with Feast's objects")
    if extra is not None:
        return Problem(rel, my_line, "", f"cannot import definitions file: {extra}")
    return Problem(rel, my_line, "", f"cannot import definitions file: {type(exc).__name__}: {exc}")


def rel_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
