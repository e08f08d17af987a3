"""The streaming job's Java functions (``featurestore/engines/flink/java``), shipped as a jar: a Java runtime is
enough, no JDK.

``ParseJsonRecord`` reads a Kafka record as a strict JSON object with typed columns in one pass,
``ParseAvroRecord`` one Avro datum of the writer schema (see their sources and
:mod:`featurestore.engines.flink.ingest`); ``JsonArrayText`` writes the online rows' JSON arrays (what
``JSON_ARRAY`` writes, byte for byte, but a negative zero kept: :func:`featurestore.engines.flink.tables.json_array_ddl`);
``MicrosTimestamp`` and ``EpochMicros`` convert timestamp values (other than the event time) between epoch
microseconds and TIMESTAMP(6); ``DatePart`` is DuckDB's ``date_part`` of epoch microseconds (``year(ts)``, ...),
``ShiftMicros`` its ``ts +/- INTERVAL`` and ``DateTrunc`` its ``date_trunc``; ``AddExact``, ``SubtractExact`` and
``MultiplyExact`` are integer arithmetic that is NULL on an overflow; ``NumberText`` is DuckDB's
``CAST(text AS INTEGER/BIGINT/DOUBLE/FLOAT)``; ``OnlineBatches`` is the DataStream operator that collects the online rows into
per-entity mini-batches (:mod:`featurestore.engines.flink.job`). Their compiled jar, ``java/featurestore-udf.jar``, is committed and
in the wheel; its manifest names a digest of the sources it was built from. When the sources differ from
that digest (a developer changed them), the job builds its own jar with the JDK's ``javac`` against
PyFlink's jars and the pinned connector jars (Avro and the Jackson it parses schemas with:
:mod:`featurestore.devinfra.pins`) into ``infra/.cache/featurestore-udf/`` of this checkout (or
``~/.cache/featurestore/``), named by a hash of the sources and the Flink version, and
``python -m featurestore.engines.flink.udf`` (with a JDK and the connector jars) rebuilds the committed jar,
reproducibly (fixed entry times and order). The jar travels with the job like the connector jars
(``pipeline.jars``), to a remote cluster too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence

from featurestore.errors import InfraError

JAVA_DIR = Path(__file__).resolve().parent / "java"
UDF_CLASS = "featurestore.flink.ParseJsonRecord"
AVRO_UDF_CLASS = "featurestore.flink.ParseAvroRecord"
JSON_ARRAY_CLASS = "featurestore.flink.JsonArrayText"
MICROS_TIMESTAMP_CLASS = "featurestore.flink.MicrosTimestamp"  # epoch us -> TIMESTAMP(6) (ingest.py)
EPOCH_MICROS_CLASS = "featurestore.flink.EpochMicros"  # TIMESTAMP -> epoch us (the online rows: tables.py)
DATE_PART_CLASS = "featurestore.flink.DatePart"  # DuckDB's date_part of epoch us (exprs_funcs.py)
SHIFT_US_CLASS = "featurestore.flink.ShiftMicros"  # DuckDB's ts +/- INTERVAL of epoch us (exprs_time.py)
DATE_TRUNC_CLASS = "featurestore.flink.DateTrunc"  # DuckDB's date_trunc of epoch us (exprs_time.py)
# integer + - * that are NULL on an overflow, by SQL function name (sqltypes.EXACT_FUNCTIONS)
EXACT_CLASSES = {"fs_add_exact": "featurestore.flink.AddExact", "fs_subtract_exact": "featurestore.flink.SubtractExact",
                 "fs_multiply_exact": "featurestore.flink.MultiplyExact"}
# DuckDB's CAST(text AS number), NULL where it fails, by SQL function name (sqltypes.TEXT_NUMBER_FUNCTIONS)
TEXT_NUMBER_CLASSES = {"fs_text_int": "featurestore.flink.NumberText$ToInteger",
                       "fs_text_bigint": "featurestore.flink.NumberText$ToBigint",
                       "fs_text_double": "featurestore.flink.NumberText$ToDouble",
                       "fs_text_float": "featurestore.flink.NumberText$ToFloat"}
JAR_PREFIX = "featurestore-udf-"
PACKAGED = JAVA_DIR / "featurestore-udf.jar"
DIGEST_KEY = "Featurestore-Source-Digest"
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


def source_digest() -> str:
    """A hash of the Java sources (names and bytes): what the shipped jar's manifest records."""
    h = hashlib.sha256()
    for src in _sources():
        h.update(src.relative_to(JAVA_DIR).as_posix().encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()


def built_from(jar: Path) -> Optional[str]:
    """The source digest in a jar's manifest (None: no such jar or entry)."""
    try:
        with zipfile.ZipFile(jar) as z:
            manifest = z.read("META-INF/MANIFEST.MF").decode()
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    for line in manifest.splitlines():
        if line.startswith(DIGEST_KEY + ":"):
            return line.split(":", 1)[1].strip()
    return None


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
    """The jar of the streaming job's Java functions: the shipped one, or (sources changed since it was built)
    one built with javac once per source change; ``classpath``: the connector jars the job loads
    (``devinfra.jars.connector_jars``: Avro and Jackson among them)."""
    if built_from(PACKAGED) == source_digest():
        return PACKAGED
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


def _build(target: Path, classpath: Sequence[Path], reproducible: bool = False) -> Path:
    javac = shutil.which("javac")
    if javac is None:
        raise InfraError("javac not found, and featurestore/engines/flink/java changed since its shipped jar was built: "
                         "install a JDK (apt-get install -y openjdk-17-jdk-headless), then python -m "
                         "featurestore.engines.flink.udf rebuilds the jar")
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
        manifest = f"Manifest-Version: 1.0\nCreated-By: featurestore\n{DIGEST_KEY}: {source_digest()}\n\n"
        with zipfile.ZipFile(tmp_jar, "w", zipfile.ZIP_DEFLATED) as jar:
            entries = [("META-INF/MANIFEST.MF", manifest.encode())] + [
                (f.relative_to(classes).as_posix(), f.read_bytes()) for f in sorted(classes.rglob("*.class"))]
            for name, data in entries:  # fixed times and order: the same sources give the same jar
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                jar.writestr(info, data)
        os.replace(tmp_jar, target)
    if not reproducible:
        for old in target.parent.glob(f"{JAR_PREFIX}*.jar"):
            if old != target:
                old.unlink(missing_ok=True)
    return target


def _connector_classpath() -> List[Path]:
    """The pinned jars the functions compile against, from this checkout's ``infra/.cache/flink-jars`` or the
    user cache (``featurestore infra jars``)."""
    from featurestore.devinfra.jars import jars_dir

    checkout = Path(__file__).resolve().parents[3] / "infra" / ".cache" / "flink-jars"
    for d in (checkout, jars_dir("flink")):
        jars = sorted(p for p in d.glob("*.jar") if p.name.startswith(COMPILE_JARS)) if d.is_dir() else []
        if all(any(p.name.startswith(n) for p in jars) for n in COMPILE_JARS):
            return jars
    raise InfraError("the Avro and Jackson jars are missing: run featurestore infra jars (or bash infra/up.sh)")


def build_packaged() -> Path:
    """Rebuild the committed jar (``java/featurestore-udf.jar``) from the sources (needs a JDK, PyFlink and the
    connector jars)."""
    return _build(PACKAGED, _connector_classpath(), reproducible=True)


if __name__ == "__main__":
    print(build_packaged())


__all__ = ["udf_jar", "job_jars", "UDF_CLASS", "AVRO_UDF_CLASS", "JSON_ARRAY_CLASS", "MICROS_TIMESTAMP_CLASS",
           "EPOCH_MICROS_CLASS", "DATE_PART_CLASS", "SHIFT_US_CLASS", "DATE_TRUNC_CLASS", "EXACT_CLASSES", "TEXT_NUMBER_CLASSES", "PACKAGED", "source_digest", "built_from",
           "build_packaged"]
