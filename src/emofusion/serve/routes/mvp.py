"""The MVP routes: GET /health and POST /predict (one file in, percentages and the top label out)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile as FormFile  # what request.form() yields

from ... import __version__
from ..dependencies import OptionalPrincipal, ServicesDep
from ..errors import ApiError
from ..sync_analysis import analyze_now, emotions
from ..uploads import require_multipart

router = APIRouter(tags=["mvp"])

# /predict reads its form itself (after authenticating the caller), so its schema is declared here
PREDICT_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "a video or audio file"}}}}}}}


@router.get("/health")
def health(services: ServicesDep) -> dict:
    return {"status": "ok", "version": __version__, "model": services.engine.info,
            "database": services.db.dialect, "queue": services.metrics.queue_depth()}


@router.post("/predict", openapi_extra=PREDICT_FORM)
async def predict(request: Request, services: ServicesDep, principal: OptionalPrincipal) -> dict:
    """One multipart `file` in; the summary's probabilities in percent and the top label.
    When a key is required, it is checked before the body is read."""
    require_multipart(request)
    async with request.form(max_files=1, max_fields=4) as form:
        file = form.get("file")
        if file is None:
            raise ApiError(422, "invalid_request", "missing field 'file'")
        if not isinstance(file, FormFile):
            raise ApiError(422, "invalid_request", "'file' must be a file part")
        result = await analyze_now(services, principal, file, None, None)
    found = emotions(result)
    if not found:
        raise ApiError(422, "no_signal", "no face, speech or text was found in the file")
    return {"labels": [e["label"] for e in found], "probs": [round(100 * e["score"], 2) for e in found],
            "top1": {"label": found[0]["label"], "prob": round(100 * found[0]["score"], 2)}}
