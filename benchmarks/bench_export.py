"""PyTorch FP32 vs ONNX Runtime FP32 vs ONNX Runtime INT8 for the bundled model: speed and accuracy.

    python benchmarks/bench_export.py [--repeats 21] [--threads 1,2] [--data /work/shared/data]
                                      [--out benchmarks/results] [--model default] [--no-accuracy]

The model is exported once into a temporary folder with every net quantized
(`export_onnx(..., int8=True, int8_nets=("face", "voice", "text"))`): the INT8 columns are the
INT8 nets themselves. (`emofusion export --int8` quantizes the face net and the text heads and
keeps the voice net FP32, because of the voice numbers measured here: under its INT8 precision
the voice net runs as in the ONNX FP32 column.) Then:

  speed      latency of one call of the methods the Analyzer calls, per backend: PyTorch with
             BatchNorm folded (`prepare_inference`, what the Analyzer runs), ONNX FP32 and ONNX
             INT8 (`OnnxModel`):
               face_probs on 20 and on 64 crops (1 x S x S, S = the config's input size; with
               the config's flip test-time augmentation the net sees 40 / 128 crops),
               voice_probs on 9 log-mels of 2 s;
             torch.set_num_threads(T) and ORT intra_op_num_threads=T for each T of --threads;
             calls are interleaved over --repeats rounds (each round times every backend
             once per workload) after warm-up; medians are reported.
  choice     the face net alone on 64 crops at 1 thread: ORT FP32, dynamic INT8
             (quantize_dynamic: ConvInteger) and the static INT8 the export writes (QLinearConv)
             - the measurement behind the export's choice of static quantization.
  accuracy   `emofusion.evaluate.evaluate_dataset` (what `emofusion evaluate` runs) with each
             backend at 2 threads: FER-2013 `val` (3589 images), and the voice recipe's
             held-out speakers (recipes/voice_ravdess_emodb.toml: RAVDESS actors 19 and 20,
             EmoDB speakers 15 and 16), per dataset and pooled; accuracy, UAR, macro-F1, the
             INT8 - PyTorch difference in points and the share of items whose top label agrees.

The machine's load (`uptime`) is recorded before and after: other processes competing for the
CPU make the latencies noisy (the ratios, measured interleaved, are the robust numbers).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emofusion.features import load_face_images, log_mel, normalize_faces
from emofusion.models import load_model
from emofusion.models.onnx_backend import OnnxModel, OnnxNet

VOICE_HELD_OUT = {"ravdess": ["ravdess_19", "ravdess_20"], "emodb": ["emodb_15", "emodb_16"]}
BACKENDS = ("torch_fp32", "onnx_fp32", "onnx_int8")


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import onnxruntime

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "os": platform.platform(),
    }


# ------------------------------------------------------------------------------ inputs


def face_inputs(model, data: Path, n: int) -> tuple[torch.Tensor, str]:
    from emofusion.export import synthetic_faces

    cfg = model.config.face_preprocess
    paths = sorted(glob.glob(str(data / "fer2013" / "val" / "*" / "*.jpg")))
    if len(paths) >= n:
        random.Random(0).shuffle(paths)
        return normalize_faces(load_face_images([Path(p) for p in paths[:n]], cfg), cfg), "FER-2013 val crops"
    return normalize_faces(synthetic_faces(n, cfg.size, seed=1), cfg), "synthetic crops"


def voice_inputs(model, data: Path, n: int, seconds: float = 2.0) -> tuple[torch.Tensor, str]:
    from emofusion.export import synthetic_speech
    from emofusion.media import read_audio

    mel = model.config.mel
    samples = int(round(seconds * mel.sample_rate))
    paths = sorted(glob.glob(str(data / "ravdess-speech-16k" / "Actor_0*" / "*.wav")))
    if len(paths) >= n:
        random.Random(0).shuffle(paths)
        wavs = []
        for p in paths[:n]:
            w = read_audio(p, sample_rate=mel.sample_rate)
            wavs.append(np.pad(w, (0, max(0, samples - len(w))))[:samples])
        return log_mel(np.stack(wavs), mel), "RAVDESS clips (first 2 s)"
    return log_mel(synthetic_speech(n, seconds, mel.sample_rate, seed=1), mel), "synthetic speech"


# ------------------------------------------------------------------------------- speed


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def bench_speed(pt, export_dir: Path, workloads: dict, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    models = {
        "torch_fp32": pt,
        "onnx_fp32": OnnxModel(export_dir, precision="fp32", threads=threads),
        "onnx_int8": OnnxModel(export_dir, precision="int8", threads=threads),
    }
    calls = {
        name: {b: (getattr(m, method), x) for b, m in models.items()}
        for name, (method, x) in workloads.items()
    }
    for per_backend in calls.values():  # warm-up
        for fn, x in per_backend.values():
            for _ in range(3):
                fn(x)
    times = {name: {b: [] for b in BACKENDS} for name in calls}
    for _ in range(repeats):
        for name, per_backend in calls.items():
            for b, (fn, x) in per_backend.items():
                times[name][b].append(timed(fn, x))
    out = {}
    for name, per_backend in times.items():
        med = {b: statistics.median(v) * 1000 for b, v in per_backend.items()}
        out[name] = {
            "median_ms": med,
            "all_ms": {b: [round(t * 1000, 3) for t in v] for b, v in per_backend.items()},
            "speedup_vs_torch": {b: med["torch_fp32"] / med[b] for b in BACKENDS},
            "int8_vs_onnx_fp32": med["onnx_fp32"] / med["onnx_int8"],
        }
    return out


def bench_quant_choice(export_dir: Path, x: np.ndarray, repeats: int) -> dict:
    """The face net alone at 1 thread: ORT FP32 vs dynamic INT8 (ConvInteger) vs static INT8 (export)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(tempfile.mkdtemp(prefix="bench-quant-"))
    try:
        quant_pre_process(str(export_dir / "face.onnx"), str(work / "pre.onnx"))
        quantize_dynamic(str(work / "pre.onnx"), str(work / "dyn_s8.onnx"), weight_type=QuantType.QInt8)
        quantize_dynamic(str(work / "pre.onnx"), str(work / "dyn_u8.onnx"), weight_type=QuantType.QUInt8)
        nets = {
            "onnx_fp32": OnnxNet(export_dir / "face.onnx", threads=1),
            "dynamic_int8_s8_weights": OnnxNet(work / "dyn_s8.onnx", threads=1),
            "dynamic_int8_u8_weights": OnnxNet(work / "dyn_u8.onnx", threads=1),
            "static_int8_export": OnnxNet(export_dir / "face.int8.onnx", threads=1),
        }
        for net in nets.values():
            net(x)
        times = {k: [] for k in nets}
        for _ in range(repeats):
            for k, net in nets.items():
                times[k].append(timed(net, x))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        return {"batch": int(len(x)), "threads": 1, "median_ms": med,
                "vs_fp32": {k: med["onnx_fp32"] / v for k, v in med.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- accuracy


class Recorder:
    """A model seen by evaluate_dataset, keeping the probabilities it returns (for agreement)."""

    def __init__(self, model):
        self._model = model
        self.rows: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def face_probs(self, x):
        p = self._model.face_probs(x)
        self.rows.append(np.asarray(p))
        return p

    def clip_voice_probs(self, wavs, batch_size: int = 64):
        p = self._model.clip_voice_probs(wavs, batch_size)
        self.rows.append(np.asarray(p))
        return p

    def probs(self) -> np.ndarray:
        return np.concatenate(self.rows)


def _metrics(rep: dict) -> dict:
    return {"n": rep["n"], "accuracy": rep["accuracy"], "uar": rep["uar"], "macro_f1": rep["macro_f1"]}


def bench_accuracy(models: dict, data: Path) -> dict:
    from emofusion.evaluate import evaluate_dataset

    tasks = [("fer2013", data / "fer2013", "val", None)]
    tasks += [(name, data / ("ravdess-speech-16k" if name == "ravdess" else name), "all", speakers)
              for name, speakers in VOICE_HELD_OUT.items()]
    out: dict = {}
    for dataset, root, split, speakers in tasks:
        if not root.exists():
            out[dataset] = {"skipped": f"{root} not found"}
            continue
        entry: dict = {"split": split, "speakers": speakers}
        probs = {}
        for b, model in models.items():
            rec = Recorder(model)
            t0 = time.perf_counter()
            rep = evaluate_dataset(rec, dataset, root, split=split, speakers=speakers)
            entry[b] = {**_metrics(rep), "seconds": time.perf_counter() - t0}
            probs[b] = rec.probs()
        ref = probs["torch_fp32"]
        for b in models:
            if b == "torch_fp32":
                continue
            entry[b]["accuracy_delta_points"] = 100 * (entry[b]["accuracy"] - entry["torch_fp32"]["accuracy"])
            entry[b]["uar_delta_points"] = 100 * (entry[b]["uar"] - entry["torch_fp32"]["uar"])
            entry[b]["top_label_agreement"] = float((probs[b].argmax(1) == ref.argmax(1)).mean())
            entry[b]["max_abs_prob_diff"] = float(np.abs(probs[b] - ref).max())
        out[dataset] = entry
    # the voice recipe's whole validation set (RAVDESS 19-20 + EmoDB 15-16): accuracy pooled over items
    if all(k in out and "skipped" not in out[k] for k in VOICE_HELD_OUT):
        entry = {}
        for b in models:
            n = sum(out[k][b]["n"] for k in VOICE_HELD_OUT)
            entry[b] = {"n": n, "accuracy": sum(out[k][b]["accuracy"] * out[k][b]["n"] for k in VOICE_HELD_OUT) / n}
            if b != "torch_fp32":
                entry[b]["accuracy_delta_points"] = 100 * (entry[b]["accuracy"] - entry["torch_fp32"]["accuracy"])
        out["voice_held_out_pooled"] = entry
    return out


# --------------------------------------------------------------------------------- main


def fmt_ms(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=os.environ.get("EMOFUSION_DATA", "/work/shared/data"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--no-accuracy", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    load_before = load_avg()

    from emofusion.export import export_onnx

    pt = load_model(args.model, load_text_encoder=False).prepare_inference()
    export_dir = Path(tempfile.mkdtemp(prefix="bench-export-")) / "onnx"
    try:
        t0 = time.perf_counter()
        manifest = export_onnx(pt, export_dir, int8=True, source=args.model, int8_nets=("face", "voice", "text"))
        export_seconds = time.perf_counter() - t0
        sizes = {name: info["bytes"] for name, info in manifest["files"].items()}

        faces64, face_src = face_inputs(pt, data, 64)
        mels9, voice_src = voice_inputs(pt, data, 9)
        side = faces64.shape[-1]
        workloads = {
            "face_b20": ("face_probs", faces64[:20].contiguous()),
            "face_b64": ("face_probs", faces64),
            "voice_b9": ("voice_probs", mels9),
        }
        speed = {f"threads_{t}": bench_speed(pt, export_dir, workloads, t, args.repeats) for t in threads}
        choice = bench_quant_choice(export_dir, faces64.numpy(), max(7, args.repeats // 2))
        accuracy = None
        if not args.no_accuracy:
            torch.set_num_threads(2)
            models = {
                "torch_fp32": pt,
                "onnx_fp32": OnnxModel(export_dir, precision="fp32", threads=2),
                "onnx_int8": OnnxModel(export_dir, precision="int8", threads=2),
            }
            accuracy = bench_accuracy(models, data)
    finally:
        shutil.rmtree(export_dir.parent, ignore_errors=True)

    tta = bool((pt.config.face or {}).get("tta_flip", False))
    result = {
        "model": {"name": pt.config.name, "version": pt.config.version},
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_avg(),
        "export_seconds": export_seconds,
        "export_file_bytes": sizes,
        "quantization": manifest["quantization"],
        "inputs": {
            "face": f"{face_src}, 1x{side}x{side}" + (" (flip TTA: the net runs on twice as many crops)" if tta else ""),
            "voice": f"{voice_src}, {tuple(mels9.shape[1:])} log-mels",
        },
        "repeats": args.repeats,
        "speed": speed,
        "quantization_choice": choice,
        "accuracy": accuracy,
    }
    (out / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    md = render_md(result)
    (out / "export.md").write_text(md)
    print(md)


def render_md(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# ONNX export: PyTorch FP32 vs ONNX Runtime FP32 vs ONNX Runtime INT8",
        "",
        f"Model `{r['model']['name']}` {r['model']['version']}. Machine: {m['cpu']}, {m['cores']} cores, "
        f"Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}. "
        f"Load average (1/5/15 min) before: {r['load_average_before']}, after: {r['load_average_after']} "
        "(other processes competed for the CPU; the interleaved ratios are the robust numbers).",
        "",
        f"Export (FP32 + INT8): {r['export_seconds']:.1f} s. Sizes: "
        + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in r["export_file_bytes"].items() if k.endswith(".onnx")) + ".",
        "",
        "## Latency per call (median of "
        f"{r['repeats']} interleaved rounds, ms)",
        "",
        f"Face: {r['inputs']['face']}. Voice: {r['inputs']['voice']}. PyTorch is the BatchNorm-folded "
        "net the Analyzer runs; threads = torch.set_num_threads = ORT intra_op_num_threads.",
        "",
        "| workload | threads | PyTorch FP32 | ONNX FP32 | ONNX INT8 | ONNX FP32 speedup | INT8 speedup vs PyTorch | INT8 vs ONNX FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tkey, per in r["speed"].items():
        t = tkey.split("_")[1]
        for name, s in per.items():
            med = s["median_ms"]
            lines.append(
                f"| {name} | {t} | {fmt_ms(med['torch_fp32'])} | {fmt_ms(med['onnx_fp32'])} | {fmt_ms(med['onnx_int8'])} | "
                f"{s['speedup_vs_torch']['onnx_fp32']:.2f}x | {s['speedup_vs_torch']['onnx_int8']:.2f}x | "
                f"{s['int8_vs_onnx_fp32']:.2f}x |"
            )
    c = r["quantization_choice"]
    lines += [
        "",
        f"## Why static INT8: the face net alone, batch {c['batch']}, 1 thread (median ms; speed relative to ONNX FP32)",
        "",
        "| variant | ms | vs FP32 |",
        "|---|---|---|",
    ]
    for k, v in c["median_ms"].items():
        lines.append(f"| {k} | {fmt_ms(v)} | {c['vs_fp32'][k]:.2f}x |")
    acc = r.get("accuracy")
    if acc:
        lines += [
            "",
            "## Accuracy (evaluate_dataset; 2 threads)",
            "",
            "| data | n | PyTorch acc | ONNX FP32 acc | INT8 acc | INT8 - PyTorch (points) | INT8 UAR - PyTorch UAR (points) | top label agrees |",
            "|---|---|---|---|---|---|---|---|",
        ]
        names = {"fer2013": "FER-2013 val", "ravdess": "RAVDESS actors 19, 20", "emodb": "EmoDB speakers 15, 16"}
        for key, e in acc.items():
            if key == "voice_held_out_pooled" or "skipped" in e:
                continue
            lines.append(
                f"| {names.get(key, key)} | {e['torch_fp32']['n']} | {100 * e['torch_fp32']['accuracy']:.2f} | "
                f"{100 * e['onnx_fp32']['accuracy']:.2f} | {100 * e['onnx_int8']['accuracy']:.2f} | "
                f"{e['onnx_int8']['accuracy_delta_points']:+.2f} | {e['onnx_int8']['uar_delta_points']:+.2f} | "
                f"{100 * e['onnx_int8']['top_label_agreement']:.1f}% |"
            )
        if "voice_held_out_pooled" in acc:
            e = acc["voice_held_out_pooled"]
            lines.append(
                f"| voice held-out pooled | {e['torch_fp32']['n']} | {100 * e['torch_fp32']['accuracy']:.2f} | "
                f"{100 * e['onnx_fp32']['accuracy']:.2f} | {100 * e['onnx_int8']['accuracy']:.2f} | "
                f"{e['onnx_int8']['accuracy_delta_points']:+.2f} | | |"
            )
    q = r["quantization"] or {}
    lines += [
        "",
        "INT8 here: face and voice nets static QDQ (per-channel int8 weights in a 7-bit range, uint8 "
        "activations, MinMax ranges from synthetic calibration inputs; the first convolution kept FP32: "
        f"{', '.join(n for v in q.values() for n in v.get('kept_fp32', [])) or 'none'}); text heads dynamic. "
        "`emofusion export --int8` ships the face and text INT8 nets and keeps the voice net FP32 (its INT8 "
        "version is measured above: no faster, not more accurate).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
