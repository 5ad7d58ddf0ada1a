"""Mask selection shared by every pruning method: count, per-row / whole-matrix lowest-k, N:M.

Masks are bool tensors with True = kept. Ties are broken by position (stable sorts), so a
selection is deterministic.
"""
from __future__ import annotations

import torch

from reprise.io import ReproError
from reprise.llm.methods.base import PruneConfig


def n_pruned(n: int, sparsity: float) -> int:
    """How many of ``n`` weights a target sparsity prunes (nearest integer)."""
    return min(n, max(0, round(sparsity * n)))


def prune_lowest(score: torch.Tensor, k: int, per_row: bool = False) -> torch.Tensor:
    """Keep-mask pruning the ``k`` lowest scores of the whole tensor, or of each row."""
    keep = torch.ones_like(score, dtype=torch.bool)
    if k <= 0:
        return keep
    if per_row:
        idx = torch.argsort(score, dim=1, stable=True)[:, :k]
        return keep.scatter_(1, idx, False)
    idx = torch.argsort(score.reshape(-1), stable=True)[:k]
    keep.view(-1)[idx] = False
    return keep


def nm_keep(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask with the ``n`` highest scores of every ``m`` consecutive entries of each row."""
    rows, cols = score.shape
    if cols % m:
        raise ReproError(f"N:M pruning with M={m} needs in_features divisible by {m}, got {cols}")
    groups = score.reshape(rows, cols // m, m)
    idx = torch.argsort(groups, dim=-1, descending=True, stable=True)[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return keep.reshape(rows, cols)


def select_mask(score: torch.Tensor, cfg: PruneConfig, per_row: bool) -> torch.Tensor:
    """The mask a config asks for: N:M along rows, or unstructured per row / per matrix."""
    if cfg.nm is not None:
        return nm_keep(score, *cfg.nm_pair)
    count = score.shape[1] if per_row else score.numel()
    return prune_lowest(score, n_pruned(count, cfg.sparsity), per_row=per_row)
