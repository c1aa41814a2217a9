"""Labels users give their own analyses, to build retraining data from the service's traffic.

Only with consent: an analysis submitted with `training_consent` keeps its upload after the
analysis (instead of deleting it), and only such an analysis can be labelled. Withdrawing (DELETE
/v1/analyses/{id}/labels) or deleting the analysis removes the labels and the kept upload.
`export_labels` writes a retraining manifest (`emofusion retrain --data`) from every consented,
labelled analysis whose upload is still kept; speakers are pseudonyms of the accounts.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .db import SUCCEEDED, AnalysisJob, Database
from .errors import ApiError
from .storage import Storage, StorageError

MAX_LABELS = 2000


def checked_labels(job: AnalysisJob, body: Any) -> list[dict[str, Any]]:
    """The labels of a PUT body, checked against the analysis (its labels, its length)."""
    if job.status != SUCCEEDED or not job.result:
        raise ApiError(409, "not_ready", f"the analysis is {job.status}; only a finished analysis can be labelled")
    if not job.training_consent:
        raise ApiError(409, "consent_required", "this analysis was not submitted with training_consent, so its "
                       "upload was not kept; submit it again with training_consent=true to label it")
    given = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(given, list) or not given or len(given) > MAX_LABELS:
        raise ApiError(422, "invalid_request", f"send {{\"labels\": [...]}} with 1 to {MAX_LABELS} labels")
    known = list(job.result.get("labels", []))
    out = []
    for k, entry in enumerate(given):
        if not isinstance(entry, dict) or set(entry) - {"label", "start", "end"}:
            raise ApiError(422, "invalid_request", f"labels[{k}]: expected {{label, start?, end?}}")
        if entry.get("label") not in known:
            raise ApiError(422, "invalid_request", f"labels[{k}]: label must be one of {known}")
        start, end = entry.get("start"), entry.get("end")
        if (start is None) != (end is None):
            raise ApiError(422, "invalid_request", f"labels[{k}]: give both start and end (seconds), or neither "
                           "(the whole file)")
        if start is not None:
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (start, end))
            if not numbers or not 0 <= start < end <= job.media_seconds + 0.5:
                raise ApiError(422, "invalid_request", f"labels[{k}]: need 0 <= start < end <= "
                               f"{job.media_seconds:.1f} (the file's length)")
        out.append({"label": entry["label"], "start": start, "end": end})
    return out


def speaker_pseudonym(user_id: str) -> str:
    """A stable name for an account's voice in a manifest, which does not reveal the account."""
    return "user-" + hashlib.sha256(user_id.encode()).hexdigest()[:12]


def export_labels(db: Database, storage: Storage, out: str | Path) -> dict[str, int]:
    """Write OUT/labels.jsonl and OUT/media/<analysis> for every consented, labelled analysis whose
    upload is kept; returns counts (analyses, labels, skipped: uploads no longer there)."""
    out = Path(out)
    (out / "media").mkdir(parents=True, exist_ok=True)
    with db.session() as s:
        jobs = s.scalars(select(AnalysisJob).where(AnalysisJob.training_consent.is_(True),
                                                   AnalysisJob.status == SUCCEEDED)
                         .order_by(AnalysisJob.created_at)).all()
        rows = [(j.id, j.user_id, j.media_key, list(j.labels or [])) for j in jobs if j.labels]
    counts = {"analyses": 0, "labels": 0, "skipped": 0}
    with open(out / "labels.jsonl", "w") as manifest:
        for job_id, user_id, media_key, labels in rows:
            target = out / "media" / job_id
            try:
                with storage.local_path(media_key) as path:
                    target.write_bytes(path.read_bytes())
            except StorageError:
                counts["skipped"] += 1
                continue
            for label in labels:
                row = {"path": f"media/{job_id}", "label": label["label"], "speaker": speaker_pseudonym(user_id),
                       "analysis": job_id}
                if label.get("start") is not None:
                    row.update(start=label["start"], end=label["end"])
                manifest.write(json.dumps(row) + "\n")
                counts["labels"] += 1
            counts["analyses"] += 1
    return counts
