"""The streaming job's Java function ships as a jar, so a Java runtime runs the job without a JDK (issue
12.2): the committed jar is built from the committed sources (its manifest's digest), the job uses it
with no javac on PATH, and a changed source without a JDK is one line saying how to rebuild."""

from __future__ import annotations

import zipfile

import pytest

from featurestore.engines.flink import udf as flink_udf
from featurestore.errors import InfraError


def test_the_shipped_jar_is_built_from_the_sources_in_the_tree():
    assert flink_udf.PACKAGED.is_file(), "run python -m featurestore.engines.flink.udf (with a JDK)"
    assert flink_udf.built_from(flink_udf.PACKAGED) == flink_udf.source_digest(), (
        "featurestore/engines/flink/java changed since featurestore-udf.jar was built: "
        "python -m featurestore.engines.flink.udf rebuilds it")
    names = zipfile.ZipFile(flink_udf.PACKAGED).namelist()
    assert flink_udf.UDF_CLASS.replace(".", "/") + ".class" in names


def test_the_job_uses_the_shipped_jar_without_javac(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no javac, no java
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert flink_udf.udf_jar() == flink_udf.PACKAGED


def test_a_changed_source_without_javac_is_one_line(monkeypatch, tmp_path):
    java = tmp_path / "java"
    (java / "featurestore" / "flink").mkdir(parents=True)
    for src in flink_udf._sources():
        (java / src.relative_to(flink_udf.JAVA_DIR)).write_text(src.read_text() + "\n// changed\n")
    monkeypatch.setattr(flink_udf, "JAVA_DIR", java)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(flink_udf, "_cache_dirs", lambda: [tmp_path / "cache"])
    with pytest.raises(InfraError, match=r"^javac not found, and featurestore/engines/flink/java changed since "
                                         r"its shipped jar was built: install a JDK .* python -m "
                                         r"featurestore\.engines\.flink\.udf rebuilds the jar$"):
        flink_udf.udf_jar()
