"""Random recording conditions for training the voice part to travel: the room, the microphone's
band and tilt, background noise, a low-bitrate codec, and the speaker's pitch."""

from __future__ import annotations

import io

import numpy as np

SAMPLE_RATE = 16000


def _reverb(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an exponentially decaying noise tail (RT60 0.2-0.8 s), half direct sound."""
    rt60 = rng.uniform(0.2, 0.8)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 0.0
    ir *= rng.uniform(0.3, 1.0) / (np.sqrt((ir**2).sum()) + 1e-9)
    ir[0] = 1.0
    size = 1 << int(np.ceil(np.log2(len(wav) + n)))
    out = np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(ir, size), size)[: len(wav)]
    return out


def _band_and_tilt(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random band (low cut 50-400 Hz, high cut 3-8 kHz) and spectral tilt (-6..+6 dB per octave around 1 kHz)."""
    spec = np.fft.rfft(wav)
    f = np.fft.rfftfreq(len(wav), 1 / SAMPLE_RATE)
    lo, hi = rng.uniform(50, 400), rng.uniform(3000, 8000)
    tilt = rng.uniform(-6, 6)
    gain_db = tilt * np.log2(np.maximum(f, 50) / 1000.0)
    gain = 10 ** (gain_db / 20) / np.sqrt(1 + (lo / np.maximum(f, 1)) ** 8) / np.sqrt(1 + (f / hi) ** 8)
    return np.fft.irfft(spec * gain, len(wav))


def _noise(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise at 5-30 dB SNR."""
    colour = rng.integers(0, 3)
    spec = np.fft.rfft(rng.standard_normal(len(wav)))
    f = np.maximum(np.fft.rfftfreq(len(wav), 1 / SAMPLE_RATE), 20)
    noise = np.fft.irfft(spec / f ** (colour / 2), len(wav))
    snr = rng.uniform(5, 30)
    p_sig, p_noise = (wav**2).mean() + 1e-10, (noise**2).mean() + 1e-12
    return wav + noise * np.sqrt(p_sig / p_noise / 10 ** (snr / 10))


def _pitch(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resampling by -3..+3 semitones (pitch and tempo together: another speaker's voice range)."""
    factor = 2 ** (rng.uniform(-3, 3) / 12)
    n = max(16, int(round(len(wav) / factor)))
    return np.interp(np.linspace(0, len(wav) - 1, n), np.arange(len(wav)), wav)


def _codec(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Through MP3 (16-32 kb/s) or Opus (8-24 kb/s) and back."""
    import av

    from ..media import read_audio

    name, fmt, rate = [("libmp3lame", "mp3", int(rng.choice([16, 24, 32]))), ("libopus", "ogg", int(rng.choice([8, 12, 16, 24])))][
        rng.integers(0, 2)]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(name, rate=SAMPLE_RATE if name == "libmp3lame" else 48000)
        stream.bit_rate = rate * 1000
        stream.layout = "mono"
        pcm = np.clip(wav, -1, 1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    decoded = read_audio(buf)
    return decoded[: len(wav)] if len(decoded) >= len(wav) else np.pad(decoded, (0, len(wav) - len(decoded)))


CONDITIONS = {"reverb": _reverb, "band": _band_and_tilt, "noise": _noise, "pitch": _pitch, "codec": _codec}


def random_recording(wav: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                     conditions: tuple[str, ...] = tuple(CONDITIONS)) -> np.ndarray:
    """`wav` (16 kHz mono) as if spoken by a nearby voice in another room through another device:
    each of `conditions` applied with probability `p`, in the order pitch, reverb, band, noise, codec;
    the loudness is random (peak 0.1-0.9)."""
    out = np.asarray(wav, dtype=np.float64)
    for name in ("pitch", "reverb", "band", "noise", "codec"):
        if name in conditions and rng.random() < p:
            out = CONDITIONS[name](out, rng)
    peak = np.abs(out).max()
    if peak > 0:
        out = out / peak * rng.uniform(0.1, 0.9)
    return out.astype(np.float32)
