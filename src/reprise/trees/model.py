"""Soft oblique tree ensembles with group-ℓ0 feature selection (Skinny Trees, specs/other-papers.md §1.2–§1.4).

``SoftTreeEnsemble`` is the model: ``T`` perfectly balanced soft trees of depth ``d`` whose internal nodes (heap
order ``0 … 2^d−2``, children ``2n+1`` left and ``2n+2`` right) are computed by one dense layer with kernel
``W ∈ R^{p × T(2^d−1)}`` (column ``t·(2^d−1) + n`` is node ``n`` of tree ``t``, the official reshape to
``(batch, T, nodes)``) plus a bias; a node routes left with probability ``σ(wᵀx + b)``; leaf ``ℓ`` of tree ``t``
holds ``o_{t,ℓ} ∈ R^c``; the output is the **sum** over trees of ``Σ_ℓ P_{t,ℓ}(x) o_{t,ℓ}``. Row ``W_j`` holds
every weight of feature ``j``; feature ``j`` is selected iff ``‖W_j‖₂ > 0``.

``train_ensemble`` is the proximal mini-batch SGD of §1.4: per step the mean loss plus Keras' L2 term
``λ₂‖W‖²_F`` (no ½), a plain SGD step on every parameter, the step counter ``t ← t+1``, then the group hard
threshold ``W_j ← 0`` unless ``‖W_j‖₂ > sqrt(2ηλ₀(t))`` with ``λ₀(t) = λ₀(1 − e^{−τt})`` (annealed) or ``λ₀``.
``λ₂ = kernel_l2 / (T(2^d−1))``, ``λ₀ = kernel_constraint / p`` (§1.3). Initialisation as Keras: Glorot-uniform
on the kernel's ``(p, T(2^d−1))`` shape and on each leaf's ``(1, c, T)`` shape (fan-in ``c``, fan-out ``T``), zero
biases. Everything is drawn from one ``torch.Generator``, so a seed fixes a run.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)


def group_hard_threshold_(kernel: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero, in place, every row of ``kernel`` whose ℓ2 norm is not above ``threshold`` (the proximal map of
    ``ηλ₀·#{j: W_j ≠ 0}`` at ``threshold = sqrt(2ηλ₀)``); returns the boolean mask of kept rows.
    (reprise.sparsity has top-k group selection only, not this threshold rule, and is numpy.)"""
    keep = kernel.norm(dim=1) > threshold
    kernel.mul_(keep.unsqueeze(1).to(kernel.dtype))
    return keep


def glorot_uniform_(t: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-limit, limit, generator=generator)


class SoftTreeEnsemble(nn.Module):
    """``F(x) = Σ_t Σ_ℓ P_{t,ℓ}(x) o_{t,ℓ}`` for ``x ∈ R^p`` (or, after :meth:`compressed`, the selected columns).

    ``features`` (optional) lists the input columns the kernel's rows belong to: a compressed model keeps only
    the selected rows and reads only those columns of a full-width input.
    """

    def __init__(self, n_features: int, n_outputs: int, n_trees: int, depth: int,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_trees, self.depth, self.n_outputs = int(n_trees), int(depth), int(n_outputs)
        self.n_nodes = 2 ** self.depth - 1
        self.kernel = nn.Parameter(torch.empty(n_features, self.n_trees * self.n_nodes, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(self.n_trees * self.n_nodes, dtype=dtype))
        # leaves in heap order 2^d-1 ... 2^(d+1)-2; each Keras leaf weight has shape (1, c, T)
        self.leaves = nn.Parameter(torch.empty(2 ** self.depth, self.n_outputs, self.n_trees, dtype=dtype))
        self.features: torch.Tensor | None = None
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        glorot_uniform_(self.kernel, n_features, self.n_trees * self.n_nodes, g)
        glorot_uniform_(self.leaves, self.n_outputs, self.n_trees, g)

    def leaf_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``P[i, t, ℓ]``: probability that row ``i`` reaches leaf ``ℓ`` of tree ``t`` (leaves in heap order)."""
        if self.features is not None and x.shape[1] != self.kernel.shape[0]:
            x = x.index_select(1, self.features)
        s = torch.sigmoid(x @ self.kernel + self.bias).view(x.shape[0], self.n_trees, self.n_nodes)
        prob = x.new_ones(x.shape[0], self.n_trees, 1)
        for level in range(self.depth):
            first = 2 ** level - 1
            s_l = s[:, :, first:2 * first + 1]
            # node at position i of this level has its children at positions 2i (left), 2i+1 (right)
            prob = torch.stack((prob * s_l, prob * (1.0 - s_l)), dim=-1).flatten(2)
        return prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("itl,lct->ic", self.leaf_probabilities(x), self.leaves)

    def selected(self) -> torch.Tensor:
        """Boolean mask over the kernel's rows: ``‖W_j‖₂ > 0``."""
        return self.kernel.detach().norm(dim=1) > 0

    def compressed(self) -> "SoftTreeEnsemble":
        """The same function with the zero rows physically removed from the kernel (``features`` records which
        input columns remain); its outputs equal this model's on any input."""
        keep = torch.nonzero(self.selected()).flatten()
        out = SoftTreeEnsemble(int(keep.numel()), self.n_outputs, self.n_trees, self.depth, dtype=self.kernel.dtype)
        with torch.no_grad():
            out.kernel = nn.Parameter(self.kernel.detach()[keep].clone())
            out.bias.copy_(self.bias.detach())
            out.leaves.copy_(self.leaves.detach())
        base = self.features if self.features is not None else torch.arange(self.kernel.shape[0])
        out.features = base.to(keep.device)[keep]
        return out.to(self.kernel.device)


@dataclass
class TrainResult:
    feature_history: list[int] = field(default_factory=list)  # #selected at the start and after every epoch
    loss_history: list[float] = field(default_factory=list)  # mean training objective per epoch
    steps: int = 0


def penalty_schedule(lam0: float, temperature: float, anneal: bool, step: int) -> float:
    """``λ₀(t) = λ₀(1 − exp(−τt))`` when annealing, else ``λ₀``."""
    return lam0 * (1.0 - math.exp(-temperature * step)) if anneal else lam0


def train_ensemble(model: SoftTreeEnsemble, X: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
                   *, learning_rate: float, batch_size: int, epochs: int, kernel_l2: float,
                   kernel_constraint: float, temperature: float, anneal: bool,
                   generator: torch.Generator, epoch_callback: Callable[[int, int], None] | None = None) -> TrainResult:
    """Proximal mini-batch SGD with the dense-to-sparse schedule (§1.4) on ``(X, y)``; returns the histories.

    ``kernel_constraint = 0`` gives the dense ensemble (no thresholding). Shuffling draws from ``generator``
    (on the CPU, so a seed gives the same batches on any device).
    """
    n, p = X.shape
    lam2 = kernel_l2 / (model.n_trees * model.n_nodes)
    lam0 = kernel_constraint / p
    params = list(model.parameters())
    result = TrainResult(feature_history=[int(model.selected().sum())])
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(X.device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(model(X[idx]), y[idx]) + lam2 * model.kernel.square().sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for prm, g in zip(params, grads):
                    prm.sub_(learning_rate * g)  # Keras SGD: no momentum, no weight decay
                step += 1
                lam_t = penalty_schedule(lam0, temperature, anneal, step)
                if lam_t > 0:
                    group_hard_threshold_(model.kernel, math.sqrt(2.0 * learning_rate * lam_t))
            total += float(loss.detach()) * len(idx)
        result.loss_history.append(total / n)
        result.feature_history.append(int(model.selected().sum()))
        if epoch_callback is not None:
            epoch_callback(epoch, result.feature_history[-1])
    result.steps = step
    return result


def classification_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def regression_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.squeeze(1), y)
