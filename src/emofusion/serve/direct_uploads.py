"""Direct uploads: with S3 storage a client uploads the media straight to the bucket with a signed
form (POST /v1/uploads), then creates the analysis from it by `upload_id` (POST /v1/analyses), so a
large video never passes through the app server's request body. The size limit and the media
types of ordinary uploads apply: S3 enforces the signed policy, and the object is checked again
(size, type) before it is analysed; an object that breaks them is deleted."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import ApiError
from .storage import Storage, StorageError
from .uploads import MEDIA_TYPES, cannot_store

SIGNED_FOR_SECONDS = 15 * 60
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


def direct_key(user_id: str, upload_id: str) -> str:
    """Where a user's direct upload lives; another user's `upload_id` never names it."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
        raise ApiError(422, "invalid_request", "upload_id must be the id POST /v1/uploads returned")
    return f"direct/{user_id}/{upload_id}/media"


def sign_upload(storage: Storage, user_id: str, body: Any, max_bytes: int) -> dict[str, Any]:
    """The signed form for one upload of `body["size"]` bytes of `body["content_type"]`."""
    if storage.upload_origin is None:
        raise ApiError(409, "direct_uploads_unavailable", "this server takes no direct uploads (its storage is a "
                       "local folder, or cannot sign uploads): send the file to POST /v1/analyses as multipart/form-data")
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "send a JSON object with content_type and size")
    content_type, size = body.get("content_type"), body.get("size")
    if not isinstance(content_type, str) or not content_type.lower().startswith(MEDIA_TYPES) or len(content_type) > 100:
        raise ApiError(415, "unsupported_media_type", f"content_type {content_type!r} is not a video or audio type")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ApiError(422, "invalid_request", "size must be the file's size in bytes (a positive integer)")
    if size > max_bytes:
        raise ApiError(413, "payload_too_large", f"the file is larger than the limit ({max_bytes / 1024 / 1024:g} MB)")
    upload_id = uuid.uuid4().hex
    try:
        signed = storage.presigned_post(direct_key(user_id, upload_id), content_type, size, SIGNED_FOR_SECONDS)
    except StorageError as exc:
        raise cannot_store(exc) from None
    expires = datetime.now(timezone.utc) + timedelta(seconds=SIGNED_FOR_SECONDS)
    return {"upload_id": upload_id, "method": "POST", "url": signed["url"], "fields": signed["fields"],
            "content_type": content_type, "max_bytes": size,
            "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z")}


def claim_upload(storage: Storage, user_id: str, upload_id: str, max_bytes: int, job_key: str) -> int:
    """Move a finished direct upload to `job_key` (so it feeds one analysis only) and return its
    size, after checking it against what was signed and the server's limit: a 404 when there is
    none, 413 / 415 / 422 (and the object deleted) when it breaks them."""
    key = direct_key(user_id, upload_id)
    try:
        size, content_type, metadata = storage.head(key)
    except StorageError:
        raise ApiError(404, "not_found", f"no upload {upload_id!r}: it was never uploaded, or it was used or "
                       "expired") from None
    signed_for = str(metadata.get("declared-size", ""))
    limit = min(int(signed_for), max_bytes) if signed_for.isdigit() else max_bytes
    problem = None
    if size > limit:
        problem = ApiError(413, "payload_too_large", f"the upload is {size} bytes, more than the {limit} it was "
                           "signed for")
    elif not content_type.lower().startswith(MEDIA_TYPES):
        problem = ApiError(415, "unsupported_media_type", f"the upload is {content_type!r}; send a video or audio file")
    elif size == 0:
        problem = ApiError(422, "empty_file", "the upload is empty")
    if problem is not None:
        storage.delete(key)
        raise problem
    try:
        storage.move(key, job_key)
    except StorageError as exc:
        raise cannot_store(exc) from None
    return size
