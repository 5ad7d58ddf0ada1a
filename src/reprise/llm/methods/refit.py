"""Refits on a fixed support: the ridge-normalised Gram, batched conjugate gradient, exact solves.

A pruning mask fixes which weights may be nonzero; what is left is a least-squares problem
per output unit on its kept inputs. Spec §3.1 and §3.3 (ALPS):

- ``normalised_gram``: with the ridge ``λ = rel_ridge · mean(diag G)``, ``G̃ = D⁻¹(G + λI)D⁻¹`` and
  ``D = sqrt(diag(G + λI)) + 1e-8``. In the scaled variables ``B = D·Wᵀ`` the objective
  ``½tr((B − B₀)ᵀG̃(B − B₀))`` equals ``½tr(ΔW (G + λI) ΔWᵀ)`` up to the ``1e-8``: the ridge
  objective. ``G̃`` has a unit diagonal, so plain CG on it is Jacobi-preconditioned CG on
  ``G + λI``.
- ``pcg_refit``: conjugate gradient on ``A X = rhs`` restricted to a mask, every output column
  at once (one step length per column), in the paper's layout (inputs × outputs).
- ``exact_refit``: the restricted ridge least squares solved exactly per output row, in the
  ``nn.Linear`` layout (outputs × inputs). The reference the CG refit is measured against.

Pure tensor functions; they run on the device of their inputs.
"""
from __future__ import annotations

import torch

#: added to ``sqrt(diag(G + λI))`` so a zero column never divides by zero (as the ALPS code)
SCALE_EPS = 1e-8
#: a CG denominator that is exactly zero (a converged or empty column) is replaced by this
ZERO_DENOM = 1e-8


def ridge_value(G: torch.Tensor, rel_ridge: float) -> float:
    """``λ = rel_ridge · mean(diag G)`` (0 when ``rel_ridge`` is 0)."""
    return float(rel_ridge * torch.diagonal(G).mean()) if rel_ridge else 0.0


def normalised_gram(G: torch.Tensor, rel_ridge: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(G̃, D, λ)``: the unit-diagonal ridge Gram, the column scales and the ridge itself."""
    lam = ridge_value(G, rel_ridge)
    damped = G.clone()
    damped.diagonal().add_(lam)
    D = torch.diagonal(damped).clamp(min=0).sqrt() + SCALE_EPS
    inv = 1.0 / D
    return damped.mul_(inv[:, None]).mul_(inv[None, :]), D, lam


def pcg_refit(A: torch.Tensor, rhs: torch.Tensor, mask: torch.Tensor, X0: torch.Tensor,
              iters: int = 10, rtol: float = 1e-4) -> torch.Tensor:
    """Conjugate gradient for ``A X = rhs`` with ``X`` zero outside ``mask``, all columns at once.

    Layout: ``A`` (p × p, symmetric positive definite), ``rhs``, ``mask`` (bool, True = free) and
    ``X0`` (p × m), one column per output unit. Column ``j`` is an independent CG on the system
    restricted to its support, so each column gets its own step length ``α_j`` and ``β_j``; the
    residual is masked so the iterate never leaves the support. The stopping test is the ALPS
    code's: the *unmasked* residual ``A X − rhs``, row by row, below ``rtol`` times the row norms
    of ``rhs``. On a proper support that residual cannot vanish, so in practice all ``iters``
    iterations run. ``A X`` is carried along (``AX += α·AP``) instead of recomputed, so an
    iteration costs one GEMM. ``X0`` is projected onto the mask first.
    """
    keep = mask.to(X0.dtype)
    X = X0 * keep
    AX = A @ X
    R = (rhs - AX).mul_(keep)
    P = R.clone()
    rr = (R * R).sum(0)
    tol = rtol * torch.linalg.vector_norm(rhs, dim=1)
    for _ in range(iters):
        AP = A @ P
        pAp = (P * AP).sum(0)
        alpha = rr / torch.where(pAp == 0, torch.full_like(pAp, ZERO_DENOM), pAp)
        X.addcmul_(P, alpha[None, :])
        AX.addcmul_(AP, alpha[None, :])
        R.addcmul_(AP, alpha[None, :], value=-1).mul_(keep)
        if bool((torch.linalg.vector_norm(AX - rhs, dim=1) <= tol).all()):
            break
        rr_new = (R * R).sum(0)
        beta = rr_new / torch.where(rr == 0, torch.full_like(rr, ZERO_DENOM), rr)
        P = P.mul_(beta[None, :]).add_(R)
        rr = rr_new
    return X


def exact_refit(G: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, ridge: float = 0.0,
                max_chunk_bytes: int = 1 << 26) -> torch.Tensor:
    """The best weights on ``mask``: per row, ``min tr(ΔW G ΔWᵀ) + ridge·‖ΔW‖²`` with ``ΔW = W − Ŵ``.

    ``W`` (m × p) is the dense weight in ``nn.Linear`` layout, ``mask`` (m × p, True = kept) the
    support, ``G`` (p × p) the Gram. With ``Gr = G + ridge·I`` and ``S`` a row's kept inputs, the
    row's solution is ``ŵ_S = (Gr_SS)⁻¹ (Gr w)_S`` and zero elsewhere. Rows are sorted by support
    size and solved in chunks: each chunk gathers its sub-Grams padded to the chunk's largest
    support (the padding is an identity block with a zero right-hand side), factorises them with
    one batched Cholesky and back-substitutes. A sub-Gram that is singular (``ridge = 0`` and a
    rank-deficient ``G``) is solved by its pseudo-inverse, giving the minimum-norm minimiser.
    Computed in fp64; returned in ``W``'s dtype.
    """
    m, p = W.shape
    f64 = torch.float64
    Gr = G.to(f64).clone()
    Gr.diagonal().add_(ridge)
    target = W.to(f64) @ Gr  # row i: (Gr w_i)ᵀ, Gr symmetric
    counts = mask.sum(1)
    # kept columns first, in column order, in every row
    cols = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    row_order = torch.argsort(counts, stable=True)
    out = torch.zeros(m, p, dtype=f64, device=W.device)
    counts_host = counts[row_order].tolist()
    start = 0
    while start < m:
        # rows are sorted by support size, so a chunk pads to the size of its last row
        stop = start + 1
        while stop < m and (stop + 1 - start) * 8 * counts_host[stop] ** 2 <= max_chunk_bytes:
            stop += 1
        s = counts_host[stop - 1]
        rows = row_order[start:stop]
        start = stop
        if s == 0:
            continue
        idx = cols[rows, :s]  # (r, s)
        valid = torch.arange(s, device=W.device)[None, :] < counts[rows][:, None]
        sub = Gr[idx[:, :, None], idx[:, None, :]]
        sub.masked_fill_(~(valid[:, :, None] & valid[:, None, :]), 0)
        sub.diagonal(dim1=1, dim2=2).add_((~valid).to(f64))
        b = target[rows[:, None], idx] * valid
        L, info = torch.linalg.cholesky_ex(sub)
        x = torch.cholesky_solve(b[..., None], L)[..., 0]
        bad = info != 0
        if bool(bad.any()):
            x[bad] = (torch.linalg.pinv(sub[bad], hermitian=True) @ b[bad][..., None])[..., 0]
        out[rows[:, None], idx] = x * valid
    return out.to(W.dtype)
