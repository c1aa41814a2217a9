"""The FastAPI application: SageMaker and MVP routes, the /v1 API, web sessions, the web page.

`create_app(settings)` builds it; `emofusion serve` runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Callable, Iterator

import anyio
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from starlette.datastructures import UploadFile as FormFile  # what request.form() yields

from .. import __version__
from ..options import AnalysisOptions, check_window_count, given_options
from ..media import MediaError, probe
from . import auth
from .config import Settings
from .db import FAILED, QUEUED, SUCCEEDED, AnalysisJob, Database, new_id
from .body_limit import BodyLimit
from .callbacks import CallbackRefused, check_callback_url
from .engine import Engine, parse_transcript
from .errors import ApiError, install_error_handlers
from .jobs import JobRunner
from .login_guard import HashSlots, LoginThrottle
from .metrics import Metrics
from .quotas import Charge, Limits, Quotas, RateLimiter
from .storage import Storage, StorageError, storage_from_url

log = logging.getLogger("emofusion.serve")
WEB = Path(__file__).with_name("web")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MAX_TRANSCRIPT_BYTES = 5 * 1024 * 1024  # ~100 hours of subtitles; read into memory whole
MAX_OFFSET = 2**31 - 1  # beyond what any database binds as an integer, and any user's list
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
# the web page loads its own script, style and the timelines it fetches; the recording preview
# plays a blob: URL. The API docs page (FastAPI's Swagger UI) loads its script and style from a
# CDN and starts with an inline script.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
               "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
               "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; worker-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
API_POLICY = "default-src 'none'; frame-ancestors 'none'"


def _content_policy(path: str) -> str:
    if path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        return DOCS_POLICY
    if path == "/" or path.startswith("/static/"):
        return PAGE_POLICY
    return API_POLICY


UPLOAD_PATHS = frozenset({"/invocations", "/predict", "/v1/analyses"})
# /predict and /v1/analyses read their forms themselves (after authenticating the caller), so
# their schemas are declared here
PREDICT_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "a video or audio file"}}}}}}}
ANALYSIS_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video or audio file to analyse"},
        "audio": {"type": "string", "format": "binary", "description": "audio that replaces the file's own track"},
        "transcript": {"type": "string", "format": "binary", "description": ".srt, .vtt or .txt"},
        "text": {"type": "string", "description": "plain text said over the whole file"},
        "options": {"type": "string", "description": 'JSON, e.g. {"window": 2, "hop": 1}'},
        "callback_url": {"type": "string", "description": "POSTed the outcome as JSON when done"},
    }}}}}}
MEDIA_TYPES = ("video/", "audio/", "application/octet-stream")


class Services:
    """Everything a request needs, built once at start-up."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.tmp = settings.home / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.db = Database(settings.database_url)
        self.db.upgrade()
        self.storage: Storage = storage_from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
        self.engine = engine or Engine(settings.model, batch_max=settings.batch_max,
                                       batch_wait=settings.batch_wait_ms / 1000)
        self.quotas = Quotas(self.db, Limits(settings.requests_per_day, settings.media_minutes_per_month))
        self.rate = RateLimiter(settings.key_requests_per_minute)
        self.jobs = JobRunner(self.db, self.storage, self.engine, self.quotas, workers=settings.job_workers,
                              max_attempts=settings.max_attempts, heartbeat_seconds=settings.heartbeat_seconds,
                              poll_seconds=settings.poll_seconds, retain_uploads=settings.retain_uploads,
                              callback_private=settings.callback_private)
        # /invocations and /predict analyse on these threads only: each thread keeps its own
        # Analyzers (Engine.analyzer), so their number stays bounded whatever else runs
        self.analysis_pool = ThreadPoolExecutor(settings.sync_concurrency, thread_name_prefix="emofusion-analysis")
        self.login_throttle = LoginThrottle(settings.login_failures_per_account, settings.login_failures_per_address)
        self.hash_slots = HashSlots(settings.password_hash_concurrency)
        self.metrics = Metrics(self.db, self.jobs)

    def private_file(self) -> tuple[int, Path]:
        """A new empty file for an upload in the server's temporary folder (the client's file name
        is never used as a path); 503 `storage_unavailable` when the server cannot write there."""
        try:
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        except OSError as exc:
            raise _cannot_store(exc) from None
        return fd, Path(name)

    @contextmanager
    def spooled(self, upload: FormFile | Path, what: str) -> Iterator[Path]:
        """The upload as a private file, checked for size: a form part is copied to one (deleted
        afterwards); a Path is a body already written to one (`_spool_body`, its caller deletes it)."""
        if isinstance(upload, Path):
            self._check_size(upload, what)
            yield upload
            return
        fd, path = self.private_file()
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    upload.file.seek(0)
                    shutil.copyfileobj(upload.file, out, 1024 * 1024)
            except OSError as exc:
                raise _cannot_store(exc) from None
            self._check_size(path, what)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _check_size(self, path: Path, what: str) -> None:
        """422 `empty_file` or 413 `payload_too_large` for an upload of the wrong size."""
        size = path.stat().st_size
        if size == 0:
            raise ApiError(422, "empty_file", f"the {what} upload is empty")
        if size > self.settings.max_upload_bytes:
            raise ApiError(413, "payload_too_large", f"the {what} upload is larger than the limit "
                           f"({self.settings.max_upload_bytes / 1024 / 1024:g} MB)")


def _cannot_store(exc: Exception) -> ApiError:
    """503 for an upload the server cannot write (disk full, read-only storage); the details,
    which name server paths, go to the log only."""
    log.error("cannot store an upload: %s", exc)
    return ApiError(503, "storage_unavailable", "the server cannot store uploads right now; try again later",
                    {"Retry-After": "60"})


async def _spool_body(request: Request, services: Services) -> Path:
    """A raw upload body written once, as it arrives, to a private file (the caller deletes it),
    so concurrent large bodies do not each sit in memory whole."""
    fd, path = services.private_file()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _cannot_store(exc) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(_services)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def _display_name(upload: FormFile | None) -> str | None:
    """The client's file name, for display only: base name, printable, at most 255 characters."""
    if upload is None or not upload.filename:
        return None
    name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:255] or None


def _probe_media(path: Path, what: str) -> float:
    """Duration in seconds of an uploaded media file; 415/422 when it is not media we can read."""
    try:
        info = probe(str(path))
    except MediaError as exc:
        raise ApiError(422, "invalid_media", f"the {what} upload is not usable media: {exc}") from None
    if not (info.has_video or info.has_audio):
        raise ApiError(415, "unsupported_media_type", f"the {what} upload has no audio or video stream")
    return float(info.duration)


def _check_window_count(seconds: float, options: dict[str, Any]) -> None:
    """422 `too_many_windows` (TooManyWindows) before anything is stored or charged, when the
    input's length with these options makes more windows than one analysis may have."""
    chosen = AnalysisOptions.from_mapping(options)
    check_window_count(seconds, chosen.window, chosen.hop)


def _bounded_transcript(content: bytes) -> bytes:
    """A transcript's bytes, or 413 when it is longer than any transcript of real speech."""
    if len(content) > MAX_TRANSCRIPT_BYTES:
        raise ApiError(413, "payload_too_large", f"the transcript is larger than {MAX_TRANSCRIPT_BYTES // 1024 // 1024} MB")
    return content


def _check_upload_type(upload: FormFile, what: str) -> None:
    ctype = (upload.content_type or "").lower()
    if ctype and not ctype.startswith(MEDIA_TYPES):
        raise ApiError(415, "unsupported_media_type", f"the {what} upload is {ctype!r}; send a video or audio file")


# -- authentication ---------------------------------------------------------------------------
def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or None


def _authenticate(request: Request, services: Services, allow_session: bool = True) -> auth.Principal:
    secret = _presented_key(request)
    if secret:
        principal = auth.key_principal(services.db, secret)
        services.rate.check(principal.key_id)
        return principal
    token = request.cookies.get(auth.SESSION_COOKIE) if allow_session else None
    if token:
        principal = auth.session_principal(services.db, token)
        if principal is None:
            raise ApiError(401, "session_expired", "your session has expired; log in again")
        if request.method not in SAFE_METHODS and not auth.csrf_ok(principal, request.headers.get(auth.CSRF_HEADER)):
            raise ApiError(403, "csrf_failed", f"missing or wrong {auth.CSRF_HEADER} header")
        return principal
    raise ApiError(401, "missing_key", "send an API key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                   {"WWW-Authenticate": "Bearer"})


def api_principal(request: Request, services: ServicesDep) -> auth.Principal:
    return _authenticate(request, services)


def optional_key(request: Request, services: ServicesDep) -> auth.Principal | None:
    """The SageMaker and MVP routes need a key only when EMOFUSION_REQUIRE_KEY is set."""
    if not services.settings.require_key:
        return None
    return _authenticate(request, services, allow_session=False)


def require_session(request: Request, services: ServicesDep) -> auth.Principal:
    """Key management: the logged-in web session only. An API key cannot mint or revoke keys, so
    revoking a leaked key locks its holder out."""
    principal = _authenticate(request, services)
    if principal.session_id is None:
        raise ApiError(403, "session_required", "managing API keys needs a logged-in session, not an API key")
    return principal


Principal = Annotated[auth.Principal, Depends(api_principal)]
SessionPrincipal = Annotated[auth.Principal, Depends(require_session)]


def _same_origin(request: Request) -> None:
    """Log-in CSRF: a browser's cross-site form post carries a foreign Origin, or `null` (from a
    sandboxed frame, a data: URL or a redirect), which is refused too."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = origin.split("://", 1)[-1] if "://" in origin else None
        if host is None or host != request.headers.get("host"):
            raise ApiError(403, "csrf_failed", "cross-site request refused")


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SIGNED_UP = "If this address had no account, it has one now: log in with it."


def require_multipart(request: Request) -> None:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with a 'file' field")


# -- response shapes ------------------------------------------------------------------------------
def job_dict(job: AnalysisJob, with_result: bool = True) -> dict[str, Any]:
    d = {
        "id": job.id, "status": job.status, "progress": round(job.progress, 4), "filename": job.filename,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        "media_seconds": round(job.media_seconds, 3), "options": job.options or {},
        "error": {"code": job.error_code, "message": job.error_message} if job.status == FAILED else None,
    }
    if with_result:
        d["result"] = job.result if job.status == SUCCEEDED else None
    return d


def _emotions(result: dict[str, Any]) -> list[dict[str, Any]]:
    probs = (result.get("summary") or {}).get("probs") or {}
    return [{"label": k, "score": v} for k, v in sorted(probs.items(), key=lambda kv: -kv[1])]


class Credentials(BaseModel):
    email: str
    password: str


class KeyRequest(BaseModel):
    name: str


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _session_response(request: Request, services: Services, user, status: int) -> JSONResponse:
    token, csrf = auth.start_session(services.db, user, services.settings.session_hours)
    response = JSONResponse({"user": {"id": user.id, "email": user.email}, "csrf_token": csrf}, status_code=status)
    max_age = int(services.settings.session_hours * 3600)
    secure = services.settings.cookie_secure
    if secure is None:  # plain http is only acceptable on this machine itself
        secure = not (request.url.scheme == "http" and request.url.hostname in LOOPBACK)
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=max_age, httponly=True, secure=secure, samesite="lax")
    response.set_cookie(auth.CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="lax")
    return response


async def _credentials(request: Request) -> Credentials:
    """JSON or form-encoded email and password."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/json"):
            data = await request.json()
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            data = dict(await request.form())
        else:
            raise ApiError(415, "unsupported_media_type", "send JSON or a form with 'email' and 'password'")
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("email"), str) or not isinstance(data.get("password"), str):
        raise ApiError(422, "invalid_request", "give 'email' and 'password' as strings")
    return Credentials(email=data["email"], password=data["password"])


# -- the app -----------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, *, engine: Engine | None = None, start_jobs: bool = True) -> FastAPI:
    """The service. `engine` lets a caller share an already loaded model; `start_jobs=False`
    leaves queued analyses to other processes (or to a test that runs them by hand)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = await anyio.to_thread.run_sync(lambda: Services(settings, engine))
        app.state.services = services
        if start_jobs:
            services.jobs.start()
        log.info("emofusion %s ready: model %s, database %s, storage %s", __version__,
                  services.engine.info["name"], services.db.dialect, services.storage.description)
        try:
            yield
        finally:
            if start_jobs:
                drained = await anyio.to_thread.run_sync(lambda: services.jobs.stop(settings.drain_seconds))
                if not drained:
                    log.warning("analyses still running at shutdown are re-queued at the next start")
            services.analysis_pool.shutdown(wait=False)
            services.db.dispose()

    app = FastAPI(title="emofusion", version=__version__, lifespan=lifespan,
                  description="Emotion in video from the face, the voice and the words.")
    install_error_handlers(app)

    # a body over its limit is refused before any route (or log-in) reads it; added before the
    # metrics middleware so that it sits inside it (that middleware reads the body in a task of
    # its own, where the refusal would surface as an exception group instead of a 413)
    app.add_middleware(BodyLimit, upload_bytes=settings.max_upload_bytes, upload_paths=UPLOAD_PATHS)

    @app.middleware("http")
    async def headers_and_metrics(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Content-Security-Policy", _content_policy(request.url.path))
        services: Services | None = getattr(request.app.state, "services", None)
        if services is not None:
            route = request.scope.get("route")
            services.metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                                     time.perf_counter() - started)
        return response

    # -- SageMaker ---------------------------------------------------------------------------
    @app.get("/ping", tags=["sagemaker"])
    def ping(services: ServicesDep) -> dict:
        """200 once the model is loaded (SageMaker health check)."""
        return {"status": "ok", "model": services.engine.info}

    @app.post("/invocations", tags=["sagemaker"])
    async def invocations(request: Request, services: ServicesDep,
                          principal: Annotated[auth.Principal | None, Depends(optional_key)]) -> dict:
        """Multipart `video` and/or `audio` (+ optional `transcript`), or a raw video/* or audio/* body."""
        ctype = request.headers.get("content-type", "").lower()
        transcript = None
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            video, audio, tx = form.get("video"), form.get("audio"), form.get("transcript")
            for name, part in (("video", video), ("audio", audio)):
                if part is not None and not isinstance(part, FormFile):
                    raise ApiError(422, "invalid_request", f"'{name}' must be a file part")
            if video is None and audio is None:
                raise ApiError(422, "invalid_request", "missing field 'video' or 'audio'")
            if isinstance(tx, FormFile):
                transcript = _bounded_transcript(await tx.read(MAX_TRANSCRIPT_BYTES + 1))
            elif isinstance(tx, str) and tx.strip():
                transcript = tx.encode()
            main, extra = (video, audio) if video is not None else (audio, None)
        elif ctype.startswith(("video/", "audio/")):
            main, extra = await _spool_body(request, services), None
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send multipart/form-data (video, audio, transcript) or a video/* or audio/* body")
        try:
            result = await _analyze_now(services, principal, main, extra, transcript)
        finally:
            if isinstance(main, Path):
                main.unlink(missing_ok=True)
            else:
                await main.close()
        return {"emotions": _emotions(result), "segments": result["segments"], "summary": result["summary"],
                "model": result["model"], "media": result["media"]}

    # -- MVP -----------------------------------------------------------------------------------
    @app.get("/health", tags=["mvp"])
    def health(services: ServicesDep) -> dict:
        return {"status": "ok", "version": __version__, "model": services.engine.info,
                "database": services.db.dialect, "queue": services.metrics.queue_depth()}

    @app.post("/predict", tags=["mvp"], openapi_extra=PREDICT_FORM)
    async def predict(request: Request, services: ServicesDep,
                      principal: Annotated[auth.Principal | None, Depends(optional_key)]) -> dict:
        """One multipart `file` in; the summary's probabilities in percent and the top label.
        When a key is required, it is checked before the body is read."""
        require_multipart(request)
        async with request.form(max_files=1, max_fields=4) as form:
            file = form.get("file")
            if file is None:
                raise ApiError(422, "invalid_request", "missing field 'file'")
            if not isinstance(file, FormFile):
                raise ApiError(422, "invalid_request", "'file' must be a file part")
            result = await _analyze_now(services, principal, file, None, None)
        emotions = _emotions(result)
        if not emotions:
            raise ApiError(422, "no_signal", "no face, speech or text was found in the file")
        return {"labels": [e["label"] for e in emotions], "probs": [round(100 * e["score"], 2) for e in emotions],
                "top1": {"label": emotions[0]["label"], "prob": round(100 * emotions[0]["score"], 2)}}

    async def _analyze_now(services: Services, principal: auth.Principal | None, main: FormFile | Path,
                           extra: FormFile | None, transcript: bytes | None) -> dict[str, Any]:
        """Analyse now, in a worker thread; with a principal (EMOFUSION_REQUIRE_KEY), under its quotas.
        `main` is a form part, or a raw body already in a file."""
        for upload, what in ((main, "media"), (extra, "audio")):
            if isinstance(upload, FormFile):
                _check_upload_type(upload, what)

        def charged(seconds: float, analyze: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            """Run `analyze` under the caller's quota (when a key was required), refunded if it fails."""
            if principal is None:
                return analyze()
            charge = services.quotas.charge(principal.user_id, seconds)
            try:
                return analyze()
            except BaseException:
                services.quotas.refund(charge)
                raise

        def work() -> dict[str, Any]:
            segments = parse_transcript(transcript) if transcript else None
            with services.spooled(main, "media") as path:
                seconds = _probe_media(path, "media")
                if extra is None:
                    return charged(seconds, lambda: services.engine.analyze(str(path), transcript=segments))
                with services.spooled(extra, "audio") as audio_path:
                    seconds = max(seconds, _probe_media(audio_path, "audio"))
                    return charged(seconds, lambda: services.engine.analyze(str(path), audio=str(audio_path),
                                                                            transcript=segments))

        return await asyncio.wrap_future(services.analysis_pool.submit(work))

    # -- web sessions --------------------------------------------------------------------------
    @app.post("/auth/signup", tags=["web"], status_code=202)
    async def signup(request: Request, services: ServicesDep) -> JSONResponse:
        """Create an account, then log in with it. The answer is the same whether or not the
        address already had an account (no account enumeration)."""
        _same_origin(request)
        if not services.settings.signup_enabled:
            raise ApiError(403, "signup_disabled", "sign-up is disabled on this server")
        creds = await _credentials(request)
        services.login_throttle.attempt(creds.email, _client_address(request))  # sign-ups count as attempts
        await services.hash_slots.run(auth.sign_up, services.db, creds.email, creds.password)
        return JSONResponse({"status": "accepted", "message": SIGNED_UP}, status_code=202)

    @app.post("/auth/login", tags=["web"])
    async def login(request: Request, services: ServicesDep) -> JSONResponse:
        """A web session (cookie + CSRF token). 429 with Retry-After after too many failed log-ins
        for the account or from the client's address."""
        _same_origin(request)
        creds = await _credentials(request)
        attempt = services.login_throttle.attempt(creds.email, _client_address(request))
        user = await services.hash_slots.run(auth.authenticate, services.db, creds.email, creds.password)
        services.login_throttle.succeeded(attempt)
        return _session_response(request, services, user, 200)

    @app.post("/auth/logout", tags=["web"], status_code=204)
    def logout(principal: Principal, services: ServicesDep) -> Response:
        if principal.session_id:
            auth.end_session(services.db, principal.session_id)
        response = Response(status_code=204)
        response.delete_cookie(auth.SESSION_COOKIE)
        response.delete_cookie(auth.CSRF_COOKIE)
        return response

    @app.get("/auth/me", tags=["web"])
    def me(principal: Principal) -> dict:
        return {"user": {"id": principal.user_id, "email": principal.email}, "csrf_token": principal.csrf_token}

    # -- /v1 ------------------------------------------------------------------------------------
    @app.post("/v1/analyses", tags=["v1"], status_code=202, openapi_extra=ANALYSIS_FORM)
    async def create_analysis(request: Request, principal: Principal, services: ServicesDep) -> dict:
        """Queue an analysis of the multipart `file` (+ optional `audio`, `transcript`, `text`,
        `options`, `callback_url`); poll GET /v1/analyses/{id} (or give a callback_url).

        The caller is authenticated before a byte of the body is read."""
        require_multipart(request)
        async with request.form(max_files=3, max_fields=8) as form:
            parts = {name: form.get(name) for name in ("file", "audio", "transcript")}
            fields = {name: form.get(name) for name in ("text", "options", "callback_url")}
            if parts["file"] is None:
                raise ApiError(422, "invalid_request", "missing field 'file'")
            for name, part in parts.items():
                if part is not None and not isinstance(part, FormFile):
                    raise ApiError(422, "invalid_request", f"'{name}' must be a file part")
            for name, value in fields.items():
                if value is not None and not isinstance(value, str):
                    raise ApiError(422, "invalid_request", f"'{name}' must be a text field, not a file")
            return await anyio.to_thread.run_sync(lambda: _queue_analysis(services, principal, **parts, **fields))

    def _queue_analysis(services: Services, principal: auth.Principal, file: FormFile, audio: FormFile | None,
                        transcript: FormFile | None, text: str | None, options: str | None,
                        callback_url: str | None) -> dict:
        """Check, store and charge one analysis, then queue it; nothing stays stored or charged
        when any step fails."""
        parsed = given_options(options)
        services.engine.check_options(AnalysisOptions.from_mapping(parsed))  # now, not in the job
        if transcript is not None:
            parse_transcript(_bounded_transcript(transcript.file.read(MAX_TRANSCRIPT_BYTES + 1)))
        if transcript is not None and text:
            raise ApiError(422, "invalid_request", "give a transcript or a text, not both")
        if text and "\x00" in text:  # no database stores a NUL in text, and no one says one
            raise ApiError(422, "invalid_request", "the text contains a NUL character")
        if callback_url:
            try:
                check_callback_url(callback_url, services.settings.callback_private)
            except CallbackRefused as exc:
                raise ApiError(422, "invalid_callback", str(exc)) from None
        _check_upload_type(file, "file")
        if audio is not None:
            _check_upload_type(audio, "audio")
        job_id = new_id()
        keys: list[str] = []
        charge: Charge | None = None
        try:
            with ExitStack() as files:
                path = files.enter_context(services.spooled(file, "file"))
                seconds = _probe_media(path, "file")
                audio_path = files.enter_context(services.spooled(audio, "audio")) if audio is not None else None
                if audio_path is not None:
                    seconds = max(seconds, _probe_media(audio_path, "audio"))
                _check_window_count(seconds, parsed)
                if audio_path is not None:
                    keys.append(_store(services, f"uploads/{job_id}/audio", audio_path))
                if transcript is not None:
                    transcript.file.seek(0)
                    keys.append(_store(services, f"uploads/{job_id}/transcript", transcript.file))
                keys.append(_store(services, f"uploads/{job_id}/media", path))
            charge = services.quotas.charge(principal.user_id, seconds)
            with services.db.session() as s:
                s.add(AnalysisJob(
                    id=job_id, user_id=principal.user_id, status=QUEUED, filename=_display_name(file),
                    media_key=f"uploads/{job_id}/media", audio_key=f"uploads/{job_id}/audio" if audio else None,
                    transcript_key=f"uploads/{job_id}/transcript" if transcript else None, text=text or None,
                    options=parsed, callback_url=callback_url or None, media_seconds=seconds,
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

    @app.get("/v1/analyses/{job_id}", tags=["v1"])
    def get_analysis(job_id: str, principal: Principal, services: ServicesDep) -> dict:
        return job_dict(_own_job(services, principal, job_id))

    @app.get("/v1/analyses", tags=["v1"])
    def list_analyses(principal: Principal, services: ServicesDep, limit: int = 20, offset: int = 0) -> dict:
        if not 1 <= limit <= 100 or not 0 <= offset <= MAX_OFFSET:
            raise ApiError(422, "invalid_request", f"limit must be 1..100 and offset 0..{MAX_OFFSET}")
        with services.db.session() as s:
            mine = AnalysisJob.user_id == principal.user_id
            total = s.scalar(select(func.count()).select_from(AnalysisJob).where(mine))
            jobs = s.scalars(select(AnalysisJob).where(mine).order_by(AnalysisJob.created_at.desc(), AnalysisJob.id)
                             .limit(limit).offset(offset)).all()
        return {"items": [job_dict(j, with_result=False) for j in jobs], "total": total, "limit": limit, "offset": offset}

    @app.delete("/v1/analyses/{job_id}", tags=["v1"], status_code=204)
    def delete_analysis(job_id: str, principal: Principal, services: ServicesDep) -> Response:
        job = _own_job(services, principal, job_id)
        with services.db.session() as s:
            s.execute(delete(AnalysisJob).where(AnalysisJob.id == job.id))
        if job.status == QUEUED and job.charged_day and job.charged_month:
            services.quotas.refund(Charge(job.user_id, job.charged_day, job.charged_month, job.media_seconds))
        for key in job.upload_keys:
            services.jobs.delete_upload(key)
        return Response(status_code=204)

    @app.get("/v1/analyses/{job_id}/timeline.png", tags=["v1"], response_class=Response)
    def timeline(job_id: str, principal: Principal, services: ServicesDep) -> Response:
        job = _own_job(services, principal, job_id)
        if job.status != SUCCEEDED:
            raise ApiError(409, "not_ready", f"the analysis is {job.status}; the timeline exists once it has succeeded")
        from ..plot import timeline_png

        return Response(timeline_png(job.result), media_type="image/png")

    @app.get("/v1/usage", tags=["v1"])
    def usage(principal: Principal, services: ServicesDep) -> dict:
        return services.quotas.usage(principal.user_id)

    @app.get("/v1/keys", tags=["v1"])
    def list_keys(principal: SessionPrincipal, services: ServicesDep) -> dict:
        return {"items": [
            {"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": _iso(k.created_at),
             "last_used_at": _iso(k.last_used_at), "revoked_at": _iso(k.revoked_at)}
            for k, _ in auth.list_keys(services.db, principal.user_id)
        ]}

    @app.post("/v1/keys", tags=["v1"], status_code=201)
    def create_key(body: KeyRequest, principal: SessionPrincipal, services: ServicesDep) -> dict:
        key, secret = auth.create_key(services.db, principal.user_id, body.name)
        return {"id": key.id, "name": key.name, "prefix": key.prefix, "key": secret, "created_at": _iso(key.created_at)}

    @app.delete("/v1/keys/{key_id}", tags=["v1"], status_code=204)
    def revoke_key(key_id: str, principal: SessionPrincipal, services: ServicesDep) -> Response:
        if not auth.revoke_key(services.db, key_id, principal.user_id):
            raise ApiError(404, "not_found", f"no API key {key_id!r}")
        return Response(status_code=204)

    # -- operations and the web page ---------------------------------------------------------
    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(services: ServicesDep) -> Response:
        body, content_type = services.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        page = WEB / "index.html"
        if not page.is_file():
            raise ApiError(404, "not_found", "the web page is not installed")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    if WEB.is_dir():
        app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


def _store(services: Services, key: str, upload: Path | BinaryIO) -> str:
    """Put a spooled upload (a path or an open file) into storage; 503 when it cannot be written."""
    try:
        if isinstance(upload, Path):
            with open(upload, "rb") as fh:
                services.storage.put(key, fh)
        else:
            services.storage.put(key, upload)
    except (StorageError, OSError) as exc:
        raise _cannot_store(exc) from None
    return key


def app_from_env() -> FastAPI:
    """uvicorn factory (`emofusion serve`): settings from the environment."""
    return create_app(Settings.from_env())


__all__ = ["create_app", "app_from_env", "job_dict"]
