"""The /v1 API: queued analyses, usage, and API keys (managed from a web session only)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from starlette.datastructures import UploadFile as FormFile  # what request.form() yields

from ...options import AnalysisOptions, check_text_inputs, check_window_count, given_options
from .. import auth
from ..callbacks import CallbackRefused, check_callback_url
from ..db import FAILED, QUEUED, SUCCEEDED, AnalysisJob, new_id
from ..direct_uploads import claim_upload, sign_upload
from ..training_labels import checked_labels
from ..dependencies import Principal, ServicesDep, SessionPrincipal
from ..engine import parse_transcript
from ..errors import ApiError
from ..quotas import Charge
from ..services import Services
from ..uploads import (MAX_TRANSCRIPT_BYTES, bounded_transcript, check_upload_type, display_name, probe_media,
                       require_multipart, store)

log = logging.getLogger("emofusion.serve")
MAX_OFFSET = 2**31 - 1  # beyond what any database binds as an integer, and any user's list
# /v1/analyses reads its form itself (after authenticating the caller), so its schema is declared here
ANALYSIS_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video or audio file to analyse "
                 "(or upload_id)"},
        "upload_id": {"type": "string", "description": "instead of file: a finished direct upload (POST /v1/uploads)"},
        "training_consent": {"type": "string", "description": "true: keep the upload after the analysis so that you "
                             "can label it for retraining (PUT /v1/analyses/{id}/labels); withdraw any time"},
        "filename": {"type": "string", "description": "with upload_id: the file's name, for display"},
        "audio": {"type": "string", "format": "binary", "description": "audio that replaces the file's own track"},
        "transcript": {"type": "string", "format": "binary", "description": ".srt, .vtt or .txt"},
        "text": {"type": "string", "description": "plain text said over the whole file"},
        "options": {"type": "string", "description": 'JSON, e.g. {"window": 2, "hop": 1, "transcribe": "auto", "calibrate": "auto"}'},
        "callback_url": {"type": "string", "description": "POSTed the outcome as JSON when done"},
    }}}}}}

router = APIRouter(tags=["v1"])


class KeyRequest(BaseModel):
    name: str


def _iso(value: datetime | None, timespec: str = "seconds") -> str | None:
    return value.isoformat(timespec=timespec) + "Z" if value else None


def job_dict(job: AnalysisJob, with_result: bool = True) -> dict[str, Any]:
    d = {
        "id": job.id, "status": job.status, "progress": round(job.progress, 4), "filename": job.filename,
        # a run's start and end to the millisecond: whole seconds made a 0.4 s run "took 0 s"
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at, "milliseconds"),
        "finished_at": _iso(job.finished_at, "milliseconds"),
        "media_seconds": round(job.media_seconds, 3), "options": job.options or {},
        "training_consent": bool(job.training_consent), "labels": job.labels,
        "error": {"code": job.error_code, "message": job.error_message} if job.status == FAILED else None,
    }
    if with_result:
        d["result"] = job.result if job.status == SUCCEEDED else None
    return d


@router.post("/v1/analyses", status_code=202, openapi_extra=ANALYSIS_FORM)
async def create_analysis(request: Request, principal: Principal, services: ServicesDep) -> dict:
    """Queue an analysis of the multipart `file` (+ optional `audio`, `transcript`, `text`,
    `options`, `callback_url`); poll GET /v1/analyses/{id} (or give a callback_url).

    The caller is authenticated before a byte of the body is read. With `upload_id` (no file
    parts), the fields may also come URL-encoded."""
    require_multipart(request, urlencoded_ok=True)
    async with request.form(max_files=3, max_fields=8) as form:
        parts = {name: form.get(name) for name in ("file", "audio", "transcript")}
        fields = {name: form.get(name)
                  for name in ("text", "options", "callback_url", "upload_id", "filename", "training_consent")}
        if (parts["file"] is None) == (fields["upload_id"] is None):
            raise ApiError(422, "invalid_request", "give either the field 'file' or 'upload_id' (a direct upload)"
                           if parts["file"] is not None else "missing field 'file' (or 'upload_id')")
        for name, part in parts.items():
            if part is not None and not isinstance(part, FormFile):
                raise ApiError(422, "invalid_request", f"'{name}' must be a file part")
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise ApiError(422, "invalid_request", f"'{name}' must be a text field, not a file")
        return await anyio.to_thread.run_sync(lambda: queue_analysis(services, principal, **parts, **fields))


def queue_analysis(services: Services, principal: auth.Principal, file: FormFile | None, audio: FormFile | None,
                   transcript: FormFile | None, text: str | None, options: str | None,
                   callback_url: str | None, upload_id: str | None = None, filename: str | None = None,
                   training_consent: str | None = None) -> dict:
    """Check, store and charge one analysis, then queue it; nothing stays stored or charged
    when any step fails. The media is the `file` part, or the direct upload `upload_id`."""
    if training_consent not in (None, "", "true", "false", "1", "0"):
        raise ApiError(422, "invalid_request", "training_consent must be true or false")
    consent = training_consent in ("true", "1")
    parsed = given_options(options)
    chosen = AnalysisOptions.from_mapping(parsed)
    services.engine.check_options(chosen)  # now, not in the job
    if transcript is not None:
        parse_transcript(bounded_transcript(transcript.file.read(MAX_TRANSCRIPT_BYTES + 1)))
    check_text_inputs(transcript, text or None, chosen.transcribe)
    if text and "\x00" in text:  # no database stores a NUL in text, and no one says one
        raise ApiError(422, "invalid_request", "the text contains a NUL character")
    if callback_url:
        try:
            check_callback_url(callback_url, services.settings.callback_private)
        except CallbackRefused as exc:
            raise ApiError(422, "invalid_callback", str(exc)) from None
    if file is not None:
        check_upload_type(file, "file")
    if audio is not None:
        check_upload_type(audio, "audio")
    job_id = new_id()
    keys: list[str] = []
    charge: Charge | None = None
    media_key = f"uploads/{job_id}/media"
    try:
        with ExitStack() as files:
            if upload_id is not None:  # moved to this job's key: an upload feeds one analysis only
                keys.append(media_key)  # deleted if anything refuses the analysis, the move included
                claim_upload(services.storage, principal.user_id, upload_id, services.settings.max_upload_bytes,
                             media_key)
                path = files.enter_context(services.storage.local_path(media_key))
            else:
                path = files.enter_context(services.spooled(file, "file"))
            seconds = probe_media(path, "file")
            audio_path = files.enter_context(services.spooled(audio, "audio")) if audio is not None else None
            if audio_path is not None:
                seconds = max(seconds, probe_media(audio_path, "audio"))
            check_window_count(seconds, chosen.window, chosen.hop)  # TooManyWindows before storing or charging
            if audio_path is not None:
                keys.append(store(services.storage, f"uploads/{job_id}/audio", audio_path))
            if transcript is not None:
                transcript.file.seek(0)
                keys.append(store(services.storage, f"uploads/{job_id}/transcript", transcript.file))
            if upload_id is None:
                keys.append(store(services.storage, media_key, path))
        charge = services.quotas.charge(principal.user_id, seconds)
        with services.db.session() as s:
            s.add(AnalysisJob(
                id=job_id, user_id=principal.user_id, status=QUEUED,
                filename=display_name(file if upload_id is None else filename), media_key=media_key,
                audio_key=f"uploads/{job_id}/audio" if audio else None,
                transcript_key=f"uploads/{job_id}/transcript" if transcript else None, text=text or None,
                options=parsed, callback_url=callback_url or None, media_seconds=seconds, training_consent=consent,
                charged_day=charge.day, charged_month=charge.month,
            ))
    except BaseException:
        for key in keys:
            services.jobs.delete_upload(key)
        if charge is not None:
            try:
                services.quotas.refund(charge)
            except Exception as exc:  # the database is down too: the original error is the one to raise
                log.error("could not refund a failed submission: %s", type(exc).__name__)
        raise
    services.jobs.submit(job_id)
    return {"id": job_id, "status": QUEUED}


def _own_job(services: Services, principal: auth.Principal, job_id: str) -> AnalysisJob:
    with services.db.session() as s:
        job = s.get(AnalysisJob, job_id)
    if job is None or job.user_id != principal.user_id:  # another user's job is not found, not forbidden
        raise ApiError(404, "not_found", f"no analysis {job_id!r}")
    return job


@router.post("/v1/uploads", status_code=201)
async def create_upload(request: Request, principal: Principal, services: ServicesDep) -> dict:
    """With S3 storage: a signed form to upload one video or audio file of `size` bytes and
    `content_type` straight to the bucket; then POST /v1/analyses with its `upload_id`.
    409 `direct_uploads_unavailable` with local storage (send the file to /v1/analyses)."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    return sign_upload(services.storage, principal.user_id, body, services.settings.max_upload_bytes)


@router.get("/v1/analyses/{job_id}")
def get_analysis(job_id: str, principal: Principal, services: ServicesDep) -> dict:
    return job_dict(_own_job(services, principal, job_id))


@router.get("/v1/analyses")
def list_analyses(principal: Principal, services: ServicesDep, limit: int = 20, offset: int = 0) -> dict:
    if not 1 <= limit <= 100 or not 0 <= offset <= MAX_OFFSET:
        raise ApiError(422, "invalid_request", f"limit must be 1..100 and offset 0..{MAX_OFFSET}")
    with services.db.session() as s:
        mine = AnalysisJob.user_id == principal.user_id
        total = s.scalar(select(func.count()).select_from(AnalysisJob).where(mine))
        jobs = s.scalars(select(AnalysisJob).where(mine).order_by(AnalysisJob.created_at.desc(), AnalysisJob.id)
                         .limit(limit).offset(offset)).all()
    return {"items": [job_dict(j, with_result=False) for j in jobs], "total": total, "limit": limit, "offset": offset}


@router.delete("/v1/analyses/{job_id}", status_code=204)
def delete_analysis(job_id: str, principal: Principal, services: ServicesDep) -> Response:
    job = _own_job(services, principal, job_id)
    with services.db.session() as s:
        s.execute(delete(AnalysisJob).where(AnalysisJob.id == job.id))
    if job.status == QUEUED and job.charged_day and job.charged_month:
        services.quotas.refund(Charge(job.user_id, job.charged_day, job.charged_month, job.media_seconds))
    for key in job.upload_keys:
        services.jobs.delete_upload(key)
    return Response(status_code=204)


@router.put("/v1/analyses/{job_id}/labels")
async def put_labels(job_id: str, request: Request, principal: Principal, services: ServicesDep) -> dict:
    """Label an analysis submitted with training_consent: `{"labels": [{"label", "start"?, "end"?}]}`
    (start/end in seconds; neither: the whole file). Replaces its labels."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    with services.db.session() as s:
        job = s.get(AnalysisJob, job_id)
        if job is None or job.user_id != principal.user_id:
            raise ApiError(404, "not_found", f"no analysis {job_id!r}")
        job.labels = checked_labels(job, body)
        return {"id": job.id, "labels": job.labels}


@router.delete("/v1/analyses/{job_id}/labels", status_code=204)
def withdraw_labels(job_id: str, principal: Principal, services: ServicesDep) -> Response:
    """Withdraw consent: the labels go, and so does the upload kept for training."""
    with services.db.session() as s:
        job = s.get(AnalysisJob, job_id)
        if job is None or job.user_id != principal.user_id:
            raise ApiError(404, "not_found", f"no analysis {job_id!r}")
        had_consent, keys = job.training_consent, job.upload_keys
        job.training_consent, job.labels = False, None
    if had_consent and not services.settings.retain_uploads:
        for key in keys:
            services.jobs.delete_upload(key)
    return Response(status_code=204)


@router.get("/v1/analyses/{job_id}/timeline.png", response_class=Response)
def timeline(job_id: str, principal: Principal, services: ServicesDep) -> Response:
    job = _own_job(services, principal, job_id)
    if job.status != SUCCEEDED:
        raise ApiError(409, "not_ready", f"the analysis is {job.status}; the timeline exists once it has succeeded")
    from ...plot import timeline_png

    return Response(timeline_png(job.result), media_type="image/png")


@router.get("/v1/usage")
def usage(principal: Principal, services: ServicesDep) -> dict:
    return services.quotas.usage(principal.user_id)


@router.get("/v1/keys")
def list_keys(principal: SessionPrincipal, services: ServicesDep) -> dict:
    return {"items": [
        {"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": _iso(k.created_at),
         "last_used_at": _iso(k.last_used_at), "revoked_at": _iso(k.revoked_at)}
        for k, _ in auth.list_keys(services.db, principal.user_id)
    ]}


@router.post("/v1/keys", status_code=201)
def create_key(body: KeyRequest, principal: SessionPrincipal, services: ServicesDep) -> dict:
    key, secret = auth.create_key(services.db, principal.user_id, body.name)
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "key": secret, "created_at": _iso(key.created_at)}


@router.delete("/v1/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, principal: SessionPrincipal, services: ServicesDep) -> Response:
    if not auth.revoke_key(services.db, key_id, principal.user_id):
        raise ApiError(404, "not_found", f"no API key {key_id!r}")
    return Response(status_code=204)
