"""Round-to-nearest: the calibration-free baseline on the shared min/max grid."""
from __future__ import annotations

import torch

from reprise.llm.methods.base import QuantConfig, SolveResult
from reprise.llm.methods.quant_grid import fit_grid, group_index, quant_record, quantize
from reprise.llm.methods.registry import register


def rtn_quantize(W: torch.Tensor, bits: int, group_size: int, sym: bool):
    """Quantize ``W`` group by group along the input dimension; returns (weight, scales, zeros)."""
    cols = W.shape[1]
    step = group_size if group_size > 0 else cols
    out = torch.empty_like(W)
    scales, zeros = [], []
    for c0 in range(0, cols, step):
        sl = W[:, c0:c0 + step]
        scale, zero = fit_grid(sl, bits, sym)
        out[:, c0:c0 + step] = quantize(sl, scale[:, None], zero[:, None], bits)
        scales.append(scale)
        zeros.append(zero)
    return out, torch.stack(scales, 1), torch.stack(zeros, 1)


@register("rtn", Config=QuantConfig, kind="quant", needs_gram=False)
def _rtn(W: torch.Tensor, G: torch.Tensor | None, cfg: QuantConfig) -> SolveResult:
    weight, scales, zeros = rtn_quantize(W, cfg.bits, cfg.group_size, cfg.sym)
    g_idx = group_index(W.shape[1], cfg.group_size, W.device)
    return SolveResult(weight=weight, quant=quant_record(scales, zeros, g_idx, cfg.bits, cfg.group_size))
