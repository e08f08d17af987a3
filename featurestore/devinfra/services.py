"""The development services, started by the installed package (``featurestore infra up|down|status``) and by
a clone's ``infra/redis.sh`` / ``infra/kafka.sh``, which call this module: our own Redis (``redis-server``
from PATH) and a single-node Kafka in KRaft combined mode (broker and controller in one JVM, run from the
pinned jars :mod:`.jars` fetches into the user cache; a Java 17 runtime, no JDK, no Kafka install).

Ports: ``$FEATURESTORE_REDIS_PORT`` (6390), ``$FEATURESTORE_KAFKA_PORT`` (19092) and
``$FEATURESTORE_KAFKA_CONTROLLER_PORT`` (the Kafka port + 1), all on 127.0.0.1. State (data, generated
config, pidfile, logs), by :func:`state_dir`, the one rule for ``featurestore infra`` and a clone's scripts:
``$FEATURESTORE_INFRA_RUN_DIR/{redis,kafka}`` when that is set; else, when the package runs from a clone
(an editable install, as ``bash infra/run.sh`` makes; ``infra/lib.sh`` beside the package), that clone's
``infra/.run/{redis,kafka}``, so ``featurestore infra status|down`` in a clone see what ``bash infra/up.sh``
started, with or without ``source infra/env.sh``; else (an installed wheel)
``$XDG_STATE_HOME/featurestore/{redis,kafka}-<port>`` (``~/.local/state``), so two instances on other ports
never share data. Redis keeps an append-only file (serving logs survive a
restart); data is kept by ``down``.

Healthy means: the process we started (pidfile, command line checked against pid reuse) is alive and
answers: Redis a PING, Kafka a metadata round trip (a Metadata request answered with at least one
broker), spoken here over a socket so no client library is needed. ``start`` is a no-op on a healthy
service and waits for health (Redis 10 s, longer while it loads its dataset, Kafka ``$FEATURESTORE_KAFKA_START_TIMEOUT_S``, 60 s).

Standard library only: ``python -m featurestore.devinfra.services redis|kafka start|stop|status|restart``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from featurestore.errors import InfraError

HOST = "127.0.0.1"
DEFAULTS = {"FEATURESTORE_REDIS_PORT": 6390, "FEATURESTORE_KAFKA_PORT": 19092}
JAVA_HINT = "install a Java 17 runtime (apt-get install -y openjdk-17-jre-headless; a JRE is enough)"
REDIS_HINT = ("install Redis (apt-get install -y redis-server, brew install redis) or point online_store.redis_url "
              "in featurestore.yaml at a Redis of your own")


# -- where ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ports:
    redis: int
    kafka: int
    controller: int


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) < 65536:
        raise InfraError(f"{name} must be a port number, got '{text}'")
    return int(text)


def ports(env: Optional[Mapping[str, str]] = None) -> Ports:
    env = os.environ if env is None else env
    redis = _port(env, "FEATURESTORE_REDIS_PORT", DEFAULTS["FEATURESTORE_REDIS_PORT"])
    kafka = _port(env, "FEATURESTORE_KAFKA_PORT", DEFAULTS["FEATURESTORE_KAFKA_PORT"])
    controller = _port(env, "FEATURESTORE_KAFKA_CONTROLLER_PORT", kafka + 1)
    if controller == kafka:
        raise InfraError(f"FEATURESTORE_KAFKA_CONTROLLER_PORT must differ from FEATURESTORE_KAFKA_PORT ({kafka})")
    return Ports(redis, kafka, controller)


def checkout_run_dir() -> Optional[Path]:
    """``<clone>/infra/.run`` when this package runs from a clone (``infra/lib.sh`` beside it), else None."""
    infra = Path(__file__).resolve().parents[2] / "infra"
    return infra / ".run" if (infra / "lib.sh").is_file() else None


def state_dir(service: str, port: int, env: Optional[Mapping[str, str]] = None) -> Path:
    """Where a service keeps its data, config, pidfile and logs (the module docstring says why)."""
    env = os.environ if env is None else env
    if env.get("FEATURESTORE_INFRA_RUN_DIR"):
        return Path(env["FEATURESTORE_INFRA_RUN_DIR"]).expanduser() / service
    checkout = checkout_run_dir()
    if checkout is not None:
        return checkout / service
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state").expanduser()
    return base / "featurestore" / f"{service}-{port}"


# -- processes --------------------------------------------------------------------------------------------
def _alive(pidfile: Path, pattern: str) -> Optional[int]:
    """The pid in ``pidfile`` when it names a live process whose command line contains ``pattern``."""
    try:
        pid = int(pidfile.read_text().strip() or "0")
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return pid  # no /proc (macOS): trust the pidfile
    return pid if pattern in cmdline else None


def _stop(pidfile: Path, pattern: str, timeout_s: float) -> Optional[int]:
    """SIGTERM the process of ``pidfile``, SIGKILL after ``timeout_s``; its pid, or None when none ran."""
    pid = _alive(pidfile, pattern)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pidfile, pattern) is not None:
            time.sleep(0.1)
        if _alive(pidfile, pattern) is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
    pidfile.unlink(missing_ok=True)
    return pid


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# -- Redis ------------------------------------------------------------------------------------------------
def _redis_says(port: int, timeout: float = 2.0) -> bytes:
    """Redis's answer to PING (``+PONG``, ``-LOADING ...`` while it loads its dataset), or b"" when none."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64)
    except OSError:
        return b""


def redis_ping(port: int, timeout: float = 2.0) -> bool:
    return _redis_says(port, timeout).startswith(b"+PONG")


START_TIMEOUT_S, LOADING_TIMEOUT_S = 10, 600


class Redis:
    name = "redis"
    pattern = "redis-server"

    def __init__(self, port: int, env: Optional[Mapping[str, str]] = None,
                 say: Callable[[str], None] = lambda _t: None):
        self.port, self.say = port, say
        self.dir = state_dir("redis", port, env)
        self.pidfile, self.logfile = self.dir / "redis.pid", self.dir / "redis.log"
        self.address = f"redis://{HOST}:{port}/0"

    def status(self) -> Optional[int]:
        pid = _alive(self.pidfile, self.pattern)
        return pid if pid is not None and redis_ping(self.port) else None

    def start(self) -> str:
        pid = _alive(self.pidfile, self.pattern)
        if pid is not None and redis_ping(self.port):
            return f"redis: already running at {self.address} (pid {pid})"
        if pid is None:
            exe = shutil.which("redis-server")
            if exe is None:
                raise InfraError(f"redis-server not found on PATH: {REDIS_HINT}")
            self.pidfile.unlink(missing_ok=True)
            if _accepts(self.port):
                raise InfraError(f"port {HOST}:{self.port} is in use by a process not started by featurestore infra: "
                                 "stop it or set FEATURESTORE_REDIS_PORT")
            self.dir.mkdir(parents=True, exist_ok=True)
            conf = self.dir / "redis.conf"
            conf.write_text(
                "# Generated on each start by featurestore infra (featurestore/devinfra/services.py).\n"
                f"bind {HOST}\nport {self.port}\nprotected-mode yes\ndaemonize yes\n"
                f'pidfile "{self.pidfile}"\nlogfile "{self.logfile}"\ndir "{self.dir}"\n'
                "dbfilename dump.rdb\nsave 300 100\n"
                + self._unixsocket() +
                "# Serving logs (log-and-wait) must survive a Redis restart: append-only file, fsync every second.\n"
                "appendonly yes\nappendfsync everysec\ndatabases 16\n")
            out = subprocess.run([exe, str(conf)], capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                said = (out.stderr or out.stdout).strip()[-300:]
                raise InfraError(f"redis-server failed to start: {said or _tail(self.logfile)}")
        start, said = time.monotonic(), False
        while time.monotonic() - start < LOADING_TIMEOUT_S:
            answer = _redis_says(self.port)
            if answer.startswith(b"+PONG"):
                return (f"redis: started at {self.address} "
                        f"(pid {_alive(self.pidfile, self.pattern) or '?'}, log {self.logfile})")
            if answer.startswith(b"-LOADING"):  # a large AOF/RDB from earlier runs takes a while to load
                if not said:
                    self.say(f"redis: loading its dataset from {self.dir} ...")
                    said = True
            elif time.monotonic() - start > START_TIMEOUT_S:
                break
            time.sleep(0.1)
        raise InfraError(f"redis did not answer PING on {HOST}:{self.port} within {START_TIMEOUT_S}s: "
                         f"{_tail(self.logfile)}")

    def _unixsocket(self) -> str:
        """Config lines for a unix socket beside TCP (``unix://<state dir>/redis.sock``: a lookup's round trips
        skip TCP), none when its path exceeds a socket address (~107 bytes: Redis would cut it short)."""
        sock = str(self.dir / "redis.sock")
        if len(sock.encode()) > 100:
            return ""
        return f'unixsocket "{sock}"\nunixsocketperm 700\n'

    def stop(self) -> str:
        return "redis: stopped" if _stop(self.pidfile, self.pattern, 15) is not None else "redis: not running"


# -- Kafka ------------------------------------------------------------------------------------------------
def kafka_metadata(port: int, timeout: float = 5.0) -> Optional[str]:
    """A Metadata (v4) round trip with the broker: ``"N broker(s), M topic(s)"``, or None when it does not
    answer with at least one broker (not up, or not ready yet)."""
    client = b"featurestore-infra"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", -1, 0)
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
        pos = 4 + 4 + 4  # size, correlation id, throttle time
        (brokers,) = struct.unpack_from(">i", buf, pos)
        pos += 4
        for _ in range(brokers):
            pos += 4
            (n,) = struct.unpack_from(">h", buf, pos)
            pos += 2 + n + 4
            (n,) = struct.unpack_from(">h", buf, pos)
            pos += 2 + max(n, 0)
        (n,) = struct.unpack_from(">h", buf, pos)  # cluster id
        pos += 2 + max(n, 0) + 4  # controller id
        (topics,) = struct.unpack_from(">i", buf, pos)
        return f"{brokers} broker(s), {topics} topic(s)" if brokers > 0 else None
    except (OSError, struct.error):
        return None


def java_major(exe: str) -> Optional[int]:
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(1\.)?(\d+)', out.stderr + out.stdout)
    return int(m.group(2)) if m else None


def _java() -> str:
    exe = shutil.which("java")
    if exe is None:
        raise InfraError(f"Java not found on PATH: Kafka runs on Java 17+; {JAVA_HINT}")
    major = java_major(exe)
    if major is None or major < 17:
        raise InfraError(f"Java {major or '?'} found ({exe}) but Kafka needs Java 17+: {JAVA_HINT}")
    return exe


LOG4J = """# Generated on each start by featurestore infra (featurestore/devinfra/services.py).
status = warn
name = featurestore-kafka
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 5
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.kafkaclients.name = org.apache.kafka.clients
logger.kafkaclients.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class Kafka:
    name = "kafka"
    pattern = "kafka.Kafka"

    def __init__(self, port: int, controller: int, env: Optional[Mapping[str, str]] = None,
                 say: Callable[[str], None] = lambda _t: None):
        self.env = os.environ if env is None else env
        self.port, self.controller, self.say = port, controller, say
        self.dir = state_dir("kafka", port, env)
        self.pidfile, self.logs = self.dir / "kafka.pid", self.dir / "logs"
        self.address = f"{HOST}:{port}"

    def status(self) -> Optional[int]:
        pid = _alive(self.pidfile, self.pattern)
        return pid if pid is not None and kafka_metadata(self.port, 3) else None

    def _write_config(self) -> Path:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.properties").write_text(LOG4J)
        props = self.dir / "server.properties"
        h, p, c = HOST, self.port, self.controller
        props.write_text(
            "# Generated on each start by featurestore infra (featurestore/devinfra/services.py).\n"
            f"process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@{h}:{c}\n"
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}\nadvertised.listeners=PLAINTEXT://{h}:{p}\n"
            "inter.broker.listener.name=PLAINTEXT\ncontroller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={self.dir / 'data'}\nnum.partitions=1\nauto.create.topics.enable=true\n"
            "default.replication.factor=1\nmin.insync.replicas=1\noffsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "num.network.threads=2\nnum.io.threads=4\nlog.retention.hours=168\nlog.segment.bytes=134217728\n")
        return props

    def _java_args(self, java: str, libs: Path) -> list:
        return [java, f"-Dkafka.logs.dir={self.logs}", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp", str(libs / "*")]

    def _format(self, java: str, libs: Path, props: Path) -> None:
        if (self.dir / "data" / "meta.properties").is_file():
            return
        id_file = self.dir / "cluster.id"
        if not id_file.is_file() or not id_file.read_text().strip():
            cluster = "-"
            while cluster.startswith("-"):  # Kafka's own Uuid.randomUuid() never starts with '-'
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            id_file.write_text(cluster + "\n")
        cluster = id_file.read_text().strip()
        self.say(f"formatting Kafka storage in {self.dir / 'data'} (cluster id {cluster})")
        log = self.logs / "format.log"
        with open(log, "ab") as out:
            done = subprocess.run([*self._java_args(java, libs), "kafka.tools.StorageTool", "format", "-t", cluster,
                                   "-c", str(props), "--ignore-formatted"], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=120)
        if done.returncode != 0:
            raise InfraError(f"kafka storage format failed: {_tail(log, 3)} (see {log})")

    def start(self) -> str:
        from featurestore.devinfra import jars

        pid, proc = _alive(self.pidfile, self.pattern), None
        if pid is not None and kafka_metadata(self.port, 3):
            return f"kafka: already running at {self.address} (pid {pid})"
        if pid is None:
            java = _java()
            libs = jars.fetch("kafka", self.env, say=self.say)
            self.pidfile.unlink(missing_ok=True)
            if _accepts(self.port) or _accepts(self.controller):
                raise InfraError(f"port {HOST}:{self.port} or {HOST}:{self.controller} is in use by a process not "
                                 "started by featurestore infra: stop it or set FEATURESTORE_KAFKA_PORT / "
                                 "FEATURESTORE_KAFKA_CONTROLLER_PORT")
            props = self._write_config()
            self._format(java, libs, props)
            heap = (self.env.get("FEATURESTORE_KAFKA_HEAP_OPTS") or "-Xms256m -Xmx512m").split()
            with open(self.logs / "kafka.out", "ab") as out:
                proc = subprocess.Popen(
                    [*self._java_args(java, libs)[:1], *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                     "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", *self._java_args(java, libs)[1:],
                     "kafka.Kafka", str(props)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.pidfile.write_text(f"{proc.pid}\n")
            pid = proc.pid
        timeout_s = float(self.env.get("FEATURESTORE_KAFKA_START_TIMEOUT_S") or 60)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # our own child: its exit code (a zombie's /proc cmdline is empty); else the pidfile's process
            code = proc.poll() if proc is not None else None
            if code is not None if proc is not None else _alive(self.pidfile, self.pattern) is None:
                errors = [ln for ln in (self.logs / "server.log").read_text(errors="replace").splitlines()
                          if " ERROR " in ln or "Exception" in ln] if (self.logs / "server.log").is_file() else []
                raise InfraError(f"kafka exited during startup (exit code {code}): "
                                 f"{' | '.join(errors[-2:]) or _tail(self.logs / 'kafka.out', 3)} "
                                 f"(see {self.logs / 'server.log'})")
            if kafka_metadata(self.port, 3):
                return f"kafka: started at {self.address} (pid {pid}, log {self.logs / 'server.log'})"
            time.sleep(0.5)
        raise InfraError(f"kafka not healthy on {self.address} within {timeout_s:.0f}s "
                         f"(see {self.logs / 'server.log'})")

    def stop(self) -> str:
        return "kafka: stopped" if _stop(self.pidfile, self.pattern, 30) is not None else "kafka: not running"


def service(name: str, env: Optional[Mapping[str, str]] = None, say: Callable[[str], None] = lambda _t: None):
    p = ports(env)
    if name == "redis":
        return Redis(p.redis, env, say)
    if name == "kafka":
        return Kafka(p.kafka, p.controller, env, say)
    raise InfraError(f"no service named {name!r} (redis, kafka)")


SERVICES = ("redis", "kafka")


def main(argv: Optional[list] = None) -> int:
    """``python -m featurestore.devinfra.services redis|kafka start|stop|status|restart`` (infra/*.sh)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in SERVICES or args[1] not in ("start", "stop", "status", "restart"):
        print("usage: python -m featurestore.devinfra.services redis|kafka start|stop|status|restart", file=sys.stderr)
        return 2
    try:
        svc = service(args[0], say=lambda t: print(f"[infra] {t}", file=sys.stderr))
        if args[1] == "status":
            pid = svc.status()
            print(f"{svc.name}: up at {svc.address} (pid {pid})" if pid else f"{svc.name}: down ({svc.address})")
            return 0 if pid else 1
        if args[1] in ("stop", "restart"):
            print(svc.stop())
        if args[1] in ("start", "restart"):
            print(svc.start())
        return 0
    except InfraError as exc:
        print(f"[infra] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
