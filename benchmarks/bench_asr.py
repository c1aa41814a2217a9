"""Speech recognition: the registry Whisper models side by side (not part of the tests).

For each model in emofusion.transcription.REGISTRY_MODELS (installed): load time, time to
transcribe 10 s and 60 s of speech (int8, CPU, greedy, VAD filter, word timestamps, as the
Transcriber runs), and word error rate on
  (a) espeak-ng speech (10 sentences, en-us voice, synthesised here),
  (b) RAVDESS (../shared/data/ravdess-speech-16k: two known sentences; clips cut at 2.39 s, so
      the end of the sentence is often missing: WER there counts truncation too),
  (c) TESS (../shared/data/tess-eval: "Say the word X").
Writes benchmarks/results/asr.json and asr.md.

    PYTHONPATH=src python benchmarks/bench_asr.py [--per-corpus 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emofusion.media import read_audio  # noqa: E402
from emofusion.transcription import REGISTRY_MODELS, Transcriber, corpus_wer, registry_model, unload_all  # noqa: E402

SHARED = Path(os.environ.get("EMOFUSION_SHARED", ROOT.parent / "shared")) / "data"
if not SHARED.exists():
    SHARED = Path("/work/shared/data")

SENTENCES = [
    "The weather was lovely this morning so we walked to the market.",
    "I cannot believe you forgot my birthday again.",
    "Please close the window before you leave the house.",
    "We won the match and everybody was cheering loudly.",
    "The train to the city leaves at seven in the evening.",
    "She was afraid of the dark when she was a little girl.",
    "This is the worst meal I have ever eaten.",
    "My brother bought a new car last week.",
    "Thank you so much for helping me with the garden.",
    "The children were playing football in the park.",
]


def espeak(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         check=True, capture_output=True).stdout
    return read_audio(wav)


def long_speech(seconds: float, clips: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, str]:
    gap = np.zeros(int(0.4 * 16000), np.float32)
    parts, words, total, i = [], [], 0, 0
    while total < seconds * 16000:
        parts += [clips[i % len(clips)], gap]
        words.append(texts[i % len(texts)])
        total += clips[i % len(clips)].size + gap.size
        i += 1
    return np.concatenate(parts), " ".join(words)


def ravdess(n: int, rng: random.Random) -> list[tuple[str, str]]:
    files = sorted((SHARED / "ravdess-speech-16k").glob("Actor_*/*.wav"))
    sentence = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
    pick = rng.sample(files, min(n, len(files)))
    return [(str(p), sentence[p.stem.split("-")[4]]) for p in pick]


def tess(n: int, rng: random.Random) -> list[tuple[str, str]]:
    root = SHARED / "tess-eval"
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pick = rng.sample(rows, min(n, len(rows)))
    return [(str(root / r["path"]), f"Say the word {Path(r['path']).stem.split('_')[1]}") for r in pick]


def text_of(segments) -> str:
    return " ".join(s.text for s in segments)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-corpus", type=int, default=60, help="clips sampled from RAVDESS and from TESS")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    rng = random.Random(17)

    sentences = [espeak(s) for s in SENTENCES]
    audio10, text10 = long_speech(10, sentences, SENTENCES)
    audio10, text10 = audio10[: 10 * 16000], None  # timing only
    audio60, _ = long_speech(60, sentences, SENTENCES)
    audio60 = audio60[: 60 * 16000]
    corpora = {"ravdess": ravdess(args.per_corpus, rng), "tess": tess(args.per_corpus, rng)}
    decoded = {name: [(read_audio(p), ref) for p, ref in items] for name, items in corpora.items()}

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "models": {}}
    for name in REGISTRY_MODELS:
        resolved = registry_model(name)
        if resolved is None:
            print(f"{name}: its packages are not installed, skipped", file=sys.stderr)
            continue
        unload_all()
        t = time.perf_counter()
        tr = Transcriber(resolved).load()
        load_s = time.perf_counter() - t
        list(tr.transcribe(sentences[0]))  # warm-up
        timing = {}
        for label, audio in (("10s", audio10), ("60s", audio60)):
            t = time.perf_counter()
            list(tr.transcribe(audio))
            timing[label] = round(time.perf_counter() - t, 3)
        hyps = [text_of(tr.transcribe(a)) for a in sentences]
        w = {"espeak": round(corpus_wer(zip(SENTENCES, hyps)), 4)}
        examples = {"espeak": list(zip(SENTENCES, hyps))[:3]}
        for corpus, items in decoded.items():
            t = time.perf_counter()
            pairs = [(ref, text_of(tr.transcribe(a))) for a, ref in items]
            w[corpus] = round(corpus_wer(pairs), 4)
            w[f"{corpus}_seconds"] = round(time.perf_counter() - t, 2)
            examples[corpus] = pairs[:3]
        size = sum(p.stat().st_size for p in resolved.path.iterdir() if p.is_file())
        results["models"][name] = {
            "description": REGISTRY_MODELS[name].description,
            "folder_mb": round(size / 1e6, 1), "load_s": round(load_s, 3),
            "transcribe_s": timing, "real_time_factor_60s": round(timing["60s"] / 60, 3),
            "wer": w, "examples": examples,
            "clips": {k: len(v) for k, v in corpora.items()} | {"espeak": len(SENTENCES)},
        }
        print(name, json.dumps(results["models"][name], indent=1)[:800], file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "asr.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Speech recognition: registry Whisper models", "",
        f"`PYTHONPATH=src python benchmarks/bench_asr.py` on {os.cpu_count()} CPUs; int8, greedy (beam 1), "
        "VAD filter, word timestamps. WER = word-level Levenshtein / reference words, lowercased, "
        "punctuation stripped. RAVDESS clips are cut at 2.39 s (the sentence's end is often missing).", "",
        "| model | folder MB | load s | 10 s speech, s | 60 s speech, s | WER espeak | WER RAVDESS | WER TESS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        lines.append(f"| {name} | {r['folder_mb']} | {r['load_s']} | {r['transcribe_s']['10s']} | "
                     f"{r['transcribe_s']['60s']} | {r['wer']['espeak']:.3f} | {r['wer']['ravdess']:.3f} | "
                     f"{r['wer']['tess']:.3f} |")
    (args.out / "asr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
