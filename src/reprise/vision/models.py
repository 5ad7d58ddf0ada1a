"""Vision models for OSSCAR's conv-channel study (spec §4.1, §4.8).

- ``DigitsResNet``: a small residual CNN for scikit-learn's bundled 8×8 digits (offline, trains on
  CPU in seconds). Stem conv 3×3 (1→32) + BN + ReLU, three basic blocks (32→32, 32→64 with stride 2
  and a 1×1 projection shortcut, 64→64), global average pool, linear 64→10. Convs have no bias.
- ``resnet50`` and ``mobilenet_v2``, defined here with torchvision's module names (torchvision itself
  is not a dependency, see below). ``pretrained=True`` loads torchvision's published
  ``IMAGENET1K_V1`` state dicts (reference top-1 76.130 and 71.878). When the file is not in torch
  hub's cache and cannot be downloaded, a ReproError names the expected cache path.
  ``pretrained=False`` gives random weights (seeded): **"random weights: shape and speed checks
  only"** (``RANDOM_LABEL``) must accompany every number reported from them.

``MOBILENET_NOTE`` is the sentence a manifest can quote about the paper's MobileNetV1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprise.io import ReproError

RANDOM_LABEL = "random weights: shape and speed checks only"

MOBILENET_NOTE = ("The OSSCAR paper prunes MobileNetV1 on ImageNet; torchvision ships no MobileNetV1 "
                  "(only MobileNetV2/V3), so this reproduction uses torchvision's MobileNetV2 "
                  "(IMAGENET1K_V1, reference top-1 71.878): a substitute architecture, not the paper's model.")

DIGITS = "digits-resnet"
IMAGENET_MODELS = ("resnet50", "mobilenet_v2")
MODELS = (DIGITS, *IMAGENET_MODELS)

# per-sample input shape (C, H, W) at which FLOPs are counted
INPUT_SHAPES = {DIGITS: (1, 8, 8), "resnet50": (3, 224, 224), "mobilenet_v2": (3, 224, 224)}


# --------------------------------------------------------------------------- digits CNN

class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the (projected when the shape changes) input, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Residual CNN for 1×8×8 digits, 10 classes; ``blocks`` is a chain (each block feeds the next)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 64), num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(c, w, stride=1 if i == 0 or w == c else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def digits_resnet(seed: int = 0, widths: tuple[int, ...] = (32, 64, 64)) -> DigitsResNet:
    """A freshly initialised ``DigitsResNet``, seeded without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsResNet(widths)


# --------------------------------------------------------------------------- ImageNet models
#
# Written here rather than imported from torchvision: the only torchvision wheel available is
# CUDA-built, its extension does not load against the CPU torch, and transformers imports
# torchvision whenever it is installed, which would break the LLM pipeline. Module names and
# shapes follow torchvision's, so its published state dicts load unchanged (strict).

def _conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """conv (no bias, 'same' padding for odd k) → BN → ReLU6; indices 0, 1, 2 as torchvision's
    Conv2dNormActivation."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1×1 reduce → 3×3 (carries the stride) → 1×1 expand (×4), each with BN,
    plus the identity or a projected (1×1 conv + BN) shortcut."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(y + skip)


class ResNet50(nn.Module):
    """ResNet-50 (stages of 3, 4, 6, 3 bottlenecks; widths 64–512): 25,557,032 parameters."""

    def __init__(self, num_classes: int = 1000, stages: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c = 64
        for i, n in enumerate(stages):
            width = 64 * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c, width, stride=2 if (j == 0 and i > 0) else 1))
                c = width * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():  # He init (fan-out) for convs, unit BN: the usual ResNet recipe
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1×1 expand to ``t·c_in`` + BN + ReLU6] → 3×3 depthwise + BN + ReLU6 →
    1×1 linear projection + BN, with the identity added when stride 1 and ``c_in == c_out``.
    Without expansion (t = 1) ``conv`` is [depthwise, project, BN]; with it [expand, depthwise,
    project, BN]."""

    def __init__(self, c_in: int, c_out: int, stride: int, t: int):
        super().__init__()
        hidden = int(round(c_in * t))
        layers: list[nn.Module] = [_conv_bn_act(c_in, hidden, 1)] if t != 1 else []
        layers += [_conv_bn_act(hidden, hidden, 3, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 at width 1.0
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1.0: 3,504,872 parameters (stem 3×3/2 to 32, 17 inverted residuals,
    1×1 to 1280, pool, dropout 0.2, linear)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        feats: list[nn.Module] = [_conv_bn_act(3, 32, 3, stride=2)]
        c = 32
        for t, c_out, n, s in MOBILENET_V2_SETTING:
            for j in range(n):
                feats.append(InvertedResidual(c, c_out, s if j == 0 else 1, t))
                c = c_out
        feats.append(_conv_bn_act(c, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------- pretrained weights

@dataclass(frozen=True)
class WeightsInfo:
    """A published ImageNet state dict: its URL (the file name carries the first 8 hex digits of
    its sha256, which ``torch.hub.load_state_dict_from_url(check_hash=True)`` verifies) and the
    reference top-1 of its publisher."""

    url: str
    reference_top1: float
    params: int
    source: str

    @property
    def file_name(self) -> str:
        return os.path.basename(self.url)


# torchvision's IMAGENET1K_V1 weights of both models (facts read from torchvision 0.28.0's model files)
PRETRAINED: dict[str, WeightsInfo] = {
    "resnet50": WeightsInfo("https://download.pytorch.org/models/resnet50-0676ba61.pth", 76.130, 25_557_032,
                            "torchvision ResNet50_Weights.IMAGENET1K_V1"),
    "mobilenet_v2": WeightsInfo("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", 71.878, 3_504_872,
                                "torchvision MobileNet_V2_Weights.IMAGENET1K_V1"),
}
_BUILDERS = {"resnet50": ResNet50, "mobilenet_v2": MobileNetV2}


def weights_cache_path(model: str) -> Path:
    """Where torch hub looks for ``model``'s pretrained file: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED[model].file_name


def _load_pretrained_state(model: str, allow_download: bool, progress: bool) -> dict[str, torch.Tensor]:
    w = PRETRAINED[model]
    path = weights_cache_path(model)
    how = (f"download {w.url} on a machine with network access and copy it to {path} (the directory is "
           f"torch.hub.get_dir()/checkpoints, under $TORCH_HOME), or pass pretrained=False for a random-weight "
           f"shape/speed check")
    if not path.is_file() and not allow_download:
        raise ReproError(f"pretrained {model} weights ({w.source}) are not in the torch hub cache: expected {path}; "
                         f"{how}")
    try:  # reads the cache when the file is there, downloads otherwise; checks the hash prefix either way
        return torch.hub.load_state_dict_from_url(w.url, map_location="cpu", progress=progress, check_hash=True,
                                                  weights_only=True)
    except Exception as exc:  # noqa: BLE001 - URLError, socket errors, hash mismatch: one message for the user
        raise ReproError(f"pretrained {model} weights ({w.source}) could not be loaded: expected {path} "
                         f"({type(exc).__name__}: {exc}); {how}") from None


def imagenet_model(model: str, pretrained: bool = True, *, seed: int = 0, allow_download: bool = True,
                   progress: bool = False) -> nn.Module:
    """``resnet50`` or ``mobilenet_v2`` in eval mode (1000 classes).

    ``pretrained=True`` loads torchvision's IMAGENET1K_V1 state dict (``PRETRAINED``) from the torch
    hub cache, downloading it when allowed and possible. ``pretrained=False``: random weights
    under ``seed`` (the global RNG state is restored afterwards); label anything measured on them
    with ``RANDOM_LABEL``.
    """
    if model not in _BUILDERS:
        raise ReproError(f"unknown ImageNet model {model!r}; known: {', '.join(_BUILDERS)}")
    state = _load_pretrained_state(model, allow_download, progress) if pretrained else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _BUILDERS[model]()
    if state is not None:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ReproError(f"{weights_cache_path(model)} does not hold {model} weights in torchvision's layout "
                             f"({str(exc).splitlines()[0]}); replace it with {PRETRAINED[model].url}") from None
    return net.eval()


@torch.no_grad()
def reset_bn_statistics(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """Recompute every BatchNorm's running mean/variance as the plain average over ``images``
    (train-mode forwards, momentum None), then return the model in eval mode. Used on random-weight
    models only, whose default statistics (mean 0, variance 1) let activations shrink towards zero
    through the depth; trained weights keep their own statistics."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    return model


def build_model(model: str, pretrained: bool = True, *, seed: int = 0, allow_download: bool = True) -> nn.Module:
    """Any model key of ``MODELS``; ``digits-resnet`` is returned untrained (see ``reprise.vision.train``)."""
    if model == DIGITS:
        return digits_resnet(seed)
    if model in _BUILDERS:
        return imagenet_model(model, pretrained, seed=seed, allow_download=allow_download)
    raise ReproError(f"unknown vision model {model!r}; known: {', '.join(MODELS)}")
