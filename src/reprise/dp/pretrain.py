"""Non-private "public" pretraining for SPARTA (specs/other-papers.md §3.1, §3.10, §9.2).

- ``pretrain(model, images, labels, epochs, lr, batch_size, seed, ...)``: plain SGD (momentum 0.9, cosine
  schedule, weight decay) on public data, optional ``transform`` per batch; returns the model (trained in place).
- ``python -m reprise.dp.pretrain --archive data/raw/cifar/cifar-100-python.tar.gz --out <ckpt.pt>``: the
  ResNet-18-GN the official code expects as ``checkpoints/resnet18_cifar100_gn.pt`` is not released, so it is
  re-pretrained here on CIFAR-100 non-privately (rule ``sparta_pretrain_resnet18_gn``; results built on it are
  labelled "re-pretrained"). Our recipe (the official provenance is unknown [U]): 100 epochs, batch 128,
  lr 0.1 cosine, momentum 0.9, weight decay 5e-4, crop + flip augmentation. About 1 GPU-hour on an H100-class GPU.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn as nn

from reprise.io import ReproError, atomic_path, write_json

__all__ = ["pretrain"]

log = logging.getLogger(__name__)


def pretrain(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
             batch_size: int, seed: int, weight_decay: float = 0.0, momentum: float = 0.9, transform=None,
             device: torch.device | str = "cpu") -> nn.Module:
    """Non-private cross-entropy training with SGD and a cosine learning-rate schedule."""
    device = torch.device(device)
    model.to(device).train()
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=gen)
        total = 0.0
        for i in range(0, len(labels), batch_size):
            idx = order[i:i + batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)
            if transform is not None:
                x = transform(x, gen)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log.info("pretrain epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(labels))
    return model


def main(argv=None) -> None:
    from reprise.llm.models.blockwise import pick_device
    from reprise.vision.cifar import augment, load_cifar, normalise
    from reprise.vision.resnet_gn import resnet18

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", required=True, help="CIFAR-100 python tarball (rule fetch_cifar100)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not Path(a.archive).exists():
        raise ReproError(f"pretrain: {a.archive} is missing; run `snakemake fetch_cifar100` first")
    t0 = time.perf_counter()
    x, y = load_cifar(a.archive, "cifar100", "train")
    xt, yt = load_cifar(a.archive, "cifar100", "test")
    torch.manual_seed(a.seed)  # the network's initialisation (a script, not library code)
    net = resnet18(num_classes=100, norm="group")
    device = pick_device(a.device)
    pretrain(net, x, y, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed, weight_decay=a.weight_decay,
             transform=lambda b, g: normalise(augment(b, g), "cifar100"), device=device)
    from reprise.dp.engine import accuracy

    acc = accuracy(net, xt, yt, transform=lambda b: normalise(b, "cifar100"))
    out = Path(a.out)
    with atomic_path(out, suffix=".pt") as tmp:
        torch.save(net.cpu().state_dict(), tmp)
    write_json(out.with_suffix(".json"), {"model": "resnet18-gn", "dataset": "cifar100", "test_accuracy": acc,
                                          "label": "re-pretrained", "seconds": time.perf_counter() - t0, **vars(a)})


if __name__ == "__main__":
    main()
