"""ResNet-18 backbones whose state dicts match torchvision's, without torchvision.

`R3D18` mirrors `torchvision.models.video.r3d_18` (VideoResNet with BasicBlock and
Conv3DSimple, stem R2Plus1d-less "BasicStem"); `ResNet18` mirrors
`torchvision.models.resnet18`. With the default `width=64` the parameter and buffer names
and shapes are exactly torchvision's, so their checkpoints load with strict=True. A smaller
`width` exists for tests only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Kinetics-400 normalisation used by torchvision's video models (inputs in [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# ImageNet normalisation used by torchvision's 2D ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors or .pth/.pt file (weights only, no pickle code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


# --------------------------------------------------------------------------- 3D (r3d_18)


class _Conv3DSimple(nn.Conv3d):
    """torchvision's Conv3DSimple: a plain 3x3x3 Conv3d (no bias)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1):
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride, padding=1, bias=False)


class _BasicBlock3d(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Sequential(_Conv3DSimple(inplanes, planes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_Conv3DSimple(planes, planes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class R3D18(nn.Module):
    """3D ResNet-18 (Kinetics-400 layout). Input (B, 3, T, H, W); time is strided by 8 overall
    (layers 2-4 stride 2 in t, h, w), space by 16."""

    def __init__(self, num_classes: int = 400, width: int = 64):
        super().__init__()
        w = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(
            nn.Conv3d(3, w[0], kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(w[0]),
            nn.ReLU(inplace=True),
        )
        inplanes = w[0]
        for i, planes in enumerate(w):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(_BasicBlock3d(inplanes, planes, stride), _BasicBlock3d(planes, planes))
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc: nn.Module = nn.Linear(w[3], num_classes)
        self.feature_dim = w[3]
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, C, T', H', W') before pooling."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T', C): spatially pooled, before temporal pooling."""
        return self.features(x).mean(dim=(3, 4)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))

    @classmethod
    def from_pretrained(cls, path: str | Path, *, width: int = 64) -> "R3D18":
        """Load torchvision's r3d_18 checkpoint (e.g. Kinetics-400 `r3d_18-b3b3357e.pth`) strictly."""
        state = load_state_file(path)
        num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 400
        model = cls(num_classes=num_classes, width=width)
        model.load_state_dict(state, strict=True)
        return model


# --------------------------------------------------------------------------- 2D (resnet18)


class _BasicBlock2d(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class ResNet18(nn.Module):
    """2D ResNet-18 with torchvision's names (ImageNet layout). Input (N, 3, H, W)."""

    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        w = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv2d(3, w[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = w[0]
        for i, planes in enumerate(w):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock2d(inplanes, planes, stride), _BasicBlock2d(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = nn.Linear(w[3], num_classes)
        self.feature_dim = w[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled_features(x))

    @classmethod
    def from_pretrained(cls, path: str | Path, *, width: int = 64) -> "ResNet18":
        """Load torchvision's resnet18 checkpoint (e.g. `resnet18-f37072fd.pth`) strictly."""
        state = load_state_file(path)
        num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
        model = cls(num_classes=num_classes, width=width)
        model.load_state_dict(state, strict=True)
        return model
