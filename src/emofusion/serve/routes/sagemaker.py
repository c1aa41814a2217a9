"""The SageMaker contract: GET /ping and POST /invocations."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile as FormFile  # what request.form() yields

from ..dependencies import OptionalPrincipal, ServicesDep
from ..errors import ApiError
from ..sync_analysis import analyze_now, emotions
from ..uploads import MAX_TRANSCRIPT_BYTES, bounded_transcript, spool_body

router = APIRouter(tags=["sagemaker"])


@router.get("/ping")
def ping(services: ServicesDep) -> dict:
    """200 once the model is loaded (SageMaker health check)."""
    return {"status": "ok", "model": services.engine.info}


@router.post("/invocations")
async def invocations(request: Request, services: ServicesDep, principal: OptionalPrincipal) -> dict:
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
            transcript = bounded_transcript(await tx.read(MAX_TRANSCRIPT_BYTES + 1))
        elif isinstance(tx, str) and tx.strip():
            transcript = tx.encode()
        main, extra = (video, audio) if video is not None else (audio, None)
    elif ctype.startswith(("video/", "audio/")):
        main, extra = await spool_body(request, services.tmp), None
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (video, audio, transcript) or a video/* or audio/* body")
    try:
        result = await analyze_now(services, principal, main, extra, transcript)
    finally:
        if isinstance(main, Path):
            main.unlink(missing_ok=True)
        else:
            await main.close()
    return {"emotions": emotions(result), "segments": result["segments"], "summary": result["summary"],
            "people": result["people"], "model": result["model"], "media": result["media"]}
