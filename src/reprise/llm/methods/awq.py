"""AWQ (Lin et al. 2023): activation-aware per-input-channel scaling, then a weight-clipping search.

Facts from mit-han-lab/llm-awq (``auto_scale.py``, ``auto_clip.py``), written on ``(W, G)`` only:

1. **Scale search.** For ``α`` in ``{0, 1/grid, …, (grid−1)/grid}`` (grid 20: ``α ∈ [0, 1)``),
   ``s = x^α`` clamped below at 1e-4 and normalised by ``sqrt(max s · min s)``; the candidate
   weight is the fake-quantized ``Q(W · s) / s`` (``Q``: the shared min/max grid, per row or per
   group, fit on ``W · s``). The ``α`` with the smallest loss wins (the first on ties, so ``α = 0``,
   plain RTN, wins when nothing beats it).
2. **Clipping search** (``clip``): on the scaled weight ``W · s``, per row and group, the range is
   shrunk to ``±m · (1 − i / clip_grid)`` for ``i < max_shrink · clip_grid`` (``m`` the group's
   largest magnitude; 10 ratios, 1 down to 0.55, by default), the weight clamped to it and the
   grid refit; each (row, group) keeps its best ratio.

The returned weight is ``Q(clip(W · s)) / s``: what the driver writes back (folding ``s`` into the
previous operation, as llm-awq does, gives the same layer function for a weight-only fake-quant).
It is on the per-row grid of ``W · s``, not of ``W``: ``quant`` holds that grid
(``scales``/``zeros``/``g_idx``) and the per-input-channel ``awq_scale`` ``s``, with
``weight = decode(codes) / awq_scale``.

Deviations from llm-awq, all forced by or natural to the ``(W, G)`` interface:

- **Activation statistic.** llm-awq uses the mean absolute activation per channel, which ``G``
  does not hold; we use ``x_j = sqrt(G_jj)``, the per-channel RMS.
- **Loss.** llm-awq measures the output error of the whole module sharing the input (q/k/v
  together, or the MLP) on the calibration batch. Here each layer is scaled on its own and the
  loss is its exact output error ``tr(ΔW G ΔWᵀ)`` (the project's objective). For clipping, llm-awq's
  per-(row, group) loss ignores the other groups of the row; we use the same block-diagonal loss
  ``Δ_g G_gg Δ_gᵀ`` (exact per row without groups), then keep, per row, the clipped result only
  where it lowers that row's exact error, so clipping never makes a row worse. llm-awq subsamples
  512 tokens for clipping; ``G`` uses all of them.
- **Clipping on every layer.** llm-awq skips q/k projections (their output feeds a bmm); a solver
  does not know layer names, so set ``clip: false`` in the configuration of those layers if
  wanted.
- **Grid.** The project's min/max grid (always holding 0, a flat row gets ``[−1, 1]``; spec §2.5)
  instead of llm-awq's ``pseudo_quantize_tensor`` (range not widened to 0, scale floor 1e-5), so
  ``grid: 1, clip: false`` is RTN exactly. ``group_size`` need not divide the input width.
"""
from __future__ import annotations

import dataclasses

import torch

from reprise.llm.methods.base import QuantConfig, SolveResult
from reprise.llm.methods.quant_grid import decode, encode, group_index, quant_record
from reprise.llm.methods.registry import register
from reprise.llm.methods.rtn import rtn_quantize


@dataclasses.dataclass(frozen=True)
class AwqConfig(QuantConfig):
    grid: int = 20
    clip: bool = True
    clip_grid: int = 20
    max_shrink: float = 0.5

    def validate(self) -> None:
        super().validate()
        self._check_pos_int("grid")
        self._check_pos_int("clip_grid")
        self._check_bool("clip")
        self._check_fraction("max_shrink", "use a fraction in [0, 1) (0.5 in llm-awq: ranges shrunk down to 55%)")


def _row_loss(D: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Per-row exact output error ``diag(D G Dᵀ)``."""
    return ((D @ G) * D).sum(1)


def awq_scale(G: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s = x^α`` (x = sqrt(diag G)) clamped at 1e-4, normalised by ``sqrt(max · min)``."""
    x = torch.diagonal(G).clamp(min=0).sqrt()
    s = x.pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


@register("awq", Config=AwqConfig, kind="quant", needs_gram=True)
def _awq(W: torch.Tensor, G: torch.Tensor, cfg: AwqConfig) -> SolveResult:
    q, p = W.shape
    bits, gs, sym = cfg.bits, cfg.group_size, cfg.sym
    g_idx = group_index(p, gs, W.device)
    n_groups = int(g_idx.max()) + 1

    # 1. scale search on the exact layer error
    losses = []
    best = None
    for i in range(cfg.grid):
        alpha = i / cfg.grid
        s = awq_scale(G, alpha)
        Q, sc, zr = rtn_quantize(W * s, bits, gs, sym)
        D = Q / s - W
        loss = float(_row_loss(D, G).sum())
        losses.append(loss)
        if best is None or loss < best[0]:
            best = (loss, alpha, s, Q, sc, zr, D)
    _, alpha, s, Q, scales, zeros, D = best
    Ws = W * s

    # 2. clipping search per (row, group) on the block-diagonal loss, kept per row where it helps
    ratio = torch.ones(q, n_groups, dtype=W.dtype, device=W.device)
    n_shrink = int(cfg.max_shrink * cfg.clip_grid)
    if cfg.clip and n_shrink > 1:
        same = g_idx[:, None] == g_idx[None, :]
        G_bd = torch.where(same, G, torch.zeros_like(G))
        m0 = torch.zeros(q, n_groups, dtype=W.dtype, device=W.device)
        m0.scatter_reduce_(1, g_idx[None, :].expand(q, p), Ws.abs(), reduce="amax", include_self=True)

        def group_loss(Dc: torch.Tensor) -> torch.Tensor:
            e = (Dc @ G_bd) * Dc
            return torch.zeros(q, n_groups, dtype=e.dtype, device=e.device).index_add_(1, g_idx, e)

        best_err = group_loss(D)
        for i in range(1, n_shrink):
            r = 1 - i / cfg.clip_grid
            lim = (m0 * r)[:, g_idx]
            Qc, _, _ = rtn_quantize(torch.clamp(Ws, -lim, lim), bits, gs, sym)
            err = group_loss(Qc / s - W)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            ratio = torch.where(better, torch.full_like(ratio, r), ratio)
        if bool((ratio < 1).any()):
            lim = (m0 * ratio)[:, g_idx]
            Qc, sc_c, zr_c = rtn_quantize(torch.clamp(Ws, -lim, lim), bits, gs, sym)
            use = _row_loss(Qc / s - W, G) < _row_loss(D, G)
            Q = torch.where(use[:, None], Qc, Q)
            scales = torch.where(use[:, None], sc_c, scales)
            zeros = torch.where(use[:, None], zr_c, zeros)
            ratio = torch.where(use[:, None], ratio, torch.ones_like(ratio))

    quant = quant_record(scales, zeros, g_idx, bits, gs)
    quant["awq_scale"] = s.to(torch.float32)
    weight = decode(quant, encode(quant, Q).to(torch.float32)) / quant["awq_scale"]  # fp32, as a reader decodes
    extras = {"alpha": alpha, "alpha_loss": torch.tensor(losses, dtype=torch.float64),
              "clip_ratio": ratio.to(torch.float32)}
    return SolveResult(weight=weight.to(W.dtype), quant=quant, extras=extras)
