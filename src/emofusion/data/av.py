"""Items for multimodal (audio-visual) training: each item's video, its audio and its text.

The readers describe a dataset as it is laid out; a multimodal model needs, per item, a
video with its frames, the audio of the same performance and (optionally) its words.
`multimodal_items` turns a reader's scan into such items: `Item.path` is the file whose
frames are decoded, `meta["audio_path"]` the file whose audio is read when that is not
`path` (CREMA-D's clean .wav beside its video), and items that cannot give what the model
needs are skipped and counted. When none is left, the error says which layout was expected.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from .base import DatasetLayoutError, DatasetScan, Item
from .speech import AUDIO_SUFFIXES

RAVDESS_AV_LAYOUT = (
    "<root>/Actor_XX/01-VC-EE-II-SS-RR-AA.mp4, e.g. Actor_01/01-01-05-02-01-01-01.mp4: modality 01, "
    "the audio-visual files (video with its audio track; RAVDESS's Video_Speech/Video_Song downloads). "
    "Audio-only 03-*.wav files have no picture and video-only 02-*.mp4 files no sound"
)
CREMAD_AV_LAYOUT = (
    "<root>/AudioWAV/1001_DFA_ANG_XX.wav with its video <root>/VideoFlash/1001_DFA_ANG_XX.flv "
    "(or <root>/VideoMP4/1001_DFA_ANG_XX.mp4): frames come from the video, sound from the .wav"
)
MELD_AV_LAYOUT = (
    "<root>/<split>_sent_emo.csv with the utterance clips <root>/<split>_splits/dia{D}_utt{U}.mp4 "
    "(or <root>/<split>/dia{D}_utt{U}.mp4; MELD.Raw), whose picture and sound feed the model"
)
_PREFERENCE = ("audio-visual", "video-only", "audio-only")


def multimodal_items(dataset: str, scan: DatasetScan, *, video: bool, audio: bool) -> DatasetScan:
    """The items of `scan` (read by the reader called `dataset`) that can feed a model needing
    `video` and/or `audio`, as a new scan whose `skipped` also counts the items left out.

    RAVDESS: one file per performance, the audio-visual (01) .mp4 when there is one; 02 / 03
    files only where the model needs no audio / no video. CREMA-D: `path` becomes the video,
    `meta["audio_path"]` the .wav. MELD: rows with their clip (all rows for a text-only model).
    Others (manifests): items whose file can hold what is needed. Raises DatasetLayoutError,
    naming the expected layout, when no item is left.
    """
    name = dataset.strip().lower()
    out = DatasetScan(root=scan.root, items=[], skipped=Counter(scan.skipped))
    if name in ("fer2013", "imagefolder"):
        raise DatasetLayoutError(f"{dataset} holds face images, not clips: multimodal training reads "
                                 "ravdess, cremad, meld or a manifest of clips")
    if name == "emodb" and video:
        raise DatasetLayoutError(f"{scan.root}: EmoDB has audio only; a model with a video encoder needs clips "
                                 "(ravdess, cremad, meld or a manifest of videos)")
    if name == "ravdess":
        out.items = _ravdess(scan.items, out, video, audio)
        layout = RAVDESS_AV_LAYOUT
    elif name == "cremad":
        out.items = _cremad(scan.items, out) if video else list(scan.items)
        layout = CREMAD_AV_LAYOUT
    elif name == "meld":
        out.items = _with_clip(scan.items, out, "MELD row without its clip") if video or audio else list(scan.items)
        layout = MELD_AV_LAYOUT
    else:
        out.items = _generic(scan.items, out, video, audio)
        layout = "items whose file has " + " and ".join(k for k, need in (("video", video), ("audio", audio)) if need)
    if not out.items:
        found = {k: v for k, v in out.skipped.items() if k not in scan.skipped}
        raise DatasetLayoutError(f"{scan.root}: no items can feed this model's "
                                 f"{' + '.join(k for k, need in (('video', video), ('audio', audio)) if need) or 'inputs'}"
                                 f" (left out: {found or 'nothing'}); expected {layout}")
    return out


def _ravdess(items: list[Item], out: DatasetScan, video: bool, audio: bool) -> list[Item]:
    usable = {"audio-visual"} | ({"video-only"} if not audio else set()) | ({"audio-only"} if not video else set())
    performances: dict[str, list[Item]] = {}
    for item in items:
        kind = item.meta.get("modality")
        if kind not in usable:
            out.skip({"video-only": "RAVDESS video-only file (02-*): no audio",
                      "audio-only": "RAVDESS audio-only file (03-*): no video"}.get(kind, f"RAVDESS {kind} file"))
            continue
        assert item.path is not None
        performances.setdefault(item.path.stem[3:], []).append(item)  # the name without its modality
    kept = []
    for files in performances.values():
        files.sort(key=lambda item: _PREFERENCE.index(item.meta["modality"]))
        kept.append(files[0])
        for _ in files[1:]:
            out.skip("RAVDESS second file of a performance (the audio-visual one is used)")
    order = {id(item): k for k, item in enumerate(items)}
    return sorted(kept, key=lambda item: order[id(item)])


def _cremad(items: list[Item], out: DatasetScan) -> list[Item]:
    kept = []
    for item in items:
        video = item.meta.get("video")
        if video is None:
            out.skip("CREMA-D clip without its video (VideoFlash/<name>.flv)")
            continue
        kept.append(dataclasses.replace(item, path=Path(video), meta={**item.meta, "audio_path": item.path}))
    return kept


def _with_clip(items: list[Item], out: DatasetScan, reason: str) -> list[Item]:
    kept = []
    for item in items:
        if item.path is None:
            out.skip(reason)
        else:
            kept.append(item)
    return kept


def _generic(items: list[Item], out: DatasetScan, video: bool, audio: bool) -> list[Item]:
    if not (video or audio):
        return list(items)
    kept = []
    for item in _with_clip(items, out, "item without a media file"):
        assert item.path is not None
        if video and item.path.suffix.lower() in AUDIO_SUFFIXES:
            out.skip(f"audio file ({item.path.suffix.lower()}): no video")
            continue
        kept.append(item)
    return kept
