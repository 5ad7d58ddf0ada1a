"""The one damping policy shared by every solver that factors a Gram matrix.

Policy (DESIGN.md, "Conventions"):

1. Dead inputs (``G_jj == 0``: the input feature was never non-zero on the calibration set)
   get ``G_jj := 1`` in a working copy, and their indices are reported so the solver zeroes
   those weight columns, as GPTQ does. Zeroing them changes no objective: for a PSD ``G`` a
   zero diagonal entry means the whole row and column are zero.
2. ``λ = rel_damp · mean(diag G_work)`` is added to the diagonal.
3. Cholesky is attempted (``torch.linalg.cholesky_ex``); on failure the relative damping is
   multiplied by ``growth`` (a zero damping restarts from ``RETRY_FLOOR``) and the factorization
   is retried, up to ``max_tries`` attempts in all, each retry logged on ``reprise.damping``.

The factorization runs in the Gram's own precision (fp32, or fp64 when the caller passes fp64).
"""
from __future__ import annotations

import dataclasses
import logging
import math

import torch

from reprise.io import ReproError

log = logging.getLogger("reprise.damping")

#: relative damping used for the first retry when the requested damping was zero
RETRY_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class DampingRecord:
    """What the policy did to one Gram: logged per layer, so a reader sees every retry."""

    absolute: float  # λ added to the diagonal
    relative: float  # λ / mean(diag G_work)
    retries: int  # failed attempts before the one that succeeded
    dead: tuple[int, ...]  # input features with G_jj == 0 (their weight columns are zeroed)

    def to_dict(self) -> dict:
        return {"damp_abs": self.absolute, "damp_rel": self.relative,
                "damp_retries": self.retries, "n_dead": len(self.dead)}


def _check(G: torch.Tensor, rel_damp: float, max_tries: int, growth: float) -> None:
    if not isinstance(G, torch.Tensor) or G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
        shape = tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__
        raise ReproError(f"damping: the Gram must be a non-empty square 2-D tensor, got {shape}")
    if not G.is_floating_point():
        raise ReproError(f"damping: the Gram must be floating point, got {G.dtype}")
    if not bool(torch.isfinite(G).all()):
        raise ReproError("damping: the Gram matrix has NaN/Inf entries; check the calibration activations "
                         "(overflow in fp16 forward passes is the usual cause)")
    if bool((G.diagonal() < 0).any()):
        raise ReproError("damping: the Gram matrix has negative diagonal entries, so it is not XᵀX/n; "
                         "check how it was accumulated")
    if not (isinstance(rel_damp, (int, float)) and math.isfinite(rel_damp) and rel_damp >= 0):
        raise ReproError(f"damping: rel_damp must be a finite number >= 0, got {rel_damp!r}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise ReproError(f"damping: max_tries must be an integer >= 1, got {max_tries!r}")
    if not (isinstance(growth, (int, float)) and growth > 1):
        raise ReproError(f"damping: growth must be a number > 1, got {growth!r}")


def _factor(G: torch.Tensor, rel_damp: float, max_tries: int, growth: float, reverse: bool):
    """Damp and factor; with ``reverse`` the rows/columns are flipped before the Cholesky."""
    _check(G, rel_damp, max_tries, growth)
    work = G.to(torch.promote_types(G.dtype, torch.float32)).clone()
    diag = work.diagonal()
    dead_mask = diag == 0
    dead = tuple(int(j) for j in torch.nonzero(dead_mask).flatten().tolist())
    diag[dead_mask] = 1.0
    mean_diag = float(diag.mean())
    if reverse:
        work = work.flip(0, 1)
    rel = float(rel_damp)
    eye = torch.ones(work.shape[0], dtype=work.dtype, device=work.device)
    for attempt in range(max_tries):
        lam = rel * mean_diag
        L, info = torch.linalg.cholesky_ex(work + torch.diag(eye * lam))
        if int(info) == 0 and bool(torch.isfinite(L).all()):
            return L, DampingRecord(absolute=lam, relative=rel, retries=attempt, dead=dead)
        last, nxt = rel, (rel * growth if rel > 0 else RETRY_FLOOR)
        if attempt + 1 < max_tries:
            log.warning("Cholesky failed with relative damping %.3g (absolute %.3g, %d dead inputs); "
                        "retrying with %.3g", rel, lam, len(dead), nxt)
        rel = nxt
    raise ReproError(
        f"damping: Cholesky failed {max_tries} times (last relative damping {last:.3g}); the Gram "
        f"is far from positive definite. Raise rel_damp or check the calibration data")


def damped_cholesky(G: torch.Tensor, rel_damp: float = 0.01, max_tries: int = 6,
                    growth: float = 10.0) -> tuple[torch.Tensor, DampingRecord]:
    """Lower ``L`` with ``L Lᵀ = G_work + λI`` (dead diagonal set to 1), and the record."""
    return _factor(G, rel_damp, max_tries, growth, reverse=False)


def damped_inverse_cholesky(G: torch.Tensor, rel_damp: float = 0.01, max_tries: int = 6,
                            growth: float = 10.0) -> tuple[torch.Tensor, DampingRecord]:
    """Upper ``U`` with ``Uᵀ U = (G_work + λI)⁻¹``: the factor GPTQ and SparseGPT sweep with.

    Why the flip: factoring the reversed matrix gives ``H = R Rᵀ`` with ``R`` upper triangular,
    so ``H⁻¹ = (R⁻¹)ᵀ R⁻¹`` and ``U = R⁻¹``. One Cholesky and one triangular inverse, with no
    second factorization of an explicitly formed inverse that could fail on its own.
    """
    Lrev, record = _factor(G, rel_damp, max_tries, growth, reverse=True)
    R = Lrev.flip(0, 1)
    eye = torch.eye(R.shape[0], dtype=R.dtype, device=R.device)
    U = torch.linalg.solve_triangular(R, eye, upper=True)
    if not bool(torch.isfinite(U).all()):
        raise ReproError("damping: the inverse Cholesky factor overflowed; raise rel_damp")
    return U, record
