"""Which process owns a temp file, and whether it is still alive, so a dead writer's leftovers are deleted
at once and a live writer's never.

Every process that writes an offline table holds a **writer token**. Before its first temp file in a
table it creates ``<table>/_writers/<token>.lock`` and holds an exclusive ``flock`` on it until it exits
(the kernel releases the lock when the process dies, however it dies: kill -9, OOM). Its temp files are
named ``.tmp-<token>.<uuid>``. Anyone can then ask
:func:`writer_state`: the lock file can be locked -> the writer is dead; it cannot -> alive; there is no
lock file (a temp file of an older version, or a filesystem without locks), or a writer on another
host (whose locks this host may not see) -> unknown, and only the grace period of
``OfflineTable.expire`` applies.

The lock file appears under its final name already locked (created under a temp name, locked, then
renamed), so no one ever sees a live writer's lock file unlocked.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import threading
import uuid
from pathlib import Path
from typing import Dict, Optional

WRITERS_DIR = "_writers"
ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"

_lock = threading.Lock()
_token: Optional[str] = None
_pid: Optional[int] = None
_held: Dict[str, int] = {}  # lock file path -> open fd (holding the flock)


def _host() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def token() -> str:
    """This process's writer token, ``<host hash>-<pid>-<random>`` (a new one after a fork: the child is
    another writer)."""
    global _token, _pid
    with _lock:
        if _token is None or _pid != os.getpid():
            _token, _pid = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}", os.getpid()
            _held.clear()  # the parent's locks are not the child's to release
        return _token


def register(table_dir: Path) -> str:
    """Make sure this process holds its lock file in ``table_dir``; returns the token for temp names.
    Best effort: where locks cannot be taken, temp files are still written (their state is unknown)."""
    mine = token()
    path = Path(table_dir) / WRITERS_DIR / f"{mine}.lock"
    key = str(path)
    with _lock:
        if key in _held:
            return mine
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{mine}.{uuid.uuid4().hex[:8]}")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(tmp, path)
            except OSError:
                os.close(fd)
                _unlink(tmp)
                return mine
            _held[key] = fd
        except OSError:
            pass
    return mine


def writer_state(table_dir: Path, writer: str) -> str:
    """ALIVE, DEAD or UNKNOWN: the state of the writer with token ``writer`` in ``table_dir``. Only a
    writer of this host is judged (a lock taken here proves nothing about a filesystem whose locks may
    not span machines); another host's is UNKNOWN."""
    if writer == token():
        return ALIVE
    if not writer.startswith(_host() + "-"):
        return UNKNOWN
    path = Path(table_dir) / WRITERS_DIR / f"{writer}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return UNKNOWN
    except OSError:
        return UNKNOWN
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return ALIVE if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else UNKNOWN
    finally:
        os.close(fd)  # releases the lock if we got it
    return DEAD


def forget(table_dir: Path, writer: str) -> None:
    """Delete a dead writer's lock file (once none of its temp files are left)."""
    if writer != token():
        _unlink(Path(table_dir) / WRITERS_DIR / f"{writer}.lock")


def writer_of(name: str, prefix: str) -> Optional[str]:
    """The token in a temp file name ``<prefix><token>.<uuid>``; None for other names (older versions)."""
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return rest.split(".", 1)[0] if "." in rest else None


def sweep(table_dir: Path, prefix: str, grace_seconds: Optional[float] = None) -> int:
    """Delete the temp files (``<prefix>...`` in the table's folders: its dates, ``_log``) of dead writers,
    and the lock files those writers left; with ``grace_seconds``, also temp files of unknown writers
    older than that. Never a live writer's. Returns the number of temp files deleted."""
    import time

    table_dir = Path(table_dir)
    try:
        folders = [d for d in table_dir.iterdir() if d.is_dir() and d.name != WRITERS_DIR]
    except FileNotFoundError:
        return 0
    states: Dict[Optional[str], str] = {None: UNKNOWN}
    deleted, left = 0, set()
    now = time.time()
    for folder in folders:
        try:
            names = [n for n in os.listdir(folder) if n.startswith(prefix)]
        except FileNotFoundError:
            continue
        for name in names:
            writer = writer_of(name, prefix)
            if writer not in states:
                states[writer] = writer_state(table_dir, writer)
            state, path = states[writer], folder / name
            if state == UNKNOWN and grace_seconds is not None:
                try:
                    state = DEAD if now - path.stat().st_mtime > grace_seconds else UNKNOWN
                except FileNotFoundError:
                    continue
            if state == DEAD:
                try:
                    os.unlink(path)
                    deleted += 1
                except FileNotFoundError:
                    pass
            else:
                left.add(writer)
    try:
        locks = [n[: -len(".lock")] for n in os.listdir(table_dir / WRITERS_DIR) if n.endswith(".lock")]
    except FileNotFoundError:
        locks = []
    for writer in locks:  # writers that finished (or died) and have nothing left here
        if writer not in left and (states[writer] if writer in states else writer_state(table_dir, writer)) == DEAD:
            forget(table_dir, writer)
    return deleted


_swept: Dict[str, float] = {}


def sweep_if_due(table_dir: Path, prefix: str, every_s: float = 300.0) -> int:
    """:func:`sweep` on a process's first write to a table, then at most every ``every_s`` seconds (a
    long-running writer, e.g. the stream's committer, also cleans up after others)."""
    import time

    key = f"{os.getpid()}:{Path(table_dir).resolve()}"
    now = time.monotonic()
    with _lock:
        if key in _swept and now - _swept[key] < every_s:
            return 0
        _swept[key] = now
    return sweep(table_dir, prefix)


def _release_all() -> None:
    """At a normal exit: drop this process's lock files (a killed process leaves them; sweeps remove them)."""
    if _pid != os.getpid():
        return
    for path, fd in list(_held.items()):
        _unlink(Path(path))
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


atexit.register(_release_all)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["token", "register", "writer_state", "writer_of", "forget", "sweep", "sweep_if_due", "ALIVE", "DEAD",
           "UNKNOWN", "WRITERS_DIR"]
