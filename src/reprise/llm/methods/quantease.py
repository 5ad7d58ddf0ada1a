"""QuantEase (Behdin et al. 2023, spec §2.1–2.3, §2.6): cyclic coordinate descent on a fixed grid.

Problem: minimise ``f(Ŵ) = tr((W − Ŵ) G (W − Ŵ)ᵀ)`` with every ``Ŵ_ij`` on the min/max grid of
its row (or of its row's group of ``group_size`` consecutive inputs), the grid being fixed in
advance. Fixing every column but ``j``, ``f`` is a 1-D convex quadratic in each entry of column
``j`` with curvature ``G_jj``, so the exact minimiser over the grid is the grid point nearest to
``β = Ŵ_j + ((W − Ŵ) G)_j / G_jj``, clamped. One sweep visits ``j = 1..p`` in turn; no step ever
raises ``f``.

How it is computed (all rows of a column at once; no Python loop over single weights):

- The state is the code matrix ``V`` (``Ŵ = S ∘ (V − Z)`` with the expanded scales ``S`` and zeros
  ``Z``) and ``Y``, the codes of the unconstrained targets β of every column:
  ``Y = V + (G (W − Ŵ)ᵀ)ᵀ / (G_jj S)``. A coordinate step is ``V_j ← clamp(round(Y_j))``.
  Changing column ``i`` moves every other ``Y_k`` by ``−(G_ki / G_kk) δ_i`` (``Y_i`` itself does
  not move), so ``Y`` is kept up to date lazily: inside a block of ``block_size`` columns the
  changes of the block's earlier columns are applied to the current column with one
  matrix-vector product, and when the block is done one GEMM pushes them to all of ``Y``.
  When the block's columns share their scales (always with one grid per row, the paper's
  setting; with groups, whenever act_order does not mix groups inside a block) the scale
  cancels and a column costs three tensor operations (a matrix-vector product written straight
  into ``V``, round, clamp); otherwise the deltas are carried in weight units (seven).
  Everything runs in transposed layout (a column of ``W`` is a contiguous row).
- ``Y`` is recomputed from scratch (one GEMM, which also gives the objective) at the start,
  after every relaxation sweep and every ``REFRESH`` rounded sweeps that changed something;
  in between, the objective of each rounded sweep comes from ``Y − V`` at the cost of a few
  elementwise operations (``extras["sweep_objective"]``).
- **Relaxation** (``relax``, the released code's schedule): sweep ``k`` (0-based) is not rounded
  when ``k % 3 == 1``, ``k <= 25`` and it is not the last sweep. An unrounded cyclic sweep is
  one Gauss–Seidel sweep on ``Ŵ G = W G``, i.e. ``Ŵᵀ ← Ŵᵀ + (D + L)⁻¹ Rᵀ`` with ``R = (W − Ŵ) G``
  and ``D + L`` the lower triangle of ``G``: one triangular solve.
- **Dead inputs** (``G_jj == 0``): their column is rounded in place onto the grid, in every sweep,
  and never divided by (their ``1/G_jj`` is taken as 0).
- **Start** (``init``): ``continuous`` starts at ``W`` (the paper); ``rtn``, ``gptq`` and
  ``gptq-act-order`` start at that solution (spec §2.6, the GPTQ+QuantEase hybrid) and return the
  best rounded iterate visited, start included, so they are never worse than their start.
- **Grid**: fit on the original ``W`` (per row, or per group of consecutive original columns) for
  the continuous and RTN starts; for a GPTQ start it is GPTQ's own grid (its per-row grid is
  fit on ``W`` with dead columns zeroed, its group grids on the error-compensated weights, as in
  spec §2.6), so the start lies on it.
- **act_order** permutes the columns by descending ``diag G`` for the sweeps only. Deviation
  from the released code: groups stay groups of consecutive *original* columns (the released
  code forms them in permuted order unless ``--static-groups``), so ``g_idx`` maps original
  columns and packs like any grouped checkpoint.
- ``early_stop``: once a rounded sweep changes nothing and no relaxation sweep is left, every
  later sweep would repeat it exactly (``Y`` is not refreshed after a sweep without change), so
  stopping returns the identical result. ``extras["sweeps"]`` says how many sweeps ran.

The returned weight is rebuilt from integer codes with ``quant_grid.decode``, so every value lies
exactly on its grid, and ``quant`` carries ``scales``/``zeros``/``g_idx`` for packing.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.llm.methods.base import QuantConfig, SolveResult, _fail, _is_int
from reprise.llm.methods.gptq import GptqConfig, _gptq
from reprise.llm.methods.quant_grid import decode, encode, group_index, quant_record
from reprise.llm.methods.registry import register
from reprise.llm.methods.rtn import rtn_quantize

INITS = ("continuous", "rtn", "gptq", "gptq-act-order")
#: a rounded sweep that changed something is followed by a fresh ``Y`` after this many of them
REFRESH = 8
#: a warm start's best iterate is compared with the start exactly when within this relative margin
CHECK_MARGIN = 1e-4


#: the separately named fast setting (``quantease-fast`` in benchmarks/quantease.py): start at
#: act-order GPTQ, 8 rounded sweeps, stop early once a sweep changes nothing
FAST_CONFIG = {"init": "gptq-act-order", "iters": 8, "relax": False, "early_stop": True}


def relaxed_sweep(k: int, iters: int, relax: bool) -> bool:
    """The released code's schedule: sweep ``k`` is unrounded iff k % 3 == 1, k <= 25, not last."""
    return relax and k % 3 == 1 and k <= 25 and k != iters - 1


@dataclasses.dataclass(frozen=True)
class QuantEaseConfig(QuantConfig):
    iters: int = 30
    relax: bool = True
    init: str = "continuous"
    act_order: bool = False
    block_size: int = 32
    rel_damp: float = 0.01  # only for the GPTQ starts
    early_stop: bool = True  # identical result, fewer sweeps

    def validate(self) -> None:
        super().validate()
        for name in ("relax", "act_order", "early_stop"):
            self._check_bool(name)
        self._check_pos_int("block_size")
        self._check_rel_damp()
        if self.init not in INITS:
            _fail(self, "init", self.init, f"use one of {', '.join(INITS)}")
        if not _is_int(self.iters) or self.iters < 0:
            _fail(self, "iters", self.iters, "use an integer >= 0 (number of sweeps; 30 in the paper)")
        if self.iters == 0 and self.init == "continuous":
            _fail(self, "iters", self.iters, "use iters >= 1 with init='continuous' (the start W is not on the grid)")


# --------------------------------------------------------------------------- grid

@dataclasses.dataclass
class Grid:
    """Per-row (or per-group) grid in original column order: ``scales``/``zeros`` (q, n_groups)."""

    scales: torch.Tensor
    zeros: torch.Tensor
    g_idx: torch.Tensor  # (p,) long
    bits: int
    group_size: int

    @property
    def uniform(self) -> bool:
        """One grid per row: the scale is the same for every column."""
        return self.scales.shape[1] == 1

    def expanded(self, perm: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, Z)`` per weight, transposed (p, q), columns in ``perm`` order."""
        g = self.g_idx if perm is None else self.g_idx[perm]
        return self.scales[:, g].T.contiguous(), self.zeros[:, g].T.contiguous()

    def record(self) -> dict[str, torch.Tensor]:
        return quant_record(self.scales, self.zeros, self.g_idx, self.bits, self.group_size)


def minmax_grid(W: torch.Tensor, bits: int, group_size: int, sym: bool) -> Grid:
    """The shared min/max grid fit on ``W`` (per row or per group of consecutive columns)."""
    _, scales, zeros = rtn_quantize(W, bits, group_size, sym)
    return Grid(scales, zeros, group_index(W.shape[1], group_size, W.device), bits, group_size)


# --------------------------------------------------------------------------- engine

class CoordinateDescent:
    """Sweeps of exact coordinate minimisation over a fixed grid, in transposed, permuted layout.

    Used by QuantEase and outlier-aware QuantEase. ``T`` (the target, W or W − Ĥ) and the codes
    live in (p, q) buffers; the column order is ``perm`` (identity unless act_order).
    """

    def __init__(self, G: torch.Tensor, bits: int, block_size: int, act_order: bool):
        p = G.shape[0]
        Gs = 0.5 * (G + G.T)  # f only sees the symmetric part
        self.perm = torch.argsort(torch.diagonal(Gs), descending=True, stable=True) if act_order else None
        if self.perm is not None:
            Gs = Gs[self.perm][:, self.perm]
        self.G = Gs.contiguous()
        self.d = torch.diagonal(self.G).clone()
        self.dead = self.d <= 0  # G_jj == 0 for a Gram (negative only if G is not one)
        self.invd = torch.where(self.dead, torch.zeros_like(self.d), 1.0 / torch.where(self.dead, 1.0, self.d))
        self.Gn = self.G * self.invd[:, None]  # Gn[k, i] = G_ki / G_kk: how Y_k moves per unit δ_i
        self.Gn.fill_diagonal_(0)
        self.maxq = float(2 ** bits - 1)
        self.p = p
        self.blocks = [(b0, min(b0 + block_size, p)) for b0 in range(0, p, block_size)]
        self.block_size = block_size
        self._lower = None
        self._grow = [self.Gn[j, b0:j] for b0, b1 in self.blocks for j in range(b0, b1)]
        self._low = [torch.tril(self.Gn[b0:b1, b0:b1], -1) for b0, b1 in self.blocks]
        self.any_dead = bool(self.dead.any())

    # ---- layout helpers
    def to_layout(self, M: torch.Tensor) -> torch.Tensor:
        """(q, p) in original order → (p, q) contiguous in sweep order."""
        M = M if self.perm is None else M[:, self.perm]
        return M.T.contiguous()

    def from_layout(self, Mt: torch.Tensor) -> torch.Tensor:
        M = Mt.T
        if self.perm is None:
            return M.contiguous()
        out = torch.empty_like(M)
        out[:, self.perm] = M
        return out

    # ---- state
    def set_grid(self, St: torch.Tensor, Zt: torch.Tensor, uniform: bool) -> None:
        """Expanded scales/zeros (p, q); ``uniform``: one scale per row for every column."""
        self.St, self.Zt, self.uniform = St, Zt, uniform
        self.invSt = 1.0 / St
        self.invdS = self.invSt * self.invd[:, None]
        self._rows_invS = self.invSt.unbind(0)
        self._rows_S = St.unbind(0)
        # a block whose columns share their scales runs in code units (the scale cancels)
        self._same_scale = [uniform or bool((St[b0:b1] == St[b0]).all()) for b0, b1 in self.blocks]

    def start(self, Tt: torch.Tensor, Vt: torch.Tensor) -> None:
        """Take ownership of target ``Tt`` and codes ``Vt`` (both (p, q)); allocate ``Y``."""
        self.Tt, self.Vt = Tt, Vt
        q = Vt.shape[1]
        self.Yt = torch.empty_like(Vt)
        self._D = torch.zeros(self.block_size, q, dtype=Vt.dtype, device=Vt.device)
        self._Dt = [self._D[:jj].t() for jj in range(self.block_size)]
        self._Drows = self._D.unbind(0)
        self._rows_V = Vt.unbind(0)
        self._rows_Y = self.Yt.unbind(0)
        self._Vprefix = [Vt[b0:j].t() for b0, b1 in self.blocks for j in range(b0, b1)]

    def weight_t(self) -> torch.Tensor:
        return self.St * (self.Vt - self.Zt)

    def refresh(self) -> float:
        """``Y`` from scratch (one GEMM); returns the objective ``f`` in fp64."""
        E = self.Tt - self.weight_t()
        Rt = self.G @ E
        torch.addcmul(self.Vt, Rt, self.invdS, out=self.Yt)
        return float((E * Rt).sum(dtype=torch.float64))

    def objective(self) -> float:
        """``f`` from the current ``Y`` (no GEMM): ``R = (Y − V) ∘ S ∘ G_jj``."""
        E = self.Tt - self.weight_t()
        return float((E * self.residual_t()).sum(dtype=torch.float64))

    def residual_t(self) -> torch.Tensor:
        """``G (T − Ŵ)ᵀ`` recovered from ``Y`` (zero on dead columns)."""
        return (self.Yt - self.Vt) * self.St * self.d[:, None]

    # ---- sweeps
    def rounded_sweep(self) -> bool:
        """One cyclic sweep with exact grid minimisation; returns whether any code changed.

        Same-scale block: with ``Yc = Y_B + tril(Gn_BB, −1) V_B(old)`` fixed at the block start,
        column ``j``'s target is ``Yc_j − Gn[j, B<j] V_B<j(new)`` (the earlier columns' changes,
        written as new minus old codes), so a column is three operations writing straight into
        ``V``: one matrix-vector product, round, clamp. Mixed-scale block (groups with act_order):
        the earlier columns' changes are carried in weight units and rescaled per column.
        """
        V, grow, maxq = self._rows_V, self._grow, self.maxq
        changed = False
        for bi, (b0, b1) in enumerate(self.blocks):
            nb = b1 - b0
            if self._same_scale[bi]:
                old = self.Vt[b0:b1].clone()
                Yc = torch.addmm(self.Yt[b0:b1], self._low[bi], old).unbind(0)
                prefix = self._Vprefix
                torch.round(Yc[0], out=V[b0]).clamp_(0, maxq)
                for jj in range(1, nb):
                    j = b0 + jj
                    torch.addmv(Yc[jj], prefix[j], grow[j], alpha=-1, out=V[j]).round_().clamp_(0, maxq)
                Db = self.Vt[b0:b1] - old  # code deltas
                if not bool(Db.any()):
                    continue
                changed = True
                if self.uniform:
                    self.Yt.addmm_(self.Gn[:, b0:b1], Db, alpha=-1)
                else:
                    self.Yt.addcmul_(self.Gn[:, b0:b1] @ (Db * self.St[b0]), self.invSt, value=-1)
                continue
            Y, Dt, Drows, invS, S = self._rows_Y, self._Dt, self._Drows, self._rows_invS, self._rows_S
            for jj in range(nb):  # D holds weight deltas; codes of column j are in its own scale
                j = b0 + jj
                if jj:
                    t = torch.addcmul(Y[j], torch.mv(Dt[jj], grow[j]), invS[j], value=-1)
                    t.round_()
                else:
                    t = torch.round(Y[j])
                t.clamp_(0, maxq)
                dv = t - V[j]
                V[j].copy_(t)
                torch.mul(dv, S[j], out=Drows[jj])
            Db = self._D[:nb]
            if bool(Db.any()):
                changed = True
                self.Yt.addcmul_(self.Gn[:, b0:b1] @ Db, self.invSt, value=-1)
        return changed

    def relaxed_sweep(self) -> None:
        """One unrounded cyclic sweep (Gauss–Seidel) in closed form; dead columns are rounded.

        ``Y`` is stale afterwards: call ``refresh``.
        """
        if self._lower is None:
            L = torch.tril(self.G)
            if self.any_dead:
                L[self.dead, :] = 0
                L[:, self.dead] = 0
                L[self.dead, self.dead] = 1
            self._lower = L
        Rt = self.residual_t()
        if self.any_dead:
            Rt[self.dead] = 0
        step = torch.linalg.solve_triangular(self._lower, Rt, upper=False)
        Wt = self.weight_t() + step
        V = torch.addcmul(self.Zt, Wt, self.invSt)
        if self.any_dead:
            V[self.dead] = self.Vt[self.dead].round().clamp(0, self.maxq)
        self.Vt.copy_(V)


# --------------------------------------------------------------------------- solver

def _start(W: torch.Tensor, G: torch.Tensor, cfg: QuantEaseConfig):
    """(grid, start codes or None for the continuous start, damping record or None)."""
    if cfg.init in ("continuous", "rtn"):
        grid = minmax_grid(W, cfg.bits, cfg.group_size, cfg.sym)
        if cfg.init == "continuous":
            return grid, None, None
        weight, _, _ = rtn_quantize(W, cfg.bits, cfg.group_size, cfg.sym)
        return grid, encode(grid.record(), weight).to(W.dtype), None
    gcfg = GptqConfig(bits=cfg.bits, group_size=cfg.group_size, sym=cfg.sym, rel_damp=cfg.rel_damp,
                      act_order=cfg.init == "gptq-act-order")
    res = _gptq(W, G, gcfg)
    q = res.quant
    grid = Grid(q["scales"].to(W.dtype), q["zeros"].to(W.dtype), q["g_idx"].long(), cfg.bits, cfg.group_size)
    return grid, encode(q, res.weight).to(W.dtype), res.damping


def _exact_objective(W: torch.Tensor, Wq: torch.Tensor, G: torch.Tensor) -> float:
    D = (W - Wq).to(torch.float64)
    return float(((D @ G.to(torch.float64)) * D).sum())


@register("quantease", Config=QuantEaseConfig, kind="quant", needs_gram=True)
def _quantease(W: torch.Tensor, G: torch.Tensor, cfg: QuantEaseConfig) -> SolveResult:
    grid, codes0, damping = _start(W, G, cfg)
    cd = CoordinateDescent(G, cfg.bits, cfg.block_size, cfg.act_order)
    St, Zt = grid.expanded(cd.perm)
    cd.set_grid(St, Zt, grid.uniform)
    Tt = cd.to_layout(W)
    Vt = torch.addcmul(Zt, Tt, cd.invSt) if codes0 is None else cd.to_layout(codes0)
    cd.start(Tt, Vt)
    f = cd.refresh()

    track_best = codes0 is not None
    f_start = f
    best_f, best_V = (f, None) if track_best else (math.inf, None)  # best_V None: the start
    traj, traj_k = [], []
    since_refresh, last_changed, sweeps = 0, True, 0
    last_relax = max((k for k in range(cfg.iters) if relaxed_sweep(k, cfg.iters, cfg.relax)), default=-1)
    for k in range(cfg.iters):
        sweeps = k + 1
        if relaxed_sweep(k, cfg.iters, cfg.relax):
            cd.relaxed_sweep()
            cd.refresh()
            since_refresh, last_changed = 0, True
            continue
        if since_refresh >= REFRESH and last_changed:
            cd.refresh()
            since_refresh = 0
        changed = cd.rounded_sweep()
        since_refresh += 1
        f = cd.objective()
        traj.append(f)
        traj_k.append(k)
        if track_best and f < best_f:
            best_f, best_V = f, Vt.clone()
        last_changed = changed
        if cfg.early_stop and not changed and k > last_relax:
            break

    quant = grid.record()
    if track_best and best_V is None:
        codes = codes0
    else:
        codes = cd.from_layout(best_V if track_best else Vt)
    weight = decode(quant, codes.to(torch.float32)).to(W.dtype)
    if track_best and best_V is not None and best_f > f_start * (1 - CHECK_MARGIN):
        # the tracked objectives carry the compute precision's error: a near tie with the start
        # is settled exactly, so the result is never worse than the start
        start_w = decode(quant, codes0.to(torch.float32)).to(W.dtype)
        if _exact_objective(W, start_w, G) < _exact_objective(W, weight, G):
            weight = start_w
    extras = {"sweep_objective": torch.tensor(traj, dtype=torch.float64),
              "sweep_index": torch.tensor(traj_k, dtype=torch.int64), "sweeps": sweeps}
    if cd.perm is not None:
        extras["perm"] = cd.perm.cpu()
    return SolveResult(weight=weight, quant=quant, damping=damping, extras=extras)
