"""Fusion weights fitted on composed held-out examples, and assembling the bundled model.

There is no real emotion video with aligned audio in our data, so the fusion is fitted
and measured on *composed* examples: for each emotion, a held-out face (FER-2013 `val`),
a held-out voice (speaker-held-out cross-validation predictions) and a held-out utterance
(MELD `dev`) of that same emotion are drawn at random and their per-modality
probabilities fused. Weights are fitted on one half of the composed examples and
reported on the other half.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..models import EmotionModel, ModelConfig, fuse, load_model


def compose(labels_by_modality: dict[str, np.ndarray], num_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw `per_class` examples per emotion, one item index per modality with that label.

    Returns (y, {modality: item indices}); classes missing from any modality are skipped.
    """
    rng = np.random.default_rng(seed)
    ys: list[int] = []
    picks: dict[str, list[int]] = {m: [] for m in labels_by_modality}
    for c in range(num_classes):
        pools = {m: np.flatnonzero(y == c) for m, y in labels_by_modality.items()}
        if any(len(p) == 0 for p in pools.values()):
            continue
        for m, pool in pools.items():
            picks[m].extend(rng.choice(pool, size=per_class, replace=len(pool) < per_class).tolist())
        ys.extend([c] * per_class)
    return np.asarray(ys), {m: np.asarray(v) for m, v in picks.items()}


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == y))


def fit_weights(probs: dict[str, np.ndarray], y: np.ndarray, grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)) -> dict[str, float]:
    """Grid search of per-modality weights (weighted geometric mean) maximising accuracy."""
    names = list(probs)
    best, best_acc = {m: 1.0 for m in names}, -1.0
    for combo in itertools.product(grid, repeat=len(names)):
        if max(combo) < 1.0:  # all-zero; otherwise only the ratios matter, so keep a largest weight >= 1
            continue
        weights = dict(zip(names, combo))
        fused = fuse(dict(probs), weights)
        assert fused is not None
        acc = _accuracy(fused, y)
        if acc > best_acc + 1e-9:
            best, best_acc = weights, acc
    return best


def fusion_report(probs: dict[str, np.ndarray], y: np.ndarray, weights: dict[str, float], labels: list[str]) -> dict[str, Any]:
    """Accuracy and UAR of each modality alone, of every pair, and of all fused, on (probs, y)."""
    from ..metrics import classification_report

    out: dict[str, Any] = {"n": int(len(y))}
    names = list(probs)
    for r in range(1, len(names) + 1):
        for subset in itertools.combinations(names, r):
            fused = fuse({m: probs[m] for m in subset}, weights)
            if fused is None:  # every modality of the subset has weight 0: the fusion ignores it
                out["+".join(subset)] = None
                continue
            rep = classification_report(y, fused, labels)
            out["+".join(subset)] = {"accuracy": rep["accuracy"], "uar": rep["uar"], "macro_f1": rep["macro_f1"]}
    return out


def _part_provenance(model: EmotionModel, modality: str) -> dict[str, Any]:
    """What a part's folder says of how it was trained: its own record when the folder is an
    assembled model (parts taken from an earlier bundle), else the folder's training record."""
    extra = model.config.extra or {}
    parts = extra.get("parts")
    return parts[modality] if isinstance(parts, dict) and modality in parts else extra


def assemble(parts: dict[str, str | Path], out: str | Path, *, name: str = "default", version: str = "0.1.0",
             fusion_weights: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> EmotionModel:
    """Combine trained single-modality model folders into one model folder with fusion weights."""
    loaded = {m: load_model(p, load_text_encoder=False) for m, p in parts.items()}
    labels = None
    for m, model in loaded.items():
        if getattr(model, m) is None:
            raise ValueError(f"{parts[m]} has no {m} net")
        if labels is not None and model.labels != labels:
            raise ValueError(f"label lists differ between parts: {labels} vs {model.labels}")
        labels = model.labels
    assert labels is not None
    config = ModelConfig(
        name=name,
        version=version,
        labels=labels,
        trained={m: bool(model.config.trained.get(m, False)) for m, model in loaded.items()},
        face=loaded["face"].config.face if "face" in loaded else None,
        voice=loaded["voice"].config.voice if "voice" in loaded else None,
        text=loaded["text"].config.text if "text" in loaded else None,
        fusion={"type": "weighted_geometric", "weights": fusion_weights or {m: 1.0 for m in loaded}},
        extra={**(extra or {}), "parts": {m: _part_provenance(model, m) for m, model in loaded.items()}},
    )
    combined = EmotionModel(config, load_text_encoder=False)
    state: dict[str, Any] = {}
    for m, model in loaded.items():  # each net with what travels with it (functionals head, encoder layers)
        state.update(model.part_state_dict(m))
    missing, unexpected = combined.load_state_dict(state, strict=False)
    if missing or unexpected:  # every tensor of the bundle comes from exactly its part
        raise ValueError(f"assembling {out}: tensors missing {missing[:3]}, unexpected {unexpected[:3]}")
    combined.save_pretrained(out)
    return combined


def _val_speakers(model: EmotionModel) -> set[str]:
    """The validation speakers of a voice part: from its training record, or from the record of
    the voice part inside an assembled (bundled) model."""
    return set(_part_provenance(model, "voice").get("data", {}).get("val_speakers", []))


def main(argv: list[str] | None = None) -> None:
    """Fit fusion weights on composed held-out examples and write the bundled model folder."""
    import argparse

    from ..data import default_data_root, get_dataset
    from ..evaluate import evaluate_cross_validation, predict_items

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--face", required=True, help="face model folder (trained on FER-2013 train)")
    ap.add_argument("--voice", required=True, help="voice model folder to ship")
    held_out = ap.add_mutually_exclusive_group(required=True)
    held_out.add_argument("--voice-cv", help="cross-validation folder (fold*/last) for held-out voice predictions")
    held_out.add_argument("--voice-val-speakers", action="store_true",
                          help="instead of --voice-cv: the --voice model's predictions on its own validation "
                               "speakers (its config's val_speakers), a smaller held-out pool")
    ap.add_argument("--text", required=True, help="text model folder (trained on MELD train)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(default_data_root()))
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--version", default="0.7.0")
    args = ap.parse_args(argv)
    data = Path(args.data)

    face_model = load_model(args.face, load_text_encoder=False)
    scan = get_dataset("fer2013").scan(data / "fer2013", "val")
    face_y, face_p, _, _ = predict_items(face_model, "face", scan.items)

    voice_y_parts, voice_p_parts = [], []
    voice_model = load_model(args.voice, load_text_encoder=False) if args.voice_val_speakers else None
    val_speakers = _val_speakers(voice_model) if voice_model is not None else set()
    if voice_model is not None and not val_speakers:
        raise SystemExit(f"{args.voice} names no val_speakers in its config: use --voice-cv")
    for dataset, root in (("ravdess", data / "ravdess-speech-16k"), ("emodb", data / "emodb")):
        if voice_model is not None:
            items = [i for i in get_dataset(dataset).scan(root, "all").items if i.speaker in val_speakers]
            y, p, _, _ = predict_items(voice_model, "voice", items)
            voice_y_parts.append(y)
            voice_p_parts.append(p)
            continue
        report = evaluate_cross_validation(args.voice_cv, dataset, root, return_predictions=True)
        voice_y_parts.append(np.asarray(report["predictions"]["y_true"]))
        voice_p_parts.append(np.asarray(report["predictions"]["probs"]))
    voice_y, voice_p = np.concatenate(voice_y_parts), np.concatenate(voice_p_parts)
    voice_source = (f"the shipped voice net on its validation speakers {sorted(val_speakers)} ({len(voice_y)} clips)"
                    if voice_model is not None else "speaker-held-out CV voice from RAVDESS+EmoDB")

    text_model = load_model(args.text)
    scan = get_dataset("meld").scan(data / "meld", "dev")
    text_y, text_p, _, _ = predict_items(text_model, "text", scan.items)

    labels = face_model.labels
    y, picks = compose({"face": face_y, "voice": voice_y, "text": text_y}, len(labels), args.per_class, seed=0)
    probs = {"face": face_p[picks["face"]], "voice": voice_p[picks["voice"]], "text": text_p[picks["text"]]}
    rng = np.random.default_rng(1)
    order = rng.permutation(len(y))
    fit_idx, test_idx = order[: len(y) // 2], order[len(y) // 2 :]
    weights = fit_weights({m: p[fit_idx] for m, p in probs.items()}, y[fit_idx])
    report = {
        "protocol": (
            f"composed examples: per emotion, random (FER-2013 val face, {voice_source}, "
            f"MELD dev utterance) of that emotion, {args.per_class} per class; weights fitted on a random half, "
            "metrics on the other half"
        ),
        "weights": weights,
        "fit_n": int(len(fit_idx)),
        "test": fusion_report({m: p[test_idx] for m, p in probs.items()}, y[test_idx], weights, labels),
    }
    print(json.dumps(report, indent=2))
    assemble({"face": args.face, "voice": args.voice, "text": args.text}, args.out, version=args.version,
             fusion_weights=weights, extra={"fusion_fit": report})
    (Path(args.out) / "fusion_report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
