"""S3-compatible object storage for the offline store: an ``s3://bucket/prefix`` root and the few object
operations a table needs (list, get, put, put-if-absent, delete, copy, open for reading).

Objects have no rename, so a table on S3 commits differently from one on a local disk (see
``docs/offline-store.md``, "Object storage"): data files are uploaded first under unique names, then the
version's manifest ``_log/<version>.json`` is created with a **conditional put** (``If-None-Match: *``):
the store refuses it with 412 when the name exists, so exactly one of two writers racing for a version
wins and the other re-bases, as the exclusive hard link does locally. Data is read and written through
``pyarrow.fs.S3FileSystem``; the conditional put goes through botocore (pyarrow has no conditional
write). Both take credentials the usual way (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws``, instance roles); the endpoint of a store other
than AWS comes from ``offline_store.s3_endpoint`` (or ``AWS_ENDPOINT_URL``), the region from
``offline_store.s3_region`` (or ``AWS_REGION``/``AWS_DEFAULT_REGION``).
"""

from __future__ import annotations

import functools
import os
import posixpath
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

from featurestore.errors import OfflineStoreError

SCHEME = "s3://"
WHOLE_READ_BYTES = 16 << 20  # objects up to this size are uploaded with one PUT and read with one GET


@dataclass(frozen=True)
class S3Location:
    """An object key (or key prefix: a "folder") in a bucket, with the endpoint that serves it.

    Behaves like the parts of :class:`pathlib.Path` the offline store uses: ``loc / "name"``, ``.name``,
    ``.parent``, ``str(loc)`` (the ``s3://`` URI)."""

    bucket: str
    key: str = ""
    endpoint: Optional[str] = None
    region: Optional[str] = None

    @classmethod
    def parse(cls, uri: str, endpoint: Optional[str] = None, region: Optional[str] = None) -> "S3Location":
        if not uri.startswith(SCHEME):
            raise OfflineStoreError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len(SCHEME):].partition("/")
        if not bucket:
            raise OfflineStoreError(f"offline root {uri!r} names no bucket: use s3://bucket/prefix")
        return cls(bucket, key.strip("/"), endpoint or None, region or None)

    def __truediv__(self, part: Union[str, Path]) -> "S3Location":
        part = str(part).strip("/")
        return S3Location(self.bucket, posixpath.join(self.key, part) if self.key else part, self.endpoint, self.region)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"

    def __fspath__(self) -> str:  # never a local path: fail loudly where code would treat it as one
        raise TypeError(f"{self} is an object-store location, not a local path")

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def parent(self) -> "S3Location":
        return S3Location(self.bucket, posixpath.dirname(self.key), self.endpoint, self.region)

    @property
    def path(self) -> str:
        """``bucket/key``: the path ``pyarrow.fs.S3FileSystem`` takes."""
        return f"{self.bucket}/{self.key}"

    # -- operations --------------------------------------------------------------------------------
    @property
    def _client(self) -> "_Client":
        return _client(self.endpoint, self.region)

    @property
    def filesystem(self):
        """The ``pyarrow.fs.S3FileSystem`` of this location's endpoint (e.g. for ``pyarrow.dataset``)."""
        return self._client.fs

    def list_names(self) -> List[str]:
        """Names of the objects and "folders" directly under this prefix (empty when there are none)."""
        from pyarrow import fs

        try:
            infos = self._client.fs.get_file_info(fs.FileSelector(self.path, allow_not_found=True))
        except OSError as exc:
            raise _error(self, "list", exc) from None
        return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)

    def list_files(self) -> List[Tuple["S3Location", float]]:
        """(location, modification time in epoch seconds) of every object under this prefix, recursively."""
        from pyarrow import fs

        try:
            infos = self._client.fs.get_file_info(fs.FileSelector(self.path, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise _error(self, "list", exc) from None
        out = []
        for i in infos:
            if i.type == fs.FileType.File:
                key = i.path[len(self.bucket) + 1:]
                mtime = i.mtime.timestamp() if i.mtime is not None else 0.0
                out.append((S3Location(self.bucket, key, self.endpoint, self.region), mtime))
        return out

    def exists(self) -> bool:
        from pyarrow import fs

        try:
            return self._client.fs.get_file_info(self.path).type == fs.FileType.File
        except OSError as exc:
            raise _error(self, "look up", exc) from None

    def get(self) -> Optional[bytes]:
        """The object's content (one GET), ``None`` when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client.boto.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise OfflineStoreError(f"cannot read {self}: {str(exc).splitlines()[0]}") from None
        except BotoCoreError as exc:
            raise OfflineStoreError(f"cannot read {self}: {exc}") from None

    # the parts of pathlib.Path's API that training sets use (no folders on object storage: mkdir is a no-op)
    def read_bytes(self) -> bytes:
        data = self.get()
        if data is None:
            raise FileNotFoundError(str(self))
        return data

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        pass

    def open(self):
        """A random-access file for reading (``pyarrow.parquet.ParquetFile`` takes it); FileNotFoundError
        when the object does not exist."""
        try:
            return self._client.fs.open_input_file(self.path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if _not_found(exc):
                raise FileNotFoundError(str(self)) from None
            raise _error(self, "open", exc) from None

    def write_bytes(self, data: bytes) -> None:
        """Create or replace the object with ``data`` (one PUT: it appears whole or not at all)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.boto.put_object(Bucket=self.bucket, Key=self.key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise OfflineStoreError(f"cannot write {self}: {str(exc).splitlines()[0]}") from None

    def upload(self, local: Path) -> None:
        """Upload a local file to this key (one PUT, or a multipart upload that completes atomically)."""
        from pyarrow import fs

        if os.path.getsize(local) <= WHOLE_READ_BYTES:  # pyarrow's writer always uploads in parts (3 requests)
            with open(local, "rb") as f:
                return self.write_bytes(f.read())
        try:
            fs.copy_files(str(local), self.path, source_filesystem=fs.LocalFileSystem(),
                          destination_filesystem=self._client.fs)
        except OSError as exc:
            raise _error(self, "upload to", exc) from None

    def copy_to(self, dst: "S3Location") -> None:
        """Server-side copy (no data through this process)."""
        try:
            self._client.fs.copy_file(self.path, dst.path)
        except OSError as exc:
            raise _error(self, f"copy to {dst}", exc) from None

    def delete(self) -> bool:
        """Delete the object; False when it did not exist."""
        try:
            self._client.fs.delete_file(self.path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _not_found(exc):
                return False
            raise _error(self, "delete", exc) from None

    def create_exclusive(self, data: bytes) -> bool:
        """Create the object with ``data`` unless it exists (``If-None-Match: *``): True when this call
        created it, False when the name was taken (412, or 409 for a conditional put racing another)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._client.check_conditional_put(self.parent)
        try:
            self._client.boto.put_object(Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*",
                                         ContentType="application/json")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            raise OfflineStoreError(f"cannot create {self}: {code or status}: {exc}") from None
        except BotoCoreError as exc:
            raise OfflineStoreError(f"cannot create {self}: {exc}") from None


def as_root(root: Union[Path, str, S3Location], endpoint: Optional[str] = None,
            region: Optional[str] = None) -> Union[Path, S3Location]:
    """A root given as a path, a string (``s3://...`` or a local path) or a location, as a Path or an
    :class:`S3Location`."""
    if isinstance(root, S3Location):
        return root
    if isinstance(root, str) and root.startswith(SCHEME):
        return S3Location.parse(root, endpoint, region)
    return Path(root)


def staging_dir(root: S3Location, table: str) -> Path:
    """The local folder where this machine writes a table's new Parquet files before uploading them
    (``$FEATURESTORE_S3_STAGING`` or the system temp folder, one folder per root and table)."""
    import hashlib
    import tempfile

    base = os.environ.get("FEATURESTORE_S3_STAGING") or os.path.join(tempfile.gettempdir(), "featurestore-s3-staging")
    digest = hashlib.sha256(f"{root.endpoint}|{root}".encode()).hexdigest()[:16]
    return Path(base) / digest / table


def is_remote(root) -> bool:
    return isinstance(root, S3Location)


def uri(p: Union[Path, S3Location]) -> str:
    """What a reader opens: an absolute local path or an ``s3://`` URI."""
    return str(p) if is_remote(p) else str(Path(p).absolute())


class _Client:
    """One endpoint's pyarrow filesystem and botocore client (both thread-safe; created once)."""

    def __init__(self, endpoint: Optional[str], region: Optional[str]):
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self._fs = None
        self._boto = None
        self._lock = threading.Lock()
        self._checked: set = set()  # buckets whose conditional puts were seen to work

    @property
    def fs(self):
        if self._fs is None:
            from pyarrow import fs

            kwargs = {}
            if self.endpoint:
                scheme, _, rest = self.endpoint.partition("://")
                if not rest:
                    scheme, rest = "https", self.endpoint
                kwargs.update(endpoint_override=rest.rstrip("/"), scheme=scheme)
            if self.region:
                kwargs["region"] = self.region
            with self._lock:
                if self._fs is None:
                    try:
                        self._fs = fs.S3FileSystem(**kwargs)
                    except (OSError, ValueError) as exc:
                        raise OfflineStoreError(f"cannot use S3 endpoint {self.endpoint or 'AWS'}: {exc}") from None
        return self._fs

    def check_conditional_put(self, folder: S3Location) -> None:
        """Refuse, once per bucket and process, a store that ignores ``If-None-Match: *`` (it would let
        two writers both commit one version, the later silently replacing the earlier): a probe object
        is created twice in ``folder``; the second put must fail."""
        if folder.bucket in self._checked:
            return
        import uuid

        from botocore.exceptions import ClientError

        probe = folder / f".conditional-put-probe-{uuid.uuid4().hex}"
        try:
            self.boto.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"1", IfNoneMatch="*")
            try:
                self.boto.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"2", IfNoneMatch="*")
                honoured = False
            except ClientError as exc:
                honoured = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)
                if not honoured:
                    raise
        except ClientError as exc:
            raise OfflineStoreError(f"cannot write to {folder}: {exc}") from None
        finally:
            try:
                self.boto.delete_object(Bucket=probe.bucket, Key=probe.key)
            except ClientError:
                pass
        if not honoured:
            raise OfflineStoreError(
                f"the S3 endpoint {self.endpoint or 'AWS'} ignores conditional writes (If-None-Match: *): "
                f"two writers could both commit one version of an offline table; use a store that supports "
                f"them (AWS S3, MinIO, ...: see docs/offline-store.md)")
        self._checked.add(folder.bucket)

    @property
    def boto(self):
        if self._boto is None:
            from featurestore.extras import require

            boto3 = require("boto3", "an s3:// offline root")
            with self._lock:
                if self._boto is None:
                    self._boto = boto3.session.Session().client(
                        "s3", endpoint_url=self.endpoint, region_name=self.region or "us-east-1")
        return self._boto


@functools.lru_cache(maxsize=None)
def _client(endpoint: Optional[str], region: Optional[str]) -> _Client:
    return _Client(endpoint, region)


def _not_found(exc: OSError) -> bool:
    text = str(exc)
    return "NoSuchKey" in text or "NOT_FOUND" in text or "404" in text or "does not exist" in text


def _error(loc: S3Location, what: str, exc: OSError) -> OfflineStoreError:
    return OfflineStoreError(f"cannot {what} {loc}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
