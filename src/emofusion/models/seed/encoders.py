"""Video, audio and text encoders built from an `EncoderConfig`.

Inputs (a dict per modality, or a bare tensor for the first key):
  video: {"video": (B, 3, T, H, W) float, normalised; optional "lengths": (B,) real frames
          (resnet18_frames only)}
  audio: {"audio": (B, S) float 16 kHz mono, zero-padded; optional "lengths": (B,) samples}
  text:  {"input_ids": (B, L), "attention_mask": (B, L)}; `encoder.tokenize(texts)` makes it.
Every encoder returns an `EncoderOutput`; pooling never counts padding.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from ...features import MelConfig, log_mel
from .config import EncoderConfig, EncoderOutput
from .pooling import AttentionPool, lengths_to_mask, masked_mean
from .resnet import R3D18, ResNet18

ENCODERS: dict[str, type["Encoder"]] = {}
MODALITY_OF: dict[str, str] = {}


def register(name: str, modality: str) -> Callable[[type["Encoder"]], type["Encoder"]]:
    def deco(cls: type["Encoder"]) -> type["Encoder"]:
        ENCODERS[name] = cls
        MODALITY_OF[name] = modality
        return cls

    return deco


def build_encoder(cfg: EncoderConfig | dict[str, Any]) -> "Encoder":
    cfg = EncoderConfig.from_dict(cfg)
    if cfg.type not in ENCODERS:
        raise ValueError(f"unknown encoder type {cfg.type!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[cfg.type](cfg)


def _as_dict(inputs: Any, key: str) -> dict[str, Any]:
    if isinstance(inputs, torch.Tensor):
        return {key: inputs}
    if not isinstance(inputs, dict) or key not in inputs:
        raise ValueError(f"expected a tensor or a dict with {key!r}")
    return inputs


class Encoder(nn.Module):
    """Backbone + optional projection + freeze schedule. Subclasses set `self.backbone`
    and implement `encode(inputs) -> (pooled, sequence | None, mask | None)` at backbone width."""

    modality: str = ""

    backbone: nn.Module

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg

    def _setup(self, backbone_dim: int) -> None:
        """Called by subclasses once `self.backbone` exists."""
        cfg = self.cfg
        self.backbone_dim = backbone_dim
        self.proj: nn.Module = nn.Linear(backbone_dim, cfg.proj_dim) if cfg.proj_dim else nn.Identity()
        self.out_dim = cfg.proj_dim or backbone_dim
        self._frozen = False
        self.set_epoch(0)

    # ---- freezing
    def backbone_frozen(self, epoch: int) -> bool:
        if self.cfg.unfreeze_after is not None:
            return epoch < self.cfg.unfreeze_after
        return bool(self.cfg.freeze)

    def set_epoch(self, epoch: int) -> None:
        """Apply the freeze schedule for `epoch` (0-based)."""
        self._frozen = self.backbone_frozen(epoch)
        for p in self.backbone.parameters():
            p.requires_grad_(not self._frozen)
        if self._frozen:
            self.backbone.eval()  # frozen: no BN statistics updates, no dropout
        else:
            self.backbone.train(self.training)
            self._freeze_bn()

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        if self._frozen:
            self.backbone.eval()
        else:
            self._freeze_bn()
        return self

    def _freeze_bn(self) -> None:
        if self.cfg.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    @property
    def frozen(self) -> bool:
        return self._frozen

    # ---- forward
    def encode(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, inputs: Any) -> EncoderOutput:
        pooled, seq, mask = self.encode(inputs)
        return EncoderOutput(self.proj(pooled), None if seq is None else self.proj(seq), mask)

    def export_config(self) -> dict[str, Any]:
        """The config that rebuilds this encoder (without downloading) before loading its weights."""
        d = self.cfg.to_dict()
        if d["pretrained"] is not None:
            d["pretrained_from"] = d["pretrained"]
        d["pretrained"] = None
        return d


# =========================================================================== video


@register("r3d18", "video")
class R3D18Encoder(Encoder):
    """torchvision-compatible r3d_18; pooled 512-d feature and the (B, T/8, 512) sequence.

    config: {"width": 64 (torchvision-exact; smaller for tests only)}.
    `pretrained`: a local torchvision r3d_18 .pth/.safetensors (Kinetics-400). `fc` is dropped.
    """

    modality = "video"

    def __init__(self, cfg: EncoderConfig):
        width = int(cfg.config.get("width", 64))
        extra = set(cfg.config) - {"width"}
        if extra:
            raise ValueError(f"r3d18 config: unknown keys {sorted(extra)}")
        super().__init__(cfg)
        backbone = R3D18.from_pretrained(cfg.pretrained, width=width) if cfg.pretrained else R3D18(width=width)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self._setup(backbone.feature_dim)

    def encode(self, inputs: Any):
        x = _as_dict(inputs, "video")["video"]
        seq = self.backbone.forward_sequence(x)  # (B, T', C)
        return seq.mean(dim=1), seq, torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device)


@register("resnet18_frames", "video")
class FrameResNetEncoder(Encoder):
    """Per-frame 2D ResNet-18 then temporal mean or attention pooling; sequence (B, T, 512).

    config: {"width": 64, "temporal_pool": "mean" | "attention"}. `pretrained`: a local
    torchvision resnet18 .pth/.safetensors (ImageNet); `fc` is dropped. Optional input
    "lengths" (B,) masks padded frames.
    """

    modality = "video"

    def __init__(self, cfg: EncoderConfig):
        width = int(cfg.config.get("width", 64))
        pool = cfg.config.get("temporal_pool", "mean")
        extra = set(cfg.config) - {"width", "temporal_pool"}
        if extra:
            raise ValueError(f"resnet18_frames config: unknown keys {sorted(extra)}")
        if pool not in ("mean", "attention"):
            raise ValueError(f"temporal_pool must be 'mean' or 'attention', not {pool!r}")
        super().__init__(cfg)
        backbone = ResNet18.from_pretrained(cfg.pretrained, width=width) if cfg.pretrained else ResNet18(width=width)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.temporal_pool = AttentionPool(backbone.feature_dim) if pool == "attention" else None
        self._setup(backbone.feature_dim)

    def encode(self, inputs: Any):
        d = _as_dict(inputs, "video")
        x = d["video"]  # (B, 3, T, H, W)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        seq = self.backbone.pooled_features(frames).view(b, t, -1)
        lengths = d.get("lengths")
        mask = (
            lengths_to_mask(torch.as_tensor(lengths, device=x.device), t)
            if lengths is not None
            else torch.ones(b, t, dtype=torch.bool, device=x.device)
        )
        pooled = self.temporal_pool(seq, mask) if self.temporal_pool is not None else masked_mean(seq, mask)
        return pooled, seq, mask


class _HFEncoder(Encoder):
    """Shared construction for transformers backbones: from a hub id / folder, or from a config."""

    model_cls_name: str = ""
    config_cls_name: str = ""

    def _build_hf(self, cfg: EncoderConfig) -> nn.Module:
        import transformers

        model_cls = getattr(transformers, self.model_cls_name)
        config_cls = getattr(transformers, self.config_cls_name)
        overrides = copy.deepcopy(cfg.config)
        if cfg.pretrained:
            return model_cls.from_pretrained(cfg.pretrained, **overrides)
        return model_cls(config_cls.from_dict(overrides) if overrides else config_cls())

    def export_config(self) -> dict[str, Any]:
        d = super().export_config()
        d["config"] = self.backbone.config.to_dict()  # full config: rebuilds without the hub
        return d


@register("videomae", "video")
class VideoMAEEncoder(_HFEncoder):
    """transformers VideoMAEModel; pooled = mean over tokens, sequence = the (B, N, D) tokens.
    Input (B, 3, T, H, W) like the other video encoders (permuted to VideoMAE's (B, T, 3, H, W))."""

    modality = "video"
    model_cls_name = "VideoMAEModel"
    config_cls_name = "VideoMAEConfig"

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.backbone = self._build_hf(cfg)
        self._setup(self.backbone.config.hidden_size)

    def encode(self, inputs: Any):
        x = _as_dict(inputs, "video")["video"]
        tokens = self.backbone(pixel_values=x.transpose(1, 2)).last_hidden_state
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return tokens.mean(dim=1), tokens, mask


# =========================================================================== audio


def _audio_inputs(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    d = _as_dict(inputs, "audio")
    wav = d["audio"]
    if wav.ndim == 1:
        wav = wav.unsqueeze(0)
    lengths = d.get("lengths")
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=wav.device)
    # padding is zero whatever the caller put there
    wav = wav * lengths_to_mask(lengths, wav.shape[1]).to(wav.dtype)
    return wav, lengths


class MelCNN(nn.Module):
    """Conv blocks over (mel, time) that pool frequency only, so every output step is one mel
    frame; padded frames are re-zeroed after each block, so padding never leaks in."""

    def __init__(self, n_mels: int = 64, channels: tuple[int, ...] = (32, 64, 128), dim: int = 256):
        super().__init__()
        self.blocks = nn.ModuleList()
        cin, f = 1, n_mels
        for cout in channels:
            self.blocks.append(nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=(2, 1)) if f >= 2 else nn.Identity(),
            ))
            f = f // 2 if f >= 2 else f
            cin = cout
        self.out = nn.Linear(cin * f, dim)
        self.dim = dim

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, T), mask (B, T) -> (B, T, dim)."""
        x = mel.unsqueeze(1)
        m = mask[:, None, None, :].to(x.dtype)
        x = x * m
        for block in self.blocks:
            x = block(x) * m
        b, c, f, t = x.shape
        return self.out(x.permute(0, 3, 1, 2).reshape(b, t, c * f))


@register("mel_cnn", "audio")
class MelCNNEncoder(Encoder):
    """Small CNN on `emofusion.features.log_mel` (computed per item on its real samples);
    sequence = one step per mel frame (10 ms), masked mean pooled.

    config: {"channels": [32, 64, 128], "dim": 256, "mel": {MelConfig fields}}.
    """

    modality = "audio"

    def __init__(self, cfg: EncoderConfig):
        if cfg.pretrained:
            raise ValueError("mel_cnn has no pretrained weights; use pretrained: null")
        extra = set(cfg.config) - {"channels", "dim", "mel"}
        if extra:
            raise ValueError(f"mel_cnn config: unknown keys {sorted(extra)}")
        super().__init__(cfg)
        self.mel_cfg = MelConfig(**cfg.config.get("mel", {}))
        self.backbone = MelCNN(self.mel_cfg.n_mels, tuple(cfg.config.get("channels", (32, 64, 128))),
                               int(cfg.config.get("dim", 256)))
        self._setup(self.backbone.dim)

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        n = sample_lengths.clamp_min(self.mel_cfg.n_fft)  # log_mel pads shorter clips to n_fft
        return 1 + n // self.mel_cfg.hop_length

    def encode(self, inputs: Any):
        wav, lengths = _audio_inputs(inputs)
        frames = self.frame_lengths(lengths)
        t = int(frames.max())
        mel = wav.new_zeros(wav.shape[0], self.mel_cfg.n_mels, t)
        with torch.no_grad():  # fixed preprocessing; per item so normalisation ignores padding
            for i, (n, f) in enumerate(zip(lengths.tolist(), frames.tolist())):
                mel[i, :, :f] = log_mel(wav[i, :n], self.mel_cfg).to(mel.dtype)
        mask = lengths_to_mask(frames, t)
        seq = self.backbone(mel, mask)
        return masked_mean(seq, mask), seq, mask


class _SpeechSSLEncoder(_HFEncoder):
    """HuBERT / wav2vec 2.0 / WavLM with masked mean pooling over each item's real frames.

    The attention mask goes to the model only when its feature extractor uses layer norm
    (`feat_extract_norm="layer"`); group-norm checkpoints (the *-base ones) were trained
    without one and expect zero padding, as transformers' feature extractor does. Pooling and
    the returned mask always use the real frame counts (`_get_feat_extract_output_lengths`).
    """

    modality = "audio"

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.backbone = self._build_hf(cfg)
        self._setup(self.backbone.config.hidden_size)

    def encode(self, inputs: Any):
        wav, lengths = _audio_inputs(inputs)
        use_mask = getattr(self.backbone.config, "feat_extract_norm", "group") == "layer"
        attn = lengths_to_mask(lengths, wav.shape[1]).long() if use_mask else None
        hidden = self.backbone(input_values=wav, attention_mask=attn).last_hidden_state
        frames = self.backbone._get_feat_extract_output_lengths(lengths).long().clamp(1, hidden.shape[1])
        mask = lengths_to_mask(frames, hidden.shape[1])
        return masked_mean(hidden, mask), hidden, mask


@register("hubert", "audio")
class HubertEncoder(_SpeechSSLEncoder):
    model_cls_name = "HubertModel"
    config_cls_name = "HubertConfig"


@register("wav2vec2", "audio")
class Wav2Vec2Encoder(_SpeechSSLEncoder):
    model_cls_name = "Wav2Vec2Model"
    config_cls_name = "Wav2Vec2Config"


@register("wavlm", "audio")
class WavLMEncoder(_SpeechSSLEncoder):
    model_cls_name = "WavLMModel"
    config_cls_name = "WavLMConfig"


# =========================================================================== text


class _TextEncoder(_HFEncoder):
    """BERT-family encoder (transformers BertModel / AutoModel) with masked mean pooling;
    the tokenizer comes from the same folder / hub id when `pretrained` is set."""

    modality = "text"
    model_cls_name = "BertModel"
    config_cls_name = "BertConfig"

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        if cfg.pretrained:
            from transformers import AutoModel, AutoTokenizer

            self.backbone = AutoModel.from_pretrained(cfg.pretrained, **copy.deepcopy(cfg.config))
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.pretrained)
        elif cfg.config.get("model_type", "bert") != "bert":  # e.g. a saved roberta / distilbert
            from transformers import AutoConfig, AutoModel

            rest = {k: v for k, v in cfg.config.items() if k != "model_type"}
            self.backbone = AutoModel.from_config(AutoConfig.for_model(cfg.config["model_type"], **rest))
            self.tokenizer = None
        else:
            self.backbone = self._build_hf(cfg)
            self.tokenizer = None
        self._setup(self.backbone.config.hidden_size)

    def tokenize(self, texts: list[str], max_length: int = 128) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise RuntimeError("this text encoder has no tokenizer (built without `pretrained`)")
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode(self, inputs: Any):
        d = _as_dict(inputs, "input_ids")
        ids = d["input_ids"]
        attn = d.get("attention_mask")
        if attn is None:
            attn = torch.ones_like(ids)
        hidden = self.backbone(input_ids=ids, attention_mask=attn).last_hidden_state
        mask = attn.bool()
        return masked_mean(hidden, mask), hidden, mask


@register("bert", "text")
class BertEncoder(_TextEncoder):
    pass


@register("minilm", "text")
class MiniLMEncoder(_TextEncoder):
    """all-MiniLM-L6-v2 and kin: a 6-layer 384-d BERT; same code path as `bert`."""
