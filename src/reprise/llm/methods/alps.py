"""ALPS (Meng et al. 2024, spec §3.1–3.5): ADMM with penalty updates, then a CG refit on the support.

Problem (spec §3.1). With the ridge ``λ = rel_ridge · mean(diag G)``, the unit-diagonal Gram
``G̃ = D⁻¹(G + λI)D⁻¹`` and the scaled weights ``B = W·D`` (``nn.Linear`` layout, outputs × inputs,
the transpose of the paper's ``D·Wᵀ``), minimise ``½tr((B − B₀) G̃ (B − B₀)ᵀ)`` over ``B`` in the
constraint set: at most ``k = round((1 − sparsity)·p·m)`` nonzeros over the whole layer, or N
nonzeros in every M consecutive inputs of each output row. The projection ranks ``|B|``, i.e.
``|W_ij|·sqrt(G_jj + λ)``.

ADMM (spec §3.2), scaled dual ``V``, ``C = B₀G̃`` fixed::

    B ← (C − V + ρZ)(G̃ + ρI)⁻¹      Z ← Proj(B + V/ρ)      V ← V + ρ(B − Z)

``(G̃ + ρI)⁻¹ = Q diag(1/(Λ + ρ)) Qᵀ`` comes from one fp64 eigendecomposition of ``G̃`` per layer,
reused for every ρ (``ShiftedInverse``). Writing ``U = B + V/ρ`` for the projected point, the
V-step is ``V = ρ(U − Z) = ρ·U`` off the new support and 0 on it, so ``Z`` and ``V`` never overlap;
the loop keeps ``U``, its support and the ρ the dual was formed with, and builds both
right-hand sides with one fused multiply-add each.

Penalty schedule (``rho_schedule="adaptive"``, the released code): every ``update_iter``
iterations, with ``s`` the number of positions whose kept/pruned status changed since the
previous check, ``ρ ×1.3`` if ``s/k > 0.1``, ``×1.2`` if ``s/k > 0.005`` (both mark "started"),
``×1.1`` if ``s ≥ 1`` and started, otherwise ``ρ/5`` and restart from ``B₀, Z₀, V = 0``; ``s = 0``
stops once started and divides ρ by 5 (no restart) before. ρ is capped at 1e6; the loop also
stops at a check when the (0-based) iteration index is at least ``switch_iter`` and
``s/k < switch_tol``; at most ``max_iter`` iterations. ``rho_schedule="fixed"`` keeps ρ = rho0
throughout, never restarts, and stops at ``max_iter`` or at the first check where the support
equals the one at the previous check (unchanged over ``update_iter`` iterations).

Output (spec §3.3): the projection of the last ``B`` (not ``Z``), then the refit on that support:
``pcg`` (``pcg_iters`` CG iterations on ``G̃``, warm-started at the projected ``B``), ``exact``
(the restricted ridge least squares, ``refit.exact_refit``) or ``none``. ``W = B·D⁻¹``.

Also registered: ``backsolve``, the ALPS paper's Table 1 experiment. The mask comes from another
pruning method (``support``, default magnitude); the weights are then refit on it, exactly or by
the same CG, minimising the same ridge objective ``tr(ΔW (G + λI) ΔWᵀ)``.

Cost and precision: everything stays on the device of ``W``/``G``. The ``eigh`` is fp64; the GEMMs
and the rest run in the inputs' compute dtype (fp32 for fp32 inputs): on SmolLM2's layers, fp64
throughout moved the final objective by −0.1% to +0.2% (no systematic gain), so fp32 stays. An
iteration is one p×p×m GEMM (two when the inverse is not formed), the projection and four
elementwise passes. The global top-k is a ``kthvalue`` threshold, searched first in a band
around the previous iteration's threshold; N:M with M ≤ 4 ranks by pairwise comparisons.

Extras: ``admm_iterations`` (int), ``final_rho`` (float), ``restarts`` (int) and, with
``trace=True``, ``admm_trace``: float64 CPU tensor (iterations × 4) with columns 1-based
iteration, ρ used, support change since the previous iteration as a fraction of ``k``, and
the relative objective ``tr((P(B) − B₀)G̃(P(B) − B₀)ᵀ) / tr(B₀G̃B₀ᵀ)`` of the projected iterate.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.llm.methods.base import PruneConfig, SolveResult, _fail, _is_int
from reprise.llm.methods.masks import n_pruned, nm_keep
from reprise.llm.methods.refit import exact_refit, normalised_gram, pcg_refit, ridge_value
from reprise.llm.methods.registry import REGISTRY, get_method, register

SCHEDULES = ("adaptive", "fixed")
REFITS = ("pcg", "exact", "none")
#: ρ never grows past this (the released code's cap)
RHO_MAX = 1e6

#: the separately named fast setting (``alps-fast`` in benchmarks/alps.py): the released schedule
#: stops at a check once iteration 30 is past and under 0.03% of the support moved since the last
#: check (about 33 iterations on SmolLM2's layers); this stops once iteration 20 is past and under
#: 1% moved (about 27). The penalty schedule itself is not touched: growing ρ faster, or starting
#: it higher, costs far more objective than it saves time.
FAST_CONFIG = {"switch_iter": 20, "switch_tol": 0.01}


def _check_finite(cfg: PruneConfig, name: str, lo: float, strict: bool, fix: str) -> None:
    v = cfg._float_field(name)
    if not isinstance(v, float) or not math.isfinite(v) or (v <= lo if strict else v < lo):
        _fail(cfg, name, v, fix)


@dataclasses.dataclass(frozen=True)
class AlpsConfig(PruneConfig):
    rho0: float = 0.1
    rho_schedule: str = "adaptive"
    max_iter: int = 300
    update_iter: int = 3
    switch_iter: int = 30
    switch_tol: float = 3e-4
    rel_ridge: float = 0.01
    refit: str = "pcg"
    pcg_iters: int = 10
    pcg_rtol: float = 1e-4
    trace: bool = False

    def validate(self) -> None:
        super().validate()
        _check_finite(self, "rho0", 0.0, True, "use a finite penalty > 0 (0.1 in the released code)")
        if self.rho_schedule not in SCHEDULES:
            _fail(self, "rho_schedule", self.rho_schedule, f"use one of {', '.join(SCHEDULES)}")
        for name in ("max_iter", "update_iter", "pcg_iters"):
            self._check_pos_int(name)
        if not _is_int(self.switch_iter) or self.switch_iter < 0:
            _fail(self, "switch_iter", self.switch_iter, "use an integer >= 0 (30 in the released code)")
        _check_finite(self, "switch_tol", 0.0, False, "use a finite fraction >= 0 (3e-4 in the released code)")
        self._check_rel_damp("rel_ridge")
        if self.refit not in REFITS:
            _fail(self, "refit", self.refit, f"use one of {', '.join(REFITS)}")
        _check_finite(self, "pcg_rtol", 0.0, False, "use a finite tolerance >= 0 (1e-4 in the released code)")
        self._check_bool("trace")


@dataclasses.dataclass(frozen=True)
class BacksolveConfig(PruneConfig):
    support: str = "magnitude"
    refit: str = "exact"
    rel_ridge: float = 0.01
    pcg_iters: int = 10

    def validate(self) -> None:
        super().validate()
        method = REGISTRY.get(self.support) if isinstance(self.support, str) else None
        if method is None or method.kind != "prune" or self.support == "backsolve":
            names = sorted(n for n, m in REGISTRY.items() if m.kind == "prune" and n != "backsolve")
            _fail(self, "support", self.support, f"name a pruning method: one of {', '.join(names)}")
        if self.refit not in REFITS:
            _fail(self, "refit", self.refit, f"use one of {', '.join(REFITS)}")
        self._check_rel_damp("rel_ridge")
        self._check_pos_int("pcg_iters")


# --------------------------------------------------------------------------- pieces

class ShiftedInverse:
    """``R ↦ R (G̃ + ρI)⁻¹`` for any ρ from one eigendecomposition ``G̃ = Q Λ Qᵀ`` (fp64 ``eigh``).

    Two ways to apply it to the (m × p) right-hand side: form ``M = Q diag(1/(Λ+ρ)) Qᵀ`` whenever
    ρ changes (a p×p×p GEMM) and then pay one p×p×m GEMM per iteration, or never form it and pay
    two (``((R Q) ⊙ d) Qᵀ``). ρ changes at most once every ``update_iter`` iterations, so forming
    costs ``p³/update_iter`` per iteration against the ``p²m`` it saves: form iff
    ``p < update_iter·m`` (always under a fixed ρ, formed once).
    """

    def __init__(self, Gt: torch.Tensor, dtype: torch.dtype, rows: int, checks_every: int | None):
        evals, Q = torch.linalg.eigh(Gt.to(torch.float64))
        self.evals = evals.clamp(min=0)  # G̃ is PSD; round-off can leave tiny negatives
        self.Q = Q.to(dtype)
        p = Gt.shape[0]
        self.form = checks_every is None or p < checks_every * rows
        self.rho: float | None = None
        self.M: torch.Tensor | None = None
        self.d: torch.Tensor | None = None

    def set_rho(self, rho: float) -> None:
        if rho == self.rho:
            return
        self.rho = rho
        self.d = (1.0 / (self.evals + rho)).to(self.Q.dtype)
        if self.form:
            self.M = (self.Q * self.d[None, :]) @ self.Q.T

    def apply(self, R: torch.Tensor) -> torch.Tensor:
        if self.form:
            return R @ self.M
        return ((R @ self.Q).mul_(self.d[None, :])) @ self.Q.T


#: half-width of the band around the previous threshold searched first, relative to it
BAND = 0.1


def _global_keep(a: torch.Tensor, k: int, hint: float | None = None) -> tuple[torch.Tensor, float]:
    """Keep-mask of the ``k`` largest entries of ``a`` (≥ 0) over the whole matrix, and its threshold.

    Exactly ``k`` entries are kept; ties at the threshold are filled in position order. The
    threshold is the largest pruned value, from ``kthvalue`` (no full sort). With ``hint`` (the
    previous iteration's threshold, which moves little between ADMM iterations) only the entries
    in the band ``hint·(1 ± BAND)`` are ranked when the threshold is known to lie in it; otherwise
    the whole matrix is.
    """
    n = a.numel()
    if k >= n:
        return torch.ones_like(a, dtype=torch.bool), 0.0
    if k <= 0:
        return torch.zeros_like(a, dtype=torch.bool), math.inf
    flat = a.reshape(-1)
    t = None
    if hint is not None and hint > 0:
        above = flat > hint * (1 + BAND)
        need = k - int(above.sum())  # kept entries still to choose inside the band
        if need >= 0:
            band = flat[(flat > hint * (1 - BAND)) ^ above]
            if need < band.numel():
                t = torch.kthvalue(band, band.numel() - need).values
    if t is None:
        t = torch.kthvalue(flat, n - k).values
    keep = flat > t
    short = k - int(keep.sum())
    if short:
        ties = torch.nonzero(flat == t).reshape(-1)[:short]
        keep[ties] = True
    return keep.reshape(a.shape), float(t)


def _small_nm_keep(a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """``masks.nm_keep`` for small M (same ties: the earlier input wins) by pairwise comparisons.

    Each entry's rank in its group is the number of group members that beat it; ``M(M−1)``
    strided comparisons are cheaper than sorting the groups when M is small.
    """
    g = a.reshape(a.shape[0], -1, m)
    beaten = torch.zeros(g.shape, dtype=torch.uint8, device=a.device)
    for i in range(m):
        for j in range(m):
            if j > i:
                beaten[..., i] += g[..., j] > g[..., i]
            elif j < i:
                beaten[..., i] += g[..., j] >= g[..., i]
    return (beaten < n).reshape(a.shape)


class Projector:
    """``U ↦`` keep-mask of the constraint set: global top-``k`` of ``|U|`` or N:M along rows.

    Remembers the last global threshold as the hint for the next call (``reset`` forgets it).
    """

    def __init__(self, shape: tuple[int, int], sparsity: float | None, nm: tuple[int, int] | None):
        m, p = shape
        self.nm = nm
        if nm is not None:
            nm_keep(torch.zeros(1, p), *nm)  # fails, with the message, when p is not a multiple of M
            self.k = m * p * nm[0] // nm[1]
        else:
            self.k = m * p - n_pruned(m * p, sparsity)
        self.hint: float | None = None

    def __call__(self, U: torch.Tensor, remember: bool = True) -> torch.Tensor:
        a = U.abs()
        if self.nm is not None:
            n, m = self.nm
            return _small_nm_keep(a, n, m) if m <= 4 else nm_keep(a, n, m)
        keep, t = _global_keep(a, self.k, self.hint)
        if remember:
            self.hint = t
        return keep


def _rel_objective(Bp: torch.Tensor, B0: torch.Tensor, Gt: torch.Tensor, ref: float) -> float:
    d = Bp - B0
    return float(((d @ Gt) * d).sum(dtype=torch.float64)) / ref if ref > 0 else 0.0


def _admm(B0: torch.Tensor, Gt: torch.Tensor, C: torch.Tensor, project: Projector,
          cfg: AlpsConfig, inv: ShiftedInverse | None = None) -> tuple[torch.Tensor, dict]:
    """ADMM of spec §3.2 in the (m × p) layout; returns the last ``B`` and the run's record."""
    k = max(project.k, 1)
    adaptive = cfg.rho_schedule == "adaptive"
    if inv is None:
        inv = ShiftedInverse(Gt, B0.dtype, B0.shape[0], cfg.update_iter if adaptive else None)
    inv.rho = None  # a reused factor: re-form for this run's ρ₀
    rho = cfg.rho0
    inv.set_rho(rho)
    keep0 = project(B0)
    # state: U = B + V/ρ_prev (the point last projected), its keep-mask, and the ρ of the dual,
    # so Z = U on keep, V = vrho·U off keep. Start: Z = Proj(B₀), V = 0.
    U, keep, vrho = B0, keep0, 0.0
    B = B0
    last_check = keep0
    started = False
    restarts = 0
    trace: list[tuple[float, float, float, float]] = []
    ref = float((C * B0).sum(dtype=torch.float64)) if cfg.trace else 0.0
    prev_iter_keep = keep0
    it = 0
    while it < cfg.max_iter:
        it += 1
        rho_used = rho
        # B = (C − V + ρZ)(G̃+ρI)⁻¹ with ρZ − V = U·(ρ on keep, −vrho off keep); the coefficients
        # are affine in the 0/1 mask (cheaper than torch.where with scalars)
        keepf = keep.to(U.dtype)
        B = inv.apply(torch.addcmul(C, U, keepf.mul(rho + vrho).sub_(vrho)))
        # U = B + V/ρ with V/ρ = (vrho/ρ)·U off keep
        if vrho:
            U = torch.addcmul(B, U, keepf.mul_(-vrho / rho).add_(vrho / rho))
        else:
            U = B
        keep = project(U)
        vrho = rho
        if cfg.trace:
            change = float((keep != prev_iter_keep).sum()) / k
            prev_iter_keep = keep
            trace.append((float(it), rho_used, change,
                          _rel_objective(B * project(B, remember=False), B0, Gt, ref)))
        if it % cfg.update_iter:
            continue
        s = int((keep != last_check).sum())
        frac = s / k
        last_check = keep
        if not adaptive:
            if s == 0:
                break
            continue
        if frac > 0.1:
            rho, started = rho * 1.3, True
        elif frac > 0.005:
            rho, started = rho * 1.2, True
        elif s > 0:
            if started:
                rho *= 1.1
            else:  # ρ₀ too large: the support froze before it settled; restart with a smaller ρ
                rho /= 5
                U, keep, vrho, B = B0, keep0, 0.0, B0
                restarts += 1
        elif started:
            break
        else:
            rho /= 5
        rho = min(rho, RHO_MAX)
        inv.set_rho(rho)
        if it - 1 >= cfg.switch_iter and frac < cfg.switch_tol:
            break
    record = {"admm_iterations": it, "final_rho": float(rho), "restarts": restarts}
    if cfg.trace:
        record["admm_trace"] = torch.tensor(trace, dtype=torch.float64).reshape(-1, 4)
    return B, record


# --------------------------------------------------------------------------- methods

@dataclasses.dataclass
class AlpsFactor:
    """What ALPS derives from the Gram alone (``G̃``, ``D``, ``λ`` and the eigendecomposition of
    ``G̃``), so that one Gram's many solves (HASSLE-free's outer loop) decompose it once."""

    Gt: torch.Tensor
    D: torch.Tensor
    lam: float
    inv: ShiftedInverse


def alps_factor(G: torch.Tensor, cfg: AlpsConfig, rows: int, dtype: torch.dtype) -> AlpsFactor:
    Gt, D, lam = normalised_gram(G, cfg.rel_ridge)
    adaptive = cfg.rho_schedule == "adaptive"
    return AlpsFactor(Gt, D, lam, ShiftedInverse(Gt, dtype, rows, cfg.update_iter if adaptive else None))


@register("alps", Config=AlpsConfig, kind="prune", needs_gram=True)
def _alps(W: torch.Tensor, G: torch.Tensor, cfg: AlpsConfig) -> SolveResult:
    return alps_prune(W, G, cfg)


def alps_prune(W: torch.Tensor, G: torch.Tensor, cfg: AlpsConfig, factor: AlpsFactor | None = None) -> SolveResult:
    """ALPS on ``W``; ``factor`` (from ``alps_factor`` with the same ``rel_ridge``) is reused if given."""
    project = Projector(tuple(W.shape), cfg.sparsity, cfg.nm_pair)
    factor = factor or alps_factor(G, cfg, W.shape[0], W.dtype)
    Gt, D, lam = factor.Gt, factor.D, factor.lam
    B0 = W * D[None, :]
    C = B0 @ Gt  # (G̃B₀)ᵀ in row layout
    B, extras = _admm(B0, Gt, C, project, cfg, factor.inv)
    keep = project(B)
    if cfg.refit == "pcg":
        B = pcg_refit(Gt, C.T, keep.T, (B * keep).T, cfg.pcg_iters, cfg.pcg_rtol).T
        weight = B / D[None, :]
    elif cfg.refit == "exact":
        weight = exact_refit(G, W, keep, lam)
    else:
        weight = (B * keep) / D[None, :]
    return SolveResult(weight=weight * keep, mask=keep, extras=extras)


@register("backsolve", Config=BacksolveConfig, kind="prune", needs_gram=True)
def _backsolve(W: torch.Tensor, G: torch.Tensor, cfg: BacksolveConfig) -> SolveResult:
    pattern = {"nm": cfg.nm} if cfg.nm is not None else {"sparsity": cfg.sparsity}
    keep = get_method(cfg.support).solve(W, G, pattern).mask
    if keep is None:
        raise RuntimeError(f"backsolve: method {cfg.support!r} returned no mask")
    keep = keep.to(W.device)
    if cfg.refit == "exact":
        weight = exact_refit(G, W, keep, ridge_value(G, cfg.rel_ridge))
    elif cfg.refit == "pcg":
        Gt, D, _ = normalised_gram(G, cfg.rel_ridge)
        B0 = W * D[None, :]
        B = pcg_refit(Gt, (B0 @ Gt).T, keep.T, (B0 * keep).T, cfg.pcg_iters).T
        weight = B / D[None, :]
    else:
        weight = W
    return SolveResult(weight=weight * keep, mask=keep)
