"""SPARTA's mask selection (specs/other-papers.md §3.3 step 3, §3.4) as pure tensor functions.

A mask is a 0/1 tensor of the weight's shape; 1 marks a trainable coordinate. ``density`` is the
fraction KEPT trainable (the official ``--sparsity`` value: 0.2 leaves 20 % of the rows trainable,
although its CLI help says the opposite [V-code]). Every rule freezes the ``int(units · (1 − density))``
lowest-scoring units (rows, or entries for the unstructured rules) and keeps the rest, ties broken by
the order of a stable ascending sort, so a rule keeps ``units − int(units·(1 − density))`` units:
between ⌊density·units⌋ and ⌈density·units⌉.

- ``row_scores(scores)``: ``v_r = max(0, Σ_c A_rc)`` over the row's flattened entries.
- ``row_mask(scores, density)``: SPARTA (``row_pruning_noisy_grads``) from the accumulated noisy
  gradient scores ``A`` (rows × … : the first dimension is the row, i.e. the output unit).
- ``weighted_row_mask(scores, weights, density)``: ``row_pruning_weighted_noisy_grads``, rows scored on
  ``A ⊙ |W|``.
- ``random_row_mask(shape, density, generator)``: a uniformly random row subset of the same size.
- ``magnitude_mask(weight, density)``: ``mp_weights``, the largest-|W| entries of the tensor (unstructured).

Nothing here sees data: the masks are functions of the (already privatised) scores and the density only,
so they are post-processing of DP outputs (``magnitude_mask`` sees only the public weights).
"""
from __future__ import annotations

import torch

from reprise.io import ReproError

__all__ = ["magnitude_mask", "n_frozen", "random_row_mask", "row_mask", "row_scores", "weighted_row_mask"]


def _check_density(density: float) -> float:
    if not (0.0 < float(density) <= 1.0):
        raise ReproError(f"density={density!r} must be in (0, 1]: the fraction of rows kept trainable")
    return float(density)


def n_frozen(units: int, density: float) -> int:
    """How many of ``units`` rows/entries a rule freezes: ``int(units · (1 − density))`` (the official rounding)."""
    return int(units * (1.0 - _check_density(density)))


def row_scores(scores: torch.Tensor) -> torch.Tensor:
    """``max(0, Σ_c A_rc)`` per row of ``scores`` (rows × anything)."""
    if scores.dim() < 2:
        raise ReproError(f"row scores need a tensor with rows (dim ≥ 2), got shape {tuple(scores.shape)}")
    return scores.reshape(scores.shape[0], -1).sum(dim=1).clamp_min(0.0)


def _mask_from_unit_scores(unit_scores: torch.Tensor, density: float) -> torch.Tensor:
    order = torch.argsort(unit_scores, descending=False, stable=True)
    keep = torch.ones_like(unit_scores, dtype=torch.float32)
    keep[order[:n_frozen(unit_scores.numel(), density)]] = 0.0
    return keep


def _broadcast_rows(row_keep: torch.Tensor, shape) -> torch.Tensor:
    return row_keep.view(-1, *([1] * (len(shape) - 1))).expand(*shape).contiguous()


def row_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """SPARTA's row mask from the accumulated noisy scores ``A`` (same shape as the weight)."""
    return _broadcast_rows(_mask_from_unit_scores(row_scores(scores), density), scores.shape)


def weighted_row_mask(scores: torch.Tensor, weights: torch.Tensor, density: float) -> torch.Tensor:
    """Rows scored on ``A ⊙ |W|`` (``W`` the current weights, public after the head warm-up's DP steps)."""
    if scores.shape != weights.shape:
        raise ReproError(f"scores {tuple(scores.shape)} and weights {tuple(weights.shape)} differ in shape")
    return row_mask(scores * weights.abs(), density)


def random_row_mask(shape, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random set of ``rows − int(rows·(1 − density))`` trainable rows."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ReproError(f"a row mask needs a shape with rows (dim ≥ 2), got {shape}")
    return _broadcast_rows(_mask_from_unit_scores(torch.rand(shape[0], generator=generator), density), shape)


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the largest-|W| entries of ``weight`` (freeze the ``int(numel·(1 − density))`` smallest)."""
    return _mask_from_unit_scores(weight.detach().abs().flatten(), density).view_as(weight)
