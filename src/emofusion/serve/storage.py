"""Where uploads live: a local folder, or an S3 bucket (AWS, MinIO or another S3-compatible server).

Keys are chosen by the service (e.g. ``uploads/<uuid>/video``), never taken from user file names;
they are still checked, so that no key can reach outside a storage's root or prefix.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import io
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, ContextManager
from urllib.parse import unquote, urlsplit

from ..errors import StorageError  # noqa: F401  (re-exported: the error family lives in emofusion.errors)

# How often LocalStorage.put retries when a concurrent delete prunes the folder it just made.
_PUT_ATTEMPTS = 3

# S3 error codes, as botocore reports them (HEAD requests have no body, so only the HTTP status).
_MISSING_BUCKET_CODES = ("NoSuchBucket",)
_MISSING_KEY_CODES = ("404", "NoSuchKey", "NotFound")
_ACCESS_DENIED_CODES = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key (``a/b/c``), else raise StorageError.

    Rejected: empty keys, absolute paths, empty, ``.`` or ``..`` components, backslashes and NUL.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("storage key must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise StorageError(f"storage key {key!r} contains a NUL or a backslash")
    if key.startswith("/"):
        raise StorageError(f"storage key {key!r} is an absolute path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"storage key {key!r} has an empty, '.' or '..' component")
    return key


class Storage(abc.ABC):
    """A flat store of byte objects addressed by keys such as ``uploads/<uuid>/video``."""

    description: str
    """Where the objects live, for logs and /health (e.g. ``local:/srv/uploads``); no secrets."""
    upload_origin: str | None = None
    """The origin browsers upload to directly (`presigned_post`); None: no direct uploads."""

    def presigned_post(self, key: str, content_type: str, max_bytes: int, expires_seconds: int) -> dict[str, Any]:
        """{"url", "fields"} of an HTML form POST that stores one file of `content_type` and at most
        `max_bytes` at `key`, valid for `expires_seconds`; StorageError where there are none."""
        raise StorageError(f"{self.description} takes no direct uploads")

    def move(self, key: str, new_key: str) -> None:
        """Put the object at `key` (a direct upload) under `new_key` instead."""
        raise StorageError(f"{self.description} takes no direct uploads")

    def head(self, key: str) -> tuple[int, str, dict[str, str]]:
        """(size in bytes, content type, user metadata) of the object at `key` (a direct upload);
        StorageError when there is none."""
        raise StorageError(f"{self.description} takes no direct uploads")

    @abc.abstractmethod
    def put(self, key: str, data: bytes | BinaryIO) -> None:
        """Store `data` (bytes, or a binary file object read to its end) under `key`, replacing any object there."""

    @abc.abstractmethod
    def local_path(self, key: str) -> ContextManager[pathlib.Path]:
        """A local file holding the object's bytes for the duration of the with-block.

        StorageError when there is no object at `key`. Treat the file as read-only.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at `key`; nothing happens when there is none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether there is an object at `key`."""

    @abc.abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """The keys of every object whose key starts with `prefix` (a folder, ``a/b/``, or ``""``), sorted."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class LocalStorage(Storage):
    """Objects as files under a root folder (created if missing); a key's ``/`` are sub-folders."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = pathlib.Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the storage folder {self.root}: {e.strerror or e}") from e
        self.description = f"local:{self.root}"

    def _path(self, key: str) -> pathlib.Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        """Write to a temporary file beside the target, then rename it into place: readers never see half a file."""
        path = self._path(key)
        for attempt in range(_PUT_ATTEMPTS):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
                break
            except FileNotFoundError:
                if attempt == _PUT_ATTEMPTS - 1:
                    raise StorageError(f"cannot create the folder for {key!r} under {self.root}") from None
            except OSError as e:
                raise StorageError(f"cannot write {key!r} under {self.root}: {e.strerror or e}") from e
        try:
            try:
                with open(fd, "wb") as out:
                    if isinstance(data, (bytes, bytearray, memoryview)):
                        out.write(data)
                    else:
                        shutil.copyfileobj(data, out, 1024 * 1024)
                os.replace(tmp_name, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
        except OSError as e:
            raise StorageError(f"cannot write {key!r} under {self.root}: {e.strerror or e}") from e

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[pathlib.Path]:
        """The object's own file."""
        path = self._path(key)
        if not path.is_file():
            raise StorageError(f"no object {key!r} in {self.description}")
        yield path

    def delete(self, key: str) -> None:
        """Remove the file, then the folders under the root that this leaves empty."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"cannot delete {key!r} under {self.root}: {e.strerror or e}") from e
        for folder in path.parents:
            if folder == self.root:
                break
            try:
                folder.rmdir()
            except OSError:
                break

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            files = [p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")]
        except OSError as e:
            raise StorageError(f"cannot list {base}: {e.strerror or e}") from e
        return sorted(p.relative_to(self.root).as_posix() for p in files)


class S3Storage(Storage):
    """Objects in an S3 bucket, under an optional key prefix.

    `endpoint_url` points at an S3-compatible server (MinIO, a test server); when None, boto3's
    usual configuration applies (credentials, region, ``AWS_ENDPOINT_URL``). `client` replaces the
    boto3 S3 client that would otherwise be made.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client: Any = None) -> None:
        try:
            import boto3
            import boto3.exceptions
            import botocore.exceptions
        except ImportError as e:
            raise StorageError("S3 storage needs boto3: pip install 'emofusion[s3]'") from e
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{check_key(prefix)}/" if prefix else ""
        self._errors: tuple[type[Exception], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error,
        )
        self._no_credentials = botocore.exceptions.NoCredentialsError
        self._client = client if client is not None else boto3.client("s3", endpoint_url=endpoint_url)
        self.description = f"s3://{bucket}/{self.prefix}"
        if endpoint_url:
            endpoint = urlsplit(endpoint_url)
            # Only scheme, host and port: an endpoint URL may carry user:password.
            host = endpoint.hostname or ""
            self.description += f" at {endpoint.scheme}://{host}" + (f":{endpoint.port}" if endpoint.port else "")

    @functools.cached_property
    def upload_origin(self) -> str | None:  # type: ignore[override]
        """Where a signed form posts to (worked out locally, no request); None when this client
        cannot sign (no credentials)."""
        try:
            signed = self._client.generate_presigned_post(self.bucket, self.prefix + "x", ExpiresIn=60)["url"]
        except self._errors + (ValueError, AttributeError, KeyError):
            return None
        return "{0.scheme}://{0.netloc}".format(urlsplit(signed))

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @staticmethod
    def _error_code(error: Exception) -> str:
        response = getattr(error, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def _bucket_missing(self) -> bool:
        """Whether the bucket is known not to exist (a 404 on HEAD does not say whether bucket or key is missing)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as e:
            return self._error_code(e) in _MISSING_BUCKET_CODES + _MISSING_KEY_CODES
        return False

    def _error(self, action: str, key: str, error: Exception) -> StorageError:
        """A StorageError with a readable message for a boto3/botocore error."""
        where = f"s3://{self.bucket}/{self._key(key)}"
        code = self._error_code(error)
        if code in _MISSING_BUCKET_CODES or (code in _MISSING_KEY_CODES and self._bucket_missing()):
            message = f"the bucket {self.bucket!r} does not exist"
        elif code in _MISSING_KEY_CODES:
            message = "no such object"
        elif code in _ACCESS_DENIED_CODES:
            message = f"access denied ({code}); check the S3 credentials and the bucket's permissions"
        elif isinstance(error, self._no_credentials):
            message = "no S3 credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile)"
        else:
            message = str(error)
        return StorageError(f"cannot {action} {where}: {message}")

    @contextlib.contextmanager
    def _wrap(self, action: str, key: str) -> Iterator[None]:
        """Raise boto3/botocore errors from the block as StorageError."""
        try:
            yield
        except self._errors as e:
            raise self._error(action, key, e) from e

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        """Upload with ``upload_fileobj`` (multipart for large objects), streaming file objects."""
        fileobj = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with self._wrap("upload to", key):
            self._client.upload_fileobj(fileobj, self.bucket, self._key(key))

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[pathlib.Path]:
        """A download into a temporary folder, removed after the block; the file keeps the key's last name."""
        with tempfile.TemporaryDirectory(prefix="emofusion-s3-") as folder:
            path = pathlib.Path(folder) / check_key(key).rsplit("/", 1)[-1]
            with self._wrap("download", key):
                self._client.download_file(self.bucket, self._key(key), str(path))
            yield path

    def delete(self, key: str) -> None:
        with self._wrap("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as e:
            if self._error_code(e) in _MISSING_KEY_CODES and not self._bucket_missing():
                return False
            raise self._error("look up", key, e) from e
        return True


    def presigned_post(self, key: str, content_type: str, max_bytes: int, expires_seconds: int) -> dict[str, Any]:
        """A POST policy that S3 itself enforces: this key only, exactly this Content-Type, 1 to
        `max_bytes` bytes; the declared size rides along as object metadata."""
        fields = {"Content-Type": content_type, "x-amz-meta-declared-size": str(max_bytes)}
        conditions = [{"Content-Type": content_type}, {"x-amz-meta-declared-size": str(max_bytes)},
                      ["content-length-range", 1, max_bytes]]
        with self._wrap("sign an upload to", key):
            return self._client.generate_presigned_post(self.bucket, self._key(key), Fields=fields,
                                                        Conditions=conditions, ExpiresIn=expires_seconds)

    def move(self, key: str, new_key: str) -> None:
        """A copy inside the bucket (multipart for large objects), then the original deleted."""
        with self._wrap("move", key):
            self._client.copy({"Bucket": self.bucket, "Key": self._key(key)}, self.bucket, self._key(new_key))
        self.delete(key)

    def head(self, key: str) -> tuple[int, str, dict[str, str]]:
        with self._wrap("look up", key):
            meta = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return int(meta["ContentLength"]), str(meta.get("ContentType", "")), dict(meta.get("Metadata", {}))

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        with self._wrap("list", prefix.rstrip("/") or "*"):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                found.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        return sorted(found)


def storage_from_url(url: str, *, endpoint_url: str | None = None) -> Storage:
    """The storage a URL names: ``s3://bucket/prefix`` (S3Storage, with `endpoint_url`),
    ``file:///absolute/path`` or a plain path (LocalStorage). Anything else raises StorageError."""
    if not url:
        raise StorageError("empty storage URL")
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"S3 storage URL {url!r} has no bucket: use s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise StorageError(f"S3 storage URL {url!r} must not have a query or fragment")
        return S3Storage(parts.netloc, unquote(parts.path), endpoint_url=endpoint_url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise StorageError(f"file storage URL {url!r} must be file:///absolute/path")
        return LocalStorage(unquote(parts.path))
    if parts.scheme:
        raise StorageError(
            f"unsupported storage URL scheme {parts.scheme!r}: use s3://bucket/prefix, file:///absolute/path or a path"
        )
    return LocalStorage(url)
