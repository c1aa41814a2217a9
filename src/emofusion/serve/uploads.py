"""Uploads: spooled to private files, checked for size, type, media and window count before
anything is stored or charged. Every refusal is an `ApiError` (HTTP-only conditions) or the
library's EmofusionError (unreadable media, too many windows), rendered as the service's error body."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from fastapi import Request
from starlette.datastructures import UploadFile as FormFile  # what request.form() yields

from ..errors import ExternalAudioError
from ..media import MediaError, probe
from .errors import ApiError
from .storage import Storage, StorageError

log = logging.getLogger("emofusion.serve")
MAX_TRANSCRIPT_BYTES = 5 * 1024 * 1024  # ~100 hours of subtitles; read into memory whole
MEDIA_TYPES = ("video/", "audio/", "application/octet-stream")


def cannot_store(exc: Exception) -> ApiError:
    """503 for an upload the server cannot write (disk full, read-only storage); the details,
    which name server paths, go to the log only."""
    log.error("cannot store an upload: %s", exc)
    return ApiError(503, "storage_unavailable", "the server cannot store uploads right now; try again later",
                    {"Retry-After": "60"})


def private_file(tmp: Path) -> tuple[int, Path]:
    """A new empty file for an upload in the server's temporary folder `tmp` (the client's file
    name is never used as a path); 503 `storage_unavailable` when the server cannot write there."""
    try:
        fd, name = tempfile.mkstemp(dir=tmp, prefix="upload-")
    except OSError as exc:
        raise cannot_store(exc) from None
    return fd, Path(name)


@contextmanager
def spooled(upload: FormFile | Path, what: str, tmp: Path, max_bytes: int) -> Iterator[Path]:
    """The upload as a private file, checked for size: a form part is copied to one (deleted
    afterwards); a Path is a body already written to one (`spool_body`, its caller deletes it)."""
    if isinstance(upload, Path):
        check_size(upload, what, max_bytes)
        yield upload
        return
    fd, path = private_file(tmp)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, out, 1024 * 1024)
        except OSError as exc:
            raise cannot_store(exc) from None
        check_size(path, what, max_bytes)
        yield path
    finally:
        path.unlink(missing_ok=True)


def check_size(path: Path, what: str, max_bytes: int) -> None:
    """422 `empty_file` or 413 `payload_too_large` for an upload of the wrong size."""
    size = path.stat().st_size
    if size == 0:
        raise ApiError(422, "empty_file", f"the {what} upload is empty")
    if size > max_bytes:
        raise ApiError(413, "payload_too_large", f"the {what} upload is larger than the limit "
                       f"({max_bytes / 1024 / 1024:g} MB)")


async def spool_body(request: Request, tmp: Path) -> Path:
    """A raw upload body written once, as it arrives, to a private file (the caller deletes it),
    so concurrent large bodies do not each sit in memory whole."""
    fd, path = private_file(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise cannot_store(exc) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def store(storage: Storage, key: str, upload: Path | BinaryIO) -> str:
    """Put a spooled upload (a path or an open file) into storage; 503 when it cannot be written."""
    try:
        if isinstance(upload, Path):
            with open(upload, "rb") as fh:
                storage.put(key, fh)
        else:
            storage.put(key, upload)
    except (StorageError, OSError) as exc:
        raise cannot_store(exc) from None
    return key


def display_name(upload: FormFile | str | None) -> str | None:
    """The client's file name (of a form part, or as given), for display only: base name,
    printable, at most 255 characters."""
    given = upload if isinstance(upload, str) or upload is None else upload.filename
    if not given:
        return None
    name = given.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


def probe_media(path: Path, what: str) -> float:
    """Duration in seconds of an uploaded media file; 415 when it has no stream, 422 when it is not
    media we can read (`invalid_audio` for the separate audio upload, `invalid_media` otherwise,
    as for the CLI and batch)."""
    try:
        info = probe(str(path))
    except MediaError as exc:
        unusable = ExternalAudioError if what == "audio" else MediaError
        raise unusable(f"the {what} upload is not usable media: {exc}") from None
    if not (info.has_video or info.has_audio):
        raise ApiError(415, "unsupported_media_type", f"the {what} upload has no audio or video stream")
    return float(info.duration)


def bounded_transcript(content: bytes) -> bytes:
    """A transcript's bytes, or 413 when it is longer than any transcript of real speech."""
    if len(content) > MAX_TRANSCRIPT_BYTES:
        raise ApiError(413, "payload_too_large", f"the transcript is larger than {MAX_TRANSCRIPT_BYTES // 1024 // 1024} MB")
    return content


def check_upload_type(upload: FormFile, what: str) -> None:
    ctype = (upload.content_type or "").lower()
    if ctype and not ctype.startswith(MEDIA_TYPES):
        raise ApiError(415, "unsupported_media_type", f"the {what} upload is {ctype!r}; send a video or audio file")


def require_multipart(request: Request, urlencoded_ok: bool = False) -> None:
    """415 unless the body is a multipart form (or, with `urlencoded_ok`, a URL-encoded one, which
    carries fields but no files)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data") and not (
            urlencoded_ok and ctype.startswith("application/x-www-form-urlencoded")):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with a 'file' field")
