"""Fingerprints of Python functions, so that a change to a request-time function is a *data* change.

A function's fingerprint is a digest of what it computes, not of where it sits:

* its source, parsed (``ast``) without its name, decorators, docstring, comments, formatting and line
  numbers, so moving, renaming, re-indenting or commenting it is not a change, while editing an
  expression, a default argument or a constant is;
* the values of the module globals and closure variables it reads: plain data (numbers, strings,
  tuples, dicts... of them) by value, functions by their own fingerprint (recursively), modules and
  other objects by their qualified name.

A change *inside* a library the function calls (``math``, ``numpy``...) is not seen: pin library
versions as for any code. Without source (a function built with ``exec``), the byte code, constants and
names stand in for it.

>>> def ratio(row):
...     return {"r": row["a"] / row["b"]}
>>> len(code_digest(ratio))
16
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
import types
from typing import Any, Callable, Dict, Optional, Set

_PLAIN = (int, float, str, bytes, bool, type(None))
_MAX_ITEMS = 1000  # a huge global table is fingerprinted by its size and type only


def is_function(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, types.MethodType))


def function_canonical(fn: Callable) -> dict:
    """The canonical (JSON-able) form of a function for definition fingerprints: what it computes (its name
    is where it sits, not what it computes)."""
    return {"python_function": code_digest(fn)}


def code_digest(fn: Callable, _seen: Optional[Set[int]] = None) -> str:
    """A 16-hex-digit digest of what ``fn`` computes (module docstring)."""
    seen = set() if _seen is None else _seen
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    if id(fn) in seen:
        return "recursive"
    seen.add(id(fn))
    code = getattr(fn, "__code__", None)
    parts: Dict[str, Any] = {"body": _source_shape(fn) or _code_shape(code)}
    if code is not None:
        names = sorted(_global_names(code))
        glob = getattr(fn, "__globals__", {}) or {}
        parts["globals"] = {n: _value_shape(glob[n], seen) for n in names if n in glob}
        cells = getattr(fn, "__closure__", None) or ()
        parts["closure"] = {v: _value_shape(_cell(c), seen) for v, c in zip(code.co_freevars, cells)}
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cell(cell) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a variable assigned after the function was made)
        return None


def _source_shape(fn: Callable) -> Optional[str]:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda cut out of a larger expression
        return source.strip()
    node = tree.body[0] if tree.body else tree
    if getattr(fn, "__name__", "") == "<lambda>":  # getsource gives the whole statement around the lambda
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        if len(lambdas) == 1:
            node = lambdas[0]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.name = ""
        node.decorator_list = []
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(node, include_attributes=False)


def _code_shape(code) -> Any:
    if code is None:
        return None
    consts = [_code_shape(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return {"code": code.co_code.hex(), "consts": consts, "names": list(code.co_names),
            "args": code.co_argcount}


def _global_names(code) -> Set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _value_shape(value: Any, seen: Set[int]) -> Any:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, _PLAIN):
        return [type(value).__name__, value if not isinstance(value, bytes) else value.hex()]
    if isinstance(value, (tuple, list, frozenset, set)):
        if len(value) > _MAX_ITEMS:
            return [type(value).__name__, len(value)]
        items = [_value_shape(v, seen) for v in value]
        return [type(value).__name__, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items]
    if isinstance(value, dict):
        if len(value) > _MAX_ITEMS:
            return ["dict", len(value)]
        return ["dict", sorted(([repr(k), _value_shape(v, seen)] for k, v in value.items()), key=repr)]
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if is_function(value):
        return ["function", code_digest(value, seen)]
    kind = type(value)
    name = getattr(value, "__qualname__", None) or f"{kind.__module__}.{kind.__qualname__}"
    return ["object", getattr(value, "__module__", kind.__module__), name]


__all__ = ["code_digest", "function_canonical", "is_function"]
