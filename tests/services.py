"""Throw-away real services for fault tests: a redis-server of a test's own (restartable, optionally TLS
with a private CA) on a spare port, and a private CA with a server certificate made by openssl."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Certs:
    ca: Path  # the private CA's certificate (what clients trust)
    cert: Path  # a server certificate signed by it, for 127.0.0.1 and localhost
    key: Path


def make_ca(folder: Path, name: str = "ca") -> Certs:
    """A private CA and a server certificate it signed (subjectAltName IP:127.0.0.1, DNS:localhost)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / f"{name}-{x}" for x in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                                   "server.pem"))
    ext = folder / f"{name}-ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", f"/CN=featurestore test CA {name}")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return Certs(ca, cert, key)


class RedisServer:
    """A redis-server of a test's own: AOF on (fsync always), so a restart keeps every acknowledged write."""

    def __init__(self, folder: Path, port: Optional[int] = None, tls: Optional[Certs] = None):
        self.dir = folder
        self.port = port or free_port()
        self.tls = tls
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"bind 127.0.0.1", f"dir {self.dir}", "daemonize yes", f"pidfile {self.dir / 'redis.pid'}",
                 f"logfile {self.dir / 'redis.log'}", "appendonly yes", "appendfsync always", "save ''"]
        if tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}",
                      f"tls-ca-cert-file {tls.ca}", "tls-auth-clients no"]
        self.conf = self.dir / "redis.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pid(self) -> Optional[int]:
        try:
            return int((self.dir / "redis.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> "RedisServer":
        subprocess.run(["redis-server", str(self.conf)], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 15
        while not self._accepts():
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on {self.port} did not start: "
                                     f"{(self.dir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM (Redis finishes the AOF and exits), then wait until the process is gone."""
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


# -- a local S3-compatible server (moto, started by infra/s3.sh) --------------------------------------------
S3_ENDPOINT_ENV = "FEATURESTORE_S3_ENDPOINT"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                  "AWS_EC2_METADATA_DISABLED": "true"}


def s3_endpoint() -> str:
    return os.environ.get(S3_ENDPOINT_ENV) or f"http://127.0.0.1:{os.environ.get('FEATURESTORE_S3_PORT', '19094')}"


def s3_client(endpoint: str):
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                          aws_access_key_id="testing", aws_secret_access_key="testing")
