"""The no-op method: returns W unchanged, so driver tests can check plumbing end to end."""
from __future__ import annotations

import torch

from reprise.llm.methods.base import NoConfig, SolveResult
from reprise.llm.methods.registry import register


@register("identity", Config=NoConfig, kind="none", needs_gram=False)
def _identity(W: torch.Tensor, G: torch.Tensor | None, cfg: NoConfig) -> SolveResult:
    return SolveResult(weight=W.clone())
