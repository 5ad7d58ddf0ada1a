"""DP-SGD through Opacus 1.6 (pinned) as the SPARTA code uses it (specs/other-papers.md §3.3 "Privacy", §3.5).

- ``check_budget(epsilon, delta, n)``: ε > 0, 0 < δ < 1/n, else a ReproError naming the key (before training).
- ``noise_multiplier(epsilon, delta, sample_rate, epochs, accountant)``: σ for the whole run, the calibration
  ``PrivacyEngine.make_private_with_epsilon`` performs (Opacus' ``get_noise_multiplier`` with the same
  arguments: ``steps = int(epochs / sample_rate)``, binary search to 0.01 in ε), memoised per process so one
  job of many arms at the same budget calibrates once (PRV calibration takes ≈ 1.5 s); a budget Opacus cannot
  meet is a ReproError naming ``epsilon``.
- ``make_private(model, optimizer, images, labels, ...) -> Private``: ``PrivacyEngine(accountant)`` (``"prv"``
  as the official code, ``"rdp"`` as an option) and ``make_private`` with that σ, Poisson sampling at rate
  ``1/len(loader) = 1/⌈n/B⌉`` (Opacus' rate for a loader of logical batch B), flat per-sample clipping to
  ``max_grad_norm`` over all trainable tensors, noise ``N(0, σ²C²)`` per coordinate; its optimizer is
  ``ScoringDPOptimizer`` (below). ``Private.epsilon()`` reads the accountant after the steps actually taken.
- ``epsilon_for(accountant, sigma, sample_rate, steps, delta)``: ε of a fresh accountant for those steps.
- ``train_epoch(private, physical_batch, ...)``: one epoch through Opacus' ``BatchMemoryManager`` (physical
  batches of at most ``physical_batch``, one DP step per logical batch); ``accuracy(model, images, labels)``.

``ScoringDPOptimizer`` is Opacus' ``DPOptimizer`` with two additions SPARTA needs: while ``scores`` is set
(the mask epoch), the noise is added to ``|G|`` instead of ``G`` for the scored tensors (the official
``add_noise`` takes the absolute value of the summed clipped gradient before adding the noise [V-code]), and
``(|G| + N(0, σ²C²))/B`` is accumulated into ``scores`` per logical batch; and after every step's noise the
gradient of a masked tensor is multiplied by its mask (post-processing: a frozen coordinate's ``Δ`` stays 0;
it does not affect the output either way). With ``clipped_scores`` the noise-free ``G/B`` is accumulated instead
(the official non-private oracle arms ``optim_*_clipped_grads``; the step itself stays an ordinary DP step).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.accountants.utils import MAX_SIGMA, get_noise_multiplier
from opacus.optimizers.optimizer import DPOptimizer, _check_processed_flag, _generate_noise, _mark_as_processed
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch.utils.data import DataLoader, TensorDataset

from reprise.io import ReproError

__all__ = ["Private", "ScoringDPOptimizer", "accuracy", "check_budget", "epsilon_for", "make_private",
           "noise_multiplier", "train_epoch"]

log = logging.getLogger(__name__)
ACCOUNTANTS = ("prv", "rdp")


def check_budget(epsilon: float, delta: float, n: int, where: str = "dp") -> None:
    """A ReproError naming the key unless ε > 0 and 0 < δ < 1/n (δ ≥ 1/n allows publishing a record)."""
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ReproError(f"{where}: epsilon={epsilon!r} must be a finite number > 0")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1.0 / n):
        raise ReproError(f"{where}: delta={delta!r} must be in (0, 1/n) = (0, {1.0 / n:.3g}) for n={n} "
                         "private examples; use e.g. 1e-5")


@functools.lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, sample_rate: float, epochs: int, accountant: str = "prv") -> float:
    """σ such that ``epochs/sample_rate`` DP-SGD steps spend at most ``epsilon`` (make_private_with_epsilon's)."""
    if accountant not in ACCOUNTANTS:
        raise ReproError(f"dp: accountant={accountant!r} is unknown; use one of {', '.join(ACCOUNTANTS)}")
    try:
        # Opacus doubles σ until the budget holds and gives up above MAX_SIGMA: one evaluation there says
        # beforehand whether it will (ε decreases in σ), instead of ~17 evaluations before the same error
        if epsilon_for(accountant, MAX_SIGMA, sample_rate, int(epochs / sample_rate), delta) > epsilon:
            raise ValueError(f"even sigma={MAX_SIGMA:g} spends more")
        return float(get_noise_multiplier(target_epsilon=float(epsilon), target_delta=float(delta),
                                          sample_rate=float(sample_rate), epochs=int(epochs),
                                          accountant=accountant))
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise ReproError(f"dp: the privacy budget epsilon={epsilon!r} (delta={delta!r}, {epochs} epochs at "
                         f"sampling rate {sample_rate:.4g}) cannot be met: Opacus found no noise multiplier "
                         f"({exc}); raise epsilon or train fewer epochs") from None


def epsilon_for(accountant: str, sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of a fresh ``accountant`` after ``steps`` steps at noise ``sigma`` and rate ``sample_rate``."""
    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(sigma), float(sample_rate), int(steps))]
    return float(acc.get_epsilon(delta=float(delta)))


class ScoringDPOptimizer(DPOptimizer):
    """Opacus' DPOptimizer plus SPARTA's noisy-score accumulation and post-noise gradient masks (module doc)."""

    scores: dict | None = None          # id(param) -> accumulated (|G| + noise)/B during the mask epoch
    clipped_scores: bool = False        # accumulate the noise-free G/B instead (the non-private oracle arms)
    masks: dict | None = None           # id(param) -> 0/1 mask applied to the noised gradient
    steps_taken: int = 0

    def add_noise(self):
        if self.scores is None or self.clipped_scores:
            return super().add_noise()
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            noise = _generate_noise(std=self.noise_multiplier * self.max_grad_norm, reference=p.summed_grad,
                                    generator=self.generator, secure_mode=self.secure_mode)
            g = p.summed_grad.abs() if id(p) in self.scores else p.summed_grad
            p.grad = (g + noise).view_as(p)
            _mark_as_processed(p.summed_grad)

    def scale_grad(self):
        super().scale_grad()  # p.grad /= B (loss_reduction "mean")
        if self.scores is not None:
            for p in self.params:
                if id(p) in self.scores:
                    src = p.summed_grad.view_as(p) / (self.expected_batch_size * self.accumulated_iterations) \
                        if self.clipped_scores else p.grad
                    self.scores[id(p)] += src.detach()

    def pre_step(self, closure=None):
        stepped = super().pre_step(closure)
        if stepped:
            self.steps_taken += 1
            for p in self.params:
                if self.masks and id(p) in self.masks:
                    p.grad.mul_(self.masks[id(p)])
        return stepped


class _Engine(PrivacyEngine):
    """PrivacyEngine whose optimizer is ScoringDPOptimizer (flat clipping, one process, hook mode only)."""

    def _prepare_optimizer(self, *, optimizer, noise_multiplier, max_grad_norm, expected_batch_size,
                           loss_reduction="mean", distributed=False, clipping="flat", noise_generator=None,
                           grad_sample_mode="hooks", **kwargs):
        if distributed or clipping != "flat" or grad_sample_mode != "hooks":
            raise ReproError("dp: only flat clipping on one process in Opacus' hook mode is supported")
        if isinstance(optimizer, DPOptimizer):
            optimizer = optimizer.original_optimizer
        return ScoringDPOptimizer(optimizer=optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                                  expected_batch_size=expected_batch_size, loss_reduction=loss_reduction,
                                  generator=noise_generator, secure_mode=self.secure_mode, **kwargs)


@dataclass
class Private:
    """A model made private: the wrapped module, its DP optimizer and Poisson loader, and the budget."""
    module: nn.Module
    optimizer: ScoringDPOptimizer
    loader: DataLoader
    engine: PrivacyEngine
    accountant: str
    sigma: float
    sample_rate: float
    delta: float
    target_epsilon: float
    max_grad_norm: float

    def epsilon(self) -> float:
        """ε spent so far, read from the engine's accountant (0 before the first step)."""
        return float(self.engine.get_epsilon(self.delta)) if len(self.engine.accountant) else 0.0


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, *,
                 batch_size: int, epsilon: float, delta: float, epochs: int, max_grad_norm: float,
                 accountant: str = "prv", seed: int = 0, where: str = "dp") -> Private:
    """Opacus' private model, optimizer and Poisson loader for a run of ``epochs`` epochs at (ε, δ) (module doc)."""
    n = int(images.shape[0])
    check_budget(epsilon, delta, n, where)
    if not (max_grad_norm > 0):
        raise ReproError(f"{where}: max_grad_norm={max_grad_norm!r} must be > 0")
    if not (1 <= batch_size <= n):
        raise ReproError(f"{where}: batch_size={batch_size!r} must be in [1, n={n}]")
    loader = DataLoader(TensorDataset(images, labels), batch_size=int(batch_size), shuffle=True,
                        generator=torch.Generator().manual_seed(int(seed)))
    sample_rate = 1.0 / len(loader)
    sigma = noise_multiplier(float(epsilon), float(delta), sample_rate, int(epochs), accountant)
    device = next(model.parameters()).device  # the noise is drawn where the gradients live
    engine = _Engine(accountant=accountant)
    module, dp_opt, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
        max_grad_norm=float(max_grad_norm),
        poisson_sampling=True, noise_generator=torch.Generator(device=device).manual_seed(int(seed) + 1))
    log.info("dp: sigma=%.4f for epsilon=%g delta=%g over %d epochs at q=%.4g (%s)", sigma, epsilon, delta, epochs,
             sample_rate, accountant)
    return Private(module, dp_opt, dp_loader, engine, accountant, sigma, sample_rate, float(delta), float(epsilon),
                   float(max_grad_norm))


def train_epoch(private: Private, physical_batch: int, scheduler=None, transform=None) -> float:
    """One DP epoch (BatchMemoryManager, cross-entropy); steps ``scheduler`` per logical step unless every lr is 0
    (the official mask epoch keeps lr 0 and the schedule paused [V-code]). Returns the mean training loss."""
    model, opt = private.module, private.optimizer
    model.train()
    device = next(p for p in model.parameters()).device
    total, count = 0.0, 0
    paused = all(g["lr"] == 0.0 for g in opt.param_groups)
    with BatchMemoryManager(data_loader=private.loader, max_physical_batch_size=int(physical_batch),
                            optimizer=opt) as loader:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if transform is not None:
                x = transform(x)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            logical_end = not opt._check_skip_next_step(pop_next=False)
            opt.step()
            opt.zero_grad()
            if logical_end and scheduler is not None and not paused:
                scheduler.step()
            if len(y):  # a Poisson batch may be empty (its mean loss is NaN; the step still counts)
                total += float(loss.detach()) * len(y)
                count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512, transform=None) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    device = next(p for p in model.parameters()).device
    correct = 0
    for i in range(0, len(labels), batch):
        x = images[i:i + batch].to(device)
        if transform is not None:
            x = transform(x)
        correct += int((model(x).argmax(1).cpu() == labels[i:i + batch]).sum())
    return correct / max(len(labels), 1)
