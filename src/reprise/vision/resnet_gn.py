"""CIFAR-style ResNet-18 and Wide-ResNet with GroupNorm or BatchNorm (no torchvision), for the mSAM and SPARTA papers.

- ``resnet18(num_classes=10, norm="group", groups=16)``: the CIFAR variant of He et al.'s ResNet-18 (3 × 3 stem
  with stride 1 and no max-pool, four stages of two basic blocks with 64/128/256/512 channels, global average pool,
  linear head); 11.2 M parameters at 10 classes.
- ``wide_resnet(depth=28, widen=10, num_classes=10, norm="group", groups=16, dropout=0.0)``: Zagoruyko &
  Komodakis' pre-activation WRN-d-k (``(d − 4)/6`` blocks per stage, widths 16, 16k, 32k, 64k); WRN-28-10 has 36.5 M
  parameters.

``norm="group"`` uses ``GroupNorm(groups, C)`` everywhere (``groups`` must divide every width: 16 divides all of
them); it is per-sample, so it is what differential privacy (per-sample gradients) needs and it has no batch
statistics, which makes mSAM's micro-batches exactly independent. ``norm="batch"`` uses ``BatchNorm2d``: in training
mode each forward pass normalises with the statistics of the batch it sees, i.e. of the shard under mSAM.
"""
from __future__ import annotations

import torch
from torch import nn

from reprise.io import ReproError

__all__ = ["resnet18", "wide_resnet", "make_norm"]


def make_norm(norm: str, channels: int, groups: int = 16) -> nn.Module:
    """``GroupNorm(groups, channels)`` or ``BatchNorm2d(channels)``."""
    if norm == "group":
        if channels % groups:
            raise ReproError(f"norm='group': groups={groups} must divide the channel count {channels}")
        return nn.GroupNorm(groups, channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    raise ReproError(f"norm={norm!r} is unknown; use 'group' or 'batch'")


class _Basic(nn.Module):
    """Post-activation basic block (ResNet-18)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, c_out, groups)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), make_norm(norm, c_out, groups))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int, norm: str, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = make_norm(norm, 64, groups)
        layers, c_in = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(_Basic(c_in, width, stride, norm, groups),
                                        _Basic(width, width, 1, norm, groups)))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _PreAct(nn.Module):
    """Pre-activation wide block (norm → ReLU → conv, twice), optional dropout between the convs."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int, dropout: float):
        super().__init__()
        self.bn1 = make_norm(norm, c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = make_norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(torch.relu(self.bn2(o))))
        return o + skip


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, norm: str, groups: int, dropout: float):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ReproError(f"wide_resnet: depth={depth} must be 6n + 4 with n ≥ 1 (e.g. 16, 22, 28, 40)")
        if widen < 1:
            raise ReproError(f"wide_resnet: widen={widen} must be ≥ 1")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, c_in = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            for j in range(n):
                stride = 2 if (stage > 0 and j == 0) else 1
                blocks.append(_PreAct(c_in, width, stride, norm, groups, dropout))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = make_norm(norm, c_in, groups)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18(num_classes: int = 10, norm: str = "group", groups: int = 16) -> ResNet18:
    """CIFAR ResNet-18 (see the module docstring)."""
    return ResNet18(int(num_classes), norm, int(groups))


def wide_resnet(depth: int = 28, widen: int = 10, num_classes: int = 10, norm: str = "group", groups: int = 16,
                dropout: float = 0.0) -> WideResNet:
    """Pre-activation WRN-``depth``-``widen`` for 32 × 32 inputs (see the module docstring)."""
    return WideResNet(int(depth), int(widen), int(num_classes), norm, int(groups), float(dropout))
