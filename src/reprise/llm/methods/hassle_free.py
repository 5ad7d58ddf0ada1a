"""HASSLE-free (spec §5) and OATS (spec §5.6): a sparse ``S`` plus a rank-``r`` ``BA`` per layer.

Both minimise, over ``S`` in the sparsity pattern and ``rank(BA) ≤ r``, a layer objective; the
effective dense weight is ``S + BA`` (``SolveResult.weight``), ``mask`` is ``S``'s support and the
extras hold ``sparse`` (S), ``A`` (r × in), ``B`` (out × r), ``rank`` and ``objective_trace``.

**HASSLE-free** (spec §5.1, §5.3 [CODE]) works on the exact objective ``tr((W−S−BA) H (W−S−BA)ᵀ)``
with the damped Gram ``H`` (the shared damping policy, ``gram.damped_cholesky``: dead diagonal → 1,
``+ rel_damp·mean(diag)·I``). Alternating minimisation, ``am_iters`` outer iterations:

- sparse step: the registered ``sparsegpt`` or ``alps`` solver (``sparse_solver``, the paper's two
  variants) applied to the residual ``W − BA`` with the same ``G``; ALPS with ``ρ₀ = 0.1·(5t+1)``
  and ``max_iter = 200`` (``alps_max_iter``) at outer iteration ``t`` (§5.3, §5.4); the Gram is
  factored once per layer (SparseGPT's inverse Cholesky, ALPS's eigendecomposition), as in the code;
- low-rank step (``low_rank_step``): ``gd_iters`` Adam steps (default betas, ``lr = gd_lr/(t+10)``)
  on the factors in Jacobi-scaled coordinates ``Ã = A·D``, ``T̃ = (W − S)·D``, ``H_n = D⁻¹HD⁻¹``,
  ``D = sqrt(diag H)``, warm-started from the previous factors; a non-finite step resets to the
  step's starting factors and divides the lr by 10 (§5.3);
- start: ``A`` Kaiming-uniform (bound ``1/sqrt(in)``, the LoRA init, seeded by ``seed``), ``B = 0``
  (§5.2 "Initialisation").

Every half-step's iterate is scored with the exact, undamped ``tr(ΔW G ΔWᵀ)`` (the objective
``SolveResult`` reports) and the best is returned; ``objective_trace`` lists those scores in
order (after sparse step 0, after low-rank step 0, after sparse step 1, ...). Departures from the
released code: it selects on the *damped* ``H`` and only after the low-rank step [CODE]; scoring
also the post-sparse half-step makes the sparse-only solution (trace[0], since ``BA = 0`` at the
start) a candidate, so the result is never worse than the sparse-only solver. The scripts'
extra diagonal damping (``hess_diag``, ``hess_percdamp``) is not applied: one damping policy.

**OATS** (Zhang & Papyan, ICLR 2025; checked against stephenqz/OATS@8d46d0b, ``altern_ls``):
alternating thresholding on the activation-scaled weight ``W̃ = W·diag(sqrt(diag G))`` (the
code's per-input second moment, proportional to ``diag G``): ``L ← TSVD_r(W̃ − S)`` (a full SVD
with the trailing singular values zeroed), ``S ← threshold(W̃ − L)`` (magnitude, per output row
for unstructured, the ``M − N`` smallest of every ``M`` inputs for N:M), ``iters`` times (80 in its
configs) from ``S = 0``; then ``S·D⁻¹`` and ``L·D⁻¹``. It minimises the diagonal relaxation
``‖(W − S − L)·D‖_F²`` of the layer objective. Its own N:M budget ties the rank to the pattern;
here OATS takes the rank of the table it is compared in (HASSLE-free's budget rules).

**Budget** (spec §5.2 [CODE]) — give one of:

- ``rank``: a fixed rank per layer (the scripts' ``lora_num_ranks = 64``; the default), capped at
  ``min(out, in)``;
- ``compression`` with ``nm``: N:M at a fixed compression ratio ``cr``; ``rr = (1 − N/M − cr)/(1 − cr)``;
- ``compression`` with ``rank_ratio``: unstructured, ``sparsity = cr + rr − cr·rr`` (derived);

with ``r = floor(rr·(1 − cr)·q·p/(q + p))`` (``rank_for_budget``).
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.io import ReproError
from reprise.llm.gram import damped_cholesky, damped_inverse_cholesky
from reprise.llm.methods.alps import alps_factor, alps_prune
from reprise.llm.methods.base import PruneConfig, SolveResult, _fail, _is_int, layer_objective, parse_nm
from reprise.llm.methods.masks import n_pruned, nm_keep, prune_lowest
from reprise.llm.methods.registry import get_method, register
from reprise.llm.methods.sparsegpt import sparsegpt_sweep

SPARSE_SOLVERS = ("sparsegpt", "alps")
#: the scripts' fixed rank (``lora_num_ranks``, spec §5.4 [CODE]); used when no budget is given
DEFAULT_RANK = 64
#: ALPS inside HASSLE-free: ρ₀ = 0.1·(5t+1), max_iter 200 (spec §5.3/§5.4 [CODE])
ALPS_MAX_ITER = 200


# --------------------------------------------------------------------------- budget (§5.2)

def _floor(x: float) -> int:
    """``floor`` that forgives float round-off just below an integer (e.g. 511.9999999999)."""
    return int(math.floor(x + 1e-9))


def budget_rank_ratio(compression: float, nm: str | tuple[int, int]) -> float:
    """N:M at fixed compression ``cr``: ``rr = (1 − N/M − cr)/(1 − cr)``, needs ``1 − cr > N/M``."""
    n, m = parse_nm(nm) if isinstance(nm, str) else nm
    if not 1 - compression > n / m:
        raise ReproError(f"compression={compression!r} leaves no room for a low-rank part with nm={n}:{m}: "
                         f"needs 1 − compression > N/M = {n / m:g}")
    return (1 - n / m - compression) / (1 - compression)


def budget_sparsity(compression: float, rank_ratio: float) -> float:
    """Unstructured: the sparse part's sparsity ``cr + rr − cr·rr`` (density ``(1−cr)(1−rr)``)."""
    return compression + rank_ratio - compression * rank_ratio


def rank_for_budget(out_features: int, in_features: int, *, compression: float,
                    rank_ratio: float | None = None, nm: str | None = None) -> int:
    """Per-layer rank ``floor(rr·(1 − cr)·q·p/(q + p))`` (spec §5.2), ``rr`` given or from ``nm``."""
    if (rank_ratio is None) == (nm is None):
        raise ReproError("rank_for_budget: give exactly one of rank_ratio (unstructured) or nm (N:M)")
    rr = budget_rank_ratio(compression, nm) if nm is not None else rank_ratio
    q, p = out_features, in_features
    return _floor(rr * (1 - compression) * q * p / (q + p))


# --------------------------------------------------------------------------- configs

@dataclasses.dataclass(frozen=True)
class SparseLowRankConfig(PruneConfig):
    """The pattern of ``S`` (``sparsity`` or ``nm``) and the rank budget (module docstring)."""

    rank: int | None = None
    rank_ratio: float | None = None
    compression: float | None = None

    def validate(self) -> None:
        if self.compression is not None:
            if self.rank is not None:
                _fail(self, "rank", self.rank, "give either rank or compression (with nm or rank_ratio), not both")
            self._check_fraction("compression", "use the fraction of parameters removed, in [0, 1)")
            if self.nm is not None:
                if self.rank_ratio is not None:
                    _fail(self, "rank_ratio", self.rank_ratio,
                          "with nm the rank ratio follows from compression; drop rank_ratio")
                super().validate()
                try:
                    budget_rank_ratio(self.compression, self.nm)
                except ReproError as e:
                    raise ReproError(f"{type(self).__name__}: {e}") from None
                return
            if self.rank_ratio is None:
                _fail(self, "compression", self.compression,
                      "with compression give nm (N:M) or rank_ratio (unstructured)")
            self._check_fraction("rank_ratio", "use a fraction in [0, 1) (0.3 in the scripts)")
            derived = budget_sparsity(self.compression, self.rank_ratio)
            if self.sparsity is not None and not math.isclose(float(self.sparsity), derived, abs_tol=1e-12):
                _fail(self, "sparsity", self.sparsity,
                      f"with compression and rank_ratio the sparsity is derived ({derived!r}); drop sparsity")
            self._set("sparsity", derived)
            super().validate()
            return
        if self.rank_ratio is not None:
            _fail(self, "rank_ratio", self.rank_ratio, "rank_ratio needs compression (the fraction removed)")
        super().validate()
        if self.rank is None:
            self._set("rank", DEFAULT_RANK)
        if not _is_int(self.rank) or self.rank < 0:
            _fail(self, "rank", self.rank, "use an integer >= 0 (64 in the scripts)")

    def layer_rank(self, out_features: int, in_features: int) -> int:
        if self.compression is None:
            r = self.rank
        else:
            r = rank_for_budget(out_features, in_features, compression=self.compression,
                                rank_ratio=self.rank_ratio, nm=self.nm)
        return max(0, min(r, out_features, in_features))

    def pattern(self) -> dict:
        return {"nm": self.nm} if self.nm is not None else {"sparsity": self.sparsity}


@dataclasses.dataclass(frozen=True)
class HassleFreeConfig(SparseLowRankConfig):
    """Defaults: the scripts that produced the CPAL results (spec §5.4 [CODE], "scripts (most)")."""

    sparse_solver: str = "sparsegpt"
    am_iters: int = 80
    gd_iters: int = 50
    gd_lr: float = 1e-2  # lr at outer step t is gd_lr/(t+10)
    rel_damp: float = 0.005  # percdamp
    seed: int = 42  # the LoRA init of A
    alps_max_iter: int = ALPS_MAX_ITER  # ADMM iterations of each ALPS sparse step

    def validate(self) -> None:
        super().validate()
        if self.sparse_solver not in SPARSE_SOLVERS:
            _fail(self, "sparse_solver", self.sparse_solver, f"use one of {', '.join(SPARSE_SOLVERS)}")
        self._check_pos_int("am_iters")
        if not _is_int(self.gd_iters) or self.gd_iters < 0:
            _fail(self, "gd_iters", self.gd_iters, "use an integer >= 0 (50 in the scripts)")
        v = self._float_field("gd_lr")
        if not isinstance(v, float) or not math.isfinite(v) or v <= 0:
            _fail(self, "gd_lr", v, "use a finite learning rate > 0 (1e-2 in the scripts)")
        self._check_rel_damp()
        self._check_pos_int("alps_max_iter")
        if not _is_int(self.seed):
            _fail(self, "seed", self.seed, "use an integer")


@dataclasses.dataclass(frozen=True)
class OatsConfig(SparseLowRankConfig):
    iters: int = 80  # OATS_configs.py: num_iters 80
    per_row: bool = True  # unstructured threshold per output row, as altern_ls sorts each row

    def validate(self) -> None:
        super().validate()
        self._check_pos_int("iters")
        self._check_bool("per_row")


# --------------------------------------------------------------------------- low-rank step

def damped_gram(G: torch.Tensor, rel_damp: float) -> torch.Tensor:
    """``H`` of the shared damping policy (dead diagonal → 1, ``+λI``), as ``L Lᵀ``."""
    L, _ = damped_cholesky(G, rel_damp)
    return L @ L.T


def _lr_loss(EH: torch.Tensor, E: torch.Tensor) -> float:
    return 0.5 * float((E * EH).sum(dtype=torch.float64))


def low_rank_step(T: torch.Tensor, H: torch.Tensor, B: torch.Tensor, A: torch.Tensor, steps: int,
                  lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``½tr((T − BA) H (T − BA)ᵀ)`` over ``B`` (q × r) and ``A`` (r × p), warm-started.

    Runs in Jacobi-scaled coordinates (spec §5.3): ``D = sqrt(diag H)``, ``Ã = A·D``, ``T̃ = T·D``,
    ``H_n = D⁻¹HD⁻¹``; fresh Adam moments (betas 0.9/0.999, eps 1e-8, as torch's defaults) every
    call. The gradients are analytic: with ``E = T̃ − BÃ``, ``∇_B = −E H_n Ãᵀ``, ``∇_Ã = −Bᵀ E H_n``.
    A non-finite step resets to the starting factors and divides the lr by 10. Returns ``(B, A)``.
    """
    if steps <= 0 or B.shape[1] == 0:
        return B, A
    D = torch.diagonal(H).clamp(min=0).sqrt() + 1e-12
    Hn = H / D[:, None] / D[None, :]
    Tt = T * D[None, :]
    THn = Tt @ Hn
    B0, At0 = B.clone(), A * D[None, :]
    b1, b2, eps = 0.9, 0.999, 1e-8
    while True:
        Bc, At = B0.clone(), At0.clone()
        mB, vB = torch.zeros_like(Bc), torch.zeros_like(Bc)
        mA, vA = torch.zeros_like(At), torch.zeros_like(At)
        ok = True
        for k in range(1, steps + 1):
            EH = THn - Bc @ (At @ Hn)
            gB = -(EH @ At.T)
            gA = -(Bc.T @ EH)
            for p_, g, m, v in ((Bc, gB, mB, vB), (At, gA, mA, vA)):
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                step = lr / (1 - b1 ** k)
                denom = (v / (1 - b2 ** k)).sqrt_().add_(eps)
                p_.addcdiv_(m, denom, value=-step)
            if not (bool(torch.isfinite(Bc).all()) and bool(torch.isfinite(At).all())):
                ok = False
                break
        if ok:
            return Bc, At / D[None, :]
        lr /= 10
        if lr < 1e-30:  # cannot happen with finite inputs; keep the starting factors
            return B0, At0 / D[None, :]


# --------------------------------------------------------------------------- HASSLE-free

def _lora_init(rank: int, in_features: int, seed: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Kaiming-uniform with a = sqrt(5) (peft's LoRA A): U(−1/sqrt(in), 1/sqrt(in))."""
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(in_features)
    A = (torch.rand(rank, in_features, generator=g, dtype=torch.float64) * 2 - 1) * bound
    return A.to(dtype=dtype, device=device)


def _sparse_step(G: torch.Tensor, cfg: HassleFreeConfig, rows: int, dtype: torch.dtype):
    """``step(target, t) -> SolveResult``: the sparse solver on one Gram, factored once per layer
    as the released code does (SparseGPT's inverse Cholesky; ALPS's eigendecomposition)."""
    solver = get_method(cfg.sparse_solver)
    base = cfg.pattern()
    if cfg.sparse_solver == "sparsegpt":
        scfg = solver.make_config({**base, "rel_damp": cfg.rel_damp})
        factor = damped_inverse_cholesky(G, cfg.rel_damp)
        return lambda target, t: sparsegpt_sweep(target, factor, scfg)

    def alps_cfg(t: int):
        return solver.make_config({**base, "rel_ridge": cfg.rel_damp, "rho0": 0.1 * (5 * t + 1),
                                   "max_iter": cfg.alps_max_iter})

    factor = alps_factor(G, alps_cfg(0), rows, dtype)
    return lambda target, t: alps_prune(target, G, alps_cfg(t), factor)


@register("hassle-free", Config=HassleFreeConfig, kind="prune", needs_gram=True)
def _hassle_free(W: torch.Tensor, G: torch.Tensor, cfg: HassleFreeConfig) -> SolveResult:
    q, p = W.shape
    r = cfg.layer_rank(q, p)
    H = damped_gram(G, cfg.rel_damp)
    sparse_step = _sparse_step(G, cfg, q, W.dtype)
    B = torch.zeros(q, r, dtype=W.dtype, device=W.device)
    A = _lora_init(r, p, cfg.seed, W.dtype, W.device)
    trace: list[float] = []
    best = (math.inf, None, None, None, None)
    for t in range(cfg.am_iters):
        L = B @ A
        res = sparse_step(W - L, t)
        mask = res.mask
        S = res.weight.to(W.dtype) * mask
        for stage in ("sparse", "low-rank"):
            if stage == "low-rank":
                B, A = low_rank_step(W - S, H, B, A, cfg.gd_iters, cfg.gd_lr / (t + 10))
                L = B @ A
            obj = layer_objective(W, S + L, G)
            trace.append(obj)
            if obj < best[0]:
                best = (obj, S, B.clone(), A.clone(), mask)
    _, S, B, A, mask = best
    return SolveResult(weight=S + B @ A, mask=mask,
                       extras={"sparse": S, "A": A, "B": B, "rank": r, "objective_trace": trace})


# --------------------------------------------------------------------------- OATS

def truncated_svd(M: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of ``M`` in the Frobenius norm."""
    if rank <= 0:
        return torch.zeros_like(M)
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U[:, :rank] * s[:rank]) @ Vh[:rank]


def _threshold_keep(M: torch.Tensor, cfg: OatsConfig) -> torch.Tensor:
    a = M.abs()
    if cfg.nm is not None:
        return nm_keep(a, *cfg.nm_pair)
    count = M.shape[1] if cfg.per_row else M.numel()
    return prune_lowest(a, n_pruned(count, cfg.sparsity), per_row=cfg.per_row)


@register("oats", Config=OatsConfig, kind="prune", needs_gram=True)
def _oats(W: torch.Tensor, G: torch.Tensor, cfg: OatsConfig) -> SolveResult:
    q, p = W.shape
    r = cfg.layer_rank(q, p)
    if cfg.nm is not None:
        nm_keep(W[:1], *cfg.nm_pair)  # fails early, with the message, when p is not a multiple of M
    D = torch.diagonal(G).clamp(min=0).sqrt()
    dead = D == 0
    Dsafe = torch.where(dead, torch.ones_like(D), D)
    Wt = W * D[None, :]
    S = torch.zeros_like(Wt)
    keep = torch.ones_like(W, dtype=torch.bool)
    trace: list[float] = []
    for _ in range(cfg.iters):
        L = truncated_svd(Wt - S, r)
        R = Wt - L
        keep = _threshold_keep(R, cfg)
        S = R * keep
        trace.append(float(((Wt - S - L) ** 2).sum(dtype=torch.float64)))  # the relaxed objective
    # unscale; dead inputs (no activation) get zero weight in both parts
    S_w = torch.where(dead[None, :], torch.zeros_like(S), S / Dsafe[None, :])
    Lw = torch.where(dead[None, :], torch.zeros_like(L), L / Dsafe[None, :])
    U, s, Vh = torch.linalg.svd(Lw, full_matrices=False)
    B, A = U[:, :r] * s[:r], Vh[:r]
    return SolveResult(weight=S_w + B @ A, mask=keep,
                       extras={"sparse": S_w, "A": A, "B": B, "rank": r, "objective_trace": trace})
