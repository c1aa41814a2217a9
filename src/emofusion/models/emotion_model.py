"""`EmotionModel`: the face, voice and text nets of one checkpoint and how their outputs are fused;
`ModelParts` is what it shares with the ONNX backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelLoadError
from .config import CONFIG_NAME, FORMAT, WEIGHTS_NAME, ModelConfig
from .face import FaceNet
from .fusion import MODALITIES, fuse
from .text import EncoderDelta, SentenceEncoder, TextHeads

if TYPE_CHECKING:
    from .voice import SpeakerBaseline


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of `net` where each Conv2d followed by BatchNorm2d is one Conv2d."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module._modules.items())
            for (name_a, a), (name_b, b) in zip(children, children[1:]):
                if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                    module._modules[name_a] = fuse_conv_bn_eval(a, b)
                    module._modules[name_b] = torch.nn.Identity()
    return fused


class ModelParts:
    """What every model backend shares (PyTorch here, ONNX Runtime in onnx_backend): labels, the
    parts it has, fusion, and the sentence encoder, loaded on first use with any fine-tuned layers."""

    config: ModelConfig

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]

    @property
    def is_trained(self) -> bool:
        """True when every part this model has carries trained weights."""
        return bool(self.modalities) and all(self.config.trained.get(m, False) for m in self.modalities)

    @property
    def voice_functionals_config(self) -> dict[str, Any] | None:
        """The voice part's acoustic-functionals head settings, or None when it has none."""
        return (self.config.voice or {}).get("functionals")

    @property
    def can_calibrate_voice(self) -> bool:
        """True when the voice part has a regression on per-speaker standardised functionals."""
        head = getattr(self, "voice_functionals", None)
        return head is not None and head.calibrated is not None

    def voice_functionals_of(self, wavs: list[np.ndarray]) -> np.ndarray | None:
        """(N, D) acoustic functionals of `wavs` as the voice part's head reads them; None without a head."""
        cfg = self.voice_functionals_config
        if cfg is None or getattr(self, "voice_functionals", None) is None:
            return None
        from ..features import acoustic_functionals

        return acoustic_functionals(wavs, cfg["feature_set"], self.config.mel.sample_rate)

    def reads_voice_cnn(self, calibrated: bool) -> bool:
        """Whether the voice answer uses the CNN: always, except for a calibrated reading whose
        regression has all the weight (`functionals.calibrated.weight` 1)."""
        cfg = self.voice_functionals_config or {}
        return not (calibrated and float((cfg.get("calibrated") or {}).get("weight", 0.0)) >= 1.0)

    def with_voice_functionals(self, cnn_probs: np.ndarray | None, wavs: list[np.ndarray], *,
                               baseline: "SpeakerBaseline | None" = None,
                               feats: np.ndarray | None = None) -> np.ndarray:
        """The voice CNN's probabilities for `wavs`, combined with the functionals head when the model
        has one. With `baseline` (the speaker's own, see `SpeakerBaseline`), the calibrated regression
        reads the functionals relative to it. `feats`: the functionals of `wavs`, when already taken.
        `cnn_probs` is None where `reads_voice_cnn` says the CNN takes no part."""
        cfg = self.voice_functionals_config
        head = getattr(self, "voice_functionals", None)
        if cfg is None or head is None or len(wavs) == 0:
            if baseline is not None:
                raise ValueError("the voice part has no calibrated regression")
            return cnn_probs
        from .voice import calibrated_probs, combine_voice

        if feats is None:
            feats = self.voice_functionals_of(wavs)
        if baseline is not None:
            return combine_voice(cnn_probs, calibrated_probs(head, feats, baseline), float(cfg["calibrated"]["weight"]))
        return combine_voice(cnn_probs, head.probs(feats), float(cfg["weight"]))

    def fuse(self, probs: dict[str, np.ndarray | None]) -> np.ndarray | None:
        """Fuse the present modalities' probabilities with this model's fitted weights."""
        return fuse(probs, self.config.fusion.get("weights", {}))

    def _fine_tuned_encoder_layers(self) -> "EncoderDelta | None":
        """The fine-tuned top layers of the sentence encoder, when the text part has them."""
        raise NotImplementedError

    def _load_encoder(self) -> SentenceEncoder:
        if self.__dict__.get("_encoder") is None:
            cfg = self.config.text or {}
            enc = SentenceEncoder(cfg["encoder"], max_length=self.config.text_net.max_length)
            if enc.dim != int(cfg["embed_dim"]):
                raise ModelLoadError(
                    f"text encoder {cfg['encoder']!r} gives {enc.dim}-d embeddings; the heads expect {cfg['embed_dim']}"
                )
            delta = self._fine_tuned_encoder_layers()
            if delta is not None:
                delta.apply_to(enc.model)
            self.attach_encoder(enc)
        return self.__dict__["_encoder"]

    def attach_encoder(self, encoder: SentenceEncoder) -> None:
        """Use an already loaded sentence encoder (kept out of this model's weights)."""
        object.__setattr__(self, "_encoder", encoder)

    @property
    def encoder(self) -> SentenceEncoder:
        return self._load_encoder()


class EmotionModel(ModelParts, torch.nn.Module):
    """The face, voice and text nets of one checkpoint and how their outputs are fused."""

    backend = "torch"

    def __init__(self, config: ModelConfig, load_text_encoder: bool = True):
        super().__init__()
        self.config = config
        n = len(config.labels)
        self.face = None
        self.voice = None
        self.voice_functionals = None
        self.text = None
        self.text_encoder_delta: EncoderDelta | None = None
        # The sentence encoder is not a registered submodule: it comes from its own source
        # (config.text["encoder"]) and its weights never go into model.safetensors.
        object.__setattr__(self, "_encoder", None)
        if config.face is not None:
            face_net = config.face_net
            self.face = FaceNet(n, face_net.channels, face_net.dropout)
        if config.voice is not None:
            from .voice import VoiceNet

            voice_net = config.voice_net
            self.voice = VoiceNet(n, voice_net.channels, voice_net.dropout, voice_net.convs_per_block)
            functionals = config.voice.get("functionals")
            if functionals:
                from .voice import VoiceFunctionalsHead

                self.voice_functionals = VoiceFunctionalsHead(int(functionals["dim"]), n,
                                                              calibrated=bool(functionals.get("calibrated")))
        if config.text is not None:
            text_net = config.text_net
            self.text = TextHeads(
                int(config.text["embed_dim"]),
                n,
                len(config.sentiment_labels),
                hidden=text_net.hidden,
                dropout=text_net.dropout,
                use_context=text_net.use_context,
            )
            finetuned = config.text.get("finetuned")
            if finetuned:
                self.text_encoder_delta = EncoderDelta.from_config(finetuned)
            if load_text_encoder:
                self._load_encoder()
        self.eval()

    def _fine_tuned_encoder_layers(self) -> "EncoderDelta | None":
        return self.text_encoder_delta

    # -- inference ----------------------------------------------------------------------
    def prepare_inference(self) -> "EmotionModel":
        """Build inference copies of the face and voice nets with BatchNorm folded into the
        convolutions (same outputs, fewer operations). Weights must not change afterwards;
        a second call keeps the copies of the first."""
        self.eval()
        if self.__dict__.get("_fast") is not None:
            return self
        fast = {}
        for name in ("face", "voice"):
            net = getattr(self, name)
            if net is not None:
                fast[name] = fold_batchnorm(net)
        if "face" in fast:
            # channels-last convolutions are about 1.5x faster on CPU for the face net's small
            # crops (oneDNN's NHWC kernels); logits agree with the NCHW ones to ~1e-6
            fast["face"] = fast["face"].to(memory_format=torch.channels_last)
        object.__setattr__(self, "_fast", fast)
        return self

    def _net(self, name: str) -> torch.nn.Module:
        fast = self.__dict__.get("_fast") or {}
        return fast.get(name) if (name in fast and not self.training) else getattr(self, name)

    @torch.inference_mode()
    def face_probs(self, faces: torch.Tensor) -> np.ndarray:
        """(N, 1, S, S) normalised crops -> (N, C) probabilities (flip test-time augmentation if configured)."""
        assert self.face is not None
        net = self._net("face")
        tta = self.config.face_net.tta_flip
        batch = torch.cat([faces, torch.flip(faces, dims=[-1])]) if tta else faces
        if net is not self.face:  # the inference copy is channels-last (see prepare_inference)
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = net(batch)
        if tta:
            logits = (logits[: len(faces)] + logits[len(faces) :]) / 2
        return torch.softmax(logits, dim=-1).numpy()

    @torch.inference_mode()
    def voice_probs(self, mels: torch.Tensor) -> np.ndarray:
        """(N, n_mels, frames) log-mels -> (N, C) probabilities."""
        assert self.voice is not None
        return torch.softmax(self._net("voice")(mels), dim=-1).numpy()

    def clip_voice_probs(self, wavs: list[np.ndarray], batch_size: int = 64,
                         speakers: list[str] | None = None) -> np.ndarray:
        """Whole clips (16 kHz mono) -> (N, C) probabilities; clips of equal length share a batch
        (the log-mel is normalised per clip, so batching does not change any clip's input); with
        the CNN's probabilities combined with the functionals head's when the model has one.
        With `speakers` (one name per clip), each clip is read relative to its speaker's baseline
        over all of that speaker's clips here (the calibrated regression; ValueError without one)."""
        from ..features import log_mel

        cnn: np.ndarray | None = None
        if self.reads_voice_cnn(calibrated=speakers is not None):
            cnn = np.zeros((len(wavs), len(self.config.labels)), dtype=np.float32)
            by_length: dict[int, list[int]] = {}
            for i, w in enumerate(wavs):
                by_length.setdefault(len(w), []).append(i)
            for idx in by_length.values():
                for start in range(0, len(idx), batch_size):
                    chunk = idx[start : start + batch_size]
                    cnn[chunk] = self.voice_probs(log_mel(torch.from_numpy(np.stack([wavs[i] for i in chunk])),
                                                          self.config.mel))
        if speakers is None:
            return self.with_voice_functionals(cnn, wavs)
        from .voice import SpeakerBaseline

        if len(speakers) != len(wavs):
            raise ValueError(f"{len(speakers)} speakers for {len(wavs)} clips")
        if not self.can_calibrate_voice:
            raise ValueError(f"model {self.config.name!r} has no calibrated voice regression")
        feats = self.voice_functionals_of(wavs)
        out = np.zeros((len(wavs), len(self.config.labels)), dtype=np.float32)
        names = np.asarray(speakers)
        for name in dict.fromkeys(speakers):
            rows = np.flatnonzero(names == name)
            out[rows] = self.with_voice_functionals(None if cnn is None else cnn[rows], [wavs[i] for i in rows],
                                                    feats=feats[rows],
                                                    baseline=SpeakerBaseline.of(feats[rows]))
        return out

    @torch.inference_mode()
    def text_probs(self, texts: list[str], contexts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Texts (and optional preceding context) -> (emotion probs (N, C), sentiment probs (N, 3))."""
        assert self.text is not None
        emb = self.encoder.encode(texts)
        ctx = None
        if self.text.use_context:  # no context is a zero vector; only real contexts go through the encoder
            ctx = torch.zeros_like(emb)
            given = [i for i, c in enumerate(contexts or []) if c]
            if given:
                ctx[given] = self.encoder.encode([contexts[i] for i in given])
        emo, sent = self.text(emb, ctx)
        return torch.softmax(emo, -1).numpy(), torch.softmax(sent, -1).numpy()

    def part_state_dict(self, modality: str) -> dict[str, torch.Tensor]:
        """The tensors that belong to one modality's part: its net and what travels with it
        (`voice_functionals` with the voice net, `text_encoder_delta` with the text heads)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith((f"{modality}.", f"{modality}_"))}

    # -- persistence ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json and model.safetensors into `directory` (created if needed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": FORMAT})
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, load_text_encoder: bool = True) -> "EmotionModel":
        """Load a model folder; weights must match the config exactly (no missing or extra keys)."""
        folder = Path(directory)
        cfg_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not cfg_path.is_file():
            raise ModelLoadError(f"{folder}: no {CONFIG_NAME} (a model folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        if not weights_path.is_file():
            raise ModelLoadError(f"{folder}: no {WEIGHTS_NAME}")
        try:
            config = ModelConfig.from_dict(json.loads(cfg_path.read_text()))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"{cfg_path}: invalid config: {exc}") from exc
        model = cls(config, load_text_encoder=False)  # the encoder comes after the weights (fine-tuned tensors)
        try:
            state = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadError(f"{weights_path}: unreadable weights: {exc}") from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
            raise ModelLoadError(f"{weights_path}: weights do not match the config: {exc}") from exc
        model.eval()
        if load_text_encoder and model.text is not None:
            model._load_encoder()
        return model
