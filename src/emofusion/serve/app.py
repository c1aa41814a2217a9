"""The FastAPI application: SageMaker and MVP routes, the /v1 API, web sessions, the web page.

`create_app(settings)` builds it (the `Services`, the middlewares, the error handlers, and the
routers of `serve.routes`); `emofusion serve` runs `app_from_env` under uvicorn.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request

from .. import __version__
from .body_limit import BodyLimit
from .config import Settings
from .engine import Engine
from .errors import install_error_handlers
from .routes import docs, mvp, operations, pages, sagemaker, v1
from .routes.v1 import job_dict
from .services import Services

log = logging.getLogger("emofusion.serve")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
# the web page loads its own script, style and the timelines it fetches; the recording preview
# plays a blob: URL. The API docs pages (Swagger UI, ReDoc) load their scripts and styles from
# this service (routes.docs: no CDN, they work offline), start with an inline script, and ReDoc
# runs a blob: worker.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "font-src 'self'; img-src 'self' data:; worker-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
UPLOAD_PATHS = frozenset({"/invocations", "/predict", "/v1/analyses"})


def _content_policy(path: str, upload_origin: str | None = None) -> str:
    """The page may also send files to the storage's direct-upload origin (S3), and nowhere else."""
    if path in docs.PAGES:
        return DOCS_POLICY
    if path == "/" or path.startswith("/static/"):
        return PAGE_POLICY.replace("connect-src 'self'", f"connect-src 'self' {upload_origin}") if upload_origin else PAGE_POLICY
    return API_POLICY


def create_app(settings: Settings | None = None, *, engine: Engine | None = None, start_jobs: bool = True) -> FastAPI:
    """The service. `engine` lets a caller share an already loaded model; `start_jobs=False`
    leaves queued analyses to other processes (or to a test that runs them by hand)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = await anyio.to_thread.run_sync(lambda: Services(settings, engine))
        app.state.services = services  # what `dependencies.get_services` hands every route
        if start_jobs:
            services.jobs.start()
        if services.registry_follower is not None:
            services.registry_follower.start()
        log.info("emofusion %s ready: model %s, database %s, storage %s", __version__,
                  services.engine.info["name"], services.db.dialect, services.storage.description)
        try:
            yield
        finally:
            if services.registry_follower is not None:
                services.registry_follower.stop()
            if start_jobs:
                drained = await anyio.to_thread.run_sync(lambda: services.jobs.stop(settings.drain_seconds))
                if not drained:
                    log.warning("analyses still running at shutdown are re-queued at the next start")
            services.analysis_pool.shutdown(wait=False)
            services.db.dispose()

    app = FastAPI(title="emofusion", version=__version__, lifespan=lifespan,
                  description="Emotion in video from the face, the voice and the words.",
                  docs_url=None, redoc_url=None)  # served by routes.docs, without a CDN
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
        services: Services | None = getattr(request.app.state, "services", None)
        upload_origin = services.storage.upload_origin if services is not None else None
        response.headers.setdefault("Content-Security-Policy", _content_policy(request.url.path, upload_origin))
        if services is not None:
            route = request.scope.get("route")
            services.metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                                     time.perf_counter() - started)
        return response

    for router in (sagemaker.router, mvp.router, pages.router, v1.router, operations.router, pages.page_router):
        app.include_router(router)
    docs.install(app)
    pages.mount_static(app)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (`emofusion serve`): settings from the environment."""
    return create_app(Settings.from_env())


__all__ = ["create_app", "app_from_env", "job_dict"]
