"""Predictions of one face, voice or text net on dataset items, prepared by `emofusion.features`
(as training prepares them); items that cannot be read are skipped and counted, never guessed."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import DatasetLayoutError, Item
from ..errors import EvaluationError
from ..models.interfaces import is_joint

if TYPE_CHECKING:
    from ..models import EmotionModel

FACE_BATCH = 256
MIN_CLIP_SECONDS = 0.5
#: How clips are read by a voice part: each on its own ("off"), or relative to its speaker's baseline
#: over that speaker's evaluated clips ("speaker": the calibrated regression, as an analysis does
#: over one recording's voiced windows).
CALIBRATE_MODES = ("off", "speaker")


def _short(reason: object, limit: int = 80) -> str:
    text = " ".join(str(reason).split()) or "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unreadable(reason: object) -> str:
    return f"unreadable file: {_short(reason)}"


def _label_skip(label: str) -> str:
    return f"label {label!r} not in the model's labels"


def summarise_skips(skipped: Counter) -> str:
    if not skipped:
        return "no items"
    return "; ".join(f"{reason}: {count}" for reason, count in skipped.most_common())


def require_net(model: "EmotionModel", modality: str, dataset: str | None = None) -> None:
    """EvaluationError unless `model` has its own `modality` net (a seed model has none)."""
    if is_joint(model):
        raise EvaluationError(f"model {model.config.name!r} is a multimodal seed model: evaluate scores face, voice "
                              "or text nets (a seed model's validation is in its training run's metrics.json)")
    if modality not in model.modalities:
        has = ", ".join(model.modalities) or "none"
        need = f"; dataset {dataset!r} needs one" if dataset else ""
        raise EvaluationError(f"model {model.config.name!r} has no {modality} net (it has: {has}){need}")


def _face_probs(model: "EmotionModel", items: list[Item], keep: list[int], skipped: Counter, batch: int) -> np.ndarray:
    from ..features import load_face_images, normalize_faces

    cfg = model.config.face_preprocess
    out: list[np.ndarray] = []
    readable: list[int] = []
    for start in range(0, len(keep), batch):
        chunk = keep[start : start + batch]
        try:
            crops = load_face_images([items[i].path for i in chunk], cfg)
            good = list(chunk)
        except DatasetLayoutError:  # one bad image in the batch: read them one by one
            rows, good = [], []
            for i in chunk:
                try:
                    rows.append(load_face_images([items[i].path], cfg))
                    good.append(i)
                except DatasetLayoutError:
                    skipped[_unreadable("unreadable image")] += 1
            if not good:
                continue
            crops = np.concatenate(rows)
        out.append(model.face_probs(normalize_faces(crops, cfg)))
        readable.extend(good)
    keep[:] = readable
    return np.concatenate(out) if out else np.zeros((0, len(model.config.labels)))


def _voice_probs(model: "EmotionModel", items: list[Item], keep: list[int], skipped: Counter,
                 calibrate: str = "off") -> np.ndarray:
    from ..features import fit_length
    from ..media import MediaError, read_audio

    cfg = model.config.mel
    min_len = int(round(MIN_CLIP_SECONDS * cfg.sample_rate))
    wavs: list[np.ndarray] = []
    readable: list[int] = []
    for i in keep:
        item = items[i]
        if item.path is None:
            skipped["no media file"] += 1
            continue
        try:
            wav = read_audio(item.path, start=item.start or 0.0, end=item.end, sample_rate=cfg.sample_rate)
        except (MediaError, OSError, ValueError) as exc:
            skipped[_unreadable(exc)] += 1
            continue
        if wav.size == 0:
            skipped[_unreadable("no audio samples")] += 1
            continue
        wav = fit_length(wav, min_len, crop=False)  # a clip too short for the voice net is padded, never cut
        wavs.append(wav)
        readable.append(i)
    keep[:] = readable
    if calibrate == "speaker":
        return model.clip_voice_probs(wavs, speakers=[str(items[i].speaker) for i in readable])
    return model.clip_voice_probs(wavs)


def check_calibrate_mode(calibrate: str, modality: str) -> None:
    """EvaluationError unless `calibrate` is one of CALIBRATE_MODES and, when not "off", the data is voice."""
    if calibrate not in CALIBRATE_MODES:
        raise EvaluationError(f"--calibrate: must be {' or '.join(CALIBRATE_MODES)} (got {calibrate!r})")
    if calibrate != "off" and modality != "voice":
        raise EvaluationError(f"--calibrate: {calibrate} calibration reads voices relative to their speaker; "
                              f"this is a {modality} dataset")


def check_calibration(model: "EmotionModel", modality: str, items: list[Item], calibrate: str) -> None:
    """EvaluationError unless `calibrate` can apply: a known mode; for "speaker", a voice part with
    a calibrated regression and speaker ids on every item."""
    check_calibrate_mode(calibrate, modality)
    if calibrate == "off":
        return
    if not getattr(model, "can_calibrate_voice", False):
        raise EvaluationError(f"model {model.config.name!r} has no calibrated voice regression "
                              "(its voice part was trained without functionals.calibrated)")
    missing = sum(1 for item in items if not item.speaker)
    if missing:
        raise EvaluationError(f"--calibrate speaker needs a speaker id on every item; {missing} of {len(items)} have none")


def predict_items(
    model: "EmotionModel",
    modality: str,
    items: list[Item],
    contexts: list[str] | None = None,
    batch_size: int = FACE_BATCH,
    calibrate: str = "off",
) -> tuple[np.ndarray, np.ndarray, Counter, dict[str, Any]]:
    """Run the `modality` net on `items` -> (y_true, probs, skipped, extra).

    y_true: (N,) indices into model.config.labels; probs: (N, C). Items whose label the
    model lacks and unreadable files are skipped and counted in `skipped` by reason.
    extra["index"]: for each row, its position in `items`. Text adds
    extra["sentiment_probs"] (N, 3) and extra["sentiment_true"] (N,) (-1 where an item has
    no sentiment truth). `contexts` (text only) defaults to the dialogue history of
    `items` with the model's `context_turns`. `calibrate` (voice only): "speaker" reads each clip
    relative to its speaker's baseline (see CALIBRATE_MODES). Raises EvaluationError when nothing
    is left, or when calibration cannot apply.
    """
    require_net(model, modality)
    check_calibration(model, modality, items, calibrate)
    labels = list(model.config.labels)
    index = {name: k for k, name in enumerate(labels)}
    skipped: Counter = Counter()
    keep: list[int] = []
    for i, item in enumerate(items):
        if item.label not in index:
            skipped[_label_skip(item.label)] += 1
        else:
            keep.append(i)
    extra: dict[str, Any] = {}
    if modality == "face":
        probs = _face_probs(model, items, keep, skipped, batch_size) if keep else None
    elif modality == "voice":
        probs = _voice_probs(model, items, keep, skipped, calibrate) if keep else None
    elif modality == "text":
        from ..features import dialogue_contexts

        if contexts is None:
            contexts = dialogue_contexts(items, model.config.text_net.context_turns)
        if len(contexts) != len(items):
            raise ValueError(f"{len(contexts)} contexts for {len(items)} items")
        with_text = []
        for i in keep:
            if items[i].text:
                with_text.append(i)
            else:
                skipped["no text"] += 1
        keep = with_text
        probs = None
        if keep:
            probs, sent = model.text_probs([items[i].text or "" for i in keep], [contexts[i] for i in keep])
            s_index = {name: k for k, name in enumerate(model.config.sentiment_labels)}
            extra["sentiment_probs"] = sent
            extra["sentiment_true"] = np.asarray(
                [s_index.get(items[i].sentiment, -1) if items[i].sentiment else -1 for i in keep], dtype=np.int64
            )
    else:
        raise ValueError(f"unknown modality {modality!r}; expected face, voice or text")
    if not keep or probs is None or len(probs) == 0:
        raise EvaluationError(
            f"no item could be evaluated: all {len(items)} skipped ({summarise_skips(skipped)})"
        )
    y_true = np.asarray([index[items[i].label] for i in keep], dtype=np.int64)
    extra["index"] = np.asarray(keep, dtype=np.int64)
    return y_true, np.asarray(probs, dtype=np.float64), skipped, extra
