"""Flink's REST API, as the streaming job uses it: a remote cluster's, and the one the local mini-cluster
serves on a loopback port (so a local job's restarts and failures can be read the same way)."""

from __future__ import annotations

import json
import socket
from typing import Dict, Optional


def call(address: str, method: str, path: str, body: Optional[dict] = None, timeout: float = 30):
    """One call to a Flink REST endpoint (``host:port`` or a URL); the decoded JSON answer."""
    import urllib.request

    url = address if "://" in address else f"http://{address}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_options(port: int) -> Dict[str, str]:
    """Configuration of the local mini-cluster's REST endpoint: loopback only, on ``port``, metrics
    refreshed every 2 s (Flink's default 10 s would show restarts late)."""
    return {"rest.bind-address": "127.0.0.1", "rest.address": "127.0.0.1", "rest.bind-port": str(port),
            "metrics.fetcher.update-interval": "2000"}


def restarts(address: str, job_id: str) -> Optional[int]:
    """The job's ``numRestarts`` metric: restarts after failures since it was submitted (region failovers
    included; the job's status stays RUNNING through those). The timeout is generous: a busy machine's
    JobManager can take seconds to answer, and a status snapshot would report a spurious problem."""
    got = call(address, "GET", f"/jobs/{job_id}/metrics?get=numRestarts", timeout=20)
    return int(got[0]["value"]) if got else None


def last_exception(address: str, job_id: str) -> str:
    """The stack trace of the job's latest failure ('' when none is reported)."""
    doc = call(address, "GET", f"/jobs/{job_id}/exceptions")
    entries = (doc.get("exceptionHistory") or {}).get("entries") or []
    return (entries[0].get("stacktrace") if entries else None) or doc.get("root-exception") or ""


__all__ = ["call", "free_port", "local_options", "restarts", "last_exception"]
