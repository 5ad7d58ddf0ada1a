"""ADMM-Grad: ADMM weight update with a gradually chosen mask (Boža 2024, "Fast and effective
weight update for pruned large language models").

Facts from the official code (fmfi-compbio/admm-pruning, ``lib/admm.py: AdmmPruner.fasterprune``
as ``lib/prune.py: prune_admm`` calls it); the code here is our own.

The problem is put in normalised coordinates: ``d_j = sqrt(G_jj) + 1e-8``,
``Ŵ = W · diag(d)``, ``H = diag(d)⁻¹ G diag(d)⁻¹ + λ I`` with ``λ = rel_damp · mean(diag)``
(official ``percdamp`` 0.1). ``|Ŵ_ij|`` is then the Wanda score, so every magnitude mask below
is a Wanda-style mask. ADMM on ``min ½‖(Ŵ' − Ŵ) H^{1/2}‖²`` subject to ``Ŵ'`` having the mask's
support, penalty ``rho`` (official 1), scaled dual ``U`` (starting at 0), for ``iters`` (20)
iterations::

    (mask update, the first mask_iters (15) iterations)  mask from |Ŵ' + U|
    Z  = (Ŵ' + U) ⊙ mask
    U  = U + Ŵ' − Z
    Ŵ' = (Ŵ H + rho (Z − U)) (H + rho I)⁻¹

and the result is ``Z = (Ŵ' + U) ⊙ mask`` mapped back (``/ d``). There is no final exact
solve on the mask: the last ``iters − mask_iters`` iterations run on the fixed mask.

Masks (``schedule`` decides the target during the mask iterations, ``t = 1 … mask_iters``,
``s_t = s · (1 − (1 − t / mask_iters)³)`` the cubic schedule):

- unstructured, whole layer (official default, ``per_out=False``): the lowest ``|Ŵ' + U|`` of
  the whole matrix. The official code computes ``s_t`` but prunes at the full sparsity from
  the first iteration in this branch; ``schedule: official`` does the same, ``cubic`` uses
  ``s_t`` (as the per-row and N:M branches do), ``constant`` always the full sparsity.
- unstructured, ``per_row: true`` (official ``per_out=True``): the same per output row, cubic
  under ``official``.
- N:M: the N largest of each M-group are kept; of the rest, the lowest ``(1 − N/M)_t`` fraction
  of the whole matrix is pruned (cubic under ``official``), so the last mask iteration gives
  the exact N:M pattern. The official code hard-codes 2 of every 4; here any N:M works.

With ``mask_iters = 0`` the mask is fixed from ``|Ŵ|`` at the full target; with ``iters = 0``
the result is that mask applied to ``W`` (no update).

Departures: the final pruned count is ``round(sparsity · n)`` (the repository's rule; the
official code floors; the intermediate schedule steps floor here too, as officially); ties are
broken by position (official: by threshold, which may keep ties); N:M is not limited to 2:4;
the inverse is a Cholesky inverse (``H + rho I`` is symmetric positive definite) rather than a
general inverse. ``G`` here is ``XᵀX / n`` where the official code uses ``XᵀX``: the scale
cancels everywhere except in the ``1e-8``, which is relatively ``√n`` larger here (it matters
only for inputs that are dead or nearly so). The official driver takes every linear's Gram from
one dense pass of the block (``driver.true_sequential: false`` here). Checked against the official ``fasterprune`` on random problems: identical
masks and weights to fp32 rounding (whole-layer, N:M), and per row up to the one-weight
difference of the rounding rule.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.llm.gram import DampingRecord
from reprise.llm.methods.base import PruneConfig, SolveResult, _fail, _is_int
from reprise.llm.methods.masks import n_pruned, nm_keep, prune_lowest
from reprise.llm.methods.registry import register

SCHEDULES = ("official", "cubic", "constant")
NORM_EPS = 1e-8  # official: norm = sqrt(diag XᵀX) + 1e-8


@dataclasses.dataclass(frozen=True)
class AdmmGradConfig(PruneConfig):
    iters: int = 20  # official iters
    mask_iters: int = 15  # official iterative_prune: iterations that re-choose the mask
    rho: float = 1.0  # official rho (ADMM penalty, in the normalised coordinates)
    rel_damp: float = 0.1  # official percdamp as prune_admm passes it
    per_row: bool = False  # official per_out
    schedule: str = "official"

    def validate(self) -> None:
        super().validate()
        for name in ("iters", "mask_iters"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                _fail(self, name, v, "use an integer >= 0")
        if self.mask_iters > self.iters:
            _fail(self, "mask_iters", self.mask_iters,
                  f"use at most iters={self.iters} (the mask must reach its target before the last iteration)")
        v = self._float_field("rho")
        if not isinstance(v, float) or not math.isfinite(v) or v <= 0:
            _fail(self, "rho", v, "use a finite number > 0 (official 1)")
        self._check_rel_damp()
        self._check_bool("per_row")
        if self.per_row and self.nm is not None:
            _fail(self, "per_row", self.per_row, "per_row applies to unstructured sparsity; drop it with nm")
        if self.schedule not in SCHEDULES:
            _fail(self, "schedule", self.schedule, f"use one of {', '.join(SCHEDULES)}")


def _count(n: int, frac: float | None, final: float) -> int:
    """Weights to prune out of ``n``: the repository's rounding at the final target, the official
    floor at the intermediate schedule steps (``frac`` the scheduled fraction, None when final)."""
    if frac is None:
        return n_pruned(n, final)
    return min(n, max(0, int(n * frac)))


def _mask(score: torch.Tensor, cfg: AdmmGradConfig, frac: float | None) -> torch.Tensor:
    """Keep-mask from magnitudes ``score`` pruning the fraction ``frac`` (None: the final target)."""
    rows, cols = score.shape
    if cfg.nm is not None:
        n, m = cfg.nm_pair
        keep = nm_keep(score, n, m)
        if frac is None:
            return keep
        rest = rows * cols * (m - n) // m  # what the N:M pattern prunes
        return prune_lowest(score.masked_fill(keep, math.inf), min(rest, _count(rows * cols, frac, 0.0)))
    if cfg.per_row:
        return prune_lowest(score, _count(cols, frac, cfg.sparsity), per_row=True)
    return prune_lowest(score, _count(rows * cols, frac, cfg.sparsity))


@register("admm-grad", Config=AdmmGradConfig, kind="prune", needs_gram=True)
def _admm_grad(W: torch.Tensor, G: torch.Tensor, cfg: AdmmGradConfig) -> SolveResult:
    rows, cols = W.shape
    if cfg.nm is not None:
        nm_keep(W[:1], *cfg.nm_pair)  # fails early, with the message, when cols is not a multiple of M
    d = torch.diagonal(G).clamp(min=0).sqrt() + NORM_EPS
    H = G / d[:, None] / d[None, :]
    Wn = W * d[None, :]
    lam = cfg.rel_damp * float(torch.diagonal(H).mean())
    H = H + lam * torch.eye(cols, dtype=H.dtype, device=H.device)
    damping = DampingRecord(absolute=lam, relative=cfg.rel_damp, retries=0, dead=())
    # the official default applies the cubic schedule except in the whole-layer unstructured branch
    gradual = cfg.schedule == "cubic" or (cfg.schedule == "official" and (cfg.nm is not None or cfg.per_row))

    target = cfg.sparsity if cfg.nm is None else 1 - cfg.nm_pair[0] / cfg.nm_pair[1]
    mask = _mask(Wn.abs(), cfg, None)
    if cfg.iters == 0:
        return SolveResult(weight=W * mask, mask=mask, damping=damping, extras={"admm_residual": 0.0})
    B = Wn @ H
    A = H + cfg.rho * torch.eye(cols, dtype=H.dtype, device=H.device)
    A_inv = torch.cholesky_inverse(torch.linalg.cholesky(A))
    U = torch.zeros_like(Wn)
    for t in range(cfg.iters):
        if t < cfg.mask_iters:
            last = t == cfg.mask_iters - 1
            frac = None if last or not gradual else target - target * (1 - (t + 1) / cfg.mask_iters) ** 3
            mask = _mask((Wn + U).abs(), cfg, frac)
        Z = (Wn + U) * mask
        U = U + (Wn - Z)
        Wn = (B + cfg.rho * (Z - U)) @ A_inv
    Z = (Wn + U) * mask
    residual = float(torch.linalg.norm(Wn - Z) / torch.linalg.norm(Z).clamp(min=torch.finfo(Z.dtype).tiny))
    return SolveResult(weight=Z / d[None, :], mask=mask, damping=damping, extras={"admm_residual": residual})
