"""Magnitude pruning: drop the smallest |W| over the whole layer (or N:M along rows); no update."""
from __future__ import annotations

import torch

from reprise.llm.methods.base import PruneConfig, SolveResult
from reprise.llm.methods.masks import select_mask
from reprise.llm.methods.registry import register


@register("magnitude", Config=PruneConfig, kind="prune", needs_gram=False)
def _magnitude(W: torch.Tensor, G: torch.Tensor | None, cfg: PruneConfig) -> SolveResult:
    keep = select_mask(W.abs(), cfg, per_row=False)
    return SolveResult(weight=W * keep, mask=keep)
