"""Seed architectures: video / audio / text encoders, fusion modules and heads, as configs.

Plain torch + transformers (no torchvision): `r3d18` and `resnet18_frames` keep
torchvision's state-dict names, so its checkpoints load strictly from local files.
"""

from .config import EncoderConfig, EncoderOutput
from .encoders import ENCODERS, MODALITY_OF, Encoder, build_encoder
from .fusion import FUSIONS, Fusion, build_fusion, modality_dropout
from .heads import ClassificationHead, head_specs, multitask_loss
from .model import SeedModel, SeedOutput
from .pooling import AttentionPool, lengths_to_mask, masked_mean
from .resnet import KINETICS_MEAN, KINETICS_STD, R3D18, ResNet18, load_state_file

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "MODALITY_OF",
    "AttentionPool",
    "ClassificationHead",
    "Encoder",
    "EncoderConfig",
    "EncoderOutput",
    "Fusion",
    "R3D18",
    "ResNet18",
    "SeedModel",
    "SeedOutput",
    "build_encoder",
    "build_fusion",
    "head_specs",
    "lengths_to_mask",
    "load_state_file",
    "masked_mean",
    "modality_dropout",
    "multitask_loss",
]
