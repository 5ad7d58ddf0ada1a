"""SparseGPT: one-shot pruning by the OBS column sweep, the mask chosen as the sweep goes.

Facts from the SparseGPT paper and spec §3.6 (blocksize 128, percdamp 0.01). The saliency of
weight ``(i, j)`` is ``w_ij² / U_jj²`` (``U_jj²`` is the diagonal of the inverse Gram restricted
to the columns still free). Unstructured: at the start of each block of ``block_size``
columns, the lowest-saliency weights of the whole block are pruned, with per-block counts that
add up to exactly ``round(sparsity · numel)``. N:M: at every M-th column, the ``N`` most
salient of the next ``M`` inputs of each row are kept. Dead inputs are zeroed, as in GPTQ.
"""
from __future__ import annotations

import dataclasses

import torch

from reprise.llm.gram import damped_inverse_cholesky
from reprise.llm.methods.base import PruneConfig, SolveResult
from reprise.llm.methods.masks import n_pruned, nm_keep, prune_lowest
from reprise.llm.methods.obs_sweep import ObsSweep
from reprise.llm.methods.registry import register


@dataclasses.dataclass(frozen=True)
class SparseGptConfig(PruneConfig):
    block_size: int = 128
    rel_damp: float = 0.01

    def validate(self) -> None:
        super().validate()
        self._check_pos_int("block_size")
        self._check_rel_damp()


@register("sparsegpt", Config=SparseGptConfig, kind="prune", needs_gram=True)
def _sparsegpt(W: torch.Tensor, G: torch.Tensor, cfg: SparseGptConfig) -> SolveResult:
    return sparsegpt_sweep(W, damped_inverse_cholesky(G, cfg.rel_damp), cfg)


def sparsegpt_sweep(W: torch.Tensor, factor, cfg: SparseGptConfig) -> SolveResult:
    """The sweep on a given ``(U, damping)`` of ``damped_inverse_cholesky``: a caller that prunes
    many targets with one Gram (HASSLE-free's outer loop) factors it once."""
    rows, cols = W.shape
    nm = cfg.nm_pair
    if nm is not None:
        nm_keep(W[:1], *nm)  # fails early, with the message, when cols is not a multiple of M
    U, damping = factor
    W = W.clone()
    if damping.dead:
        W[:, list(damping.dead)] = 0
    d2 = torch.diagonal(U) ** 2
    keep = torch.ones_like(W, dtype=torch.bool)

    def fix_column(sweep: ObsSweep, k: int, w: torch.Tensor) -> torch.Tensor:
        if nm is None and k == sweep.b0:
            b0, b1 = sweep.b0, sweep.b1
            count = n_pruned(rows * b1, cfg.sparsity) - n_pruned(rows * b0, cfg.sparsity)
            keep[:, b0:b1] = prune_lowest(sweep.current(b0, b1) ** 2 / d2[b0:b1], count)
        elif nm is not None and k % nm[1] == 0:
            m = nm[1]
            keep[:, k:k + m] = nm_keep(sweep.current(k, k + m) ** 2 / d2[k:k + m], *nm)
        return w * keep[:, k]

    weight = ObsSweep(W, U, cfg.block_size).run(fix_column)
    return SolveResult(weight=weight, mask=keep, damping=damping)
