"""Private fine-tuning: SPARTA's three phases and the baselines of specs/other-papers.md §3.3–3.5.

``finetune(model, train, test, config) -> Finetuned`` fine-tunes a copy of the pretrained ``model`` under
(ε, δ)-DP and reports test accuracy, the ε read from the accountant after the steps taken, σ, the trainable
fraction and wall seconds. ``config`` is a ``FinetuneConfig``; its defaults are the launch script's [V-code]:
``epsilon=8, delta=1e-5, max_grad_norm=1.0, batch_size=500, physical_batch=100, epochs=50, mask_epoch=10,
density=0.2, lr=classifier_lr=0.01, momentum=0.9, weight_decay=0, warm_up=0.02`` (OneCycle over ``int(1.2·epochs)``
epochs so the rate never reaches 0), ``accountant="prv"``, LoRA ``rank=16, alpha=0.5, dropout=0, bias="all"``.

Methods (``config.method``):

- ``sparta`` (``row_pruning_noisy_grads``): every Linear/Conv2d but the head is ``W_init + m ⊙ Δ``.
  Epochs ``0 … E₀−1`` (``E₀ = mask_epoch``): all body masks 0 (head, biases and norms train). Epoch ``E₀``: masks 1,
  ``Δ = 0``, every learning rate 0 (schedule paused), and per logical batch the score ``(|G| + N(0, σ²C²))/B`` of
  every body tensor is accumulated (the same noisy step the accountant counts). Then
  ``reprise.dp.masks.row_mask(scores, density)`` per tensor, fold ``W_init ← W_init + m ⊙ Δ``, ``Δ ← 0``, install the
  masks, clear every momentum buffer, restore the rates. Epochs ``E₀+1 … E−1``: DP-SGD on ``Δ`` (masked), biases,
  norms and head. σ is calibrated once for all ``epochs`` (the mask epoch included).
- ``sparta_weighted`` (``row_pruning_weighted_noisy_grads``): the same with rows scored on ``A ⊙ |W|``;
  ``random_rows``: the same phases with a uniformly random row mask (a control for the score);
  ``optim_averaged_noisy_grads`` / ``optim_weights_noisy_grads``: unstructured, the largest ``|A|`` (``|A ⊙ W|``)
  entries per tensor; ``optim_averaged_clipped_grads`` / ``optim_weights_clipped_grads``: the same from the
  noise-free clipped sums ``G/B`` — a non-private oracle (the mask then leaks data; rows say so).
- ``mp_weights``: masks of the 20 % (``density``) largest-|W| entries per body tensor, chosen before training.
- ``all_layers``, ``lp_gn``, ``dp_bitfit``, ``linear_probing`` (``reprise.dp.models.select_trainable``), ``lora``
  (peft on every Linear/Conv2d but the head).

Measured (OMP_NUM_THREADS=1, shared 2-core machine): a smoke arm (digits CNN, 5 epochs of 11 DP steps) 0.5–1 s,
LoRA ≈ 3 s with peft's import; ResNet-18-GN per-sample gradients on the CPU ≈ 1.5 s per image (full scale: GPU).

Departure: after the mask epoch the official code clears the momentum of the masked tensors only, so the head's,
biases' and norms' buffers carry the mask epoch's |G|-based updates into phase 2; here every buffer is cleared.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from reprise.dp import masks as M
from reprise.dp.engine import Private, accuracy, make_private, train_epoch
from reprise.dp.models import fold, head_name, masked, masked_modules, select_trainable, trainable_fraction
from reprise.io import ReproError

__all__ = ["METHODS", "MASKED_METHODS", "FinetuneConfig", "Finetuned", "finetune"]

log = logging.getLogger(__name__)

ROW_RULES = ("sparta", "sparta_weighted", "random_rows")
#: unstructured top-k rules of the official code: (score times |W|?, noise-free clipped scores?)
ENTRY_RULES = {"optim_averaged_noisy_grads": (False, False), "optim_weights_noisy_grads": (True, False),
               "optim_averaged_clipped_grads": (False, True), "optim_weights_clipped_grads": (True, True)}
PHASED = ROW_RULES + tuple(ENTRY_RULES)          # head warm-up, mask epoch, sparse phase
MASKED_METHODS = PHASED + ("mp_weights",)
METHODS = MASKED_METHODS + ("all_layers", "lp_gn", "dp_bitfit", "lora", "linear_probing")


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "sparta"
    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    batch_size: int = 500
    physical_batch: int = 100
    epochs: int = 50
    mask_epoch: int = 10
    density: float = 0.2
    lr: float = 0.01
    classifier_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    warm_up: float = 0.02
    accountant: str = "prv"
    lora_rank: int = 16
    lora_alpha: float = 0.5
    lora_dropout: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ReproError(f"finetune: method={self.method!r} is unknown; use one of {', '.join(METHODS)}")
        if self.method in PHASED and not (0 <= self.mask_epoch < self.epochs):
            raise ReproError(f"finetune: mask_epoch={self.mask_epoch!r} must be in [0, epochs={self.epochs})")
        if not (0.0 < self.density <= 1.0):
            raise ReproError(f"finetune: density={self.density!r} must be in (0, 1] (fraction of rows trainable)")


@dataclass
class Finetuned:
    model: nn.Module                       # the fine-tuned (unwrapped) model
    metrics: dict                          # test_accuracy, spent_epsilon, sigma, sample_rate, steps, ...
    masks: dict = field(default_factory=dict)          # name -> installed 0/1 mask (masked methods)
    weights_after_mask: dict = field(default_factory=dict)  # name -> effective weight right after the fold


def _lora(model: nn.Module, head: str, cfg: FinetuneConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
               and not (n == head or n.startswith(head + "."))]
    peft_cfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="all",
                          target_modules=targets)
    return get_peft_model(model, peft_cfg)


def _groups(model: nn.Module, head: str, cfg: FinetuneConfig) -> list[dict]:
    deltas = {id(m.delta) for m in masked_modules(model).values()}
    cls, body, other = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (cls if name.startswith(head + ".") else body if id(p) in deltas else other).append(p)
    return [{"params": g, "lr": lr} for g, lr in ((cls, cfg.classifier_lr), (body, cfg.lr), (other, cfg.lr)) if g]


def _set_masks(private: Private, modules: dict, new: dict) -> None:
    with torch.no_grad():
        for name, m in modules.items():
            m.mask.copy_(new[name])
    private.optimizer.masks = {id(m.delta): m.mask for m in modules.values()}


def _mask_epoch(private: Private, modules: dict, cfg: FinetuneConfig, scheduler, transform) -> dict:
    """Epoch E₀: masks 1, Δ 0, lr 0, accumulate the noisy scores; returns the new masks (not yet installed)."""
    opt = private.optimizer
    with torch.no_grad():
        for m in modules.values():
            m.mask.fill_(1.0)
            m.delta.zero_()
    opt.masks = None
    opt.clipped_scores = ENTRY_RULES.get(cfg.method, (False, False))[1]
    opt.scores = {id(m.delta): torch.zeros_like(m.delta) for m in modules.values()}
    saved = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = 0.0
    train_epoch(private, cfg.physical_batch, scheduler, transform)
    for g, lr in zip(opt.param_groups, saved):
        g["lr"] = lr
    scores, opt.scores = opt.scores, None
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    out = {}
    for name, m in modules.items():
        a = scores[id(m.delta)]
        if cfg.method == "sparta":
            out[name] = M.row_mask(a, cfg.density)
        elif cfg.method == "sparta_weighted":
            out[name] = M.weighted_row_mask(a, m.effective_weight().detach(), cfg.density)
        elif cfg.method in ENTRY_RULES:  # the largest |A| (or |A ⊙ W|) entries of the tensor
            weighted = ENTRY_RULES[cfg.method][0]
            out[name] = M.magnitude_mask(a * m.effective_weight().detach().abs() if weighted else a, cfg.density)
        else:
            out[name] = M.random_row_mask(a.shape, cfg.density, gen)
    return out


def finetune(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
             cfg: FinetuneConfig, device: torch.device | str = "cpu", transform=None, eval_transform=None) -> Finetuned:
    """DP fine-tuning of a copy of ``model`` by ``cfg.method`` (module doc); ``transform`` maps a training batch
    (augmentation, resizing), ``eval_transform`` a test batch."""
    t0 = time.perf_counter()
    device = torch.device(device)
    base_params = sum(p.numel() for p in model.parameters())
    head = head_name(model)
    net = masked(model, head) if cfg.method in MASKED_METHODS else copy.deepcopy(model)
    if cfg.method == "lora":
        with torch.random.fork_rng(devices=[]):  # peft initialises the adapters from the global generator
            torch.manual_seed(cfg.seed)
            net = _lora(net, head, cfg)
        head = next(n for n, _ in net.named_modules() if n.endswith("." + head) or n == head)
    select_trainable(net, "sparse" if cfg.method in MASKED_METHODS else cfg.method, head)
    net = net.to(device)
    modules = masked_modules(net)
    opt = torch.optim.SGD(_groups(net, head, cfg), momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    x, y = train
    private = make_private(net, opt, x, y, batch_size=cfg.batch_size, epsilon=cfg.epsilon, delta=cfg.delta,
                           epochs=cfg.epochs, max_grad_norm=cfg.max_grad_norm, accountant=cfg.accountant,
                           seed=cfg.seed, where=f"finetune[{cfg.method}]")
    steps_per_epoch = len(private.loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        private.optimizer, max_lr=[g["lr"] for g in opt.param_groups], epochs=int(cfg.epochs * 1.2),
        steps_per_epoch=steps_per_epoch, pct_start=cfg.warm_up)
    installed, after = {}, {}
    if cfg.method == "mp_weights":
        installed = {n: M.magnitude_mask(m.weight_init, cfg.density) for n, m in modules.items()}
        _set_masks(private, modules, installed)
    elif cfg.method in PHASED and cfg.mask_epoch > 0:
        _set_masks(private, modules, {n: torch.zeros_like(m.mask) for n, m in modules.items()})
    for epoch in range(cfg.epochs):
        if cfg.method in PHASED and epoch == cfg.mask_epoch:
            installed = _mask_epoch(private, modules, cfg, sched, transform)
            fold(net)
            _set_masks(private, modules, installed)
            for p in net.parameters():
                private.optimizer.original_optimizer.state.get(p, {}).pop("momentum_buffer", None)
            after = {n: m.effective_weight().detach().clone() for n, m in modules.items()}
            phase = "mask"
        else:
            loss = train_epoch(private, cfg.physical_batch, sched, transform)
            phase = f"loss {loss:.4f}"
        # (the accountant is read once at the end: a PRV evaluation costs about 0.1 s)
        log.info("%s epoch %d/%d: %s, %d DP steps", cfg.method, epoch + 1, cfg.epochs, phase,
                 private.optimizer.steps_taken)
    net_plain = private.module._module if hasattr(private.module, "_module") else private.module
    acc = accuracy(net_plain, *test, transform=eval_transform)
    metrics = dict(test_accuracy=acc, test_error=1.0 - acc, spent_epsilon=private.epsilon(), sigma=private.sigma,
                   sample_rate=private.sample_rate, steps=private.optimizer.steps_taken,
                   trainable_fraction=trainable_fraction(net_plain, base_params),
                   wall_s=time.perf_counter() - t0, **{k: v for k, v in asdict(cfg).items() if k != "seed"})
    if math.isnan(metrics["spent_epsilon"]):
        raise ReproError(f"finetune[{cfg.method}]: the accountant returned NaN")
    return Finetuned(net_plain, metrics, installed, after)
