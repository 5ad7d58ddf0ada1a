"""The uniform min/max quantization grid shared by RTN and GPTQ (facts: spec §2.5).

Per row of the slice it is fit on: ``x_min = min(0, min w)``, ``x_max = max(0, max w)`` so the
grid always holds 0; a row of zeros gets ``[-1, 1]``. Asymmetric: ``scale = (x_max − x_min) /
(2^b − 1)``, ``zero = round(−x_min / scale)``. Symmetric: ``x_max ← max(|x_min|, x_max)``,
``x_min ← −x_max`` where ``x_min < 0``, ``zero = 2^(b−1)``. A value maps to
``scale · (clamp(round(w / scale) + zero, 0, 2^b − 1) − zero)``.
"""
from __future__ import annotations

import torch


def fit_grid(w: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, zero)`` of shape ``(rows,)`` for the slice ``w`` (rows × k)."""
    maxq = 2 ** bits - 1
    xmin = w.min(dim=1).values.clamp(max=0)
    xmax = w.max(dim=1).values.clamp(min=0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    flat = (xmin == 0) & (xmax == 0)
    xmin = torch.where(flat, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(flat, torch.full_like(xmax, 1.0), xmax)
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Round ``w`` to the grid and map back (elementwise; ``scale``/``zero`` broadcast)."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return scale * (q - zero)


def group_index(in_features: int, group_size: int, device=None) -> torch.Tensor:
    """``g_idx[j]``: the grid (group) used by input column ``j`` when groups are consecutive."""
    j = torch.arange(in_features, device=device)
    return j // group_size if group_size > 0 else torch.zeros_like(j)


def quant_record(scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                 bits: int, group_size: int) -> dict[str, torch.Tensor]:
    """The ``SolveResult.quant`` dict: tensors only, so it goes into safetensors as is.

    ``scales``/``zeros`` are (out_features, n_groups); ``g_idx`` maps each input column to its group.
    """
    return {"scales": scales.to(torch.float32), "zeros": zeros.to(torch.float32),
            "g_idx": g_idx.to(torch.int32), "bits": torch.tensor(bits, dtype=torch.int32),
            "group_size": torch.tensor(group_size, dtype=torch.int32)}


def _expand(quant: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = quant["g_idx"].long()
    return quant["scales"][:, g], quant["zeros"][:, g], int(quant["bits"])


def encode(quant: dict[str, torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """Integer codes (as floats in ``[0, 2^b − 1]``) of a weight that lies on the record's grid."""
    scale, zero, bits = _expand(quant)
    return torch.clamp(torch.round(weight / scale) + zero, 0, 2 ** bits - 1)


def decode(quant: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """Dense weight from integer codes: ``scale[g_idx] · (code − zero[g_idx])``."""
    scale, zero, _ = _expand(quant)
    return scale * (codes - zero)
