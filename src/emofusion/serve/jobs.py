"""Asynchronous analyses: a pool of worker threads that claim queued jobs from the database.

Claiming is one conditional UPDATE (`status='queued' -> 'running'`), so several server
processes can share a database without running a job twice. A running job writes a
heartbeat; a job whose heartbeat went stale (its process died) is re-queued, or marked
failed once it has been tried `max_attempts` times. Nothing is lost on a crash.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import timedelta

from sqlalchemy import select, update

from .callbacks import post_callback
from .db import FAILED, QUEUED, RUNNING, SUCCEEDED, AnalysisJob, Database, utcnow
from ..errors import EmofusionError, is_server_fault
from .engine import Engine, parse_transcript
from .quotas import Charge, Quotas
from .storage import Storage

log = logging.getLogger("emofusion.serve.jobs")


class JobRunner:
    """Worker threads for the analyses stored in the database."""

    def __init__(self, db: Database, storage: Storage, engine: Engine, quotas: Quotas, *, workers: int = 1,
                 max_attempts: int = 2, heartbeat_seconds: float = 5.0, poll_seconds: float = 2.0,
                 retain_uploads: bool = False, callback_private: bool = False):
        self.db, self.storage, self.engine, self.quotas = db, storage, engine, quotas
        self.workers, self.max_attempts = max(1, workers), max(1, max_attempts)
        self.heartbeat_seconds, self.poll_seconds = heartbeat_seconds, poll_seconds
        self.retain_uploads = retain_uploads
        self.callback_private = callback_private  # callbacks may go to loopback / private networks
        self.worker_id = uuid.uuid4().hex[:12]
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._busy_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        for k in range(self.workers):
            t = threading.Thread(target=self._work, name=f"emofusion-job-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        poller = threading.Thread(target=self._poll, name="emofusion-job-poll", daemon=True)
        poller.start()
        self._threads.append(poller)

    def stop(self, timeout: float = 60.0) -> bool:
        """Take no new jobs; wait up to `timeout` s for running ones. True when all finished."""
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    @property
    def busy(self) -> int:
        return self._busy

    # -- recovery ---------------------------------------------------------------------------
    def recover(self) -> int:
        """Re-queue (or fail, after `max_attempts`) running jobs whose heartbeat is stale; queue the queued ones."""
        stale_before = utcnow() - timedelta(seconds=3 * self.heartbeat_seconds)
        changed = 0
        given_up: list[str] = []  # upload keys of the jobs failed here, deleted once that is committed
        with self.db.session() as s:
            stale = s.scalars(select(AnalysisJob).where(
                AnalysisJob.status == RUNNING,
                (AnalysisJob.heartbeat_at.is_(None)) | (AnalysisJob.heartbeat_at < stale_before),
            )).all()
            for job in stale:
                changed += 1
                if job.attempts >= self.max_attempts:
                    job.status, job.finished_at = FAILED, utcnow()
                    job.error_code = "interrupted"
                    job.error_message = f"the server stopped while analysing this file ({job.attempts} attempts)"
                    log.warning("analysis %s failed after %d interrupted attempts", job.id, job.attempts)
                    self._after_failure(job)
                    given_up += job.upload_keys
                else:
                    job.status, job.progress, job.worker, job.heartbeat_at = QUEUED, 0.0, None, None
                    log.warning("analysis %s re-queued after an interrupted attempt", job.id)
            queued = s.scalars(select(AnalysisJob.id).where(AnalysisJob.status == QUEUED).order_by(AnalysisJob.created_at)).all()
        if not self.retain_uploads:
            for key in given_up:
                self.delete_upload(key)
        for job_id in queued:
            self._queue.put(job_id)
        return changed

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self._queue.empty() and self._busy < self.workers:
                    self.recover()
            except Exception:  # a database blip must not kill the poller
                log.exception("job poll failed")

    # -- work ---------------------------------------------------------------------------------
    def _claim(self, job_id: str) -> bool:
        now = utcnow()
        with self.db.session() as s:
            claimed = s.execute(
                update(AnalysisJob)
                .where(AnalysisJob.id == job_id, AnalysisJob.status == QUEUED)
                .values(status=RUNNING, started_at=now, heartbeat_at=now, worker=self.worker_id,
                        attempts=AnalysisJob.attempts + 1, progress=0.0)
            ).rowcount
        return claimed == 1

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                return
            if not self._claim(job_id):
                continue  # another worker (or process) has it, or it was deleted
            with self._busy_lock:
                self._busy += 1
            try:
                self.run(job_id)
            except Exception:
                log.exception("analysis %s crashed", job_id)
                self._finish(job_id, error=("internal_error", "the analysis failed on the server"))
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def run(self, job_id: str) -> None:
        """Analyse one claimed job and store its outcome."""
        with self.db.session() as s:
            job = s.get(AnalysisJob, job_id)
        if job is None:
            return
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < 0.5 and done < total:
                return
            last[0] = now
            with self.db.session() as s:
                s.execute(update(AnalysisJob).where(AnalysisJob.id == job_id, AnalysisJob.status == RUNNING)
                          .values(progress=round(done / max(total, 1), 4), heartbeat_at=utcnow()))

        beat = threading.Event()

        def heartbeat() -> None:
            while not beat.wait(self.heartbeat_seconds):
                with self.db.session() as s:
                    s.execute(update(AnalysisJob).where(AnalysisJob.id == job_id, AnalysisJob.status == RUNNING)
                              .values(heartbeat_at=utcnow()))

        beating = threading.Thread(target=heartbeat, daemon=True)
        beating.start()
        try:
            with ExitStack() as stack:
                media = stack.enter_context(self.storage.local_path(job.media_key))
                audio = stack.enter_context(self.storage.local_path(job.audio_key)) if job.audio_key else None
                transcript = None
                if job.transcript_key:
                    with self.storage.local_path(job.transcript_key) as path:
                        transcript = parse_transcript(path.read_bytes())
                result = self.engine.analyze(str(media), audio=str(audio) if audio else None, transcript=transcript,
                                             text=job.text, options=job.options or {}, progress=progress)
            self._finish(job_id, result=result)
        except EmofusionError as exc:
            if is_server_fault(exc.code):
                raise  # the server's fault, not the upload's: logged, and `internal_error` for the client (_work)
            self._finish(job_id, error=(exc.code, exc.message))
        finally:
            beat.set()

    def _finish(self, job_id: str, *, result: dict | None = None, error: tuple[str, str] | None = None) -> None:
        with self.db.session() as s:
            job = s.get(AnalysisJob, job_id)
            if job is None or job.status != RUNNING:
                return  # deleted meanwhile
            job.finished_at, job.heartbeat_at = utcnow(), None
            if error is None:
                job.status, job.progress, job.result = SUCCEEDED, 1.0, result
            else:
                job.status, (job.error_code, job.error_message) = FAILED, error
                self._after_failure(job)
            callback = job.callback_url
            payload = {"id": job.id, "status": job.status}
            if error is None:
                payload["result"] = result
            else:
                payload["error"] = {"code": error[0], "message": error[1]}
            keys = job.upload_keys
            kept_for_training = job.training_consent and error is None  # its owner may label it (v1 labels)
        if not self.retain_uploads and not kept_for_training:
            for key in keys:
                self.delete_upload(key)
        if callback:
            threading.Thread(target=post_callback, args=(callback, payload),
                             kwargs={"allow_private": self.callback_private}, daemon=True).start()

    def _after_failure(self, job: AnalysisJob) -> None:
        """A failed analysis gives its quota back."""
        if job.charged_day and job.charged_month:
            self.quotas.refund(Charge(job.user_id, job.charged_day, job.charged_month, job.media_seconds))
            job.charged_day = job.charged_month = None

    def delete_upload(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except Exception as exc:  # storage hiccups must not lose the result
            log.warning("could not delete an upload: %s", type(exc).__name__)
