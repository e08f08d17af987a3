"""The applied registry: what ``apply`` recorded, as one JSON file written atomically.

Each object is stored with its kind, name, fingerprints, canonical spec and origin, so ``plan`` can
diff field by field without importing the old definitions.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from featurestore.errors import RegistryError
from featurestore.model import Definition

FORMAT_VERSION = 1


def object_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def snapshot(obj: Definition, file: str = "", line: int = 0) -> dict:
    """The registry record of one definition."""
    return {
        "kind": obj.KIND,
        "name": obj.name,
        "data_fingerprint": obj.data_fingerprint,
        "meta_fingerprint": obj.meta_fingerprint,
        "data": obj.data_dict(),
        "meta": obj.meta_dict(),
        "file": file,
        "line": line,
    }


@dataclass
class Registry:
    project: str
    objects: Dict[str, dict] = field(default_factory=dict)
    history: List[dict] = field(default_factory=list)

    @property
    def applied_at(self) -> Optional[str]:
        return self.history[-1]["applied_at"] if self.history else None

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "project": self.project, "objects": self.objects, "history": self.history}


def read_registry(path: Path, project: str) -> Registry:
    """The registry at ``path``; an empty one if nothing was applied yet."""
    if not path.exists():
        return Registry(project=project)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 at all
        raise RegistryError(f"registry {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"registry {path} is unreadable: a JSON {type(data).__name__}, not an object")
    if data.get("format") != FORMAT_VERSION:
        raise RegistryError(f"registry {path} has format {data.get('format')!r}; this version reads {FORMAT_VERSION}")
    return Registry(project=data.get("project", project), objects=data.get("objects", {}),
                    history=data.get("history", []))


def write_registry(path: Path, registry: Registry) -> None:
    """Write atomically: a reader sees the old or the new registry, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".registry-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(registry.to_json(), fh, indent=1, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
