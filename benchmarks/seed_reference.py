"""A seed-style multimodal emotion pipeline, the way the projects emofusion replaces build it,
with random weights -- the reference that `bench_analyze.py` times beside our Analyzer.

    python benchmarks/seed_reference.py CLIP.mp4 [--text "one line"] [--window 2 --hop 1] [--threads N]

Written on plain torch (no torchvision, nothing downloaded). For one clip it does:

1. Load the whole clip, as the seeds do before anything else:
   - decode EVERY video frame with OpenCV (`cv2.VideoCapture`, FFmpeg backend) and convert
     each one BGR -> RGB;
   - extract the audio track to a temporary WAV: PyAV decodes the audio stream, resamples it
     to 16 kHz mono, `soundfile` writes the WAV, which is then read back;
   - clip-level prediction: 16 frames sampled uniformly over the clip, resized to 112x112
     -> R3D-18; the whole WAV -> log-mel (`emofusion.features.log_mel`) -> mel CNN; the
     transcript -> BERT-base; late-fusion head.
2. Then per window (the seeds process a clip as segments; here the same windows as ours:
   2 s long, hop 1 s, so 9 windows for a 10 s clip), with batch size 1 and no caching:
   - video: a new `cv2.VideoCapture`, seek with `CAP_PROP_POS_MSEC` to the window's start,
     read + convert (BGR -> RGB) every frame of the window and keep them in a list, take
     16 uniformly, resize to 112x112, normalise (Kinetics mean/std) -> R3D-18;
   - audio: decode the window's audio again with PyAV (seek, decode, resample to 16 kHz mono),
     write it to a temporary WAV with `soundfile`, read it back -> log-mel -> mel CNN;
   - text: the window's transcript text (the whole line when one line is given), whitespace
     split, each word -> crc32(word) mod vocab, [CLS] ... [SEP], padded to 128 tokens
     (`padding="max_length"` as the seeds call their tokenizer) -> BERT-base pooled output
     -> linear 768 -> 7;
   - late fusion: the three 7-way logit vectors concatenated -> linear 21 -> 7 -> softmax.

The nets:
  - R3D-18 (as torchvision's `r3d_18`): stem Conv3d 3->64, kernel 3x7x7, stride (1,2,2) +
    BN + ReLU; 4 stages of 2 BasicBlock3D (3x3x3 convs), channels 64/128/256/512, stride 2
    from stage 2 (1x1x1 conv + BN shortcut); global average pool; fc 512 -> 7. ~33.2M params.
  - BERT-base: `transformers.BertModel(BertConfig())` (12 layers, 768 hidden, 12 heads,
    vocab 30522), random init, ~109.5M params.
  - mel CNN: 4 blocks (3x3 conv + BN + ReLU + 2x2 max-pool), channels 32/64/128/256, global
    average pool, fc 256 -> 7.

What it leaves out (each of these would make the reference slower, not faster):
  - no real tokenizer (none can be downloaded here): word-piece splitting would only change
    the ids, the sequence is padded to 128 tokens either way;
  - no face detection or face crop (the seeds' video net sees the whole resized frame);
  - no re-encoding of the segments to files (some seeds cut each segment with an ffmpeg
    subprocess before reading it); the window's frames are decoded again instead;
  - the whole-clip pass keeps only the 16 sampled frames, not every RGB frame (a 10 s
    1080p clip would be ~1.9 GB); every frame is still decoded and converted;
  - no speech recognition: the transcript is given;
  - weights are random (the speed does not depend on them); the nets run in eval mode under
    `torch.inference_mode()` with the same `torch.set_num_threads` as our Analyzer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib

import av
import cv2
import numpy as np
import soundfile as sf
import torch
from torch import nn
from torch.nn import functional as F

from emofusion.features import MelConfig, log_mel

NUM_CLASSES = 7
CLIP_FRAMES = 16
CLIP_SIDE = 112
MAX_TOKENS = 128
SAMPLE_RATE = 16000
KINETICS_MEAN = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
KINETICS_STD = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)


# ----------------------------------------------------------------------------- nets
class BasicBlock3D(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class R3D18(nn.Module):
    """R3D-18 (Tran et al. 2018), laid out as torchvision's `r3d_18`; input (N, 3, T, H, W)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        layers, cin = [], 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock3D(cin, cout, stride), BasicBlock3D(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


class MelCNN(nn.Module):
    """A VGG-style 2D CNN over a log-mel spectrogram (N, n_mels, frames)."""

    def __init__(self, num_classes: int = NUM_CLASSES, channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        blocks, cin = [], 1
        for cout in channels:
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(mel.unsqueeze(1)).mean(dim=(2, 3)))


class TextNet(nn.Module):
    """BERT-base (random init) + a linear head on the pooled output."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.config = BertConfig()  # base sizes: 12 layers, 768 hidden, 12 heads, vocab 30522
        self.bert = BertModel(self.config)
        self.fc = nn.Linear(self.config.hidden_size, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bert(input_ids=ids, attention_mask=mask).pooler_output)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- inputs
def tokenize(text: str, vocab_size: int, max_len: int = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitespace split, crc32(word) mod vocab (kept clear of the special ids), [CLS] .. [SEP],
    padded to max_len (what `tokenizer(..., padding="max_length", truncation=True)` gives)."""
    words = text.split()[: max_len - 2]
    ids = [101] + [1000 + zlib.crc32(w.lower().encode()) % (vocab_size - 1000) for w in words] + [102]
    mask = [1] * len(ids) + [0] * (max_len - len(ids))
    ids = ids + [0] * (max_len - len(ids))
    return torch.tensor([ids]), torch.tensor([mask])


def clip_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """16 RGB frames sampled uniformly from `frames`, resized to 112x112 -> (1, 3, 16, 112, 112)."""
    if not frames:
        frames = [np.zeros((CLIP_SIDE, CLIP_SIDE, 3), np.uint8)]
    idx = np.linspace(0, len(frames) - 1, CLIP_FRAMES).round().astype(int)
    small = np.stack([cv2.resize(frames[i], (CLIP_SIDE, CLIP_SIDE), interpolation=cv2.INTER_LINEAR) for i in idx])
    x = torch.from_numpy(small).permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0  # (1, 3, T, H, W)
    return (x - KINETICS_MEAN) / KINETICS_STD


def read_all_frames_sampled(path: str) -> tuple[list[np.ndarray], int]:
    """Decode and BGR->RGB-convert every frame of the clip; keep the 16 uniformly sampled ones."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    keep = set(np.linspace(0, expected - 1, CLIP_FRAMES).round().astype(int).tolist())
    kept, n = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if n in keep:
            kept.append(rgb)
        n += 1
    cap.release()
    return kept, n


def read_window_frames(path: str, start: float, end: float) -> list[np.ndarray]:
    """A new capture, seek to `start`, read + convert every frame until `end` (all kept)."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    cap.set(cv2.CAP_PROP_POS_MSEC, start * 1000.0)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0  # the frame just read
        if t >= end - 1e-6:
            break
        if t < start - 1e-3:  # the seek landed early: skip up to the window
            continue
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def decode_audio(path: str, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """PyAV: the audio between start and end (seconds), 16 kHz mono float32."""
    with av.open(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        stream = container.streams.audio[0]
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks, first_t = [], None
        for frame in container.decode(stream):
            if frame.pts is not None and frame.time_base is not None and first_t is None:
                first_t = float(frame.pts * frame.time_base)
            if end is not None and frame.pts is not None and float(frame.pts * frame.time_base) > end:
                break
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    first_t = max(0.0, first_t or 0.0)
    a = max(0, int(round((start - first_t) * SAMPLE_RATE)))
    b = len(wav) if end is None else max(a, int(round((end - first_t) * SAMPLE_RATE)))
    return wav[a:b].astype(np.float32)


def via_temp_wav(wav: np.ndarray, folder: str) -> np.ndarray:
    """Write a 16 kHz mono WAV and read it back (the seeds hand audio to their feature code as a file)."""
    fd, path = tempfile.mkstemp(suffix=".wav", dir=folder)
    os.close(fd)
    try:
        sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16")
        back, _ = sf.read(path, dtype="float32")
    finally:
        os.unlink(path)
    return back


def windows(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """Same windows as emofusion.analysis.make_windows."""
    from emofusion.analysis import make_windows

    return [(w.start, w.end) for w in make_windows(duration, window, hop)]


# ----------------------------------------------------------------------------- pipeline
class SeedReference:
    """The seed-style pipeline; `analyze(path, text)` returns per-window probabilities and timings."""

    def __init__(self, *, window: float = 2.0, hop: float = 1.0, threads: int | None = None, seed: int = 0):
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.window, self.hop = window, hop
        self.video = R3D18().eval()
        self.audio = MelCNN().eval()
        self.text = TextNet().eval()
        self.fusion = nn.Linear(3 * NUM_CLASSES, NUM_CLASSES).eval()
        self.mel_cfg = MelConfig()

    def param_counts(self) -> dict[str, int]:
        return {
            "r3d18": count_params(self.video),
            "bert_base": count_params(self.text.bert),
            "text_head": count_params(self.text.fc),
            "mel_cnn": count_params(self.audio),
            "fusion": count_params(self.fusion),
        }

    @torch.inference_mode()
    def _predict(self, frames: list[np.ndarray], wav: np.ndarray, text: str) -> np.ndarray:
        v = self.video(clip_tensor(frames))
        if len(wav) < self.mel_cfg.n_fft:
            wav = np.pad(wav, (0, self.mel_cfg.n_fft - len(wav)))
        a = self.audio(log_mel(torch.from_numpy(np.ascontiguousarray(wav)), self.mel_cfg).unsqueeze(0))
        ids, mask = tokenize(text or "", self.text.config.vocab_size)
        t = self.text(ids, mask)
        return torch.softmax(self.fusion(torch.cat([v, a, t], dim=-1)), dim=-1)[0].numpy()

    def analyze(self, path: str | os.PathLike, text: str = "") -> dict:
        path = str(path)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with av.open(path) as c:
            duration = float(c.duration / av.time_base) if c.duration else 0.0
        with tempfile.TemporaryDirectory(prefix="seedref-") as tmp:
            # 1. whole clip
            frames, n_frames = read_all_frames_sampled(path)
            t1 = time.perf_counter()
            wav = via_temp_wav(decode_audio(path), tmp)
            t2 = time.perf_counter()
            clip_probs = self._predict(frames, wav, text)
            t3 = time.perf_counter()
            timings["whole_clip_decode_every_frame"] = t1 - t0
            timings["whole_clip_audio_to_wav"] = t2 - t1
            timings["whole_clip_nets"] = t3 - t2
            # 2. per window
            out, decoded_in_windows = [], 0
            for start, end in windows(duration, self.window, self.hop):
                w_frames = read_window_frames(path, start, end)
                decoded_in_windows += len(w_frames)
                w_wav = via_temp_wav(decode_audio(path, start, end), tmp)
                out.append({"start": start, "end": end, "probs": self._predict(w_frames, w_wav, text).tolist()})
            timings["windows"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        return {
            "duration": duration,
            "frames_decoded_whole_clip": n_frames,
            "frames_decoded_in_windows": decoded_in_windows,
            "clip_probs": clip_probs.tolist(),
            "windows": out,
            "seconds": timings,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("--text", default="I can't believe this actually happened to us today")
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default, as our Analyzer)")
    args = ap.parse_args()
    ref = SeedReference(window=args.window, hop=args.hop, threads=args.threads)
    counts = ref.param_counts()
    print("parameters:", ", ".join(f"{k} {v:,}" for k, v in counts.items()), f"(torch threads {torch.get_num_threads()})")
    t0 = time.perf_counter()
    ref.analyze(args.clip, args.text)  # warm-up
    warm = time.perf_counter() - t0
    result = ref.analyze(args.clip, args.text)
    print(f"first run {warm:.2f} s; warm run {result['seconds']['total']:.2f} s:",
          {k: round(v, 3) for k, v in result["seconds"].items()})
    print(f"{len(result['windows'])} windows, frames decoded: {result['frames_decoded_whole_clip']} (whole clip) + "
          f"{result['frames_decoded_in_windows']} (windows)")


if __name__ == "__main__":
    main()
