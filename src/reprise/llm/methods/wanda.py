"""Wanda: score ``|W_ij| · ‖X_j‖``, compared within each output row (or N:M); no weight update.

``‖X_j‖² = n · G_jj``, so ``sqrt(G_jj)`` ranks the same as the column norm of the activations.
"""
from __future__ import annotations

import torch

from reprise.llm.methods.base import PruneConfig, SolveResult
from reprise.llm.methods.masks import select_mask
from reprise.llm.methods.registry import register


@register("wanda", Config=PruneConfig, kind="prune", needs_gram=True)
def _wanda(W: torch.Tensor, G: torch.Tensor, cfg: PruneConfig) -> SolveResult:
    col_norm = torch.diagonal(G).clamp(min=0).sqrt()
    keep = select_mask(W.abs() * col_norm[None, :], cfg, per_row=True)
    return SolveResult(weight=W * keep, mask=keep)
