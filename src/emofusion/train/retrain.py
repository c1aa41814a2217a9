"""Retraining with a gate: fine-tune the served model's voice part on new labelled data, and
promote the candidate only if the gate says it is better.

The flow of `retrain()`:
1. the new data (a manifest) is checked: every row usable, every label one the model has, every
   file readable, every row with a speaker, no speaker among the recipe's validation speakers;
2. its speakers are split: some are held out (never trained on), the rest join the recipe's own
   training data (so the old corpora are replayed, not forgotten);
3. the voice part is fine-tuned from the current model's weights (`model.init_from`) with the
   recipe, and assembled with the current model's other parts and fusion weights;
4. current and candidate are evaluated on the same held-out data: each of the recipe's validation
   sets and the new data's held-out speakers. The candidate's *last* epoch is used, not the best
   on the recipe's validation sets, since those sets are also the gate's;
5. the gate: promote only if the candidate is not worse than the current model on any old
   validation set by more than `tolerance` (UAR) and better on the new held-out speakers by more
   than `min_gain`. A promoted candidate becomes the registry's current version (a running
   `emofusion serve --registry` picks it up); a refused one is recorded with its numbers, and its
   weights stay in the work folder only.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..checksums import file_sha256
from ..data import Item, get_dataset
from ..errors import EmofusionError, RecipeError, RegistryError, RetrainingDataError
from ..models.registry import ModelRegistry, copy_folder
from .recipe import Recipe, load_recipe

GATE_METRIC = "uar"
NEW_SET = "new_heldout"


@dataclass
class RetrainSettings:
    """How a retraining runs and how strict its gate is."""

    epochs: int = 8
    lr_scale: float = 0.3  # the recipe's learning rate times this (fine-tuning, not training from scratch)
    tolerance: float = 0.02  # the largest UAR drop allowed on any old validation set
    min_gain: float = 0.0  # the candidate must beat the current model on the new speakers by more than this
    holdout_fraction: float = 0.25  # of the new data's speakers, held out for the gate (at least one)
    holdout_speakers: list[str] = field(default_factory=list)  # or exactly these
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1:
            raise RecipeError(f"epochs must be at least 1, not {self.epochs}")
        if not 0 < self.lr_scale <= 10:
            raise RecipeError(f"lr_scale must be in (0, 10], not {self.lr_scale}")
        if not 0 <= self.tolerance < 1:
            raise RecipeError(f"tolerance must be in [0, 1), not {self.tolerance}")
        if not 0 <= self.min_gain < 1:
            raise RecipeError(f"min_gain must be in [0, 1), not {self.min_gain}")
        if not 0 < self.holdout_fraction < 1:
            raise RecipeError(f"holdout_fraction must be in (0, 1), not {self.holdout_fraction}")


@dataclass
class NewData:
    """New labelled data, checked and split by speaker."""

    manifest: Path
    sha256: str
    train: list[Item]
    heldout: list[Item]

    @property
    def train_speakers(self) -> list[str]:
        return sorted({str(i.speaker) for i in self.train})

    @property
    def heldout_speakers(self) -> list[str]:
        return sorted({str(i.speaker) for i in self.heldout})


def recipe_validation_sets(recipe: Recipe) -> dict[str, list[Item]]:
    """The recipe's validation items per corpus (voice: its sources' `val_speakers`)."""
    val_speakers = set(recipe.data.get("val_speakers", []))
    if not val_speakers:
        raise RecipeError(f"{recipe.path}: retraining needs the recipe's validation speakers ([data] val_speakers)")
    sets: dict[str, list[Item]] = {}
    for source in recipe.data["sources"]:
        scan = get_dataset(source["dataset"]).scan(source["root"], source.get("split", "all"))
        held = [item for item in scan.items if item.speaker in val_speakers]
        if held:
            sets.setdefault(str(source["dataset"]), []).extend(held)
    if not sets:
        raise RecipeError(f"{recipe.path}: none of the validation speakers {sorted(val_speakers)} is in its sources")
    return sets


def read_new_data(manifest: str | Path, labels: list[str], val_speakers: set[str], settings: RetrainSettings) -> NewData:
    """The manifest's items, checked (see the module docstring) and split into train / held out;
    RetrainingDataError for anything that would make the gate's numbers meaningless."""
    from ..data import DatasetLayoutError, scan_manifest
    from ..features import SAMPLE_RATE
    from ..media import read_audio

    path = Path(manifest)
    try:
        scan = scan_manifest(path)
    except DatasetLayoutError as exc:
        raise RetrainingDataError(str(exc)) from None
    if scan.skipped:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(scan.skipped.items()))
        raise RetrainingDataError(f"{path}: {sum(scan.skipped.values())} row(s) cannot be used ({reasons}); "
                                  "fix or remove them: retraining uses every row or none")
    unknown = sorted({i.label for i in scan.items if i.label not in labels})
    if unknown:
        raise RetrainingDataError(f"{path}: labels {unknown} are not among the model's labels {labels}")
    no_speaker = sum(1 for i in scan.items if not i.speaker)
    if no_speaker:
        raise RetrainingDataError(f"{path}: {no_speaker} row(s) have no speaker; the gate holds out whole speakers, "
                                  "so every row needs one")
    overlap = sorted({str(i.speaker) for i in scan.items} & val_speakers)
    if overlap:
        raise RetrainingDataError(f"{path}: speakers {overlap} are validation speakers of the recipe; new data must "
                                  "come from other speakers, or the old validation sets stop being held out")
    unreadable = []
    for item in scan.items:
        try:
            read_audio(str(item.path), start=item.start or 0.0, end=item.end, sample_rate=SAMPLE_RATE)
        except EmofusionError as exc:
            unreadable.append(f"{item.path.name} ({exc})")
    if unreadable:
        raise RetrainingDataError(f"{path}: {len(unreadable)} file(s) are not readable audio: "
                                  f"{'; '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}")
    speakers = sorted({str(i.speaker) for i in scan.items})
    if settings.holdout_speakers:
        missing = sorted(set(settings.holdout_speakers) - set(speakers))
        if missing:
            raise RetrainingDataError(f"{path}: held-out speakers {missing} are not in the new data ({speakers})")
        heldout = set(settings.holdout_speakers)
    else:
        if len(speakers) < 2:
            raise RetrainingDataError(f"{path}: {len(speakers)} speaker(s); at least 2 are needed (one to train on, "
                                      "one held out for the gate)")
        count = min(len(speakers) - 1, max(1, round(settings.holdout_fraction * len(speakers))))
        heldout = set(random.Random(settings.seed).sample(speakers, count))
    if heldout >= set(speakers):
        raise RetrainingDataError(f"{path}: every speaker is held out; nothing is left to train on")
    return NewData(manifest=path, sha256=file_sha256(path),
                   train=[i for i in scan.items if i.speaker not in heldout],
                   heldout=[i for i in scan.items if i.speaker in heldout])


def check_architecture(current: Any, recipe: Recipe) -> None:
    """RecipeError unless the recipe's voice net has exactly the current voice part's tensors and
    preprocessing (the candidate starts from the current weights and must replace them one for one)."""
    import dataclasses

    from ..features import MelConfig, SAMPLE_RATE
    from ..models import EmotionModel, ModelConfig, VoiceNetConfig

    if getattr(current, "voice", None) is None:
        raise RecipeError("the current model has no voice part to retrain")
    net = VoiceNetConfig.from_dict(recipe.model)
    mel = MelConfig(**recipe.model.get("preprocess", {}))
    net = dataclasses.replace(net, segment_seconds=int(net.segment_seconds * SAMPLE_RATE) / SAMPLE_RATE)
    fresh = EmotionModel(ModelConfig(name="check", labels=list(current.labels), voice={**net.to_dict(), "preprocess": mel.to_dict()}))
    have = {k: tuple(v.shape) for k, v in current.voice.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in fresh.voice.state_dict().items()}
    if have != want:
        diff = sorted(set(have.items()) ^ set(want.items()))[:2]
        raise RecipeError(f"{recipe.path}: its voice net does not match the current model's ({diff}); a candidate "
                          "must have the current architecture")
    current_mel = dict(current.config.voice.get("preprocess", {}))
    if {k: current_mel.get(k) for k in mel.to_dict()} != mel.to_dict():
        raise RecipeError(f"{recipe.path}: its log-mel settings {mel.to_dict()} differ from the current model's "
                          f"{current_mel}")


def _write_manifest(items: list[Item], path: Path) -> None:
    with open(path, "w") as f:
        for item in items:
            row = {"path": str(Path(item.path).resolve()), "label": item.label, "speaker": item.speaker}
            if item.start is not None or item.end is not None:
                row.update(start=item.start, end=item.end)
            f.write(json.dumps(row) + "\n")


def evaluate_sets(model: Any, sets: dict[str, list[Item]]) -> dict[str, dict[str, float]]:
    """UAR and accuracy of `model`'s voice net on each named set of items."""
    from ..evaluate import predict_items
    from ..metrics import classification_report

    out = {}
    for name, items in sets.items():
        y, probs, _, _ = predict_items(model, "voice", items)
        report = classification_report(y, probs, list(model.labels))
        out[name] = {"uar": round(float(report["uar"]), 4), "accuracy": round(float(report["accuracy"]), 4), "n": int(len(y))}
    return out


def gate(current: dict[str, dict[str, float]], candidate: dict[str, dict[str, float]], settings: RetrainSettings) -> dict[str, Any]:
    """The promotion decision from both models' scores on the same sets, with its reasons."""
    reasons, checks = [], []
    for name in current:
        before, after = current[name][GATE_METRIC], candidate[name][GATE_METRIC]
        delta = round(after - before, 4)
        if name == NEW_SET:
            ok = delta > settings.min_gain
            rule = f"more than {settings.min_gain:.3f} above the current model"
        else:
            ok = delta >= -settings.tolerance
            rule = f"at most {settings.tolerance:.3f} below the current model"
        checks.append({"set": name, "current": before, "candidate": after, "delta": delta, "rule": rule, "passed": ok})
        if not ok:
            reasons.append(f"{name}: {GATE_METRIC} {after:.4f} against {before:.4f} ({delta:+.4f}), the rule is {rule}")
    promote = not reasons
    return {"metric": GATE_METRIC, "promote": promote, "checks": checks,
            "reason": "passed every check" if promote else "; ".join(reasons)}


def retrain(registry: ModelRegistry, recipe_path: str | Path, manifest: str | Path, work_dir: str | Path, *,
            settings: RetrainSettings | None = None, cache_dir: str | Path | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune, gate and (maybe) promote; returns the report (also written to WORK/report.json)."""
    from ..models import EmotionModel, load_model
    from .fusion_fit import assemble
    from .loop import train as run_training

    settings = settings or RetrainSettings()
    settings.check()
    state = registry.state()
    current_path = registry.current_path()
    current = load_model(current_path, load_text_encoder=False)
    if not isinstance(current, EmotionModel):
        raise RecipeError(f"the current version {state.current} is not a PyTorch model folder; retraining "
                          "fine-tunes emofusion model folders")
    recipe = load_recipe(recipe_path, {"epochs": settings.epochs})
    if recipe.task != "voice":
        raise RecipeError(f"{recipe_path}: a {recipe.task} recipe; retraining fine-tunes the voice part "
                          "(face and text retraining are not built yet)")
    check_architecture(current, recipe)
    old_sets = recipe_validation_sets(recipe)
    new = read_new_data(manifest, list(current.labels), set(recipe.data["val_speakers"]), settings)
    log(f"new data: {len(new.train)} clips from {len(new.train_speakers)} speakers to train on, "
        f"{len(new.heldout)} from {new.heldout_speakers} held out for the gate")

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    train_manifest = work / "new-train.jsonl"
    _write_manifest(new.train, train_manifest)
    _write_manifest(new.heldout, work / "new-heldout.jsonl")
    recipe.data = {**recipe.data, "sources": list(recipe.data["sources"]) + [{"dataset": "manifest", "root": str(train_manifest)}]}
    recipe.data.pop("fold", None)
    recipe.model = {**recipe.model, "init_from": str(current_path)}
    recipe.optim.lr *= settings.lr_scale
    recipe.optim.warmup_epochs = min(recipe.optim.warmup_epochs, 1.0)
    recipe.optim.patience = settings.epochs + 1  # the last epoch is used: no early stop on the gate's sets
    summary = run_training(recipe, work / "run", cache_dir=cache_dir or work / "cache", log=log)

    candidate_dir = work / "candidate"
    expected_id = registry.next_id(state)
    version_label = f"{current.config.version}+r{int(expected_id[1:])}"
    parts: dict[str, str | Path] = {m: current_path for m in current.modalities}
    parts["voice"] = work / "run" / "last"
    extra = {k: v for k, v in (current.config.extra or {}).items() if k != "parts"}
    assemble(parts, candidate_dir, name=current.config.name, version=version_label,
             fusion_weights=dict(current.config.fusion.get("weights", {})), extra=extra)
    candidate = load_model(candidate_dir, load_text_encoder=False)

    sets = {**old_sets, NEW_SET: new.heldout}
    log("evaluating the current model and the candidate on the same held-out sets")
    scores = {"current": evaluate_sets(current, sets), "candidate": evaluate_sets(candidate, sets)}
    decision = gate(scores["current"], scores["candidate"], settings)
    provenance = {
        "parent": state.current,
        "recipe": str(Path(recipe_path)),
        "new_data": {"manifest": str(new.manifest), "sha256": new.sha256, "train_clips": len(new.train),
                     "train_speakers": new.train_speakers, "heldout_clips": len(new.heldout),
                     "heldout_speakers": new.heldout_speakers},
        "settings": asdict(settings),
        "training": {"epochs": len(summary.get("history", [])), "used": "last epoch",
                     "train_n": summary.get("data", {}).get("train_n")},
    }
    record = {"status": "promoted" if decision["promote"] else "rejected", "model_version": version_label,
              "metrics": scores, "gate": decision, "provenance": provenance}
    with registry.locked():
        if registry.state().current != state.current or registry.next_id() != expected_id:
            raise RegistryError(f"{registry.root} changed during retraining (another version was recorded, or the "
                                f"current one is no longer {state.current}); nothing was recorded: run again")
        version = registry.add_version(
            (lambda dst: copy_folder(candidate_dir, dst)) if decision["promote"] else None,
            record, make_current=decision["promote"], action="promote")
    report = {"version": version, "parent": state.current, "promoted": decision["promote"],
              "serving": registry.state().current, **record}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

