"""The streaming job's Java functions (``featurestore/engines/flink/java``), built into a jar on first use.

``ParseJsonRecord`` reads a Kafka record as a strict JSON object with typed columns in one pass,
``ParseAvroRecord`` one Avro datum of the writer schema (see their sources and
:mod:`featurestore.engines.flink.ingest`). They are compiled with the JDK's ``javac`` against PyFlink's own
jars and the pinned connector jars (Avro and the Jackson it parses schemas with:
:mod:`featurestore.devinfra.pins`) into ``infra/.cache/featurestore-udf/`` of this checkout (or
``~/.cache/featurestore/`` when that is not writable), named by a hash of its sources and the Flink
version, so a changed source is rebuilt and concurrent builds never see a half-written jar. The jar
travels with the job like the connector jars (``pipeline.jars``), to a remote cluster too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import List, Sequence

from featurestore.errors import InfraError

JAVA_DIR = Path(__file__).resolve().parent / "java"
UDF_CLASS = "featurestore.flink.ParseJsonRecord"
AVRO_UDF_CLASS = "featurestore.flink.ParseAvroRecord"
JAR_PREFIX = "featurestore-udf-"
COMPILE_JARS = ("avro-", "jackson-")  # what the functions compile against beyond PyFlink's own jars


def _sources() -> List[Path]:
    return sorted(JAVA_DIR.rglob("*.java"))


def _pyflink_lib() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent / "lib"


def _cache_dirs() -> List[Path]:
    checkout = Path(__file__).resolve().parents[3] / "infra"
    dirs = [checkout / ".cache" / "featurestore-udf"] if checkout.is_dir() else []
    return dirs + [Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "featurestore"]


def _fingerprint(classpath: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for src in _sources():
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    h.update(",".join(sorted(p.name for p in _pyflink_lib().glob("flink-*.jar"))).encode())
    h.update(",".join(sorted(p.name for p in classpath)).encode())
    return h.hexdigest()[:16]


def job_jars(store) -> List[Path]:
    """Every jar a Flink job of ``store`` needs: the connector jars
    (:func:`featurestore.devinfra.jars.connector_jars`) and the job's Java function."""
    from featurestore.devinfra.jars import connector_jars

    jars = connector_jars(store.config)
    return jars + [udf_jar(jars)]


def udf_jar(classpath: Sequence[Path] = ()) -> Path:
    """The jar of the streaming job's Java functions, built (once per source change) if needed; ``classpath``:
    the connector jars the job loads (``devinfra.jars.connector_jars``: Avro and Jackson among them)."""
    classpath = [p for p in classpath if p.name.startswith(COMPILE_JARS)]
    name = f"{JAR_PREFIX}{_fingerprint(classpath)}.jar"
    for d in _cache_dirs():
        if (d / name).is_file():
            return d / name
    problems = []
    for d in _cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            return _build(d / name, classpath)
        except OSError as exc:
            problems.append(f"{d}: {exc}")
    raise InfraError(f"cannot build the featurestore Flink functions jar ({'; '.join(problems)})")


def _build(target: Path, classpath: Sequence[Path]) -> Path:
    javac = shutil.which("javac")
    if javac is None:
        raise InfraError("javac not found: the streaming job compiles its Java function (featurestore/engines/flink/java) "
                         "with a JDK; install one (apt-get install -y openjdk-17-jdk-headless)")
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        cmd = [javac, "-nowarn", "-encoding", "UTF-8", "--release", "11", "-d", str(classes),
               "-cp", os.pathsep.join([str(_pyflink_lib() / "*"), *map(str, classpath)]), *map(str, _sources())]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            first = (out.stderr or out.stdout).strip().splitlines()
            raise InfraError(f"compiling featurestore/engines/flink/java failed: {first[0] if first else out.returncode}")
        tmp_jar = Path(tmp) / target.name
        with zipfile.ZipFile(tmp_jar, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: featurestore\n\n")
            for f in sorted(classes.rglob("*.class")):
                jar.write(f, f.relative_to(classes).as_posix())
        os.replace(tmp_jar, target)
    for old in target.parent.glob(f"{JAR_PREFIX}*.jar"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


__all__ = ["udf_jar", "job_jars", "UDF_CLASS", "AVRO_UDF_CLASS"]
