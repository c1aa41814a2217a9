"""A real gated retraining on ../shared data: EmoDB arrives as "new data" for a model whose voice
part has only heard RAVDESS (actors 1-18).

    python scripts/experiments/retrain_emodb.py --out runs/retrain-emodb

1. the base model: the bundled face and text parts and fusion weights, with the voice part of the
   leave-one-corpus-out run `recipes/experiments/voice_loco_ravdess_to_emodb.toml` (trained on
   RAVDESS actors 1-18; actors 19-20 validate): `emofusion train ... --out runs/voice-loco-ravdess-to-emodb`;
2. a registry seeded with it (`emofusion registry init`);
3. a manifest of EmoDB (all ten speakers; every row with its speaker), the "new data";
4. `emofusion retrain` with the same recipe: 30% of the EmoDB speakers are held out for the gate,
   the rest are fine-tuned on beside RAVDESS 1-18; old validation set: RAVDESS actors 19-20.
The gate's numbers and decision are in OUT/work/report.json and `emofusion registry list OUT/registry`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from emofusion.data import default_data_root, get_dataset
from emofusion.train.fusion_fit import assemble
from emofusion.models import load_model

RECIPE = "recipes/experiments/voice_loco_ravdess_to_emodb.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--voice", default="runs/voice-loco-ravdess-to-emodb/last", help="the RAVDESS-only voice part")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cache-dir", type=Path, help="decoded-audio cache (default OUT/cache)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    base = out / "base-model"
    if not base.is_dir():
        default = load_model("default", load_text_encoder=False)
        assemble({"face": "default", "voice": args.voice, "text": "default"}, base, name="default",
                 version=f"{default.config.version}-ravdess-voice",
                 fusion_weights=dict(default.config.fusion["weights"]))
    manifest = out / "emodb-new.jsonl"
    items = get_dataset("emodb").scan(args.data / "emodb", "all").items
    with open(manifest, "w") as f:
        for item in items:
            f.write(json.dumps({"path": str(Path(item.path).resolve()), "label": item.label,
                                "speaker": item.speaker}) + "\n")
    print(f"{manifest}: {len(items)} clips, {len({i.speaker for i in items})} speakers", file=sys.stderr)
    cli = [sys.executable, "-m", "emofusion.cli"]
    registry = out / "registry"
    if not registry.is_dir():
        subprocess.run(cli + ["registry", "init", str(registry), "--model", str(base)], check=True)
    result = subprocess.run(cli + ["retrain", RECIPE, "--registry", str(registry), "--data", str(manifest),
                                   "--work", str(out / "work"), "--epochs", str(args.epochs),
                                   "--holdout-fraction", "0.3", "--cache-dir", str(args.cache_dir or out / "cache")])
    subprocess.run(cli + ["registry", "list", str(registry)], check=True)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
