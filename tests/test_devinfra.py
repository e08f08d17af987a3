"""Jobs from a wheel (issue 12.2): the pinned Flink connector jars are fetched by the package itself into
a user cache (checked by SHA-256, written atomically), and a job finds them there when neither the repo
nor a checkout has them. Downloads go to a file:// mirror built from the jars infra/setup.sh fetched, so
the test needs no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from featurestore.config import load_config
from featurestore.devinfra import jars
from featurestore.errors import InfraError

INFRA = Path(__file__).resolve().parents[1] / "infra"
CHECKOUT_JARS = INFRA / ".cache" / "flink-jars"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _need_checkout_jars():
    if not all((CHECKOUT_JARS / a.file_name).is_file() for a in jars.artifacts("flink")):
        pytest.skip("infra/setup.sh has not fetched the Flink jars in this checkout")


def pom_artifacts(*poms: str) -> set:
    """(group, artifact, version) of the dependencies the poms declare (their ${properties} substituted):
    what ``mvn dependency:copy-dependencies -DexcludeTransitive=true`` fetches (for Maven users)."""
    import re
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    out = set()
    for pom in poms:
        root = ET.parse(INFRA / pom).getroot()
        found = root.find("m:properties", ns)
        props = {el.tag.split("}")[1]: el.text for el in (found if found is not None else [])}
        for dep in root.find("m:dependencies", ns):
            text = [re.sub(r"\$\{([^}]+)\}", lambda m: props[m.group(1)], dep.find(f"m:{k}", ns).text)
                    for k in ("groupId", "artifactId", "version")]
            out.add(tuple(text))
    return out


def test_the_pins_are_what_the_poms_declare():
    """pins.py (what infra/setup.sh and `featurestore infra jars` fetch) and infra/pom-flink.xml, pom-avro.xml,
    pom-hadoop.xml (the same list for Maven users and IDEs) name the same jars."""
    pinned = {(a.group, a.artifact, a.version) for a in jars.artifacts("flink")}
    assert pom_artifacts("pom-flink.xml", "pom-avro.xml", "pom-hadoop.xml") == pinned


def test_the_checkout_jars_are_the_pinned_files():
    """infra/setup.sh links infra/.cache/flink-jars to the user cache's pinned folder (no Maven): exactly the
    pinned files, with their hashes."""
    _need_checkout_jars()
    assert CHECKOUT_JARS.is_symlink() and CHECKOUT_JARS.resolve() == jars.jars_dir("flink").resolve()
    pinned = {a.file_name: (a.sha256, a.size) for a in jars.artifacts("flink")}
    fetched = {p.name: (_sha(p), p.stat().st_size) for p in CHECKOUT_JARS.glob("*.jar")}
    assert fetched == pinned


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A Maven-layout mirror (file://) of the pinned jars, an empty local Maven repo, an empty user cache."""
    _need_checkout_jars()
    root = tmp_path / "mirror"
    for a in jars.artifacts("flink"):
        dest = root / a.repo_path
        dest.parent.mkdir(parents=True)
        dest.symlink_to(CHECKOUT_JARS / a.file_name)
    monkeypatch.setenv("FEATURESTORE_MAVEN_URL", root.as_uri())
    monkeypatch.setenv("FEATURESTORE_M2_REPO", str(tmp_path / "m2"))
    monkeypatch.setenv("FEATURESTORE_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_infra_jars_fetches_into_the_user_cache_once(mirror, tmp_path):
    res = CliRunner().invoke(app, ["infra", "jars"])
    assert res.exit_code == 0, res.output
    d = jars.jars_dir("flink")
    assert d.parent.parent == tmp_path / "cache" and f"flink connector jars: {len(jars.artifacts('flink'))} in {d}" in res.output
    for a in jars.artifacts("flink"):
        assert _sha(d / a.file_name) == a.sha256
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []  # no temp files left
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    assert jars.missing("flink") == [] and jars.fetch("flink") == d
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before  # kept, not fetched again


def test_a_jar_whose_hash_differs_is_refused_and_not_kept(mirror):
    bad = jars.artifacts("flink")[1]
    target = mirror / bad.repo_path
    target.unlink()
    target.write_bytes(b"not the jar")
    with pytest.raises(InfraError, match=rf"^{bad.file_name}: SHA-256 [0-9a-f]{{64}} does not match the pinned"):
        jars.fetch("flink")
    assert not (jars.jars_dir("flink") / bad.file_name).exists()
    assert [p.name for p in jars.jars_dir("flink").iterdir() if p.name.startswith(".")] == []


def test_a_job_finds_the_jars_in_the_user_cache_without_a_checkout(mirror, tmp_path):
    cfg = load_config(tmp_path, env={})  # default flink.jars_dir: the repo's infra/.cache/flink-jars (absent)
    nowhere = tmp_path / "no-checkout"
    with pytest.raises(InfraError, match=r"run featurestore infra jars, or bash infra/up\.sh in a clone\)$"):
        jars.connector_jars(cfg, checkout=nowhere)
    jars.fetch("flink")
    found = jars.connector_jars(cfg, checkout=nowhere)
    assert sorted(found) == sorted(jars.classpath("flink"))


def test_an_explicit_jars_dir_is_the_only_place_looked(tmp_path):
    cfg = load_config(tmp_path, env={"FEATURESTORE_FLINK_JARS_DIR": str(tmp_path / "mine")})
    with pytest.raises(InfraError, match=rf"^Flink connector jars missing in {tmp_path / 'mine'}: "):
        jars.connector_jars(cfg)


def test_one_state_folder_rule_for_featurestore_infra_and_the_clone_scripts(tmp_path, monkeypatch):
    """`featurestore infra` from a clone (editable install) keeps state where the clone's infra/*.sh do, with or
    without `source infra/env.sh`; from an installed wheel, in ~/.local/state; FEATURESTORE_INFRA_RUN_DIR wins."""
    from featurestore.devinfra import services

    assert services.state_dir("redis", 6390, env={}) == INFRA / ".run" / "redis"
    assert services.state_dir("kafka", 1, env={"FEATURESTORE_INFRA_RUN_DIR": str(tmp_path)}) == tmp_path / "kafka"
    monkeypatch.setattr(services, "checkout_run_dir", lambda: None)  # as from site-packages
    assert services.state_dir("kafka", 19092, env={"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "featurestore" / "kafka-19092"
    lib = (INFRA / "lib.sh").read_text()
    assert 'RUN_DIR="${FEATURESTORE_INFRA_RUN_DIR:-$INFRA_DIR/.run}"' in lib  # the scripts' side of the same rule


@pytest.mark.redis
def test_infra_status_in_a_clone_names_the_redis_infra_up_sh_started(monkeypatch):
    """The project's Redis (bash infra/up.sh) is ours to `featurestore infra status` run in this clone, even in a
    shell that did not source infra/env.sh."""
    import os

    from featurestore.devinfra import services

    monkeypatch.delenv("FEATURESTORE_INFRA_RUN_DIR", raising=False)
    port = int(os.environ.get("FEATURESTORE_REDIS_PORT", "6390"))
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    res = CliRunner().invoke(app, ["infra", "status", "--repo", str(INFRA.parent)])
    line = next(x for x in res.output.splitlines() if x.startswith("redis"))
    pid = services.service("redis").status()
    assert pid and line.endswith(f"127.0.0.1:{port} (featurestore infra, pid {pid}, data in {INFRA / '.run' / 'redis'})"), line


def test_dev_redis_listens_on_a_unix_socket_only_where_its_path_fits(tmp_path):
    """The dev Redis's config names a unix socket in its state folder, unless that path is too long for a
    socket address (Redis would cut it short and listen elsewhere): then TCP alone."""
    from featurestore.devinfra.services import Redis

    short = Redis(6390, env={"FEATURESTORE_INFRA_RUN_DIR": str(tmp_path)})
    assert short._unixsocket() == f'unixsocket "{tmp_path / "redis" / "redis.sock"}"\nunixsocketperm 700\n'
    deep = Redis(6390, env={"FEATURESTORE_INFRA_RUN_DIR": str(tmp_path / ("d" * 100))})
    assert deep._unixsocket() == ""
