"""Analysis while the caller waits (/invocations, /predict): on the bounded analysis pool, and
under the caller's quotas when EMOFUSION_REQUIRE_KEY asks for a key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from starlette.datastructures import UploadFile as FormFile

from . import auth
from .engine import parse_transcript
from .services import Services
from .uploads import check_upload_type, probe_media


async def analyze_now(services: Services, principal: auth.Principal | None, main: FormFile | Path,
                      extra: FormFile | None, transcript: bytes | None) -> dict[str, Any]:
    """Analyse now, in a worker thread; with a principal (EMOFUSION_REQUIRE_KEY), under its quotas.
    `main` is a form part, or a raw body already in a file."""
    for upload, what in ((main, "media"), (extra, "audio")):
        if isinstance(upload, FormFile):
            check_upload_type(upload, what)

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
            seconds = probe_media(path, "media")
            if extra is None:
                return charged(seconds, lambda: services.engine.analyze(str(path), transcript=segments))
            with services.spooled(extra, "audio") as audio_path:
                seconds = max(seconds, probe_media(audio_path, "audio"))
                return charged(seconds, lambda: services.engine.analyze(str(path), audio=str(audio_path),
                                                                        transcript=segments))

    return await asyncio.wrap_future(services.analysis_pool.submit(work))


def emotions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's probabilities as `[{"label", "score"}]`, most likely first."""
    probs = (result.get("summary") or {}).get("probs") or {}
    return [{"label": k, "score": v} for k, v in sorted(probs.items(), key=lambda kv: -kv[1])]
