"""Failures a user cannot act on as a traceback: one line with the root cause, the full trace in a file.

A Flink job that fails reports a Java stack trace of a few hundred lines (Py4J call, job execution,
restart strategy, task, operator, and at the bottom what actually went wrong). :func:`root_cause` finds
that bottom line; :func:`job_error` writes the whole text to ``<repo>/.featurestore/logs/`` and returns
a :class:`~featurestore.errors.JobError` whose message is ``<what>: <root cause> (full trace: <file>)``.

>>> root_cause("java.lang.RuntimeException: job failed\\n\\tat a.b(C.java:1)\\n"
...            "Caused by: java.io.IOException: disk full\\n\\tat d.e(F.java:2)")
'java.io.IOException: disk full'
"""

from __future__ import annotations

import os
import re
import time
import traceback
from pathlib import Path
from typing import Optional, Union

from featurestore.errors import JobError

LOGS_DIR = "logs"  # under the repo's state folder (ProjectConfig.state_path)
MAX_CAUSE_CHARS = 500
_PEMJA = re.compile(r"^pemja\.core\.PythonException: <class '([^']+)'>: ?(.*)$")


def _text(failure: Union[BaseException, str]) -> str:
    """What the root cause is read from: a Java stack trace (Py4JJavaError and pyflink's JavaException
    print one), else the Python traceback."""
    if isinstance(failure, str):
        return failure
    text = str(failure)
    if "\tat " in text or "Caused by:" in text:
        return text
    return _log_text(failure)


def _log_text(failure: Union[BaseException, str]) -> str:
    """What the log file holds: the Python traceback (with the Java trace in its message, if any)."""
    if isinstance(failure, str):
        return failure
    return "".join(traceback.format_exception(failure)).rstrip()


def root_cause(failure: Union[BaseException, str]) -> str:
    """The innermost cause of a failure, as one line: the last top-level ``Caused by:`` of a Java stack
    trace (a Python exception inside a Flink function: its class and message), else the first line."""
    lines = _text(failure).splitlines()
    causes = [i for i, line in enumerate(lines) if line.startswith("Caused by: ")]  # indented: "Suppressed:"
    start = causes[-1] if causes else 0
    # Step up from the innermost cause while the one above only adds context to its message (e.g.
    # "IOException: can not read class PageHeader: MaxMessageSize reached" above "TTransportException:
    # MaxMessageSize reached"), but not to mere wrappers ("RuntimeException: java.io.IOException: ...").
    for outer in reversed(causes[:-1]):
        inner_cls, _, inner_msg = lines[start].removeprefix("Caused by: ").partition(": ")
        above = lines[outer].removeprefix("Caused by: ").partition(": ")[2]
        if not inner_msg or not above.endswith(inner_msg) or inner_cls.split(".")[-1] in above:
            break
        start = outer
    block = []
    for line in lines[start:]:
        if line.startswith(("\tat ", "\t... ")) or (block and line.startswith("Caused by: ")):
            break
        block.append(line)
    if not block:
        return "unknown failure"
    head = block[0].removeprefix("Caused by: ").strip()
    if head.startswith("An error occurred while calling") and len(block) > 1:  # Py4J's own first line
        head = block[1].lstrip(": ").strip()
    if any("Traceback (most recent call last)" in line for line in block):
        # a Python traceback inside the message (process mode): its last unindented line is the exception
        tail = [line for line in block[1:] if line and not line[0].isspace() and not line.startswith("Traceback")]
        if tail:
            head = tail[-1].strip()
    m = _PEMJA.match(head)
    if m:  # thread mode: pemja.core.PythonException: <class 'redis.exceptions.ConnectionError'>: Error 111 ...
        head = f"{m.group(1)}: {m.group(2)}".rstrip(": ")
    if head.startswith("Traceback (most recent call last)"):
        head = next((line.strip() for line in reversed(block) if line and not line[0].isspace()), head)
    return head[:MAX_CAUSE_CHARS]


def save_trace(state_dir: Path, what: str, failure: Union[BaseException, str]) -> Optional[Path]:
    """Write the full text of ``failure`` to ``<state_dir>/logs/<time>-<what>-<pid>.log``; its path, or
    None when it could not be written (the one-line error must still come out)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", what).strip("-")[:60] or "failure"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(state_dir) / LOGS_DIR / f"{stamp}-{slug}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{what}\n\n{_log_text(failure)}\n")
    except OSError:
        return None
    return path


def job_error(state_dir: Path, what: str, failure: Union[BaseException, str]) -> JobError:
    """``JobError("<what>: <root cause> (full trace: <file>)")``, the full trace written to that file."""
    path = save_trace(state_dir, what, failure)
    where = f" (full trace: {path})" if path is not None else ""
    return JobError(f"{what}: {root_cause(failure)}{where}", log_path=path)


__all__ = ["root_cause", "save_trace", "job_error", "LOGS_DIR"]
