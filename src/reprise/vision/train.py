"""Train the digits CNN on CPU in seconds, and top-1 accuracy helpers.

``train_digits`` is deterministic for a seed: initialisation and batch order come from seeded
generators inside ``torch.random.fork_rng`` (the caller's global RNG state is untouched), and
everything runs on CPU. Adam (lr 3e-3, weight decay 1e-4), batch 64, cosine learning-rate decay,
``epochs`` passes over the training part (12 by default).
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprise.vision.data import DigitsSplits, digits_splits
from reprise.vision.models import digits_resnet


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on tensors ``x``, ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


@torch.no_grad()
def loader_accuracy(model: nn.Module, loader, progress: bool = False) -> float:
    """Top-1 accuracy over a DataLoader of ``(images, labels)``."""
    model.eval()
    correct = total = 0
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="top-1", leave=False)
    for xb, yb in it:
        correct += int((model(xb).argmax(1) == yb).sum())
        total += len(yb)
    return correct / max(total, 1)


def train_digits(seed: int = 0, *, epochs: int = 12, lr: float = 3e-3, batch_size: int = 64,
                 splits: DigitsSplits | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``DigitsResNet`` on the digits' training part; return ``(model in eval mode, info)``
    with ``info = {"test_top1", "train_top1", "seconds", "epochs", "seed", "splits"}``."""
    splits = splits if splits is not None else digits_splits(seed)
    t0 = time.perf_counter()
    model = digits_resnet(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    n = len(splits.train_y)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            b = perm[i:i + batch_size]
            loss = F.cross_entropy(model(splits.train_x[b]), splits.train_y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = {"test_top1": accuracy(model, splits.test_x, splits.test_y),
            "train_top1": accuracy(model, splits.train_x, splits.train_y),
            "seconds": time.perf_counter() - t0, "epochs": epochs, "seed": seed, "splits": splits.sizes()}
    return model, info
