"""Reading offline table versions while other processes commit to them (SPEC §5: concurrent writers never
break a reader, and a version stays readable until it is expired).

A reader lists the files of a version (each at its live path, or under ``_archive/`` once a later version
stopped using it) and DuckDB opens them later, while it runs the query. A commit in between moves a
superseded live file to the archive (one rename; on object storage a copy, then a delete), so a listed path
can be gone although the version is intact. Files move only once, live -> archive, and never change, so
listing again finds them where they now stay: :func:`retry_moved` re-runs the whole read, listing included,
when the error names a file of the offline root that is gone (a few times, as every retry can meet the next
commit), then gives up with one line. An expired version is not retried: listing it again raises the usual
``version N was expired``.
"""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar, Union

from featurestore.errors import OfflineStoreError
from featurestore.stores import object_store

MOVED_ATTEMPTS = 8
_GONE = ("No such file", "No files found", "Cannot open file", "does not exist", "NoSuchKey", "NO_SUCH_KEY",
         "NOT_FOUND", "Not Found", "404", "not found")

T = TypeVar("T")


def moved_file(exc: BaseException, root) -> bool:
    """Whether ``exc`` says a file under the offline ``root`` (a local folder or an ``s3://`` location) is
    gone: what a reader meets when a commit archived a file it had listed."""
    text = str(exc)
    if object_store.is_remote(root) and "__offline_" in text and "AWS Error" in text:
        return True  # a GET of an object deleted (archived) while it streamed can fail otherwise, e.g. mid-response
    if not any(g in text for g in _GONE):
        return False
    if object_store.is_remote(root):  # (an Arrow dataset registered by parquet_relation may name no path)
        return root.path in text or str(root) in text or "__offline_" in text
    where = os.path.abspath(str(root))
    return where in text or os.path.realpath(where) in text


def retry_moved(read: Callable[[], T], root: Union[str, "os.PathLike", object], what: str,
                latest: bool = False) -> T:
    """``read()`` (which lists the files it reads, then reads them), run again when a concurrent commit
    moved one of its files in between (see the module docstring). ``latest``: ``read()`` reads the latest
    versions, so one expired between finding it and listing it (``expire`` next to fast commits) is read
    again too, as the new latest."""
    last = None
    for attempt in range(MOVED_ATTEMPTS):
        try:
            return read()
        except Exception as exc:  # DuckDB's IOException, pyarrow's OSError, ...: judged by what they say
            expired = latest and isinstance(exc, OfflineStoreError) and (
                "was expired" in str(exc) or "(was the version expired?)" in str(exc))
            if not (expired or moved_file(exc, root)):
                raise
            last = exc
            time.sleep(0.005 * (attempt + 1))
    first = str(last).strip().splitlines()[0] if last is not None else ""
    raise OfflineStoreError(f"{what}: the offline files kept moving under concurrent commits "
                            f"({MOVED_ATTEMPTS} attempts; last: {first}); try again") from None


__all__ = ["retry_moved", "moved_file", "MOVED_ATTEMPTS"]
