"""Fetch the pinned Java artifacts (:data:`featurestore.devinfra.pins.PINS`) into the user cache.

Each file is checked against its pinned SHA-256 and written atomically (a temporary name, then a
rename), so a fetch that fails or races another one never leaves a partial jar; a file already in the
cache with its pinned size is kept. A file is copied from the local Maven repository (``~/.m2``) when it
is there and matches, else downloaded from Maven Central (``$FEATURESTORE_MAVEN_URL`` for a mirror).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional

from featurestore.devinfra import cache_dir
from featurestore.devinfra.pins import PINS
from featurestore.errors import InfraError

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
TIMEOUT_S = 60


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    classifier: str
    sha256: str
    size: int

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}{'-' + self.classifier if self.classifier else ''}.jar"

    @property
    def repo_path(self) -> str:
        """The path in a Maven repository (``org/apache/flink/flink-sql-parquet/2.3.0/flink-sql-parquet-2.3.0.jar``)."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"


def artifacts(group: str) -> List[Artifact]:
    if group not in PINS:
        raise InfraError(f"no pinned jars named {group!r} (known: {', '.join(PINS)})")
    return [Artifact(*row) for row in PINS[group]]


def jars_dir(group: str, env: Optional[Mapping[str, str]] = None) -> Path:
    """``<cache>/jars/<group>-<digest of its pins>``: other pins (another version of this package) get
    another folder, so a job never loads two versions of a jar."""
    digest = hashlib.sha256(repr(PINS[group]).encode()).hexdigest()[:10] if group in PINS else "unknown"
    return cache_dir(env) / "jars" / f"{group}-{digest}"


def missing(group: str, env: Optional[Mapping[str, str]] = None) -> List[Artifact]:
    """The pinned artifacts of ``group`` not (completely) in the cache."""
    d = jars_dir(group, env)
    out = []
    for a in artifacts(group):
        try:
            if (d / a.file_name).stat().st_size == a.size:
                continue
        except FileNotFoundError:
            pass
        out.append(a)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "featurestore-infra"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)


def fetch(group: str, env: Optional[Mapping[str, str]] = None,
          say: Callable[[str], None] = lambda _text: None) -> Path:
    """Make every pinned jar of ``group`` present in its cache folder; the folder."""
    env = os.environ if env is None else env
    d = jars_dir(group, env)
    d.mkdir(parents=True, exist_ok=True)
    todo = missing(group, env)
    if todo:
        say(f"fetching {len(todo)} {group} jar(s) into {d}")
    base = (env.get("FEATURESTORE_MAVEN_URL") or MAVEN_CENTRAL).rstrip("/")
    local_repo = Path(env.get("FEATURESTORE_M2_REPO") or Path.home() / ".m2" / "repository")
    for a in todo:
        fd, tmp_name = tempfile.mkstemp(dir=d, prefix=f".{a.file_name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            local = local_repo / a.repo_path
            got = None
            if local.is_file() and local.stat().st_size == a.size:
                shutil.copyfile(local, tmp)
                got = _sha256(tmp)
            if got != a.sha256:
                url = f"{base}/{a.repo_path}"
                try:
                    _download(url, tmp)
                except (urllib.error.URLError, OSError) as exc:
                    reason = getattr(exc, "reason", None) or exc
                    raise InfraError(f"cannot download {url}: {reason} (is Maven Central reachable? "
                                     "FEATURESTORE_MAVEN_URL sets a mirror)") from None
                got = _sha256(tmp)
            if got != a.sha256:
                raise InfraError(f"{a.file_name}: SHA-256 {got} does not match the pinned {a.sha256} "
                                 f"(from {base}): refusing to use it")
            os.replace(tmp, d / a.file_name)
        finally:
            tmp.unlink(missing_ok=True)
    return d


FLINK_JARS = ("flink-sql-connector-kafka-", "flink-sql-parquet-", "hadoop-client-api-", "hadoop-client-runtime-",
              "zstd-jni-", "aircompressor-",  # Parquet's ZSTD and LZ4_RAW codecs
              "avro-", "jackson-core-", "jackson-databind-", "jackson-annotations-")  # Avro stream faces


def connector_jars(config, checkout: Optional[Path] = None) -> List[Path]:
    """The Flink connector jars a job loads: from ``flink.jars_dir`` when it is set (file or environment);
    by default from the repo's ``infra/.cache/flink-jars``, else this checkout's (``bash infra/up.sh``
    fetches them), else the user cache ``featurestore infra jars`` fills (an installed wheel has no
    infra/). None complete: an InfraError naming the folders and what to run."""
    configured = config.path(config.flink_jars_dir)
    if config.sources.get("flink_jars_dir", "default") != "default":
        candidates = [configured]
    else:
        if checkout is None:
            checkout = Path(__file__).resolve().parents[2] / "infra" / ".cache" / "flink-jars"
        candidates = list(dict.fromkeys([configured, checkout, jars_dir("flink")]))
    for d in candidates:
        jars = sorted(d.glob("*.jar")) if d.is_dir() else []
        if all(any(j.name.startswith(n) for j in jars) for n in FLINK_JARS):
            return jars
    jars = sorted(candidates[0].glob("*.jar")) if candidates[0].is_dir() else []
    missing = [n + "*.jar" for n in FLINK_JARS if not any(j.name.startswith(n) for j in jars)]
    raise InfraError(f"Flink connector jars missing in {' or '.join(str(c) for c in candidates)}: {', '.join(missing)} "
                     "(run featurestore infra jars, or bash infra/up.sh in a clone)")


def classpath(group: str, env: Optional[Mapping[str, str]] = None) -> List[Path]:
    """The cached jars of ``group`` (fetch them first)."""
    d = jars_dir(group, env)
    return [d / a.file_name for a in artifacts(group)]


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m featurestore.devinfra.jars GROUP``: fetch the group's pinned jars (infra/setup.sh)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m featurestore.devinfra.jars {'|'.join(PINS)}", file=sys.stderr)
        return 2
    try:
        print(fetch(args[0], say=lambda t: print(f"[infra] {t}", file=sys.stderr)))
        return 0
    except InfraError as exc:
        print(f"[infra] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Artifact", "artifacts", "jars_dir", "missing", "fetch", "classpath", "connector_jars", "MAVEN_CENTRAL"]
